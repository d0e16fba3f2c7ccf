#include "server/replay/breaker.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace replayd {

std::optional<std::string> BreakerTrips(const BreakerSettings& settings,
                                        const BreakerTally& tally) {
  if (settings.consecutive_failures > 0 &&
      tally.consecutive_failures >= settings.consecutive_failures) {
    return absl::StrCat("circuit breaker: ", tally.consecutive_failures,
                        " deliveries failed in a row; paused until resumed");
  }
  if (settings.window > 0 && settings.failure_ratio > 0 && tally.window_seen >= settings.window &&
      tally.window_failures >= settings.failure_ratio * tally.window_seen) {
    return absl::StrFormat(
        "circuit breaker: %d of the last %d deliveries failed (limit %g); paused until resumed",
        tally.window_failures, tally.window_seen, settings.failure_ratio);
  }
  return std::nullopt;
}

std::optional<std::string> ReplayBreaker::Record(bool failed) {
  tally_.consecutive_failures = failed ? tally_.consecutive_failures + 1 : 0;
  if (settings_.window > 0) {
    window_.push_back(failed);
    if (failed) ++tally_.window_failures;
    if (static_cast<int>(window_.size()) > settings_.window) {
      if (window_.front()) --tally_.window_failures;
      window_.pop_front();
    }
    tally_.window_seen = static_cast<int>(window_.size());
  }
  return BreakerTrips(settings_, tally_);
}

void ReplayBreaker::Reset() {
  tally_ = {};
  window_.clear();
}

}  // namespace replayd
