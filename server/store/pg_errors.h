// Maps libpqxx exceptions to absl::Status by SQLSTATE. Internal to store/.
#pragma once

#include <exception>
#include <string_view>

#include "absl/status/status.h"

namespace replayd {

// UNAVAILABLE for lost connections and server shutdown, ALREADY_EXISTS for
// unique violations, INVALID_ARGUMENT for data errors, INTERNAL otherwise.
// `what` names the operation (a prepared-statement name) for the message.
absl::Status StatusFromPg(const std::exception& e, std::string_view what);

// The SQLSTATE of a libpqxx sql_error, or "" for other exceptions.
std::string_view SqlState(const std::exception& e);

}  // namespace replayd
