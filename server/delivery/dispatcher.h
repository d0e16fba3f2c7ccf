// Live delivery: claims due events from the log in batches and delivers them
// through the Deliverer, up to `workers` calls at once. A sink that does not
// block (HTTP: its calls run on the sink's own event loop) is called from
// whichever thread freed a slot — the poller, the sink's loop, a record
// writer — so no thread waits for the downstream; a blocking sink (a table)
// is called from a pool of `workers` threads.
//
// Ordering: the store claims a key's events as one ordered chain (see
// DeliveryStore::ClaimDue); its events go out one at a time, in order, each
// once the previous one's record has committed (the workers deliver other
// chains meanwhile), and the chain stops at the first event that will be
// retried (or, on strict routes, that failed), releasing the rest, so a key's
// events are never delivered out of ingest order nor two at once. Events without a key and different keys run
// concurrently. Claims carry a lease that a heartbeat extends; a crashed
// daemon's claims expire and another daemon takes the events over.
// Events of sources with no route are never claimed: they stay pending.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "server/delivery/deliverer.h"
#include "server/store/delivery_store.h"

namespace replayd {

struct DispatcherOptions {
  int workers = 64;
  int claim_batch = 256;
  absl::Duration poll_interval = absl::Milliseconds(50);
  absl::Duration claim_lease = absl::Seconds(60);
  // Unique per process; empty = "<hostname>:<pid>:<random>".
  std::string owner;
};

// The chains of one claim batch: events grouped by (source, key) in position
// order, each event without a key alone. Pure; exposed for tests.
std::vector<std::vector<StoredEvent>> GroupIntoChains(std::vector<StoredEvent> claimed);

// Whether a worker goes on with the next event of its chain after `outcome`.
bool ContinueChain(Outcome outcome, bool strict_order);

class Dispatcher {
 public:
  Dispatcher(DeliveryStore* store, Deliverer* deliverer, DispatcherOptions options);
  ~Dispatcher();  // Stop()s

  void Start();
  // Stops claiming, lets in-flight calls finish, releases every claim still
  // held. Idempotent.
  void Stop();

  const std::string& owner() const { return options_.owner; }

 private:
  using Chain = std::vector<StoredEvent>;
  // A chain from its event `next` on: deliver it, or only release its claims.
  struct Work {
    std::shared_ptr<const Chain> chain;
    size_t next = 0;
    bool release_only = false;
  };
  struct Step;

  void PollLoop();
  // Starts queued work while fewer than `workers` calls are in flight.
  void Pump();
  // Delivers the blocking sinks' work Pump hands over.
  void WorkerLoop();
  bool Blocks(const Work& work) const;
  // Gives back the claims queued by ReleaseRest (and any a failed call left).
  void ReleaseGivenBack();
  // Delivers the work's next event (one slot taken by Pump); the rest of its
  // chain is queued again once that event's record commits (Arrive), or
  // released.
  void DeliverNext(Work work);
  void OnReported(const Work& work, const std::shared_ptr<Step>& step,
                  const absl::StatusOr<DeliveryReport>& report);
  // A call is over: its slot is free.
  void Reported();
  void Arrive(const std::shared_ptr<Step>& step);
  // Queues the claims of the work's events for ReleaseGivenBack.
  void ReleaseRest(const Work& work);
  // `n` claimed events are done with: recorded, released, or left to Stop().
  void Finished(int n);
  bool SleepUnlessStopping(absl::Duration d);
  // Whether enough claimed events have finished to claim again (mu_ held).
  bool HasRoomToClaim() const;

  DeliveryStore* store_;
  Deliverer* deliverer_;
  DispatcherOptions options_;
  const std::vector<std::string> sources_;
  const std::vector<std::string> strict_sources_;
  const int capacity_;  // claimed events in flight at most

  std::mutex mu_;
  std::condition_variable work_cv_;  // workers: blocking work is queued, or stopping
  std::condition_variable poll_cv_;  // poller: capacity freed, or stopping
  std::deque<Work> queue_;           // chains whose next event may go out
  std::deque<Work> blocking_queue_;  // handed to the workers (slot taken)
  int active_ = 0;  // calls started and not yet reported
  int in_flight_events_ = 0;  // claimed, not yet finished (queued or running)
  int64_t progress_ = 0;  // events finished so far
  bool awaiting_progress_ = false;  // the poller waits for any event to finish
  std::atomic<int64_t> call_busy_us_{0};  // time calls were in flight, for the summary
  std::vector<int64_t> to_release_;  // positions whose claims to give back
  bool stopping_ = false;
  bool started_ = false;
  std::thread poller_;
  std::vector<std::thread> workers_;
};

}  // namespace replayd
