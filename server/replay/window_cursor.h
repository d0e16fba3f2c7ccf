// Where a replay may checkpoint. Events are dispatched in window order and
// finish in any order (deliveries run in parallel); the cursor is the last
// event such that it and every event dispatched before it are done, so a job
// resumed from the cursor never skips an unfinished event. Pure bookkeeping:
// no threads, no store, no clock; the caller serializes access.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>

#include "server/store/replay_store.h"

namespace replayd {

// Dispatched events the cursor keeps track of at most: the done ones held
// behind a slow one.
inline constexpr size_t kMaxOrderWindow = 10000;

class WindowCursor {
 public:
  // `start`: the job's checkpointed cursor (nullopt = nothing done yet).
  explicit WindowCursor(std::optional<ReplayCursor> start, size_t max_window = kMaxOrderWindow)
      : cursor_(start), max_window_(max_window) {}

  // Whether another event may be dispatched: fewer than `max_window` events
  // are held between the cursor and the newest dispatched one.
  bool HasRoom() const { return order_.size() < max_window_; }

  // `at` was dispatched, after (in window order) every event dispatched
  // before it.
  void Dispatched(const ReplayCursor& at);
  // `at` needs no delivery: dispatched and done at once.
  void Skipped(const ReplayCursor& at);
  // `at`, dispatched earlier, is done. False (and nothing changes) when `at`
  // is not an event waiting to be done.
  bool Done(const ReplayCursor& at);

  // Every event up to and including this one is done.
  const std::optional<ReplayCursor>& Cursor() const { return cursor_; }
  // Dispatched and not yet done.
  size_t InFlight() const { return in_flight_; }
  // Held between the cursor and the newest dispatched event (done or not).
  size_t Held() const { return order_.size(); }

 private:
  struct Slot {
    ReplayCursor at;
    bool done = false;
  };

  // Moves the cursor over the done events at the front.
  void Advance();

  std::optional<ReplayCursor> cursor_;
  const size_t max_window_;
  std::deque<Slot> order_;  // window order
  size_t in_flight_ = 0;
};

}  // namespace replayd
