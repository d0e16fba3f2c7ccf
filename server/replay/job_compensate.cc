// The per-event work of diff and compensate jobs (see job_run.h): what the
// dispatcher hands out, what a worker does with it, and how findings reach
// the compensation store before the cursor passes them.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/replay/diff.h"
#include "server/replay/job_run.h"

namespace replayd {
namespace {

std::string Named(const StoredEvent& e, absl::string_view what) {
  return absl::StrCat(e.event.source, "/", e.event.event_id, ": ", what);
}

}  // namespace

bool JobRun::DispatchDiff(const StoredEvent& e) {
  CheckpointIfDue(false);
  std::shared_ptr<const Route> route = RouteOf(e.event.source);
  if (route == nullptr) return Skip({e.ingested_at, e.position});
  // Nothing is written: keys need no order.
  return Send({e, std::nullopt}, route.get(), false);
}

bool JobRun::DispatchApply(const CompensationItem& item) {
  CheckpointIfDue(false);
  const StoredEvent& e = item.event;
  const CompensationAction action = item.entry.action;
  if (action == CompensationAction::kKeep || action == CompensationAction::kNone) {
    return Skip({e.ingested_at, e.position}, false, CompensationResult::kLeft);
  }
  std::shared_ptr<const Route> route = RouteOf(e.event.source);
  return Send({e, item.entry}, route.get(), true);
}

bool JobRun::HasCompensations() {
  if (env_.compensations != nullptr) return true;
  log_->error("replay {}: a {} job needs the compensation store", job_.id,
              job_.spec.kind == ReplayKind::kDiff ? "diff" : "compensate");
  std::lock_guard lock(mu_);
  last_error_ = "no compensation store";
  ++counters_.failed;
  return false;
}

std::optional<LookupResult> JobRun::LookupPatiently(Sink& sink, const StoredEvent& e) {
  for (int tries = 1;; ++tries) {
    LookupResult found = sink.Lookup(e);
    if (found.ok() || !absl::IsUnavailable(found.status()) || tries >= kLookupTries) return found;
    log_->warn("replay {}: looking {}/{} up failed (will retry): {}", job_.id, e.event.source,
               e.event.event_id, found.status().message());
    clock_->SleepFor(kRetryDelay);
    if (CurrentStop() != Stop::kNone) return std::nullopt;
  }
}

JobRun::Result JobRun::DiffOne(const StoredEvent& e) {
  std::shared_ptr<const Route> route = RouteOf(e.event.source);
  if (route == nullptr) return {Result::kSkipped, ""};
  std::optional<LookupResult> found = LookupPatiently(*route->sink, e);
  if (!found) return {Result::kAbandoned, ""};
  if (!found->ok()) {
    return {Result::kFailed, Named(e, absl::StrCat("lookup failed: ", found->status().message()))};
  }
  Result result{Result::kChecked, ""};
  result.entry = DiffEntry(e, **found);
  return result;
}

JobRun::Result JobRun::ApplyOne(const StoredEvent& e, const CompensationEntry& entry) {
  auto applied = [](Result::Kind kind, CompensationResult r, std::string error = "") {
    Result result{kind, std::move(error)};
    result.compensation = r;
    return result;
  };
  const Result done = applied(Result::kDelivered, CompensationResult::kDone);
  const Result changed = applied(Result::kChanged, CompensationResult::kChangedSinceDiff);
  // Saved as done by this plan's earlier run, before its cursor passed it.
  if (entry.result == CompensationResult::kDone) return done;
  while (true) {
    std::optional<absl::StatusOr<StoredEvent>> claimed = ClaimPatiently(e);
    if (!claimed) return {Result::kAbandoned, ""};
    if (!claimed->ok()) return changed;  // gone from the log
    const StoredEvent& fresh = **claimed;
    auto release = [&] { (void)env_.delivery_store->Release({fresh.position}, claim_owner_); };
    auto failed = [&](absl::string_view why) {
      return applied(Result::kFailed, CompensationResult::kFailed, Named(fresh, why));
    };
    std::shared_ptr<const Route> route = RouteOf(fresh.event.source);
    if (route == nullptr) {
      release();
      return failed("no route or sink to act by");
    }
    std::optional<LookupResult> found = LookupPatiently(*route->sink, fresh);
    if (!found) {
      release();
      return {Result::kAbandoned, ""};
    }
    if (!found->ok()) {
      release();
      return failed(absl::StrCat("lookup failed: ", found->status().message()));
    }
    if (!StillAsDiffSaw(entry, fresh, **found)) {
      release();
      return DoneByThisPlan(fresh) ? done : changed;
    }
    DeliveryContext ctx = Context(absl::StrCat("compensate:", job_.spec.plan_id));
    // A delivered event missing downstream is sent again; the create path's
    // own lookup (check-then-act) still goes first for one that is not. A
    // record is recorded from the lookup just made: never a create call.
    ctx.resend_delivered = entry.action == CompensationAction::kCreate;
    auto report = entry.action == CompensationAction::kOverwrite
                      ? env_.deliverer->UpdateOne(fresh, ctx, entry.downstream.version)
                  : entry.action == CompensationAction::kRecord
                      ? env_.deliverer->RecordFound(fresh, ctx, ***found)
                      : env_.deliverer->DeliverOne(fresh, ctx);
    if (!report.ok()) {
      if (WaitedAfterUnrecorded(fresh, report.status())) continue;
      release();
      return failed(report.status().message());
    }
    if (report->precondition_failed) return changed;
    if (IsDelivered(report->outcome)) return done;
    return failed(report->error.empty() ? "the downstream refused it" : report->error);
  }
}

bool JobRun::DoneByThisPlan(const StoredEvent& e) {
  auto trace = env_.delivery_store->GetTrace(e.event.source, e.event.event_id);
  if (!trace.ok() || trace->attempts.empty()) return false;
  const AttemptRecord& last = trace->attempts.back();
  return last.trigger == absl::StrCat("compensate:", job_.spec.plan_id) &&
         IsDelivered(last.outcome);
}

absl::Status JobRun::FlushFindings() {
  std::vector<CompensationEntry> entries;
  std::vector<std::pair<int64_t, CompensationResult>> results;
  {
    std::lock_guard lock(mu_);
    entries.swap(entries_);
    results.swap(results_);
  }
  absl::Status s = absl::OkStatus();
  // The diff's id is its plan's.
  if (!entries.empty()) s = env_.compensations->SaveEntries(job_.id, entries);
  const bool entries_saved = s.ok();
  if (s.ok() && !results.empty()) {
    s = env_.compensations->SetResults(job_.spec.plan_id, results);
  }
  if (s.ok()) return s;
  std::lock_guard lock(mu_);
  if (!entries_saved) entries_.insert(entries_.end(), entries.begin(), entries.end());
  results_.insert(results_.end(), results.begin(), results.end());
  return s;
}

bool JobRun::FlushFindingsPatiently() {
  while (true) {
    absl::Status s = FlushFindings();
    if (s.ok()) return true;
    if (!absl::IsUnavailable(s)) {
      // Nothing to wait for: the job ends with what it could not save.
      log_->error("replay {}: saving its findings failed: {}", job_.id, s.message());
      std::lock_guard lock(mu_);
      last_error_ = absl::StrCat("saving findings: ", s.message());
      entries_.clear();
      results_.clear();
      return true;
    }
    if (*env_.shutdown) {
      log_->warn("replay {}: saving its findings failed: {}", job_.id, s.message());
      return false;
    }
    log_->warn("replay {}: saving its findings failed (will retry): {}", job_.id, s.message());
    clock_->SleepFor(kRetryDelay);
  }
}

}  // namespace replayd
