// The one rule for source names, shared by the config, ingest, replay and
// inspection.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace replayd {

// A source name is 1-64 bytes of [a-z0-9_.-].
bool IsValidSourceName(std::string_view name);

// OK for a valid name; INVALID_ARGUMENT otherwise, with a message that echoes
// the name with control, quote, backslash and non-ASCII bytes escaped as \xNN
// (or \n, \", ...) and cut after 80 bytes, so the message is always printable
// ASCII and safe to put in JSON or a log line.
absl::Status ValidateSourceName(std::string_view name);

}  // namespace replayd
