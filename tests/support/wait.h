// Polling for tests that watch real processes and databases from outside,
// where there is nothing to wait on but the state itself.
#pragma once

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace replayd::testing {

// Asks `done` every `interval` until it answers true or `timeout` has passed;
// returns its last answer (asked once more at the deadline).
inline bool PollUntil(const std::function<bool()>& done, absl::Duration timeout,
                      absl::Duration interval = absl::Milliseconds(50)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(interval);
  }
  return done();
}

}  // namespace replayd::testing
