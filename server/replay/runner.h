// Runs durable replay jobs. Each daemon runs one ReplayRunner; a job is run
// by the daemon holding its lease (ReplayStore::ClaimJob), which another
// daemon takes over when the holder dies. The runner claims jobs, runs each on
// its own thread (JobRun, job_run.h), hands cancels to them, and owns the
// token buckets that every replay of this process shares per sink.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "server/common/clock.h"
#include "server/config/config.h"
#include "server/delivery/deliverer.h"
#include "server/replay/dry_run.h"
#include "server/replay/token_bucket.h"
#include "server/store/compensation_store.h"
#include "server/store/delivery_store.h"
#include "server/store/replay_store.h"

namespace replayd {

// Hooks for metrics, so that replay does not depend on prometheus. Called
// from worker threads; implementations must be thread safe.
class ReplayObserver {
 public:
  virtual ~ReplayObserver() = default;
  // A replay slept `wait` for a token: limiter is "replay" (its own bucket)
  // or "sink:<name>" (the budget shared by every replay on that sink).
  virtual void OnRateLimitWait(const std::string& limiter, absl::Duration wait) = 0;
  // One event finished: result is "delivered", "skipped" or "failed".
  virtual void OnReplayed(const std::string& result) = 0;
  // A replay paused: cause is "breaker" (its circuit breaker tripped) or
  // "operator".
  virtual void OnPaused(const std::string& /*cause*/) {}
};

struct ReplayRunnerOptions {
  std::string instance;  // this daemon's lease owner id, unique per process
  absl::Duration lease = absl::Seconds(10);
  absl::Duration poll_interval = absl::Milliseconds(500);
  absl::Duration checkpoint_interval = absl::Milliseconds(100);
  int page_size = 500;
  int max_concurrent_jobs = 4;
  int max_in_flight = 64;  // deliveries in flight per job
  ReplayObserver* observer = nullptr;
  // Every wait and timestamp of the runner and its jobs.
  const Clock* clock = &SystemClock::Get();
};

// A lease owner id unique to this process: "<host>:<pid>:<random>".
std::string NewRunnerInstanceId();

class ReplayRunner {
 public:
  // Every pointer outlives this; `compensations` (may be null) runs diff and
  // compensate jobs.
  ReplayRunner(ReplayStore* store, DeliveryStore* delivery_store, Deliverer* deliverer,
               RouteLookup routes, const Config* config, ReplayRunnerOptions options,
               CompensationStore* compensations = nullptr);
  ~ReplayRunner();

  void Start();
  // Graceful: stops dispatching, lets in-flight deliveries finish,
  // checkpoints and releases every lease (another daemon, or this one after
  // a restart, resumes the jobs at once).
  void Stop();
  // Looks for claimable jobs now (a job was just created).
  void Wake();
  // A cancel was recorded for `id`: if this runner runs it, stop dispatching now.
  void Cancel(const std::string& id);
  // A pause was recorded for `id`: if this runner runs it, stop dispatching
  // now and park it once its in-flight deliveries are done.
  void Pause(const std::string& id);

  // The bucket every replay of this process shares for `sink_name`.
  TokenBucket* SinkBucket(const std::string& sink_name);

  const std::string& instance() const { return options_.instance; }

 private:
  struct Active;

  void Loop();
  void Reap();

  ReplayStore* store_;
  DeliveryStore* delivery_store_;
  Deliverer* deliverer_;
  CompensationStore* compensations_;
  RouteLookup routes_;
  const Config* config_;
  const ReplayRunnerOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<bool> shutdown_{false};
  bool wake_ = false;
  std::map<std::string, std::unique_ptr<Active>> active_;
  std::thread loop_;

  std::mutex buckets_mu_;
  std::map<std::string, std::unique_ptr<TokenBucket>> sink_buckets_;
};

}  // namespace replayd
