#include "server/common/backoff.h"

#include <algorithm>

namespace replayd {

absl::Duration BackoffDelay(int attempt, const BackoffOptions& options) {
  absl::Duration delay = options.initial;
  for (int i = 0; i < attempt && delay < options.max; ++i) delay *= 2;
  return std::min(delay, options.max);
}

absl::Status RetryWhileUnavailable(
    const std::function<absl::Status()>& attempt, const BackoffOptions& options,
    const std::function<void(const absl::Status&, absl::Duration wait)>& on_retry) {
  const absl::Time deadline = options.clock->Now() + options.total;
  for (int n = 0;; ++n) {
    absl::Status status = attempt();
    if (!absl::IsUnavailable(status)) return status;
    const absl::Duration left = deadline - options.clock->Now();
    if (left <= absl::ZeroDuration()) return status;
    const absl::Duration wait = std::min(BackoffDelay(n, options), left);
    if (on_retry) on_retry(status, wait);
    options.clock->SleepFor(wait);
  }
}

}  // namespace replayd
