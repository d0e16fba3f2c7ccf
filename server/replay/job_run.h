// One replay job on the daemon holding its lease: a dispatcher (the thread
// calling Run) walks the window in original order, decides each event with the
// dry run's Classify, paces it through the job's and the sink's token buckets
// and hands it to a pool of delivery workers, at most `max_in_flight` at once
// and never two of one key. Progress and the cursor (WindowCursor) are
// checkpointed every `checkpoint_interval`, which also renews the lease and
// learns of a cancel or pause asked on another daemon.
//
// A job with a sink or a retry policy of its own (ReplayRoute) retries each
// event itself under that policy, holding its claim between attempts, so
// that live delivery never sends it by its route meanwhile; an event whose
// attempts run out is failed, not left to live delivery.
//
// On a strict route an event whose key has an earlier failed event is held
// (KeyOrderBlocker), not sent. The job's circuit breaker (ReplayBreaker)
// pauses it when the downstream keeps failing; a paused job (by the breaker
// or an operator) keeps the events that failed in the burst, and those it
// had queued but not sent, to deliver them first on resume. A job that ends
// with events it could not deliver ends failed.
//
// A job of a saved plan reads the plan's events instead of the window, in
// the same order and through the same cursor: those the dry run would not
// deliver are skipped as it decided, the rest go through check-then-act on
// their state now, and those whose state changed since are counted
// changed_since_plan (never sent again when already delivered).
//
// A diff (ReplayKind::kDiff) reads every event of its window, asks each
// routed event's sink lookup (one token each; keys run in parallel, as
// nothing is written) and saves what DiffClassify found as its plan's
// entries, flushed before each checkpoint writes the cursor. A compensate
// job (kCompensate) reads its plan's entries with their events as the log
// holds them now, leaves keep and none, and for the rest claims the event,
// checks it is still as the diff saw it (StillAsDiffSaw) and acts: create
// and record through check-then-act, overwrite through the sink's update
// path. Its per-entry results are flushed like a diff's entries.
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
#include "server/replay/breaker.h"
#include "server/replay/dry_run.h"
#include "server/replay/runner.h"
#include "server/replay/token_bucket.h"
#include "server/replay/window_cursor.h"
#include "server/store/compensation_store.h"
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
  // Plans of diff and compensate jobs; a replay needs none.
  CompensationStore* compensations = nullptr;
};

class JobRun {
 public:
  // `job` was claimed by env.options->instance; `cancel` is set when a
  // cancel for it is recorded, `pause` (may be null) when a pause is. Both
  // flags outlive this.
  JobRun(const JobRunEnv& env, ReplayJob job, const std::atomic<bool>* cancel,
         const std::atomic<bool>* pause = nullptr);
  ~JobRun();

  // Runs the job until it ends (completed, failed, cancelled), is paused,
  // pauses for shutdown or loses its lease; the store holds the outcome.
  void Run();

 private:
  // Between tries of a store or downstream call that failed, and of a claim
  // someone else holds.
  static constexpr absl::Duration kRetryDelay = absl::Milliseconds(250);
  static constexpr absl::Duration kClaimRetryDelay = absl::Milliseconds(20);
  // Longest uninterrupted wait: bounds how long a cancel or shutdown waits.
  static constexpr absl::Duration kWaitSlice = absl::Milliseconds(10);
  // Lookups a diff or a compensation tries while the downstream is away.
  static constexpr int kLookupTries = 3;

  enum class Stop { kNone, kCancel, kShutdown, kLeaseLost, kPause, kBreaker };
  struct Result {
    enum Kind {
      kDelivered,  // in a compensation: the entry's action done
      kSkipped,
      kHeld,
      kFailed,
      kAbandoned,
      kChecked,  // a diff: compared with the downstream
      kChanged,  // a compensation: no longer as the diff saw it, left alone
    } kind = kAbandoned;
    std::string error;
    std::optional<CompensationEntry> entry = {};          // a diff's finding
    std::optional<CompensationResult> compensation = {};  // what applying did
  };
  // An event handed to the workers, with its plan entry in a compensation.
  struct Task {
    StoredEvent event;
    std::optional<CompensationEntry> entry;
  };
  // An outcome the breaker remembers, with the event to retry if it failed.
  struct Recent {
    bool failed = false;
    RetryEvent event;
  };

  Stop CurrentStop();
  Stop StopLocked();
  // Sleeps up to `d` in short slices, checkpointing when due; false when the
  // job must stop.
  bool Sleep(absl::Duration d);
  // Reads pages (`read_page(after, limit)`: the window's or a plan's) and
  // hands each item to `dispatch` (false: the job must stop) until the last
  // page or a stop.
  template <typename ReadPage, typename DispatchItem>
  void ReadAndDispatch(const ReadPage& read_page, const DispatchItem& dispatch);
  // Hands the events a pause left undelivered to `dispatch_one`, in log order.
  void DispatchRetryList(const std::function<bool(const RetryEvent&)>& dispatch_one);
  void RunReplay();
  // Hands a retry-list event to `dispatch` as `read_page` reads it now
  // (a diff or a compensation needs the whole event, and its entry).
  template <typename ReadPage, typename DispatchItem>
  bool DispatchAgain(const RetryEvent& r, const ReadPage& read_page, const DispatchItem& dispatch);
  // The retry list through DispatchAgain, then the pages after the cursor.
  template <typename ReadPage, typename DispatchItem>
  void ReadAgainThenRead(const ReadPage& read_page, const DispatchItem& dispatch);
  bool Dispatch(const StoredEvent& e);
  // `at` needs no delivery; `changed`: a plan's event whose state changed;
  // `compensation`: the entry's result, in a compensation.
  bool Skip(const ReplayCursor& at, bool changed = false,
            std::optional<CompensationResult> compensation = std::nullopt);
  // Hands an event of the retry list to the workers (it is before the cursor).
  bool DispatchRetry(const RetryEvent& r);
  // Waits for room and a token, then hands `task` to the workers.
  // `route` may be null (the worker then fails the event): no token then.
  // `keyed`: never two events of one key at once.
  bool Send(Task task, const Route* route, bool keyed);
  // Whether `at` is at or before the cursor the job started from: an event
  // of the retry list, which the cursor has passed already.
  bool BeforeStart(const ReplayCursor& at) const;
  bool WaitForRoom(const std::string& key);
  void Enqueue(Task task, const std::string& key);
  bool WaitToken(const Route& route);
  void Worker();
  // The route this job delivers `source`'s events by (ReplayRoute).
  std::shared_ptr<const Route> RouteOf(const std::string& source) const;
  // The worker's part of `task`, by the job's kind.
  Result Act(const Task& task);
  Result Deliver(const StoredEvent& e);
  // A DeliveryContext of this job: `trigger`, its id and its claims.
  DeliveryContext Context(std::string trigger) const;
  // When `s` (a failed DeliverOne or UpdateOne) says the log was away: waits
  // before the next try and returns true.
  bool WaitedAfterUnrecorded(const StoredEvent& e, const absl::Status& s);

  // Diff and compensate: reading in job_run.cc, each event's work in
  // job_compensate.cc.
  void RunDiff();
  void RunApply();
  // False (the job failing) when the runner has no CompensationStore.
  bool HasCompensations();
  bool DispatchDiff(const StoredEvent& e);
  bool DispatchApply(const CompensationItem& item);
  Result DiffOne(const StoredEvent& e);
  Result ApplyOne(const StoredEvent& e, const CompensationEntry& entry);
  // The sink's lookup, retried a few times while UNAVAILABLE; nullopt when
  // the job must stop meanwhile.
  std::optional<LookupResult> LookupPatiently(Sink& sink, const StoredEvent& e);
  // Claims `e` whatever its outcome, waiting while someone else holds it:
  // the fresh row, nullopt when the job must stop, NOT_FOUND when the log no
  // longer holds it.
  std::optional<absl::StatusOr<StoredEvent>> ClaimPatiently(const StoredEvent& e);
  // Whether the last attempt at `e` was this compensation's and delivered
  // it: a job resumed after a crash finds its own work done.
  bool DoneByThisPlan(const StoredEvent& e);
  // Writes the buffered entries and results; on failure they stay buffered.
  absl::Status FlushFindings();
  // FlushFindings, retried while the database is away; false on shutdown.
  bool FlushFindingsPatiently();
  // Holds the claim on `e` through `wait` before the job's next attempt of
  // it; false when the job must stop (the claim is then given back).
  bool HoldForRetry(const StoredEvent& e, absl::Duration wait);
  void Complete(const StoredEvent& e, const std::string& key, const Result& result);
  void CheckpointIfDue(bool force);
  void StartWorkers();
  void StopWorkers();
  void Finish();
  // Parks the job as paused (Stop::kPause or kBreaker); false when it could
  // not (a cancel was asked meanwhile, or the lease was lost).
  bool Park(Stop stop, const ReplayCounters& counters, const std::optional<ReplayCursor>& cursor,
            const std::string& last_error);
  static bool Pausing(Stop stop) { return stop == Stop::kPause || stop == Stop::kBreaker; }
  const JobRunEnv env_;
  const ReplayRunnerOptions& options_;
  const Clock* const clock_;
  ReplayJob job_;
  const std::atomic<bool>* const cancel_;
  const std::atomic<bool>* const pause_;
  const std::string claim_owner_;
  TokenBucket bucket_;
  std::shared_ptr<spdlog::logger> log_;

  std::mutex mu_;
  std::condition_variable cv_;
  Stop stop_ = Stop::kNone;
  ReplayCounters counters_;
  WindowCursor cursor_;
  std::set<std::string> keys_in_flight_;
  std::deque<Task> queue_;
  int in_flight_ = 0;  // handed to the workers, not yet complete
  int idle_workers_ = 0;
  bool workers_exit_ = false;
  std::string last_error_;
  std::vector<std::thread> workers_;
  ReplayBreaker breaker_;
  std::string breaker_reason_;
  std::deque<Recent> recent_;  // the outcomes the breaker remembers, oldest first
  // Failed or left unsent after the job started pausing: retried on resume.
  std::vector<RetryEvent> unsent_;
  std::set<int64_t> retrying_;  // positions of retry-list events in flight
  // Found or done since the last flush (FlushFindings): a diff's entries, a
  // compensation's results by position.
  std::vector<CompensationEntry> entries_;
  std::vector<std::pair<int64_t, CompensationResult>> results_;

  absl::Time last_checkpoint_;
  absl::Time rate_sampled_at_;
  int64_t rate_sampled_processed_ = 0;
  double current_rate_ = 0;
};

}  // namespace replayd
