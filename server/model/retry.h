// A retry policy whose fields may be unset: a replay's own policy (each unset
// field takes the route's) and the policy an attempt was made under (unset
// when its row holds none).
#pragma once

#include <optional>

#include "absl/time/time.h"

namespace replayd {

struct RetrySettings {
  std::optional<int> max_attempts = {};
  std::optional<absl::Duration> base_delay = {};
  std::optional<absl::Duration> max_delay = {};

  bool empty() const { return !max_attempts && !base_delay && !max_delay; }
};

}  // namespace replayd
