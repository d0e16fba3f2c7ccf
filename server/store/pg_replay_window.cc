// PgReplayStore's reads of a window of the log: pages in replay order, the
// first events with given outcomes, and the aggregate, which can save the
// window as a plan's events in the same read.
#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/time_format.h"
#include "server/store/partitions.h"
#include "server/store/pg_replay_rows.h"
#include "server/store/pg_replay_store.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// A strict key's blockers: its failed events (delivery_failed_keys, kept by
// the record) before a position, with their ids from the log.
constexpr const char* kFailedBeforeName = "replay_failed_before";
constexpr const char* kFailedBeforeSql = R"sql(
SELECT f.position, (extract(epoch FROM f.ingested_at) * 1000000)::bigint,
       coalesce(e.event_id, '')
  FROM delivery_failed_keys f
  LEFT JOIN events e ON e.position = f.position AND e.ingested_at = f.ingested_at
 WHERE f.source = $1 AND f.key = $2 AND f.position < $3
 ORDER BY f.position
 LIMIT $4)sql";

// The window predicate; $1 from, $2 to, then the filters (text[], empty =
// every value): $3 sources, $4 keys, $5 types, $6 event ids. Each statement
// is planned for its parameters (kCustomPlans), where an empty filter folds
// to true: the plan of an unfiltered window is the one without the filters.
constexpr const char* kWindowPredicate =
    "ingested_at >= $1::timestamptz AND ingested_at < $2::timestamptz"
    " AND (cardinality($3::text[]) = 0 OR source = ANY($3::text[]))"
    " AND (cardinality($4::text[]) = 0 OR key = ANY($4::text[]))"
    " AND (cardinality($5::text[]) = 0 OR type = ANY($5::text[]))"
    " AND (cardinality($6::text[]) = 0 OR event_id = ANY($6::text[]))";
// The parameters kWindowPredicate takes; a statement's own start after them.
constexpr int kWindowParams = 6;

// The filter parameters of `window`, $3 to $6 of kWindowPredicate.
struct WindowFilterParams {
  explicit WindowFilterParams(const ReplayWindow& w)
      : sources(PgTextArray(w.sources)),
        keys(PgTextArray(w.keys)),
        types(PgTextArray(w.types)),
        event_ids(PgTextArray(w.event_ids)) {}
  std::string sources, keys, types, event_ids;
};

// The dry run's few statements are planned for their actual window and
// outcomes: a generic plan cannot prune partitions, and picks a scan of the
// whole window.
constexpr const char* kCustomPlans = "SET LOCAL plan_cache_mode = force_custom_plan";

constexpr const char* kReadPageName = "replay_read_page";
constexpr const char* kFirstWithOutcomeName = "replay_first_with_outcome";
constexpr const char* kAggregateName = "replay_aggregate_window";
constexpr const char* kAggregateBlocksName = "replay_aggregate_blocks";

// The window's aggregate runs as slices on this many connections side by
// side, each taking the next slice until none is left, all in one snapshot.
constexpr int kAggregateConnections = 3;
// A whole day of the window is split by the blocks of its partition (a TID
// range scan reads only its own blocks, where a time slice first builds a
// bitmap from the primary key: about 10% of the work) when it has at least
// this many blocks per connection; the rest of the window is split by time.
constexpr int64_t kMinBlocksPerSlice = 64;
// Past the last block of any table: the end of the last block slice.
constexpr int64_t kEndOfBlocks = 4294967295;

// `blocks`: the slice is also limited to ctid in [$7, $8).
std::string AggregateSql(bool blocks) {
  return absl::StrCat(R"sql(
SELECT source, outcome, sequence >> )sql",
                      kSequenceBucketBits, R"sql(, count(*)
  FROM events
 WHERE )sql",
                      kWindowPredicate, blocks ? "\n   AND ctid >= $7::tid AND ctid < $8::tid" : "",
                      R"sql(
 GROUP BY 1, 2, 3)sql");
}

// The statement that saves a slice of a window as a plan's events in the
// same read as AggregateSql(blocks) counts it, returning the same rows
// (first column false) and then each chunk's number and size (first column
// true). Every (source, outcome, sequence bucket) group of a chunk goes in
// one row with its decision for a routed source (`decision_case`, by
// outcome). Chunks are `chunk_us`-wide slices of time from `origin_us`, the
// window's start; chunk k is numbered k * kPlanChunkSplits (room to split
// it) and holds events before origin_us + (k + 1) * chunk_us. `plan_id` and
// `origin` come quoted.
std::string SaveWindowSql(bool blocks, const std::string& plan_id, const std::string& origin,
                          int64_t origin_us, int64_t chunk_us, const std::string& decision_case) {
  const std::string chunk = absl::StrCat("(extract(epoch FROM bin - ", origin,
                                         "::timestamptz) * 1000000)::bigint / ", chunk_us);
  return absl::StrCat(
      R"sql(
WITH g AS MATERIALIZED (
  SELECT source, outcome, sequence >> )sql",
      kSequenceBucketBits, R"sql( AS bucket,
         date_bin(')sql",
      chunk_us, " microseconds', ingested_at, ", origin, R"sql(::timestamptz) AS bin,
         count(*) AS n, array_agg(ingested_at) AS at, array_agg(position) AS pos
    FROM events
   WHERE )sql",
      kWindowPredicate, blocks ? "\n     AND ctid >= $7::tid AND ctid < $8::tid" : "",
      R"sql(
   GROUP BY 1, 2, 3, 4),
saved AS (
  INSERT INTO replay_plan_events
         (plan_id, chunk, until_us, source, outcome, decision, ingested_at, positions)
  SELECT )sql",
      plan_id, ", ", chunk, " * ", kPlanChunkSplits, ", ", origin_us, " + (", chunk, " + 1) * ",
      chunk_us, ", source, outcome, ", decision_case, R"sql(, at, pos
    FROM g)
SELECT GROUPING(k) = 0, source, outcome, bucket, k * )sql",
      kPlanChunkSplits, R"sql(, sum(n)::bigint
  FROM (SELECT source, outcome, bucket, )sql",
      chunk, R"sql( AS k, n FROM g) c
 GROUP BY GROUPING SETS ((source, outcome, bucket), (k)))sql");
}

// Each slice runs without parallel workers (the slices already keep the
// cores busy and must not multiply the processes). The planner takes the
// sequence buckets for as many groups as sequence numbers and would plan a
// spilling or sorting aggregate; there are a few per bucket, so a hash
// aggregate in memory is right. JIT only adds compile time to this one scan.
constexpr const char* kAggregateSettings =
    "SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL work_mem = '64MB';"
    " SET LOCAL jit = off";
// A slice that saves a plan aggregates by hash too: the planner takes each
// group's arrays for large and would sort the slice by its groups first. It
// does not wait for its WAL to be flushed at commit: the plan's own commit
// (CreatePlan) flushes it.
constexpr const char* kSaveSettings =
    "SET LOCAL enable_sort = off; SET LOCAL synchronous_commit = off";

// Rows per block of a partition never analyzed, for the size of a saved
// window's chunks (a guess: a chunk far too large is split afterwards).
constexpr double kGuessedRowsPerBlock = 40;

// The size in blocks of each of these partitions ($1, names) that exists,
// and its rows per block when it was last analyzed (0: never).
constexpr const char* kPartitionBlocksSql = R"sql(
SELECT c.relname, pg_relation_size(c.oid) / current_setting('block_size')::bigint,
       CASE WHEN c.reltuples > 0 AND c.relpages > 0 THEN c.reltuples / c.relpages ELSE 0 END
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'events'::regclass AND c.relname = ANY($1::text[]))sql";

// One statement of a window's aggregate: a time range, and for a whole day
// a range of blocks [first, end) of its partition.
struct AggregateSlice {
  absl::Time from;
  absl::Time to;
  std::optional<std::pair<int64_t, int64_t>> blocks;
};

// Whole days split by `day_blocks` (the size of each day's partition), the
// partial days at the window's edges by time; `n` slices of each.
std::vector<AggregateSlice> PlanAggregateSlices(const ReplayWindow& window,
                                                const std::map<absl::Time, int64_t>& day_blocks,
                                                int n) {
  std::vector<AggregateSlice> out;
  auto by_time = [&](absl::Time from, absl::Time to) {
    if (to <= from) return;
    const int k = to - from >= absl::Minutes(10) ? n : 1;
    for (int i = 0; i < k; ++i) {
      out.push_back({from + (to - from) * i / k, i + 1 == k ? to : from + (to - from) * (i + 1) / k,
                     std::nullopt});
    }
  };
  absl::Time first_day = StartOfUtcDay(window.from);
  if (first_day < window.from) first_day += absl::Hours(24);
  const absl::Time end_of_days = StartOfUtcDay(window.to);
  if (first_day >= end_of_days) {
    by_time(window.from, window.to);
    return out;
  }
  by_time(window.from, first_day);
  for (absl::Time day = first_day; day < end_of_days; day += absl::Hours(24)) {
    auto it = day_blocks.find(day);
    const int64_t blocks = it == day_blocks.end() ? 0 : it->second;
    if (blocks < n * kMinBlocksPerSlice) {
      out.push_back({day, day + absl::Hours(24), std::nullopt});
      continue;
    }
    for (int i = 0; i < n; ++i) {
      out.push_back({day, day + absl::Hours(24),
                     std::pair(blocks * i / n, i + 1 == n ? kEndOfBlocks : blocks * (i + 1) / n)});
    }
  }
  by_time(end_of_days, window.to);
  return out;
}

// The share of day `day`'s events that `window` holds, taking the events
// as spread evenly between the day's first and last (the ends of its index).
double CoveredShare(pqxx::transaction_base& tx, const ReplayWindow& window, absl::Time day) {
  const absl::Time end = day + absl::Hours(24);
  if (window.from <= day && end <= window.to) return 1;
  auto r = tx.exec_params1(
      absl::StrCat("SELECT ", EpochUs("min(ingested_at)"), ", ", EpochUs("max(ingested_at)"),
                   " FROM events WHERE ingested_at >= $1::timestamptz"
                   " AND ingested_at < $2::timestamptz"),
      PgTime(day), PgTime(end));
  if (r[0].is_null()) return 0;
  const absl::Time first = *TimeFromEpochUs(r[0]);
  const absl::Time last = *TimeFromEpochUs(r[1]) + absl::Microseconds(1);
  const absl::Duration held = std::min(window.to, last) - std::max(window.from, first);
  return held <= absl::ZeroDuration() ? 0 : std::min(1.0, absl::FDivDuration(held, last - first));
}

std::string Tid(int64_t block) { return absl::StrCat("(", block, ",0)"); }

// A cursor before every event of the window.
ReplayCursor StartCursor(const ReplayWindow& window) { return {window.from, -1}; }

// The first `limit` events of `window` in replay order (ingested_at,
// position) that `condition` also selects, by the statement prepared as
// `name`. `condition` takes `params` as $7 on. Planned for its bounds each
// time: a generic plan would lock every partition of the log at each page.
template <typename... Params>
absl::StatusOr<std::vector<StoredEvent>> ReadWindowEvents(PgPool* pool, const char* name,
                                                          const ReplayWindow& window,
                                                          const char* condition, int limit,
                                                          const Params&... params) {
  std::vector<StoredEvent> out;
  absl::Status status = pool->Run(name, [&](PgPool::Lease& l) {
    l.Prepare(name,
              absl::StrCat("SELECT ", StoredEventColumns(), " FROM events WHERE ", kWindowPredicate,
                           " AND ", condition, " ORDER BY ingested_at, position LIMIT $",
                           kWindowParams + 1 + sizeof...(Params)));
    pqxx::read_transaction tx(l.conn());
    tx.exec(kCustomPlans);
    const WindowFilterParams f(window);
    auto rows = tx.exec_prepared(name, PgTime(window.from), PgTime(window.to), f.sources, f.keys,
                                 f.types, f.event_ids, params..., limit);
    out.clear();
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(StoredEventFromRow(r));
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace

const char* WindowPredicate() { return kWindowPredicate; }

absl::StatusOr<std::vector<StoredEvent>> PgReplayStore::ReadWindowPage(
    const ReplayWindow& window, const std::optional<ReplayCursor>& after, int limit) {
  ReplayCursor from = after.value_or(StartCursor(window));
  return ReadWindowEvents(pool_, kReadPageName, window,
                          "(ingested_at, position) > ($7::timestamptz, $8)", limit,
                          PgTime(from.ingested_at), from.position);
}

absl::StatusOr<std::vector<StoredEvent>> PgReplayStore::FirstEventsWithOutcome(
    const ReplayWindow& window, const std::vector<Outcome>& outcomes, int limit) {
  return ReadWindowEvents(pool_, kFirstWithOutcomeName, window, "outcome = ANY($7::text[])", limit,
                          OutcomeArray(outcomes));
}

absl::StatusOr<std::vector<WindowAggregate>> PgReplayStore::AggregateWindow(
    const ReplayWindow& window, const WindowPlanSave* save) {
  // Read-write only to save a plan; every slice reads the same snapshot.
  using SnapshotTransaction = pqxx::transaction<pqxx::repeatable_read>;
  std::string decision_case;  // a saved event's decision by its outcome, for a routed source
  if (save != nullptr) {
    decision_case = "CASE outcome";
    for (Outcome o : kOutcomes) {
      const std::string decision = save->decide(o, true);
      const std::optional<int> code = PlanDecisionCode(decision);
      if (!code) return absl::InvalidArgumentError(absl::StrCat("unknown decision ", decision));
      absl::StrAppend(&decision_case, " WHEN '", std::string(OutcomeName(o)), "' THEN ", *code);
    }
    absl::StrAppend(&decision_case, " END");
  }
  std::vector<WindowAggregate> out;
  std::map<int64_t, int64_t> chunks;  // a saved plan's chunk -> events
  std::mutex out_mu;
  size_t slice_count = 0;
  std::atomic<size_t> slices_done{0};
  absl::Status helpers_status;
  absl::Status status = pool_->Run(kAggregateName, [&](PgPool::Lease& l) {
    out.clear();
    chunks.clear();
    slices_done = 0;
    l.Prepare(kAggregateName, AggregateSql(false));
    l.Prepare(kAggregateBlocksName, AggregateSql(true));
    SnapshotTransaction tx(l.conn());
    const std::string import_snapshot =
        absl::StrCat("SET TRANSACTION SNAPSHOT '",
                     tx.esc(tx.exec1("SELECT pg_export_snapshot()")[0].as<std::string>()), "'");
    std::map<absl::Time, int64_t> day_blocks;
    std::map<std::string, absl::Time> days;
    for (absl::Time d = StartOfUtcDay(window.from); d < window.to; d += absl::Hours(24)) {
      days[DayPartitionOf("events", d)] = d;
    }
    std::vector<std::string> names;
    for (const auto& [name, day] : days) names.push_back(name);
    double expected = 0;  // about how many events the window holds, to size a plan's chunks
    for (const auto& r : tx.exec_params(kPartitionBlocksSql, PgTextArray(names))) {
      const absl::Time day = days.at(r[0].as<std::string>());
      const int64_t blocks = r[1].as<int64_t>();
      day_blocks[day] = blocks;
      if (save == nullptr) continue;
      const double per_block = r[2].as<double>() > 0 ? r[2].as<double>() : kGuessedRowsPerBlock;
      expected += static_cast<double>(blocks) * per_block * CoveredShare(tx, window, day);
    }
    const std::vector<AggregateSlice> slices =
        PlanAggregateSlices(window, day_blocks, kAggregateConnections);
    slice_count = slices.size();
    std::string save_sql[2];  // by time, by blocks
    if (save != nullptr) {
      // Chunks sized for kPlanChunkEvents on average.
      const int64_t span_us =
          std::max<int64_t>(1, absl::ToInt64Microseconds(window.to - window.from));
      const int64_t chunk_us =
          std::clamp<int64_t>(static_cast<int64_t>(static_cast<double>(span_us) * kPlanChunkEvents /
                                                   std::max(expected, 1.0)),
                              1, span_us);
      for (bool blocks : {false, true}) {
        save_sql[blocks] =
            SaveWindowSql(blocks, tx.quote(save->plan_id), tx.quote(PgTime(window.from)),
                          absl::ToUnixMicros(window.from), chunk_us, decision_case);
      }
    }
    std::atomic<size_t> next{0};
    const WindowFilterParams f(window);
    // Takes the next slice until none is left.
    auto drain = [&](pqxx::transaction_base& t) {
      t.exec(kAggregateSettings);
      t.exec(kCustomPlans);
      if (save != nullptr) t.exec(kSaveSettings);
      for (size_t i = next++; i < slices.size(); i = next++) {
        const AggregateSlice& s = slices[i];
        pqxx::result rows;
        if (save != nullptr && s.blocks) {
          rows = t.exec_params(save_sql[1], PgTime(s.from), PgTime(s.to), f.sources, f.keys,
                               f.types, f.event_ids, Tid(s.blocks->first), Tid(s.blocks->second));
        } else if (save != nullptr) {
          rows = t.exec_params(save_sql[0], PgTime(s.from), PgTime(s.to), f.sources, f.keys,
                               f.types, f.event_ids);
        } else if (s.blocks) {
          rows =
              t.exec_prepared(kAggregateBlocksName, PgTime(s.from), PgTime(s.to), f.sources, f.keys,
                              f.types, f.event_ids, Tid(s.blocks->first), Tid(s.blocks->second));
        } else {
          rows = t.exec_prepared(kAggregateName, PgTime(s.from), PgTime(s.to), f.sources, f.keys,
                                 f.types, f.event_ids);
        }
        // A saved slice's rows start with whether they are a chunk's size.
        const int first = save != nullptr ? 1 : 0;
        std::lock_guard<std::mutex> lock(out_mu);
        for (const auto& r : rows) {
          if (save != nullptr && r[0].as<bool>()) {
            chunks[r[4].as<int64_t>()] += r[5].as<int64_t>();
            continue;
          }
          WindowAggregate a;
          a.source = r[first].as<std::string>();
          a.outcome = ParseOutcome(r[first + 1].as<std::string>()).value_or(Outcome::kPending);
          if (!r[first + 2].is_null()) a.sequence_bucket = r[first + 2].as<int64_t>();
          a.count = r[save != nullptr ? 5 : 3].as<int64_t>();
          out.push_back(std::move(a));
        }
        ++slices_done;
      }
    };
    // The other connections see this transaction's snapshot; it stays open
    // until they are done (the futures also wait when drain throws).
    std::vector<std::future<absl::Status>> helpers;
    for (int k = 1; k < kAggregateConnections && k < static_cast<int>(slices.size()); ++k) {
      helpers.push_back(std::async(std::launch::async, [&] {
        return pool_->Run(kAggregateName, [&](PgPool::Lease& hl) {
          hl.Prepare(kAggregateName, AggregateSql(false));
          hl.Prepare(kAggregateBlocksName, AggregateSql(true));
          SnapshotTransaction htx(hl.conn());
          htx.exec(import_snapshot);
          drain(htx);
          htx.commit();
        });
      }));
    }
    drain(tx);
    for (auto& h : helpers) helpers_status.Update(h.get());
    tx.commit();
  });
  if (!status.ok()) return status;
  // A helper that failed before taking a slice (no free connection) did no
  // harm: the others took its share.
  if (slices_done < slice_count) {
    return helpers_status.ok() ? absl::InternalError("aggregate: a slice was not done")
                               : helpers_status;
  }
  if (save != nullptr) {
    std::set<std::string> sources;
    for (const WindowAggregate& a : out) sources.insert(a.source);
    if (absl::Status s = FinishWindowPlan(*save, {sources.begin(), sources.end()}, chunks);
        !s.ok()) {
      return s;
    }
  }
  return out;
}

absl::StatusOr<std::vector<KeyBlocker>> PgReplayStore::FailedBefore(const std::string& source,
                                                                    const std::string& key,
                                                                    int64_t before_position,
                                                                    int limit) {
  std::vector<KeyBlocker> out;
  absl::Status status = pool_->Run(kFailedBeforeName, [&](PgPool::Lease& l) {
    out.clear();
    l.Prepare(kFailedBeforeName, kFailedBeforeSql);
    pqxx::read_transaction tx(l.conn());
    for (const auto& r : tx.exec_prepared(kFailedBeforeName, source, key, before_position, limit)) {
      out.push_back({r[0].as<int64_t>(), *TimeFromEpochUs(r[1]), r[2].as<std::string>()});
    }
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace replayd
