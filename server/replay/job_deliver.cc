// How a job's worker gets hold of one event and delivers it (see job_run.h):
// claiming it patiently, holding the claim between the job's own retries, and
// a replay's delivery through check-then-act. Diff and compensate jobs
// (job_compensate.cc) claim the same way.
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/replay/job_run.h"
#include "server/replay/limits.h"

namespace replayd {

bool JobRun::HoldForRetry(const StoredEvent& e, absl::Duration wait) {
  const absl::Time until = clock_->Now() + wait;
  absl::Time renew = clock_->Now();
  while (true) {
    if (CurrentStop() != Stop::kNone) {
      (void)env_.delivery_store->Release({e.position}, claim_owner_);
      return false;
    }
    const absl::Time now = clock_->Now();
    if (now >= until) return true;
    if (now >= renew) {
      // The claim is renewed well before it expires; a failed renewal is
      // tried again shortly.
      auto held =
          env_.delivery_store->TryClaim(e.position, e.ingested_at, claim_owner_, options_.lease);
      if (held.ok() && !held->has_value()) return true;  // taken: the next claim waits for it
      renew = now + (held.ok() ? options_.lease / 4 : kRetryDelay);
    }
    clock_->SleepFor(std::min({until - now, renew - now, kWaitSlice * 10}));
  }
}

std::optional<absl::StatusOr<StoredEvent>> JobRun::ClaimPatiently(const StoredEvent& e) {
  while (true) {
    // A cancel lets in-flight work finish, but an event not yet claimed is
    // not in flight: leave it.
    if (CurrentStop() != Stop::kNone) return std::nullopt;
    auto claimed =
        env_.delivery_store->TryClaim(e.position, e.ingested_at, claim_owner_, options_.lease);
    if (!claimed.ok()) {
      if (absl::IsNotFound(claimed.status())) return claimed.status();
      log_->warn("replay {}: claiming {}/{} failed (will retry): {}", job_.id, e.event.source,
                 e.event.event_id, claimed.status().message());
      clock_->SleepFor(kRetryDelay);
      continue;
    }
    if (!claimed->has_value()) {
      // The live dispatcher (or another worker) is delivering it right now.
      clock_->SleepFor(kClaimRetryDelay);
      continue;
    }
    if (CurrentStop() != Stop::kNone) {
      // Stopped while claiming: nothing has been sent, leave it.
      (void)env_.delivery_store->Release({e.position}, claim_owner_);
      return std::nullopt;
    }
    return std::move(**claimed);
  }
}

DeliveryContext JobRun::Context(std::string trigger) const {
  DeliveryContext ctx;
  ctx.trigger = std::move(trigger);
  ctx.replay_id = job_.id;
  ctx.claim_owner = claim_owner_;
  return ctx;
}

bool JobRun::WaitedAfterUnrecorded(const StoredEvent& e, const absl::Status& s) {
  if (!absl::IsUnavailable(s)) return false;
  log_->warn("replay {}: recording {}/{} failed (will retry): {}", job_.id, e.event.source,
             e.event.event_id, s.message());
  clock_->SleepFor(kRetryDelay);
  return true;
}

JobRun::Result JobRun::Deliver(const StoredEvent& e) {
  // With a sink or a retry policy of its own the job retries the event
  // itself; `tries` counts its attempts.
  const bool own_policy = !job_.spec.sink.empty() || !job_.spec.retry.empty();
  int tries = 0;
  while (true) {
    std::optional<absl::StatusOr<StoredEvent>> claimed = ClaimPatiently(e);
    if (!claimed) {
      // Between this job's attempts it holds the claim: give it back.
      if (tries > 0) (void)env_.delivery_store->Release({e.position}, claim_owner_);
      return {Result::kAbandoned, ""};
    }
    if (!claimed->ok()) return {Result::kSkipped, ""};
    const StoredEvent& fresh = **claimed;
    std::shared_ptr<const Route> route = RouteOf(fresh.event.source);
    // After its own attempt the event is this job's to try again: decided
    // once, before the first.
    if (tries == 0 &&
        Classify(fresh, job_.spec, route != nullptr, std::nullopt) != ReplayCategory::kDeliver) {
      (void)env_.delivery_store->Release({fresh.position}, claim_owner_);
      return {Result::kSkipped, ""};
    }
    if (route == nullptr) {
      (void)env_.delivery_store->Release({fresh.position}, claim_owner_);
      return {Result::kFailed, absl::StrCat(fresh.event.source, "/", fresh.event.event_id,
                                            ": no route or sink to deliver it by")};
    }
    if (tries == 0 && route->strict_order && !fresh.event.key.empty()) {
      // This replay's own deliveries are no longer failed: it passes none.
      auto failed = env_.store->FailedBefore(fresh.event.source, fresh.event.key, fresh.position,
                                             kKeyBlockersRead);
      if (!failed.ok()) {
        (void)env_.delivery_store->Release({fresh.position}, claim_owner_);
        log_->warn("replay {}: reading the blockers of {}/{} failed (will retry): {}", job_.id,
                   fresh.event.source, fresh.event.event_id, failed.status().message());
        clock_->SleepFor(kRetryDelay);
        continue;
      }
      if (auto blocker = KeyOrderBlocker(true, true, *failed, {})) {
        (void)env_.delivery_store->Release({fresh.position}, claim_owner_);
        log_->info("replay {}: {}/{} held behind failed event {} of its key", job_.id,
                   fresh.event.source, fresh.event.event_id, blocker->event_id);
        return {Result::kHeld, ""};
      }
    }
    DeliveryContext ctx = Context(absl::StrCat("replay:", job_.id));
    ctx.resend_delivered = job_.spec.include_succeeded;
    if (own_policy) {
      ctx.route = route;
      ctx.policy_attempt = tries + 1;
    }
    auto report = env_.deliverer->DeliverOne(fresh, ctx);
    if (!report.ok()) {
      if (WaitedAfterUnrecorded(fresh, report.status())) continue;
      (void)env_.delivery_store->Release({fresh.position}, claim_owner_);
      return {Result::kFailed, std::string(report.status().message())};
    }
    if (report->action != CheckDecision::Action::kDeliver) return {Result::kSkipped, ""};
    ++tries;
    if (own_policy && report->outcome == Outcome::kRetrying) {
      if (!HoldForRetry(fresh, report->retry_delay)) return {Result::kAbandoned, ""};
      continue;
    }
    switch (report->outcome) {
      case Outcome::kSucceeded: return {Result::kDelivered, ""};
      case Outcome::kAlreadyProcessed: return {Result::kSkipped, ""};
      default:
        return {Result::kFailed,
                absl::StrCat(fresh.event.source, "/", fresh.event.event_id, ": ",
                             report->error.empty() ? "delivery failed" : report->error)};
    }
  }
}

}  // namespace replayd
