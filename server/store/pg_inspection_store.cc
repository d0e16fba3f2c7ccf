#include "server/store/pg_inspection_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// Sources travel as one comma-separated parameter ('' = every source);
// source names cannot hold a comma (the service validates them).
constexpr const char* kSourceFilter =
    "($SRC = '' OR source = ANY(string_to_array($SRC, ',')))";

std::string WithSourceParam(std::string sql, std::string_view param) {
  std::string filter = kSourceFilter;
  for (size_t at; (at = filter.find("$SRC")) != std::string::npos;) {
    filter.replace(at, 4, param);
  }
  size_t at = sql.find("$SOURCES");
  sql.replace(at, 8, filter);
  return sql;
}

// Groups on date_bin (a timestamptz) and converts only the grouped rows.
constexpr const char* kTimelineName = "inspect_timeline";
constexpr const char* kTimelineSql = R"sql(
SELECT (extract(epoch FROM b.bucket) * 1000000)::bigint, b.source, b.pending, b.retrying,
       b.succeeded, b.already_processed, b.failed, b.total, b.settled_unfinished,
       b.sequenced, b.min_sequence, b.max_sequence
  FROM (SELECT date_bin($3 * interval '1 second', ingested_at,
                        timestamptz '1970-01-01 00:00:00+00') AS bucket,
               source,
               count(*) FILTER (WHERE outcome = 'pending') AS pending,
               count(*) FILTER (WHERE outcome = 'retrying') AS retrying,
               count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE outcome = 'already_processed') AS already_processed,
               count(*) FILTER (WHERE outcome = 'failed') AS failed,
               count(*) AS total,
               count(*) FILTER (WHERE outcome IN ('pending', 'retrying')
                                  AND ingested_at < $4::timestamptz) AS settled_unfinished,
               count(sequence) AS sequenced,
               min(sequence) AS min_sequence,
               max(sequence) AS max_sequence
          FROM events
         WHERE ingested_at >= $1::timestamptz AND ingested_at < $2::timestamptz
           AND $SOURCES
         GROUP BY 1, 2) b
 ORDER BY b.bucket, b.source)sql";

constexpr const char* kHolesName = "inspect_sequence_holes";
constexpr const char* kHolesSql = R"sql(
SELECT source, prev_sequence + 1, sequence - 1,
       (extract(epoch FROM prev_ingested_at) * 1000000)::bigint,
       (extract(epoch FROM ingested_at) * 1000000)::bigint
  FROM (SELECT source, sequence, ingested_at,
               lag(sequence) OVER w AS prev_sequence,
               lag(ingested_at) OVER w AS prev_ingested_at
          FROM events
         WHERE ingested_at >= $1::timestamptz AND ingested_at < $2::timestamptz
           AND sequence IS NOT NULL AND $SOURCES
        WINDOW w AS (PARTITION BY source ORDER BY sequence)) s
 WHERE sequence > prev_sequence + 1
 ORDER BY source, sequence
 LIMIT $4)sql";

// The partial index events_undelivered covers exactly these rows.
constexpr const char* kBacklogName = "inspect_backlog";
constexpr const char* kBacklogSql = R"sql(
SELECT count(*) FILTER (WHERE outcome = 'pending'),
       count(*) FILTER (WHERE outcome = 'retrying')
  FROM events
 WHERE outcome IN ('pending', 'retrying'))sql";

std::optional<int64_t> OptionalInt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<int64_t>();
}

}  // namespace

OutcomeTally& OutcomeTally::operator+=(const OutcomeTally& o) {
  pending += o.pending;
  retrying += o.retrying;
  succeeded += o.succeeded;
  already_processed += o.already_processed;
  failed += o.failed;
  total += o.total;
  return *this;
}

absl::StatusOr<std::vector<BucketRow>> PgInspectionStore::Timeline(const TimelineQuery& query) {
  std::vector<BucketRow> out;
  absl::Status status = pool_->Run(kTimelineName, [&](PgPool::Lease& lease) {
    out.clear();
    lease.Prepare(kTimelineName, WithSourceParam(kTimelineSql, "$5"));
    pqxx::read_transaction tx(lease.conn());
    absl::Time settled = query.settled_before == absl::InfiniteFuture()
                             ? query.to + absl::Hours(24 * 365)
                             : query.settled_before;
    auto rows = tx.exec_prepared(kTimelineName, PgTime(query.from), PgTime(query.to),
                                 absl::ToInt64Seconds(query.bucket), PgTime(settled),
                                 absl::StrJoin(query.sources, ","));
    out.reserve(rows.size());
    for (const auto& row : rows) {
      BucketRow b;
      b.start = absl::FromUnixMicros(row[0].as<int64_t>());
      b.source = row[1].as<std::string>();
      b.counts.pending = row[2].as<int64_t>();
      b.counts.retrying = row[3].as<int64_t>();
      b.counts.succeeded = row[4].as<int64_t>();
      b.counts.already_processed = row[5].as<int64_t>();
      b.counts.failed = row[6].as<int64_t>();
      b.counts.total = row[7].as<int64_t>();
      b.settled_unfinished = row[8].as<int64_t>();
      b.sequenced = row[9].as<int64_t>();
      b.min_sequence = OptionalInt(row[10]);
      b.max_sequence = OptionalInt(row[11]);
      out.push_back(std::move(b));
    }
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<SequenceHole>> PgInspectionStore::SequenceHoles(
    absl::Time from, absl::Time to, const std::vector<std::string>& sources, int limit) {
  std::vector<SequenceHole> out;
  absl::Status status = pool_->Run(kHolesName, [&](PgPool::Lease& lease) {
    out.clear();
    lease.Prepare(kHolesName, WithSourceParam(kHolesSql, "$3"));
    pqxx::read_transaction tx(lease.conn());
    auto rows = tx.exec_prepared(kHolesName, PgTime(from), PgTime(to),
                                 absl::StrJoin(sources, ","), limit);
    for (const auto& row : rows) {
      SequenceHole h;
      h.source = row[0].as<std::string>();
      h.first_missing = row[1].as<int64_t>();
      h.last_missing = row[2].as<int64_t>();
      h.after_ingested_at = absl::FromUnixMicros(row[3].as<int64_t>());
      h.before_ingested_at = absl::FromUnixMicros(row[4].as<int64_t>());
      out.push_back(std::move(h));
    }
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<Backlog> PgInspectionStore::CountBacklog() {
  Backlog out;
  absl::Status status = pool_->Run(kBacklogName, [&](PgPool::Lease& lease) {
    lease.Prepare(kBacklogName, kBacklogSql);
    pqxx::read_transaction tx(lease.conn());
    auto row = tx.exec_prepared1(kBacklogName);
    out.pending = row[0].as<int64_t>();
    out.retrying = row[1].as<int64_t>();
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace replayd
