// One replay job on the daemon holding its lease: a dispatcher (the thread
// calling Run) walks the window in original order, decides each event with the
// dry run's Classify, paces it through the job's and the sink's token buckets
// and hands it to a pool of delivery workers, at most `max_in_flight` at once
// and never two of one key. Progress and the cursor (WindowCursor) are
// checkpointed every `checkpoint_interval`, which also renews the lease and
// learns of a cancel asked on another daemon.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server/common/clock.h"
#include "server/common/logging.h"
#include "server/delivery/deliverer.h"
#include "server/replay/dry_run.h"
#include "server/replay/runner.h"
#include "server/replay/token_bucket.h"
#include "server/replay/window_cursor.h"
#include "server/store/delivery_store.h"
#include "server/store/replay_store.h"

namespace replayd {

// What a job uses that outlives it (the ReplayRunner's).
struct JobRunEnv {
  ReplayStore* store = nullptr;
  DeliveryStore* delivery_store = nullptr;
  Deliverer* deliverer = nullptr;
  const RouteLookup* routes = nullptr;
  const ReplayRunnerOptions* options = nullptr;
  // The bucket every replay of this process shares for a sink.
  std::function<TokenBucket*(const std::string& sink_name)> sink_bucket;
  // Set when the whole runner stops: the job pauses and gives its lease up.
  const std::atomic<bool>* shutdown = nullptr;
};

class JobRun {
 public:
  // `job` was claimed by env.options->instance; `cancel` is set when a
  // cancel for it is recorded. Both flags outlive this.
  JobRun(const JobRunEnv& env, ReplayJob job, const std::atomic<bool>* cancel);
  ~JobRun();

  // Runs the job until it completes, is cancelled, pauses for shutdown or
  // loses its lease; the store holds the outcome.
  void Run();

 private:
  enum class Stop { kNone, kCancel, kShutdown, kLeaseLost };
  struct Result {
    enum Kind { kDelivered, kSkipped, kFailed, kAbandoned } kind = kAbandoned;
    std::string error;
  };

  Stop CurrentStop();
  Stop StopLocked();
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

  const JobRunEnv env_;
  const ReplayRunnerOptions& options_;
  const Clock* const clock_;
  ReplayJob job_;
  const std::atomic<bool>* const cancel_;
  const std::string claim_owner_;
  TokenBucket bucket_;
  std::shared_ptr<spdlog::logger> log_;

  std::mutex mu_;
  std::condition_variable cv_;
  Stop stop_ = Stop::kNone;
  ReplayCounters counters_;
  WindowCursor cursor_;
  std::set<std::string> keys_in_flight_;
  std::deque<StoredEvent> queue_;
  int in_flight_ = 0;  // handed to the workers, not yet complete
  int idle_workers_ = 0;
  bool workers_exit_ = false;
  std::string last_error_;
  std::vector<std::thread> workers_;

  absl::Time last_checkpoint_;
  absl::Time rate_sampled_at_;
  int64_t rate_sampled_processed_ = 0;
  double current_rate_ = 0;
};

}  // namespace replayd
