// The dispatcher's memory of the undelivered events it has read from the log:
// one queue per key, in position order. It decides which events to claim and
// which may start, so that a key's events go out in log order, one at a time,
// each after the previous one's outcome is recorded.
//
// Why memory and not the database: the dispatcher reads the log in position
// order from a cursor and keeps every undelivered event it has read until it
// is done with it, so for each key it holds the earliest undelivered events
// (a prefix of the key's queue in the log). Asking the log on every claim
// which event of a key may go next cost more than the deliveries themselves
// (bench/README.md). Other workers (another daemon, a replay) are kept off
// through the claims: an event is started only while claimed, and a key whose
// first event someone else holds waits until that claim is gone.
//
// Not thread safe: the dispatcher calls it under its own lock.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/time/time.h"
#include "server/store/delivery_store.h"

namespace replayd {

class KeyQueues {
 public:
  // On `strict_sources` a failed event parks its key's later events.
  explicit KeyQueues(const std::vector<std::string>& strict_sources);

  // Adds an event read from the log, after its key's events with lower
  // positions (but never before one being delivered). Returns false when the
  // event is held already, or its key is parked (the event stays in the log
  // and is read again once the key is unparked).
  bool Add(const UndeliveredEvent& event, absl::Time now);
  // Events held (queued, claimed or being delivered).
  size_t size() const { return key_of_.size(); }
  // Of those, the ones claimed or being delivered.
  size_t holding() const { return holding_; }

  // The events to claim now, in position order, at most `limit`: for each key
  // that is not waiting (on another worker's claim) or parked, its unclaimed
  // events from the first on, up to the first one not yet due; whole runs of
  // the keys whose run starts earliest.
  std::vector<EventRef> ToClaim(absl::Time now, size_t limit) const;
  // Applies what claiming `refs` found (`results` in the same order). A key
  // whose event another worker holds waits `busy_wait` before it is tried
  // again. Returns the positions whose claims to give back: a key holds
  // claims only while its first event is claimed or being delivered.
  std::vector<int64_t> Claimed(const std::vector<EventRef>& refs, std::vector<ClaimResult> results,
                               absl::Time now, absl::Duration busy_wait);

  // The next event that may start: the first event of its key, claimed, while
  // no other event of the key is being delivered. The key is busy until
  // Finished().
  std::optional<StoredEvent> NextToStart();

  // How a started event ended.
  struct Ending {
    // false: nothing durable happened (the call or its record failed, or the
    // claim was lost): the event stays first in its key and is claimed again
    // after `retry_wait`.
    bool recorded = false;
    Outcome outcome = Outcome::kPending;
  };
  // The event at `ref` (started by NextToStart) is over. Returns the
  // positions whose claims to give back.
  std::vector<int64_t> Finished(const EventRef& ref, const Ending& ending, absl::Time now,
                                absl::Duration retry_wait);

  // `undelivered` is a read of the log's undelivered events after position
  // `after`, complete up to position `through`. A held event in that range
  // that it does not hold (neither claimed nor being delivered) was settled
  // by another worker, e.g. a replay delivered it while its key waited on a
  // retry, or left the log with its partition: it is made due at once, so
  // that its claim finds it settled (and, on a strict route, whether it
  // failed) now instead of at its old due time. Returns how many.
  int ClaimAgainIfGone(const std::vector<UndeliveredEvent>& undelivered, int64_t after,
                       int64_t through);

  // The failed events parked keys wait behind. Unpark() unparks the keys
  // whose blocker is not in `still_failed` (a replay delivered it, or put it
  // back to a retry) and returns their blockers' positions: the caller reads
  // the log again from there, the blocker first if it is undelivered again.
  std::vector<EventRef> Blockers() const;
  std::vector<int64_t> Unpark(const std::vector<int64_t>& still_failed);

 private:
  struct Entry {
    EventRef ref;
    absl::Time due;                      // not claimed before
    std::optional<StoredEvent> claimed;  // the row, while its claim is held
  };
  struct Key {
    std::deque<Entry> events;                      // position order
    bool strict = false;                           // a failure parks the key
    bool running = false;                          // events.front() is being delivered
    absl::Time wait_until = absl::InfinitePast();  // another worker holds an event
    // Parked behind this failed event: the key's events are not held (they
    // would fill the memory for as long as nobody replays the failure).
    std::optional<EventRef> parked_behind;
  };

  // After a change to the key: lets go of what it may no longer hold, makes
  // it startable, or forgets it.
  void Settle(const std::string& id, std::vector<int64_t>* released);
  void Park(Key& key, const EventRef& blocker);
  // Gives back the claims of the key's events after the first.
  void UnclaimLater(Key& key, std::vector<int64_t>* released);
  static std::deque<Entry>::iterator Find(Key& key, int64_t position);

  const std::vector<std::string> strict_sources_;
  std::unordered_map<std::string, Key> keys_;
  std::unordered_map<int64_t, std::string> key_of_;  // position -> key id
  std::deque<std::string> ready_;  // keys whose first event may start (checked again on pop)
  size_t holding_ = 0;
};

}  // namespace replayd
