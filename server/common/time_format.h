// Time parsing and formatting shared by the daemon, the config and replayctl.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace replayd {

// "2026-11-22T03:00:00Z" (UTC, fractional seconds only when present).
std::string FormatRfc3339(absl::Time t);

// Accepts RFC 3339 ("2026-11-22T03:00:00Z", "...+01:00"), "now", and times
// relative to `now`: "-6h", "-90m", "+1h30m", "-2d". INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Time> ParseTimeArg(std::string_view text, absl::Time now);

// Go-style durations plus days: "500ms", "30s", "7d", "168h". INVALID_ARGUMENT
// for anything else, including negative durations.
absl::StatusOr<absl::Duration> ParseDurationArg(std::string_view text);

// The start of the UTC day holding t.
absl::Time StartOfUtcDay(absl::Time t);

}  // namespace replayd
