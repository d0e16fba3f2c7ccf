// Conversions between libpqxx rows and the store's types. Internal to store/.
// Timestamps are read as epoch microseconds (no text parsing, no time zones)
// and written as RFC 3339 text.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

#include "absl/time/time.h"
#include "server/store/event.h"

namespace replayd {

// SQL expression giving `column` (a timestamptz) as bigint epoch microseconds.
std::string EpochUs(std::string_view column);

// nullopt for NULL.
std::optional<absl::Time> TimeFromEpochUs(const pqxx::field& field);

// RFC 3339 with microseconds, for timestamptz parameters and COPY.
std::string PgTime(absl::Time t);

// A text[] literal for a parameter: {"a","b\"c"}, every element quoted and escaped.
std::string PgTextArray(const std::vector<std::string>& items);

// The select list StoredEventFromRow reads, in order, from the events table
// (optionally qualified by `alias`).
std::string StoredEventColumns(std::string_view alias = "");
StoredEvent StoredEventFromRow(const pqxx::row& row);

}  // namespace replayd
