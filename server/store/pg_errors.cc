#include "server/store/pg_errors.h"

#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace replayd {

std::string_view SqlState(const std::exception& e) {
  if (auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) return sql->sqlstate();
  return "";
}

absl::Status StatusFromPg(const std::exception& e, std::string_view what_view) {
  const std::string what(what_view);
  std::string message = absl::StrCat(what, ": ", e.what());
  while (!message.empty() && message.back() == '\n') message.pop_back();
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat(what, ": database connection lost"));
  }
  const std::string state(SqlState(e));
  if (absl::StartsWith(state, "08") || absl::StartsWith(state, "57P") || state == "53300") {
    return absl::UnavailableError(message);
  }
  // "stack depth limit exceeded" and kin: the input was too complex.
  if (state == "54001") return absl::InvalidArgumentError(message);
  if (state == "23505") return absl::AlreadyExistsError(message);
  if (absl::StartsWith(state, "22") || absl::StartsWith(state, "23")) {
    return absl::InvalidArgumentError(message);
  }
  if (state == "40001" || state == "40P01") return absl::AbortedError(message);
  return absl::InternalError(message);
}

}  // namespace replayd
