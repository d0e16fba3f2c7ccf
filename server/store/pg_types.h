// Conversions between libpqxx rows and the store's types. Internal to store/.
// Timestamps are read as epoch microseconds (no text parsing, no time zones)
// and written as RFC 3339 text.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>
#include <pqxx/tablewriter>

#include "absl/time/time.h"
#include "server/store/event.h"

namespace replayd {

// SQL expression giving `column` (a timestamptz) as bigint epoch microseconds.
std::string EpochUs(std::string_view column);

// nullopt for NULL.
std::optional<absl::Time> TimeFromEpochUs(const pqxx::field& field);

// RFC 3339 with microseconds, for timestamptz parameters and COPY.
std::string PgTime(absl::Time t);

// `text` as a value any text column takes: NUL bytes dropped, and bytes that
// are not valid UTF-8 (a multi-byte character cut off, binary) replaced by
// U+FFFD.
std::string PgText(std::string_view text);

// A text[] literal for a parameter: {"a","b\"c"}, every element quoted and escaped.
std::string PgTextArray(const std::vector<std::string>& items);
// A bigint[] literal: "{1,2,3}".
std::string PgBigintArray(const std::vector<int64_t>& numbers);

// COPY table (columns) FROM STDIN in text format within a transaction. Rows
// are formatted into a buffer that is sent in pieces of about 32 KiB
// (libpqxx's stream_to escapes every field byte by byte and sends every row on
// its own). libpqxx exceptions (sql_error subclasses by SQLSTATE, e.g.
// unique_violation) come from the constructor, EndRow and Complete.
class CopyWriter {
 public:
  CopyWriter(pqxx::transaction_base& tx, const std::string& table,
             const std::vector<std::string>& columns);
  ~CopyWriter();

  // Text with COPY's backslash escapes; empty text is an empty string, not NULL.
  CopyWriter& Text(std::string_view value);
  // NULL when empty.
  CopyWriter& TextOrNull(std::string_view value);
  CopyWriter& Int(int64_t value);
  CopyWriter& Null();
  void EndRow();
  // Sends what is left and ends the COPY; the server's verdict comes here.
  void Complete();

 private:
  void Separate();
  void Flush();

  std::unique_ptr<pqxx::tablewriter> writer_;
  std::string buf_;  // rows separated by newlines, without a final one
  bool row_started_ = false;
};

// The select list StoredEventFromRow reads, in order, from the events table
// (optionally qualified by `alias`).
std::string StoredEventColumns(std::string_view alias = "");
// How many columns StoredEventColumns selects: a query's own columns follow.
inline constexpr int kStoredEventColumnCount = 17;
StoredEvent StoredEventFromRow(const pqxx::row& row);
// The stored event of source $1 and event id $2, found through event_keys
// (whose ingest time prunes events to one partition), as StoredEventColumns.
std::string SelectEventByIdSql();

}  // namespace replayd
