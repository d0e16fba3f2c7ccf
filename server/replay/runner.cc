#include "server/replay/runner.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <deque>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/logging.h"
#include "server/common/time_format.h"
#include "server/replay/limits.h"

namespace replayd {
namespace {

// Longest uninterrupted sleep: bounds how long a cancel or shutdown waits.
constexpr absl::Duration kWaitSlice = absl::Milliseconds(10);
constexpr absl::Duration kRetryDelay = absl::Milliseconds(250);
constexpr absl::Duration kClaimRetryDelay = absl::Milliseconds(20);
// Dispatched events kept in order for the cursor (done ones behind a slow one).
constexpr size_t kMaxOrderWindow = 10000;

std::string CountsJson(const ReplayCounters& c) {
  return absl::StrCat("{\"total\":", c.total, ",\"processed\":", c.processed,
                      ",\"delivered\":", c.delivered, ",\"skipped\":", c.skipped,
                      ",\"failed\":", c.failed, "}");
}

}  // namespace

std::string NewRunnerInstanceId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::random_device rd;
  return absl::StrFormat("%s:%d:%08x", host[0] ? host : "replayd", getpid(), rd());
}

struct ReplayRunner::Active {
  std::atomic<bool> cancel{false};
  std::atomic<bool> done{false};
  std::thread thread;
};

// One job on this daemon: a dispatcher (the calling thread) and a pool of
// delivery workers.
class ReplayRunner::JobRun {
 public:
  JobRun(ReplayRunner* runner, ReplayJob job, Active* active)
      : r_(runner),
        job_(std::move(job)),
        active_(active),
        claim_owner_(absl::StrCat("replay:", job_.id, "@", runner->options_.instance)),
        bucket_(job_.spec.rate, BucketCapacity(job_.spec.rate, job_.spec.burst), absl::Now()),
        counters_(job_.counters),
        cursor_(job_.cursor) {}

  void Run();

 private:
  enum class Stop { kNone, kCancel, kShutdown, kLeaseLost };
  struct Slot {
    ReplayCursor at;
    bool done = false;
  };
  struct Result {
    enum Kind { kDelivered, kSkipped, kFailed, kAbandoned } kind = kAbandoned;
    std::string error;
  };

  Stop CurrentStop() {
    std::lock_guard lock(mu_);
    return StopLocked();
  }
  Stop StopLocked() {
    if (stop_ == Stop::kNone) {
      if (r_->shutdown_) stop_ = Stop::kShutdown;
      if (active_->cancel) stop_ = Stop::kCancel;
    }
    return stop_;
  }
  // Sleeps up to `d` in short slices, checkpointing when due; false when the
  // job must stop.
  bool Sleep(absl::Duration d);
  bool Dispatch(const StoredEvent& e);
  bool WaitToken(const Route& route);
  void Worker();
  Result Deliver(const StoredEvent& e);
  void Complete(const StoredEvent& e, const std::string& key, const Result& result);
  void CheckpointIfDue(bool force);
  void StartWorkers();
  void StopWorkers();
  void Finish();

  ReplayRunner* r_;
  ReplayJob job_;
  Active* active_;
  const std::string claim_owner_;
  TokenBucket bucket_;
  std::shared_ptr<spdlog::logger> log_ = Logger("replay");

  std::mutex mu_;
  std::condition_variable cv_;
  Stop stop_ = Stop::kNone;
  ReplayCounters counters_;
  std::optional<ReplayCursor> cursor_;  // every event up to here is done
  std::deque<Slot> order_;
  std::set<std::string> keys_in_flight_;
  std::deque<StoredEvent> queue_;
  int in_flight_ = 0;
  int idle_workers_ = 0;
  bool workers_exit_ = false;
  std::string last_error_;
  std::vector<std::thread> workers_;

  absl::Time last_checkpoint_ = absl::Now();
  absl::Time rate_sampled_at_ = absl::Now();
  int64_t rate_sampled_processed_ = 0;
  double current_rate_ = 0;
};

void ReplayRunner::JobRun::Run() {
  log_->info("replay {}: running window [{}, {}) at {}/s (owner {})", job_.id,
             FormatRfc3339(job_.spec.window.from), FormatRfc3339(job_.spec.window.to),
             job_.spec.rate, r_->options_.instance);
  rate_sampled_processed_ = counters_.processed;
  if (job_.state == ReplayState::kCancelling) {
    stop_ = Stop::kCancel;
    Finish();
    return;
  }
  // After a crash the deliveries that were in flight may have reached the
  // downstream without being recorded: the Deliverer asks the sink's lookup
  // before every create call, so they are found there.
  StartWorkers();
  std::optional<ReplayCursor> read_cursor = job_.cursor;
  bool exhausted = false;
  while (!exhausted && CurrentStop() == Stop::kNone) {
    auto page = r_->store_->ReadWindowPage(job_.spec.window, read_cursor, r_->options_.page_size);
    if (!page.ok()) {
      log_->warn("replay {}: reading the window failed (will retry): {}", job_.id,
                 page.status().message());
      Sleep(kRetryDelay);
      continue;
    }
    for (const StoredEvent& e : *page) {
      if (!Dispatch(e)) break;
      read_cursor = ReplayCursor{e.ingested_at, e.position};
    }
    if (static_cast<int>(page->size()) < r_->options_.page_size &&
        CurrentStop() == Stop::kNone) {
      exhausted = true;
    }
  }
  StopWorkers();
  Finish();
}

bool ReplayRunner::JobRun::Sleep(absl::Duration d) {
  absl::Time until = absl::Now() + d;
  while (true) {
    CheckpointIfDue(false);
    if (CurrentStop() != Stop::kNone) return false;
    absl::Time now = absl::Now();
    if (now >= until) return true;
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(std::min(until - now, kWaitSlice)));
  }
}

bool ReplayRunner::JobRun::WaitToken(const Route& route) {
  TokenBucket* sink = r_->SinkBucket(route.sink_name);
  while (true) {
    absl::Time now = absl::Now();
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
    if (r_->options_.observer != nullptr) r_->options_.observer->OnRateLimitWait(limiter, wait);
    if (!Sleep(wait)) return false;
  }
}

bool ReplayRunner::JobRun::Dispatch(const StoredEvent& e) {
  CheckpointIfDue(false);
  const Route* route = r_->routes_(e.event.source);
  ReplayCategory category = Classify(e, job_.spec, route != nullptr, std::nullopt);
  ReplayCursor at{e.ingested_at, e.position};
  if (category != ReplayCategory::kDeliver) {
    std::lock_guard lock(mu_);
    if (StopLocked() != Stop::kNone) return false;
    order_.push_back({at, true});
    ++counters_.processed;
    ++counters_.skipped;
    if (r_->options_.observer != nullptr) r_->options_.observer->OnReplayed("skipped");
    while (!order_.empty() && order_.front().done) {
      cursor_ = order_.front().at;
      order_.pop_front();
    }
    return true;
  }
  const std::string key = e.event.key.empty() ? "" : absl::StrCat(e.event.source, "\n", e.event.key);
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (StopLocked() != Stop::kNone) return false;
      if (in_flight_ < r_->options_.max_in_flight && order_.size() < kMaxOrderWindow &&
          (key.empty() || keys_in_flight_.count(key) == 0)) {
        break;
      }
    }
    if (!Sleep(kWaitSlice)) return false;
  }
  if (!WaitToken(*route)) return false;
  std::lock_guard lock(mu_);
  ++in_flight_;
  if (!key.empty()) keys_in_flight_.insert(key);
  order_.push_back({at, false});
  queue_.push_back(e);
  // Workers are added only when every one is busy: each keeps its own
  // keep-alive connection to the downstream, so a slow replay uses one or two.
  if (idle_workers_ == 0 && static_cast<int>(workers_.size()) < r_->options_.max_in_flight) {
    workers_.emplace_back([this] { Worker(); });
  }
  cv_.notify_all();
  return true;
}

void ReplayRunner::JobRun::StartWorkers() {
  std::lock_guard lock(mu_);
  workers_.emplace_back([this] { Worker(); });
}

void ReplayRunner::JobRun::StopWorkers() {
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
    cv_.wait_for(lock, absl::ToChronoNanoseconds(kWaitSlice));
  }
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ReplayRunner::JobRun::Worker() {
  while (true) {
    StoredEvent e;
    {
      std::unique_lock lock(mu_);
      ++idle_workers_;
      cv_.wait(lock, [&] { return !queue_.empty() || (workers_exit_ && in_flight_ == 0); });
      --idle_workers_;
      if (queue_.empty()) return;
      e = std::move(queue_.front());
      queue_.pop_front();
    }
    Result result = Deliver(e);
    Complete(e, e.event.key.empty() ? "" : absl::StrCat(e.event.source, "\n", e.event.key),
             result);
  }
}

ReplayRunner::JobRun::Result ReplayRunner::JobRun::Deliver(const StoredEvent& e) {
  const absl::Duration claim_lease = r_->options_.lease;
  while (true) {
    // A cancel lets in-flight deliveries finish, but an event not yet
    // claimed is not in flight: leave it.
    Stop stop = CurrentStop();
    if (stop == Stop::kShutdown || stop == Stop::kLeaseLost || stop == Stop::kCancel) {
      return {Result::kAbandoned, ""};
    }
    auto claimed = r_->delivery_store_->TryClaim(e.position, e.ingested_at, claim_owner_,
                                                 claim_lease);
    if (!claimed.ok()) {
      if (absl::IsNotFound(claimed.status())) return {Result::kSkipped, ""};
      log_->warn("replay {}: claiming {}/{} failed (will retry): {}", job_.id, e.event.source,
                 e.event.event_id, claimed.status().message());
      absl::SleepFor(kRetryDelay);
      continue;
    }
    if (!claimed->has_value()) {
      // The live dispatcher (or another worker) is delivering it right now.
      absl::SleepFor(kClaimRetryDelay);
      continue;
    }
    const StoredEvent& fresh = **claimed;
    if (CurrentStop() != Stop::kNone) {
      // Stopped while claiming: the create call has not started, leave it.
      (void)r_->delivery_store_->Release({fresh.position}, claim_owner_);
      return {Result::kAbandoned, ""};
    }
    const Route* route = r_->routes_(fresh.event.source);
    if (Classify(fresh, job_.spec, route != nullptr, std::nullopt) != ReplayCategory::kDeliver) {
      (void)r_->delivery_store_->Release({fresh.position}, claim_owner_);
      return {Result::kSkipped, ""};
    }
    DeliveryContext ctx;
    ctx.trigger = absl::StrCat("replay:", job_.id);
    ctx.replay_id = job_.id;
    ctx.resend_delivered = job_.spec.include_succeeded;
    ctx.claim_owner = claim_owner_;
    auto report = r_->deliverer_->DeliverOne(fresh, ctx);
    if (!report.ok()) {
      if (absl::IsUnavailable(report.status())) {
        log_->warn("replay {}: recording {}/{} failed (will retry): {}", job_.id,
                   e.event.source, e.event.event_id, report.status().message());
        absl::SleepFor(kRetryDelay);
        continue;
      }
      (void)r_->delivery_store_->Release({fresh.position}, claim_owner_);
      return {Result::kFailed, std::string(report.status().message())};
    }
    if (report->action != CheckDecision::Action::kDeliver) return {Result::kSkipped, ""};
    switch (report->outcome) {
      case Outcome::kSucceeded: return {Result::kDelivered, ""};
      case Outcome::kAlreadyProcessed: return {Result::kSkipped, ""};
      default:
        return {Result::kFailed,
                absl::StrCat(e.event.source, "/", e.event.event_id, ": ",
                             report->error.empty() ? "delivery failed" : report->error)};
    }
  }
}

void ReplayRunner::JobRun::Complete(const StoredEvent& e, const std::string& key,
                                    const Result& result) {
  std::lock_guard lock(mu_);
  --in_flight_;
  if (!key.empty()) keys_in_flight_.erase(key);
  if (result.kind != Result::kAbandoned) {
    ++counters_.processed;
    if (r_->options_.observer != nullptr) {
      r_->options_.observer->OnReplayed(result.kind == Result::kDelivered ? "delivered"
                                        : result.kind == Result::kSkipped ? "skipped"
                                                                          : "failed");
    }
    switch (result.kind) {
      case Result::kDelivered: ++counters_.delivered; break;
      case Result::kSkipped: ++counters_.skipped; break;
      case Result::kFailed:
        ++counters_.failed;
        last_error_ = result.error;
        break;
      case Result::kAbandoned: break;
    }
    for (Slot& slot : order_) {
      if (slot.at.position == e.position && slot.at.ingested_at == e.ingested_at) {
        slot.done = true;
        break;
      }
    }
    while (!order_.empty() && order_.front().done) {
      cursor_ = order_.front().at;
      order_.pop_front();
    }
  }
  cv_.notify_all();
}

void ReplayRunner::JobRun::CheckpointIfDue(bool force) {
  absl::Time now = absl::Now();
  if (!force && now - last_checkpoint_ < r_->options_.checkpoint_interval) return;
  last_checkpoint_ = now;
  ReplayCounters counters;
  std::optional<ReplayCursor> cursor;
  {
    std::lock_guard lock(mu_);
    if (stop_ == Stop::kLeaseLost) return;
    counters = counters_;
    cursor = cursor_;
  }
  if (now - rate_sampled_at_ >= absl::Seconds(1)) {
    current_rate_ = static_cast<double>(counters.processed - rate_sampled_processed_) /
                    absl::ToDoubleSeconds(now - rate_sampled_at_);
    rate_sampled_at_ = now;
    rate_sampled_processed_ = counters.processed;
  }
  auto state = r_->store_->Checkpoint(job_.id, r_->options_.instance, counters, cursor,
                                      current_rate_, r_->options_.lease);
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
  if (*state == ReplayState::kCancelling && stop_ == Stop::kNone) stop_ = Stop::kCancel;
}

void ReplayRunner::JobRun::Finish() {
  Stop stop;
  ReplayCounters counters;
  std::optional<ReplayCursor> cursor;
  std::string last_error;
  {
    std::lock_guard lock(mu_);
    stop = StopLocked();
    counters = counters_;
    cursor = cursor_;
    last_error = last_error_;
  }
  if (stop == Stop::kLeaseLost) return;
  if (stop == Stop::kShutdown) {
    CheckpointIfDue(true);
    if (absl::Status s = r_->store_->ReleaseLease(job_.id, r_->options_.instance); !s.ok()) {
      log_->warn("replay {}: releasing the lease failed: {}", job_.id, s.message());
    }
    log_->info("replay {}: paused for shutdown at {} of {}", job_.id, counters.processed,
               counters.total);
    return;
  }
  ReplayState state = stop == Stop::kCancel ? ReplayState::kCancelled : ReplayState::kCompleted;
  AuditEntry audit{r_->options_.instance,
                   stop == Stop::kCancel ? "cancelled" : "completed",
                   job_.id,
                   "",
                   CountsJson(counters),
                   absl::Now()};
  // The final write must land: retry while the database is away.
  for (int attempt = 0;; ++attempt) {
    absl::Status s = r_->store_->Finish(job_.id, r_->options_.instance, state, counters, cursor,
                                        last_error, audit);
    if (s.ok() || absl::IsFailedPrecondition(s) || r_->shutdown_) {
      if (!s.ok()) log_->warn("replay {}: finishing failed: {}", job_.id, s.message());
      break;
    }
    log_->warn("replay {}: finishing failed (will retry): {}", job_.id, s.message());
    absl::SleepFor(kRetryDelay);
  }
  log_->info("replay {}: {} (processed {}, delivered {}, skipped {}, failed {})", job_.id,
             ReplayStateName(state), counters.processed, counters.delivered, counters.skipped,
             counters.failed);
}

ReplayRunner::ReplayRunner(ReplayStore* store, DeliveryStore* delivery_store,
                           Deliverer* deliverer, RouteLookup routes, const Config* config,
                           ReplayRunnerOptions options)
    : store_(store),
      delivery_store_(delivery_store),
      deliverer_(deliverer),
      routes_(std::move(routes)),
      config_(config),
      options_(std::move(options)) {}

ReplayRunner::~ReplayRunner() { Stop(); }

void ReplayRunner::Start() {
  loop_ = std::thread([this] { Loop(); });
}

void ReplayRunner::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    shutdown_ = true;
  }
  cv_.notify_all();
  if (loop_.joinable()) loop_.join();
  std::lock_guard lock(mu_);
  for (auto& [id, active] : active_) {
    if (active->thread.joinable()) active->thread.join();
  }
  active_.clear();
}

void ReplayRunner::Wake() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void ReplayRunner::Cancel(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto it = active_.find(id); it != active_.end()) it->second->cancel = true;
}

TokenBucket* ReplayRunner::SinkBucket(const std::string& sink_name) {
  std::lock_guard lock(buckets_mu_);
  auto& bucket = sink_buckets_[sink_name];
  if (bucket == nullptr) {
    const SinkConfig* sink = FindSink(*config_, sink_name);
    double budget = sink != nullptr ? sink->replay_rate_budget : config_->replay.default_rate;
    bucket = std::make_unique<TokenBucket>(
        budget, BucketCapacity(budget, EffectiveBurst(budget, 0, 0)), absl::Now());
  }
  return bucket.get();
}

void ReplayRunner::Reap() {
  for (auto it = active_.begin(); it != active_.end();) {
    if (it->second->done) {
      it->second->thread.join();
      it = active_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReplayRunner::Loop() {
  auto log = Logger("replay");
  std::unique_lock lock(mu_);
  while (!stopping_) {
    Reap();
    bool claimed = false;
    if (static_cast<int>(active_.size()) < options_.max_concurrent_jobs) {
      std::vector<std::string> exclude;
      for (const auto& [id, active] : active_) exclude.push_back(id);
      lock.unlock();
      auto job = store_->ClaimJob(options_.instance, options_.lease, exclude);
      lock.lock();
      if (!job.ok()) {
        log->warn("claiming replay jobs failed (will retry): {}", job.status().message());
      } else if (job->has_value() && !stopping_) {
        auto active = std::make_unique<Active>();
        Active* a = active.get();
        std::string id = (*job)->id;
        a->thread = std::thread([this, a, j = std::move(**job)]() mutable {
          JobRun run(this, std::move(j), a);
          run.Run();
          a->done = true;
          cv_.notify_all();
        });
        active_.emplace(id, std::move(active));
        claimed = true;
      }
    }
    if (claimed) continue;
    cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.poll_interval),
                 [&] { return stopping_ || wake_; });
    wake_ = false;
  }
}

}  // namespace replayd
