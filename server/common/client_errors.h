// What a client is told about a failed call. Shared by the gRPC and HTTP edges
// so that both answer the same words for the same Status.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace replayd {

// The message to send for `status`. UNAVAILABLE, INTERNAL, UNKNOWN and
// DATA_LOSS get a fixed, generic message: their details (database addresses,
// SQL errors) are logged under `where` instead. Any other code keeps its
// message, which describes the caller's own input.
std::string ClientMessage(const absl::Status& status, std::string_view where);

}  // namespace replayd
