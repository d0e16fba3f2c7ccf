// Retrying an operation while its dependency is unavailable, with a bounded,
// exponentially growing wait between attempts.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/common/clock.h"

namespace replayd {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(250);
  absl::Duration max = absl::Seconds(5);
  // Gives up once this much time has passed since the first attempt.
  absl::Duration total = absl::Seconds(60);
  const Clock* clock = &SystemClock::Get();
};

// The wait after failed attempt number `attempt` (0-based): initial doubled
// per attempt, at most `max`.
absl::Duration BackoffDelay(int attempt, const BackoffOptions& options);

// Calls `attempt` until it returns anything but UNAVAILABLE, sleeping
// BackoffDelay between tries (the last sleep cut short at the total). Returns
// the last status: UNAVAILABLE when the total ran out. `on_retry` (may be
// empty) hears each failure and the wait that follows it.
absl::Status RetryWhileUnavailable(
    const std::function<absl::Status()>& attempt, const BackoffOptions& options,
    const std::function<void(const absl::Status&, absl::Duration wait)>& on_retry = {});

}  // namespace replayd
