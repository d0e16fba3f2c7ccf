#include "server/replay/job_run.h"

#include <algorithm>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/time_format.h"
#include "server/replay/limits.h"

namespace replayd {
namespace {

const StoredEvent& EventOf(const StoredEvent& e) { return e; }
const StoredEvent& EventOf(const PlannedEvent& p) { return p.event; }
const StoredEvent& EventOf(const CompensationItem& c) { return c.event; }
bool PlannedSkip(const StoredEvent&) { return false; }
bool PlannedSkip(const PlannedEvent& p) {
  return p.decision != CategoryName(ReplayCategory::kDeliver);
}

std::string CountsJson(const ReplaySpec& spec, const ReplayCounters& c) {
  if (spec.kind == ReplayKind::kDiff) {
    return nlohmann::ordered_json{{"total", c.total},
                                  {"processed", c.processed},
                                  {"skipped", c.skipped},
                                  {"failed", c.failed}}
        .dump();
  }
  if (spec.kind == ReplayKind::kCompensate) {
    return nlohmann::ordered_json{
        {"total", c.total},         {"processed", c.processed},
        {"delivered", c.delivered}, {"skipped", c.skipped},
        {"failed", c.failed},       {"changed_since_diff", c.changed_since_plan}}
        .dump();
  }
  nlohmann::ordered_json counts{{"total", c.total},         {"processed", c.processed},
                                {"delivered", c.delivered}, {"skipped", c.skipped},
                                {"failed", c.failed},       {"held_by_key", c.held_by_key}};
  if (!spec.plan_id.empty()) counts["changed_since_plan"] = c.changed_since_plan;
  return counts.dump();
}

// Events of one key are delivered one at a time; "" = the event has no key.
std::string KeyOf(const StoredEvent& e) {
  return e.event.key.empty() ? "" : absl::StrCat(e.event.source, "\n", e.event.key);
}

RetryEvent RetryOf(const StoredEvent& e) {
  return {e.position, e.ingested_at, e.event.source, e.event.key};
}

// How many recent outcomes the breaker's rules look at.
size_t BreakerMemory(const BreakerSettings& b) {
  return static_cast<size_t>(std::max({b.consecutive_failures, b.window, 1}));
}

}  // namespace

JobRun::JobRun(const JobRunEnv& env, ReplayJob job, const std::atomic<bool>* cancel,
               const std::atomic<bool>* pause)
    : env_(env),
      options_(*env.options),
      clock_(env.options->clock),
      job_(std::move(job)),
      cancel_(cancel),
      pause_(pause),
      claim_owner_(absl::StrCat("replay:", job_.id, "@", options_.instance)),
      bucket_(job_.spec.rate, BucketCapacity(job_.spec.rate, job_.spec.burst), clock_->Now()),
      log_(Logger("replay")),
      counters_(job_.counters),
      cursor_(job_.cursor),
      breaker_(job_.spec.breaker),
      last_checkpoint_(clock_->Now()),
      rate_sampled_at_(clock_->Now()) {}

JobRun::~JobRun() = default;

JobRun::Stop JobRun::CurrentStop() {
  std::lock_guard lock(mu_);
  return StopLocked();
}

JobRun::Stop JobRun::StopLocked() {
  if (stop_ == Stop::kNone) {
    if (*env_.shutdown) stop_ = Stop::kShutdown;
    if (pause_ != nullptr && *pause_) stop_ = Stop::kPause;
    if (*cancel_) stop_ = Stop::kCancel;
  }
  return stop_;
}

void JobRun::Run() {
  log_->info("replay {} ({}): running window [{}, {}) at {}/s (owner {})", job_.id,
             ReplayKindName(job_.spec.kind), FormatRfc3339(job_.spec.window.from),
             FormatRfc3339(job_.spec.window.to), job_.spec.rate, options_.instance);
  rate_sampled_processed_ = counters_.processed;
  if (job_.state == ReplayState::kCancelling) {
    stop_ = Stop::kCancel;
    Finish();
    return;
  }
  StartWorkers();
  switch (job_.spec.kind) {
    case ReplayKind::kReplay: RunReplay(); break;
    case ReplayKind::kDiff: RunDiff(); break;
    case ReplayKind::kCompensate: RunApply(); break;
  }
  StopWorkers();
  Finish();
}

void JobRun::RunReplay() {
  // After a crash the deliveries that were in flight may have reached the
  // downstream without being recorded: the Deliverer asks the sink's lookup
  // before every create call, so they are found there.
  DispatchRetryList([this](const RetryEvent& r) { return DispatchRetry(r); });
  auto dispatch = [this](const auto& item) {
    const StoredEvent& e = EventOf(item);
    return PlannedSkip(item) ? Skip({e.ingested_at, e.position}) : Dispatch(e);
  };
  if (job_.spec.plan_id.empty()) {
    ReadAndDispatch(
        [this](const std::optional<ReplayCursor>& after, int limit) {
          return env_.store->ReadWindowPage(job_.spec.window, after, limit);
        },
        dispatch);
  } else {
    // A plan's events in the same order: what the dry run would not deliver
    // is skipped as it decided; the rest is decided again, on its state now.
    ReadAndDispatch(
        [this](const std::optional<ReplayCursor>& after, int limit) {
          return env_.store->ReadPlanPage(job_.spec.plan_id, after, limit);
        },
        dispatch);
  }
}

void JobRun::RunDiff() {
  // The diff's plan is filled in as it goes; the window is the log's.
  ReadAgainThenRead(
      [this](const auto& after, int limit) {
        return env_.store->ReadWindowPage(job_.spec.window, after, limit);
      },
      [this](const StoredEvent& e) { return DispatchDiff(e); });
}

void JobRun::RunApply() {
  ReadAgainThenRead(
      [this](const auto& after, int limit) {
        return env_.compensations->ReadApplyPage(job_.spec.plan_id, after, limit);
      },
      [this](const CompensationItem& item) { return DispatchApply(item); });
}

template <typename ReadPage, typename DispatchItem>
void JobRun::ReadAgainThenRead(const ReadPage& read_page, const DispatchItem& dispatch) {
  if (!HasCompensations()) return;
  DispatchRetryList([&](const RetryEvent& r) { return DispatchAgain(r, read_page, dispatch); });
  ReadAndDispatch(read_page, dispatch);
}

template <typename ReadPage, typename DispatchItem>
bool JobRun::DispatchAgain(const RetryEvent& r, const ReadPage& read_page,
                           const DispatchItem& dispatch) {
  CheckpointIfDue(false);
  while (true) {
    // The page after the position before it starts with the event itself.
    auto page = read_page(ReplayCursor{r.ingested_at, r.position - 1}, 1);
    if (page.ok()) {
      // Gone from the log (retention): nothing is left to do for it.
      if (page->empty() || EventOf(page->front()).position != r.position) return true;
      return dispatch(page->front());
    }
    log_->warn("replay {}: reading {}/{} again failed (will retry): {}", job_.id, r.source,
               r.position, page.status().message());
    if (!Sleep(kRetryDelay)) return false;
  }
}

void JobRun::DispatchRetryList(const std::function<bool(const RetryEvent&)>& dispatch_one) {
  std::vector<RetryEvent> retry = job_.retry;
  std::sort(retry.begin(), retry.end(),
            [](const RetryEvent& a, const RetryEvent& b) { return a.position < b.position; });
  for (size_t i = 0; i < retry.size(); ++i) {
    if (!dispatch_one(retry[i])) {
      std::lock_guard lock(mu_);
      unsent_.insert(unsent_.end(), retry.begin() + i, retry.end());
      break;
    }
  }
}

template <typename ReadPage, typename DispatchItem>
void JobRun::ReadAndDispatch(const ReadPage& read_page, const DispatchItem& dispatch) {
  std::optional<ReplayCursor> read_cursor = job_.cursor;
  bool exhausted = false;
  while (!exhausted && CurrentStop() == Stop::kNone) {
    auto page = read_page(read_cursor, options_.page_size);
    if (!page.ok()) {
      log_->warn("replay {}: reading the {} failed (will retry): {}", job_.id,
                 job_.spec.plan_id.empty() ? "window" : "plan", page.status().message());
      Sleep(kRetryDelay);
      continue;
    }
    for (const auto& item : *page) {
      const StoredEvent& e = EventOf(item);
      if (!dispatch(item)) break;
      read_cursor = ReplayCursor{e.ingested_at, e.position};
    }
    if (static_cast<int>(page->size()) < options_.page_size && CurrentStop() == Stop::kNone) {
      exhausted = true;
    }
  }
}

bool JobRun::Sleep(absl::Duration d) {
  const absl::Time until = clock_->Now() + d;
  while (true) {
    CheckpointIfDue(false);
    if (CurrentStop() != Stop::kNone) return false;
    absl::Time now = clock_->Now();
    if (now >= until) return true;
    std::unique_lock lock(mu_);
    clock_->WaitUntil(cv_, lock, std::min(until, now + kWaitSlice));
  }
}

bool JobRun::WaitToken(const Route& route) {
  TokenBucket* sink = env_.sink_bucket(route.sink_name);
  while (true) {
    absl::Time now = clock_->Now();
    absl::Duration wait = bucket_.WaitFor(now);
    std::string limiter = "replay";
    if (wait == absl::ZeroDuration()) {
      wait = sink->TryTake(now);
      if (wait == absl::ZeroDuration()) {
        bucket_.TryTake(now);
        return true;
      }
      limiter = absl::StrCat("sink:", route.sink_name);
    }
    if (options_.observer != nullptr) options_.observer->OnRateLimitWait(limiter, wait);
    if (!Sleep(wait)) return false;
  }
}

bool JobRun::Dispatch(const StoredEvent& e) {
  CheckpointIfDue(false);
  std::shared_ptr<const Route> route = RouteOf(e.event.source);
  ReplayCategory category = Classify(e, job_.spec, route != nullptr, std::nullopt);
  const ReplayCursor at{e.ingested_at, e.position};
  // In a plan's replay every event dispatched was to be delivered.
  if (category != ReplayCategory::kDeliver) return Skip(at, !job_.spec.plan_id.empty());
  return Send({e, std::nullopt}, route.get(), true);
}

bool JobRun::Send(Task task, const Route* route, bool keyed) {
  const std::string key = keyed ? KeyOf(task.event) : "";
  if (!WaitForRoom(key)) return false;
  if (route != nullptr && !WaitToken(*route)) return false;
  const ReplayCursor at{task.event.ingested_at, task.event.position};
  std::lock_guard lock(mu_);
  if (!BeforeStart(at)) cursor_.Dispatched(at);
  Enqueue(std::move(task), key);
  return true;
}

bool JobRun::BeforeStart(const ReplayCursor& at) const {
  return job_.cursor.has_value() && std::tie(at.ingested_at, at.position) <=
                                        std::tie(job_.cursor->ingested_at, job_.cursor->position);
}

bool JobRun::Skip(const ReplayCursor& at, bool changed,
                  std::optional<CompensationResult> compensation) {
  std::lock_guard lock(mu_);
  if (StopLocked() != Stop::kNone) return false;
  if (!BeforeStart(at)) cursor_.Skipped(at);
  ++counters_.processed;
  ++counters_.skipped;
  if (changed) ++counters_.changed_since_plan;
  if (compensation) results_.emplace_back(at.position, *compensation);
  if (options_.observer != nullptr) options_.observer->OnReplayed("skipped");
  return true;
}

bool JobRun::DispatchRetry(const RetryEvent& r) {
  CheckpointIfDue(false);
  StoredEvent e;
  e.position = r.position;
  e.ingested_at = r.ingested_at;
  e.event.source = r.source;
  e.event.key = r.key;
  std::shared_ptr<const Route> route = RouteOf(r.source);
  if (route == nullptr) {
    std::lock_guard lock(mu_);
    if (StopLocked() != Stop::kNone) return false;
    ++counters_.processed;
    ++counters_.skipped;
    return true;
  }
  const std::string key = KeyOf(e);
  if (!WaitForRoom(key)) return false;
  if (!WaitToken(*route)) return false;
  std::lock_guard lock(mu_);
  Enqueue({std::move(e), std::nullopt}, key);
  return true;
}

bool JobRun::WaitForRoom(const std::string& key) {
  while (true) {
    CheckpointIfDue(false);
    std::unique_lock lock(mu_);
    if (StopLocked() != Stop::kNone) return false;
    if (in_flight_ < options_.max_in_flight && cursor_.HasRoom() &&
        (key.empty() || keys_in_flight_.count(key) == 0)) {
      return true;
    }
    // Complete() notifies: the next event of a key goes as soon as the one
    // before it is done, not at the next slice.
    clock_->WaitFor(cv_, lock, kWaitSlice);
  }
}

void JobRun::Enqueue(Task task, const std::string& key) {
  ++in_flight_;
  if (!key.empty()) keys_in_flight_.insert(key);
  queue_.push_back(std::move(task));
  // Workers are added only when the idle ones cannot take every queued
  // event (an idle worker counts until it wakes): each keeps its own
  // keep-alive connection to the downstream, so a slow replay uses one or two.
  if (static_cast<int>(queue_.size()) > idle_workers_ &&
      static_cast<int>(workers_.size()) < options_.max_in_flight) {
    workers_.emplace_back([this] { Worker(); });
  }
  cv_.notify_all();
}

void JobRun::StartWorkers() {
  std::lock_guard lock(mu_);
  workers_.emplace_back([this] { Worker(); });
}

void JobRun::StopWorkers() {
  {
    std::lock_guard lock(mu_);
    workers_exit_ = true;
  }
  cv_.notify_all();
  // In-flight deliveries finish; the checkpoint loop keeps the lease alive.
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (in_flight_ == 0) break;
    }
    CheckpointIfDue(false);
    std::unique_lock lock(mu_);
    clock_->WaitFor(cv_, lock, kWaitSlice);
  }
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void JobRun::Worker() {
  while (true) {
    Task task;
    {
      std::unique_lock lock(mu_);
      ++idle_workers_;
      cv_.wait(lock, [&] { return !queue_.empty() || (workers_exit_ && in_flight_ == 0); });
      --idle_workers_;
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    Result result = Act(task);
    // A diff runs keys in parallel: it sent them without one.
    Complete(task.event, job_.spec.kind == ReplayKind::kDiff ? "" : KeyOf(task.event), result);
  }
}

JobRun::Result JobRun::Act(const Task& task) {
  switch (job_.spec.kind) {
    case ReplayKind::kDiff: return DiffOne(task.event);
    case ReplayKind::kCompensate: return ApplyOne(task.event, *task.entry);
    case ReplayKind::kReplay: break;
  }
  return Deliver(task.event);
}

std::shared_ptr<const Route> JobRun::RouteOf(const std::string& source) const {
  return ReplayRoute(*env_.routes, env_.deliverer, job_.spec, source);
}

void JobRun::Complete(const StoredEvent& e, const std::string& key, const Result& result) {
  std::lock_guard lock(mu_);
  --in_flight_;
  if (!key.empty()) keys_in_flight_.erase(key);
  const ReplayCursor at{e.ingested_at, e.position};
  if (Pausing(stop_) && (result.kind == Result::kAbandoned || result.kind == Result::kFailed)) {
    // Not sent, or failed after the job started pausing: delivered first on
    // resume, and done as far as the cursor is concerned.
    unsent_.push_back(RetryOf(e));
    cursor_.Done(at);
    cv_.notify_all();
    return;
  }
  if (result.kind != Result::kAbandoned) {
    ++counters_.processed;
    if (options_.observer != nullptr) {
      options_.observer->OnReplayed(result.kind == Result::kDelivered ? "delivered"
                                    : result.kind == Result::kFailed  ? "failed"
                                    : result.kind == Result::kChecked ? "checked"
                                                                      : "skipped");
    }
    if (result.entry) entries_.push_back(*result.entry);
    if (result.compensation) results_.emplace_back(e.position, *result.compensation);
    switch (result.kind) {
      case Result::kDelivered: ++counters_.delivered; break;
      case Result::kChecked: break;
      case Result::kSkipped:
        ++counters_.skipped;
        // Dispatched to be delivered and found delivered (or gone): changed.
        if (job_.spec.kind == ReplayKind::kReplay && !job_.spec.plan_id.empty()) {
          ++counters_.changed_since_plan;
        }
        break;
      case Result::kChanged:
        ++counters_.skipped;
        ++counters_.changed_since_plan;
        break;
      case Result::kHeld:
        ++counters_.skipped;
        ++counters_.held_by_key;
        break;
      case Result::kFailed:
        ++counters_.failed;
        last_error_ = result.error;
        break;
      case Result::kAbandoned: break;
    }
    if (result.kind == Result::kDelivered || result.kind == Result::kChecked ||
        result.kind == Result::kFailed) {
      const bool failed = result.kind == Result::kFailed;
      recent_.push_back({failed, RetryOf(e)});
      if (recent_.size() > BreakerMemory(job_.spec.breaker)) recent_.pop_front();
      auto trip = breaker_.Record(failed);
      if (trip && stop_ == Stop::kNone) {
        stop_ = Stop::kBreaker;
        breaker_reason_ = *trip;
        log_->warn("replay {}: {}", job_.id, *trip);
      }
    }
    cursor_.Done(at);
  }
  cv_.notify_all();
}

void JobRun::CheckpointIfDue(bool force) {
  absl::Time now = clock_->Now();
  if (!force && now - last_checkpoint_ < options_.checkpoint_interval) return;
  last_checkpoint_ = now;
  ReplayCounters counters;
  std::optional<ReplayCursor> cursor;
  {
    std::lock_guard lock(mu_);
    if (stop_ == Stop::kLeaseLost) return;
    counters = counters_;
    cursor = cursor_.Cursor();
  }
  // Every entry or result of an event at or before `cursor` is buffered by
  // now: written first, so a resumed job misses none.
  if (absl::Status s = FlushFindings(); !s.ok()) {
    log_->warn("replay {}: saving its findings failed (will retry): {}", job_.id, s.message());
    return;
  }
  if (now - rate_sampled_at_ >= absl::Seconds(1)) {
    current_rate_ = static_cast<double>(counters.processed - rate_sampled_processed_) /
                    absl::ToDoubleSeconds(now - rate_sampled_at_);
    rate_sampled_at_ = now;
    rate_sampled_processed_ = counters.processed;
  }
  auto state = env_.store->Checkpoint(job_.id, options_.instance, counters, cursor, current_rate_,
                                      options_.lease);
  std::lock_guard lock(mu_);
  if (!state.ok()) {
    if (absl::IsFailedPrecondition(state.status())) {
      log_->warn("replay {}: {}", job_.id, state.status().message());
      stop_ = Stop::kLeaseLost;
    } else {
      log_->warn("replay {}: checkpoint failed (will retry): {}", job_.id,
                 state.status().message());
    }
    return;
  }
  if (*state == ReplayState::kCancelling && (stop_ == Stop::kNone || Pausing(stop_))) {
    stop_ = Stop::kCancel;
  }
  if (*state == ReplayState::kPaused && stop_ == Stop::kNone) stop_ = Stop::kPause;
}

void JobRun::Finish() {
  Stop stop;
  ReplayCounters counters;
  std::optional<ReplayCursor> cursor;
  std::string last_error;
  {
    std::lock_guard lock(mu_);
    stop = StopLocked();
    counters = counters_;
    cursor = cursor_.Cursor();
    last_error = last_error_;
  }
  if (stop == Stop::kLeaseLost) return;
  if (!FlushFindingsPatiently()) return;
  if (stop == Stop::kShutdown) {
    CheckpointIfDue(true);
    if (absl::Status s = env_.store->ReleaseLease(job_.id, options_.instance); !s.ok()) {
      log_->warn("replay {}: releasing the lease failed: {}", job_.id, s.message());
    }
    log_->info("replay {}: paused for shutdown at {} of {}", job_.id, counters.processed,
               counters.total);
    return;
  }
  if (Pausing(stop)) {
    if (Park(stop, counters, cursor, last_error)) return;
    // A cancel was asked while it was pausing: end it cancelled.
    auto now = env_.store->GetJob(job_.id);
    if (!now.ok() || now->state != ReplayState::kCancelling || now->owner != options_.instance) {
      return;
    }
    stop = Stop::kCancel;
  }
  // Completed only when every selected event was delivered or skipped.
  ReplayState state = stop == Stop::kCancel ? ReplayState::kCancelled
                      : counters.failed > 0 ? ReplayState::kFailed
                                            : ReplayState::kCompleted;
  AuditEntry audit{options_.instance,
                   std::string(ReplayStateName(state)),
                   job_.id,
                   "",
                   CountsJson(job_.spec, counters),
                   clock_->Now()};
  // The final write must land: retry while the database is away.
  for (int attempt = 0;; ++attempt) {
    absl::Status s =
        env_.store->Finish(job_.id, options_.instance, state, counters, cursor, last_error, audit);
    if (s.ok() || absl::IsFailedPrecondition(s) || *env_.shutdown) {
      if (!s.ok()) log_->warn("replay {}: finishing failed: {}", job_.id, s.message());
      break;
    }
    log_->warn("replay {}: finishing failed (will retry): {}", job_.id, s.message());
    clock_->SleepFor(kRetryDelay);
  }
  log_->info("replay {}: {} (processed {}, delivered {}, skipped {}, failed {})", job_.id,
             ReplayStateName(state), counters.processed, counters.delivered, counters.skipped,
             counters.failed);
}

bool JobRun::Park(Stop stop, const ReplayCounters& counters,
                  const std::optional<ReplayCursor>& cursor, const std::string& last_error) {
  ReplayCounters parked = counters;
  std::vector<RetryEvent> retry;
  std::string reason;
  {
    std::lock_guard lock(mu_);
    retry = unsent_;
    if (stop == Stop::kBreaker) {
      // The burst that tripped the breaker is retried, not counted failed.
      for (const Recent& r : recent_) {
        if (!r.failed) continue;
        retry.push_back(r.event);
        --parked.failed;
        --parked.processed;
      }
      reason = breaker_reason_;
    }
  }
  std::sort(retry.begin(), retry.end(),
            [](const RetryEvent& a, const RetryEvent& b) { return a.position < b.position; });
  retry.erase(std::unique(retry.begin(), retry.end(),
                          [](const RetryEvent& a, const RetryEvent& b) {
                            return a.position == b.position;
                          }),
              retry.end());
  // An operator's pause was audited when it was asked; the breaker's is
  // audited here, with the daemon as actor.
  std::optional<AuditEntry> audit;
  if (stop == Stop::kBreaker) {
    audit = AuditEntry{options_.instance, "paused", job_.id, reason, CountsJson(job_.spec, parked),
                       clock_->Now()};
  }
  const std::string error = stop == Stop::kBreaker ? reason : last_error;
  for (;;) {
    absl::Status s = env_.store->Park(job_.id, options_.instance, parked, cursor, error, retry,
                                      audit ? &*audit : nullptr);
    if (s.ok()) break;
    if (absl::IsFailedPrecondition(s) || *env_.shutdown) {
      log_->warn("replay {}: pausing failed: {}", job_.id, s.message());
      return false;
    }
    log_->warn("replay {}: pausing failed (will retry): {}", job_.id, s.message());
    clock_->SleepFor(kRetryDelay);
  }
  if (options_.observer != nullptr) {
    options_.observer->OnPaused(stop == Stop::kBreaker ? "breaker" : "operator");
  }
  log_->info("replay {}: paused{} at {} of {} ({} to retry first on resume)", job_.id,
             stop == Stop::kBreaker ? " by its circuit breaker" : "", parked.processed,
             parked.total, retry.size());
  return true;
}

}  // namespace replayd
