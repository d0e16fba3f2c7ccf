// replayctl's `-o json`: every command prints its response message in the
// protobuf JSON mapping, with one set of options for all of them.
#pragma once

#include <string>

#include <google/protobuf/message.h>

namespace replayd::replayctl {

// One line, no trailing newline: field names as in the .proto
// (`would_deliver`, not `wouldDeliver`), fields at their default printed
// (zero counts, empty strings and lists), enums by name, 64-bit integers as
// strings and timestamps as RFC 3339, as the mapping says. Unset message
// fields (a progress's `cursor` or `finished_at`) are left out.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace replayd::replayctl
