#include "server/store/pg_types.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace replayd {

std::string EpochUs(std::string_view column) {
  return absl::StrCat("(extract(epoch from ", std::string(column), ") * 1000000)::bigint");
}

std::optional<absl::Time> TimeFromEpochUs(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return absl::FromUnixMicros(field.as<int64_t>());
}

std::string PgTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

std::string PgBigintArray(const std::vector<int64_t>& numbers) {
  return absl::StrCat("{", absl::StrJoin(numbers, ","), "}");
}

namespace {

// Length of the valid UTF-8 sequence at the start of `s`, or 0.
size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t n;
  unsigned char low = 0x80, high = 0xBF;  // the second byte's range
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    n = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    n = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n || byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

std::string PgText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const size_t n = Utf8SequenceLength(text);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      text.remove_prefix(1);
      continue;
    }
    if (text[0] != '\0') out.append(text.data(), n);
    text.remove_prefix(n);
  }
  return out;
}

std::string PgTextArray(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

namespace {
constexpr size_t kCopyPieceBytes = 32 << 10;
}  // namespace

CopyWriter::CopyWriter(pqxx::transaction_base& tx, const std::string& table,
                       const std::vector<std::string>& columns) {
  // tablewriter is deprecated in libpqxx 6.4, but its write_raw_line is the
  // only public way to send preformatted COPY data.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  writer_ = std::make_unique<pqxx::tablewriter>(tx, table, columns.begin(), columns.end());
#pragma GCC diagnostic pop
  buf_.reserve(kCopyPieceBytes + (4 << 10));
}

CopyWriter::~CopyWriter() = default;

void CopyWriter::Separate() {
  if (row_started_) {
    buf_ += '\t';
  } else if (!buf_.empty()) {
    buf_ += '\n';
  }
  row_started_ = true;
}

CopyWriter& CopyWriter::Text(std::string_view value) {
  Separate();
  // Only the backslash, the delimiter and line ends need escaping; runs of
  // other bytes are copied whole.
  size_t run = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    char escaped;
    switch (value[i]) {
      case '\\': escaped = '\\'; break;
      case '\t': escaped = 't'; break;
      case '\n': escaped = 'n'; break;
      case '\r': escaped = 'r'; break;
      default: continue;
    }
    buf_.append(value.data() + run, i - run);
    buf_ += '\\';
    buf_ += escaped;
    run = i + 1;
  }
  buf_.append(value.data() + run, value.size() - run);
  return *this;
}

CopyWriter& CopyWriter::TextOrNull(std::string_view value) {
  return value.empty() ? Null() : Text(value);
}

CopyWriter& CopyWriter::Int(int64_t value) {
  Separate();
  absl::StrAppend(&buf_, value);
  return *this;
}

CopyWriter& CopyWriter::Null() {
  Separate();
  buf_ += "\\N";
  return *this;
}

void CopyWriter::EndRow() {
  row_started_ = false;
  if (buf_.size() >= kCopyPieceBytes) Flush();
}

void CopyWriter::Flush() {
  // One "line" to libpqxx, which adds the newline that ends its last row.
  if (!buf_.empty()) writer_->write_raw_line(buf_);
  buf_.clear();
}

void CopyWriter::Complete() {
  Flush();
  writer_->complete();
}

std::string StoredEventColumns(std::string_view alias) {
  std::string p = alias.empty() ? "" : absl::StrCat(std::string(alias), ".");
  return absl::StrJoin(
      {absl::StrCat(p, "position"), absl::StrCat(p, "source"), absl::StrCat(p, "event_id"),
       absl::StrCat(p, "sequence"), absl::StrCat(p, "key"), absl::StrCat(p, "type"),
       EpochUs(p + "occurred_at"), EpochUs(p + "ingested_at"), EpochUs(p + "processed_at"),
       absl::StrCat(p, "outcome"), absl::StrCat(p, "attempts"), absl::StrCat(p, "last_error"),
       EpochUs(p + "next_attempt_at"), absl::StrCat(p, "target_record_id"),
       absl::StrCat(p, "payload::text"), absl::StrCat(p, "target_version"),
       EpochUs(p + "target_updated_at")},
      ", ");
}

std::string SelectEventByIdSql() {
  return absl::StrCat("SELECT ", StoredEventColumns("e"),
                      " FROM event_keys k JOIN events e ON e.ingested_at = k.ingested_at"
                      " AND e.source = k.source AND e.event_id = k.event_id"
                      " WHERE k.source = $1 AND k.event_id = $2");
}

StoredEvent StoredEventFromRow(const pqxx::row& row) {
  StoredEvent e;
  e.position = row[0].as<int64_t>();
  e.event.source = row[1].as<std::string>();
  e.event.event_id = row[2].as<std::string>();
  if (!row[3].is_null()) e.event.sequence = row[3].as<int64_t>();
  e.event.key = row[4].is_null() ? "" : row[4].as<std::string>();
  e.event.type = row[5].is_null() ? "" : row[5].as<std::string>();
  e.event.occurred_at = TimeFromEpochUs(row[6]);
  e.ingested_at = TimeFromEpochUs(row[7]).value_or(absl::UnixEpoch());
  e.processed_at = TimeFromEpochUs(row[8]);
  e.outcome = ParseOutcome(row[9].as<std::string>()).value_or(Outcome::kPending);
  e.attempts = row[10].as<int>();
  e.last_error = row[11].is_null() ? "" : row[11].as<std::string>();
  e.next_attempt_at = TimeFromEpochUs(row[12]);
  e.target_record_id = row[13].is_null() ? "" : row[13].as<std::string>();
  e.event.payload = row[14].as<std::string>();
  e.target_version = row[15].is_null() ? "" : row[15].as<std::string>();
  e.target_updated_at = TimeFromEpochUs(row[16]);
  return e;
}

}  // namespace replayd
