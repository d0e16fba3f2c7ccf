// Token buckets for replay rate limits: one per replay, and one per sink
// shared by every replay in the process, so that replays together stay within
// the sink's replay_rate_budget. A bucket starts with one token (not full),
// so that a replay's achieved rate from its first event on is the asked rate;
// its capacity caps how far it may catch up after a stall (see BucketCapacity
// in limits.h for the capacity that keeps any 100 ms within a replay's burst).
#pragma once

#include <mutex>

#include "absl/time/time.h"

namespace replayd {

class TokenBucket {
 public:
  TokenBucket(double rate, double burst, absl::Time now);

  // Takes a token when one is available at `now` and returns zero; otherwise
  // takes nothing and returns how long until one is. Thread safe.
  absl::Duration TryTake(absl::Time now);
  // How long until a token is available at `now` (zero = now), taking nothing.
  absl::Duration WaitFor(absl::Time now);

  double rate() const { return rate_; }

 private:
  void Refill(absl::Time now);

  const double rate_;
  const double burst_;
  std::mutex mu_;
  double tokens_;
  absl::Time last_;
};

}  // namespace replayd
