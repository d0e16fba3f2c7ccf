// Live delivery: reads the log's undelivered events in position order from
// a cursor, keeps them in per-key queues (KeyQueues), claims them in batches,
// and delivers them through the Deliverer, up to `workers` calls at once. A
// sink that does not block (HTTP: its calls run on the sink's own event loop)
// is called from whichever thread freed a slot — the poller, the sink's loop,
// a record writer — so no thread waits for the downstream; a blocking sink (a
// table) is called from a pool of `workers` threads.
//
// Ordering: a key's events go out one at a time, in log order, each once the
// previous one's record has committed; a retry holds back its key's later
// events until it is through, and on a strict route a failed event parks them
// until a replay delivers it. Events without a key and different keys run
// concurrently. An event is delivered only while claimed (delivery_claims),
// so another daemon or a replay never delivers it at the same time, and a key
// whose event someone else holds waits for that claim to go. Claims carry a
// lease that a heartbeat extends; a crashed daemon's claims expire and
// another daemon takes the events over. Events that committed after the
// cursor passed their position (concurrent ingests) are found by a rescan
// every second. Events of sources with no route are never read: they stay
// pending.
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
#include "server/common/clock.h"
#include "server/delivery/deliverer.h"
#include "server/delivery/key_queues.h"
#include "server/store/delivery_store.h"

namespace replayd {

struct DispatcherOptions {
  int workers = 64;
  // Events read and claimed per statement; up to twice as many are held.
  int claim_batch = 256;
  absl::Duration poll_interval = absl::Milliseconds(50);
  // A dead daemon's claims are taken over when this runs out; the heartbeat
  // renews a live one's every HeartbeatInterval(claim_lease).
  absl::Duration claim_lease = absl::Seconds(4);
  // Unique per process; empty = "<hostname>:<pid>:<random>".
  std::string owner;
  // Paces polls, retries, heartbeats and waits; outlives the dispatcher.
  const Clock* clock = &SystemClock::Get();
};

// How often the heartbeat renews a daemon's claims: a quarter of the lease,
// so that an owner keeps its claims through a stall (a slow or unreachable
// database) of three quarters of a lease.
absl::Duration HeartbeatInterval(absl::Duration claim_lease);

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
  struct Step;

  void PollLoop();
  // Reads more of the log into the key queues (and, every second, the events
  // the cursor passed before their ingest committed). False on a failed read.
  bool Scan(absl::Time now);
  // Claims what the key queues want claimed. Returns how many were claimed,
  // -1 when the claim failed.
  int ClaimQueued();
  // Checks whether the failed events parked keys wait behind are delivered.
  void CheckParked();
  // Starts claimed events while fewer than `workers` calls are in flight.
  void Pump();
  // Delivers the blocking sinks' events Pump hands over.
  void WorkerLoop();
  bool Blocks(const StoredEvent& event) const;
  // Gives back the claims the key queues let go.
  void ReleaseGivenBack();
  // Counts and logs (rate-limited) events whose claims another daemon holds.
  void NoteClaimWait(int64_t events);
  // Delivers one started event (its slot taken by Pump).
  void Deliver(std::shared_ptr<const StoredEvent> event);
  // The report and the record of one event, in either order: the second one
  // ends it.
  void Arrive(const std::shared_ptr<Step>& step);
  // Ends a started event in the key queues.
  void End(const std::shared_ptr<Step>& step);
  // Brackets every callback from the deliverer: Stop() waits for them.
  void EnterCallback();
  void LeaveCallback();
  // A call is over: its slot is free.
  void Reported();
  absl::Time Now() const { return options_.clock->Now(); }
  // Waits on poll_cv_ (mu_ held through `lock`) until `done` or `deadline`;
  // returns `done`'s last answer.
  template <typename Done>
  bool WaitUntil(std::unique_lock<std::mutex>& lock, absl::Time deadline, Done done) {
    while (!done()) {
      if (Now() >= deadline) return false;
      options_.clock->WaitUntil(poll_cv_, lock, deadline);
    }
    return true;
  }
  bool SleepUnlessStopping(absl::Duration d);
  // Whether the poller has work: room to read, or events to claim (mu_ held).
  bool PollerHasWork() const;

  DeliveryStore* store_;
  Deliverer* deliverer_;
  DispatcherOptions options_;
  const std::vector<std::string> sources_;
  const std::vector<std::string> strict_sources_;
  const size_t capacity_;      // events held in the key queues at most
  const size_t claim_budget_;  // events claimed or being delivered at most

  std::mutex mu_;
  std::condition_variable work_cv_;  // workers: blocking work is queued, or stopping
  std::condition_variable poll_cv_;  // poller: work for it, or stopping
  KeyQueues queues_;
  int64_t cursor_ = 0;  // the highest position read
  absl::Time next_rescan_ = absl::InfinitePast();
  // Where the rescan of the undelivered events below the cursor goes on (it
  // reads a few pages a second, from 0 up to the cursor, and starts over).
  int64_t rescan_from_ = 0;
  absl::Time next_parked_check_ = absl::InfinitePast();
  // The last read found the end of the log: the next one not before this.
  absl::Time read_again_at_ = absl::InfinitePast();
  // The last claim found nothing more to claim: the next one not before this.
  absl::Time claim_again_at_ = absl::InfinitePast();
  bool claim_wanted_ = false;  // a retry ended: claim it to learn when it is due
  std::deque<std::shared_ptr<const StoredEvent>> blocking_queue_;  // slot taken
  int active_ = 0;                        // calls started and not yet reported
  int unfinished_ = 0;                    // started events not yet ended in the key queues
  int callbacks_ = 0;                     // deliverer callbacks running
  std::atomic<int64_t> call_busy_us_{0};  // time calls were in flight, for the summary
  std::vector<int64_t> to_release_;       // positions whose claims to give back
  int64_t waiting_since_claim_log_ = 0;   // poll thread only
  absl::Time next_claim_wait_log_ = absl::InfinitePast();
  bool stopping_ = false;
  bool started_ = false;
  std::thread poller_;
  std::vector<std::thread> workers_;
};

}  // namespace replayd
