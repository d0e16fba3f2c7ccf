// Conversions between libpqxx rows and the store's types. Internal to store/.
// Timestamps are read as epoch microseconds (no text parsing, no time zones)
// and written as RFC 3339 text.
#pragma once

#include <cstdint>
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

// Rows for COPY ... FROM STDIN in text format, formatted into one buffer and
// sent in one piece (libpqxx's stream_to escapes every field byte by byte and
// sends every row on its own).
class CopyRows {
 public:
  explicit CopyRows(size_t reserve_bytes = 0) { buf_.reserve(reserve_bytes); }
  // Text with COPY's backslash escapes; empty text is an empty string, not NULL.
  CopyRows& Text(std::string_view value);
  // NULL when empty.
  CopyRows& TextOrNull(std::string_view value);
  CopyRows& Int(int64_t value);
  CopyRows& Null();
  void EndRow();

  // COPY table (columns) FROM STDIN within `tx`. Throws what libpqxx throws
  // (sql_error subclasses by SQLSTATE, e.g. unique_violation).
  void Send(pqxx::transaction_base& tx, const std::string& table,
            const std::vector<std::string>& columns) const;

 private:
  void Separate();

  std::string buf_;
  bool row_started_ = false;
};

// The select list StoredEventFromRow reads, in order, from the events table
// (optionally qualified by `alias`).
std::string StoredEventColumns(std::string_view alias = "");
StoredEvent StoredEventFromRow(const pqxx::row& row);

}  // namespace replayd
