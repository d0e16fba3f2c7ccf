#include "server/replay/token_bucket.h"

#include <algorithm>

namespace replayd {

TokenBucket::TokenBucket(double rate, double burst, absl::Time now)
    : rate_(rate), burst_(std::max(1.0, burst)), tokens_(1.0), last_(now) {}

void TokenBucket::Refill(absl::Time now) {
  if (now > last_) {
    tokens_ = std::min(burst_, tokens_ + absl::ToDoubleSeconds(now - last_) * rate_);
    last_ = now;
  }
}

absl::Duration TokenBucket::WaitFor(absl::Time now) {
  std::lock_guard lock(mu_);
  Refill(now);
  if (tokens_ >= 1.0) return absl::ZeroDuration();
  // Rounded up to the microsecond so that waiting this long always suffices.
  return absl::Ceil(absl::Seconds((1.0 - tokens_) / rate_), absl::Microseconds(1));
}

absl::Duration TokenBucket::TryTake(absl::Time now) {
  std::lock_guard lock(mu_);
  Refill(now);
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    return absl::ZeroDuration();
  }
  return absl::Ceil(absl::Seconds((1.0 - tokens_) / rate_), absl::Microseconds(1));
}

}  // namespace replayd
