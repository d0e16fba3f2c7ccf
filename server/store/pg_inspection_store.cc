#include "server/store/pg_inspection_store.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// Sources travel as one comma-separated parameter ('' = every source);
// source names cannot hold a comma (the service validates them).
constexpr const char* kSourceFilter = "($SRC = '' OR source = ANY(string_to_array($SRC, ',')))";

std::string WithSourceParam(std::string sql, std::string_view param) {
  std::string filter = kSourceFilter;
  for (size_t at; (at = filter.find("$SRC")) != std::string::npos;) {
    filter.replace(at, 4, param);
  }
  size_t at = sql.find("$SOURCES");
  sql.replace(at, 8, filter);
  return sql;
}

// Groups on date_bin (a timestamptz) and outcome, like the plainest
// aggregate would, and leaves ordering and the pivot of outcomes to C++: an
// ORDER BY here makes the planner sort a day's rows instead of hashing them.
constexpr const char* kTimelineName = "inspect_timeline";
constexpr const char* kTimelineSql = R"sql(
SELECT (extract(epoch FROM date_bin($3 * interval '1 second', ingested_at,
                                    timestamptz '1970-01-01 00:00:00+00')) * 1000000)::bigint,
       source,
       outcome,
       count(*),
       count(*) FILTER (WHERE ingested_at < $4::timestamptz),
       count(sequence),
       min(sequence),
       max(sequence)
  FROM events
 WHERE ingested_at >= $1::timestamptz AND ingested_at < $2::timestamptz
   AND $SOURCES
 GROUP BY date_bin($3 * interval '1 second', ingested_at, timestamptz '1970-01-01 00:00:00+00'),
          source, outcome)sql";

// Planned for the actual window and ranges (a generic plan cannot prune
// partitions or see that a range is narrow, and scans the whole window).
constexpr const char* kHolesName = "sequence_holes";
constexpr const char* kHolesSql = R"sql(
SELECT r.source, s.prev + 1, s.sequence - 1,
       (extract(epoch FROM s.prev_ingested_at) * 1000000)::bigint,
       (extract(epoch FROM s.ingested_at) * 1000000)::bigint,
       sum(s.sequence - s.prev - 1) OVER ()
  FROM unnest($3::text[], $4::bigint[], $5::bigint[]) AS r(source, lo, hi)
 CROSS JOIN LATERAL (
    SELECT sequence, ingested_at,
           lag(sequence) OVER w AS prev,
           lag(ingested_at) OVER w AS prev_ingested_at
      FROM events
     WHERE ingested_at >= $1::timestamptz AND ingested_at < $2::timestamptz
       AND source = r.source AND sequence BETWEEN r.lo AND r.hi
    WINDOW w AS (ORDER BY sequence)) s
 WHERE s.sequence > s.prev + 1
 ORDER BY 1, 2
 LIMIT $6)sql";

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
    // Planned per call with the real values (not prepared): a generic plan
    // cannot see which partition and how many rows, and sorts instead of hashing.
    static const std::string sql = WithSourceParam(kTimelineSql, "$5");
    pqxx::read_transaction tx(lease.conn());
    absl::Time settled = query.settled_before == absl::InfiniteFuture()
                             ? query.to + absl::Hours(24 * 365)
                             : query.settled_before;
    auto rows = tx.exec_params(sql, PgTime(query.from), PgTime(query.to),
                               absl::ToInt64Seconds(query.bucket), PgTime(settled),
                               absl::StrJoin(query.sources, ","));
    std::map<std::pair<int64_t, std::string>, BucketRow> buckets;
    for (const auto& row : rows) {
      int64_t start_us = row[0].as<int64_t>();
      std::string source = row[1].as<std::string>();
      BucketRow& b = buckets[{start_us, source}];
      if (b.source.empty()) {
        b.start = absl::FromUnixMicros(start_us);
        b.source = std::move(source);
      }
      std::optional<Outcome> outcome = ParseOutcome(row[2].as<std::string>());
      int64_t n = row[3].as<int64_t>();
      switch (outcome.value_or(Outcome::kPending)) {
        case Outcome::kPending: b.counts.pending += n; break;
        case Outcome::kRetrying: b.counts.retrying += n; break;
        case Outcome::kSucceeded: b.counts.succeeded += n; break;
        case Outcome::kAlreadyProcessed: b.counts.already_processed += n; break;
        case Outcome::kFailed: b.counts.failed += n; break;
      }
      b.counts.total += n;
      if (outcome == Outcome::kPending || outcome == Outcome::kRetrying) {
        b.settled_unfinished += row[4].as<int64_t>();
      }
      b.sequenced += row[5].as<int64_t>();
      if (auto lo = OptionalInt(row[6]))
        b.min_sequence = std::min(b.min_sequence.value_or(*lo), *lo);
      if (auto hi = OptionalInt(row[7]))
        b.max_sequence = std::max(b.max_sequence.value_or(*hi), *hi);
    }
    out.reserve(buckets.size());
    for (auto& [key, b] : buckets) out.push_back(std::move(b));
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<SequenceHoles> PgInspectionStore::FindSequenceHoles(
    absl::Time from, absl::Time to, const std::vector<SequenceRange>& ranges, int limit) {
  SequenceHoles out;
  if (ranges.empty()) return out;
  std::vector<std::string> sources;
  std::vector<int64_t> firsts, lasts;
  for (const SequenceRange& r : ranges) {
    sources.push_back(r.source);
    firsts.push_back(r.first);
    lasts.push_back(r.last);
  }
  absl::Status status = pool_->Run(kHolesName, [&](PgPool::Lease& lease) {
    out = {};
    lease.Prepare(kHolesName, kHolesSql);
    pqxx::read_transaction tx(lease.conn());
    tx.exec("SET LOCAL plan_cache_mode = force_custom_plan");
    auto rows = tx.exec_prepared(kHolesName, PgTime(from), PgTime(to), PgTextArray(sources),
                                 PgBigintArray(firsts), PgBigintArray(lasts), limit);
    for (const auto& row : rows) {
      SequenceHole h;
      h.source = row[0].as<std::string>();
      h.first_missing = row[1].as<int64_t>();
      h.last_missing = row[2].as<int64_t>();
      h.after_ingested_at = absl::FromUnixMicros(row[3].as<int64_t>());
      h.before_ingested_at = absl::FromUnixMicros(row[4].as<int64_t>());
      out.holes.push_back(std::move(h));
      out.missing = row[5].as<int64_t>();
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
