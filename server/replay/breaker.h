// A replay's circuit breaker: when the downstream keeps failing, the replay
// pauses itself instead of failing every event of its window. Pure: the
// runner records each delivery's outcome and asks whether to trip; no
// threads, no clock (the rules count outcomes, not time).
#pragma once

#include <deque>
#include <optional>
#include <string>

#include "server/model/replay_types.h"

namespace replayd {

// What the breaker remembers of a replay's recent outcomes.
struct BreakerTally {
  int consecutive_failures = 0;  // failures since the last success
  int window_seen = 0;           // outcomes among the last `window` (at most `window`)
  int window_failures = 0;       // failures among them
};

// Whether `tally` trips `settings`, and why (the replay's last_error): after
// `consecutive_failures` failures in a row, or once `window` outcomes are seen
// and at least `failure_ratio` of them failed. A rule set to 0 never trips.
std::optional<std::string> BreakerTrips(const BreakerSettings& settings,
                                        const BreakerTally& tally);

class ReplayBreaker {
 public:
  explicit ReplayBreaker(BreakerSettings settings) : settings_(settings) {}

  // Records one finished delivery; returns the reason when this outcome
  // trips the breaker (and every later one until Reset).
  std::optional<std::string> Record(bool failed);
  void Reset();

  const BreakerTally& tally() const { return tally_; }

 private:
  const BreakerSettings settings_;
  BreakerTally tally_;
  std::deque<bool> window_;  // the last `window` outcomes, true = failed
};

}  // namespace replayd
