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
#include <unordered_set>
#include <vector>

#include "absl/time/time.h"
#include "server/store/delivery_store.h"

namespace replayd {

class KeyQueues {
 public:
  // Adds an event read from the log, after its key's events with lower
  // positions (but never before one being delivered). Returns false when the
  // event is held already.
  bool Add(const UndeliveredEvent& event, absl::Time now);
  // Events held (queued, claimed or being delivered).
  size_t size() const { return key_of_.size(); }

  // The events to claim now, in position order, at most `limit`: for each key
  // that is not waiting (on another worker's claim, or behind a strict
  // route's failed event), its unclaimed events from the first on, up to the
  // first one not yet due.
  std::vector<EventRef> ToClaim(absl::Time now, size_t limit) const;
  // Applies what claiming `refs` found (`results` in the same order). A key
  // whose event another worker holds waits `busy_wait` before it is tried
  // again. Returns the positions whose claims to give back (the events of a
  // key found behind a failure).
  std::vector<int64_t> Claimed(const std::vector<EventRef>& refs,
                               std::vector<ClaimResult> results, absl::Time now,
                               absl::Duration busy_wait);

  // The next event that may start: the first event of its key, claimed, while
  // no other event of the key is being delivered. The key is busy until
  // Finished().
  std::optional<StoredEvent> NextToStart();

  // How a started event ended.
  struct Ending {
    // false: nothing durable happened (the call or its record failed): the
    // event stays first in its key and is claimed again after `retry_wait`.
    bool recorded = false;
    Outcome outcome = Outcome::kPending;
    bool strict_order = false;  // its route parks a key behind a failed event
  };
  // The event at `ref` (started by NextToStart) is over. Returns the
  // positions whose claims to give back (a strict key's later events).
  std::vector<int64_t> Finished(const EventRef& ref, const Ending& ending, absl::Time now,
                                absl::Duration retry_wait);

  // The failed events keys are parked behind; Unpark() those a replay has
  // delivered since (not in `still_failed`).
  std::vector<EventRef> Blockers() const;
  void Unpark(const std::vector<int64_t>& still_failed);

 private:
  struct Entry {
    EventRef ref;
    absl::Time due;                      // not claimed before
    std::optional<StoredEvent> claimed;  // the row, while its claim is held
  };
  struct Key {
    std::deque<Entry> events;  // position order
    bool running = false;      // events.front() is being delivered
    absl::Time wait_until = absl::InfinitePast();  // another worker holds an event
    std::optional<EventRef> parked_behind;         // strict: an earlier failed event
  };

  // The key is settled: make it startable, or forget it when empty.
  void Settle(const std::string& id);
  // Gives back the claims of a parked key's events.
  void Unclaim(Key& key, std::vector<int64_t>* released);
  static std::deque<Entry>::iterator Find(Key& key, int64_t position);

  std::unordered_map<std::string, Key> keys_;
  std::unordered_map<int64_t, std::string> key_of_;  // position -> key id
  std::deque<std::string> ready_;  // keys whose first event may start (checked again on pop)
};

}  // namespace replayd
