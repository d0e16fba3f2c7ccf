// PgReplayStore's reads of a window of the log: pages in replay order, the
// first events with given outcomes, and the aggregate.
#include <atomic>
#include <future>
#include <map>
#include <mutex>

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

// Each slice runs without parallel workers (the slices already keep the
// cores busy and must not multiply the processes). The planner takes the
// sequence buckets for as many groups as sequence numbers and would plan a
// spilling or sorting aggregate; there are a few per bucket, so a hash
// aggregate in memory is right. JIT only adds compile time to this one scan.
constexpr const char* kAggregateSettings =
    "SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL work_mem = '64MB';"
    " SET LOCAL jit = off";

// The size in blocks of each of these partitions ($1, names) that exists.
constexpr const char* kPartitionBlocksSql = R"sql(
SELECT c.relname, pg_relation_size(c.oid) / current_setting('block_size')::bigint
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
    l.Prepare(name, absl::StrCat("SELECT ", StoredEventColumns(), " FROM events WHERE ",
                                 kWindowPredicate, " AND ", condition,
                                 " ORDER BY ingested_at, position LIMIT $",
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
    const ReplayWindow& window) {
  using SnapshotTransaction = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;
  std::vector<WindowAggregate> out;
  std::mutex out_mu;
  size_t slice_count = 0;
  std::atomic<size_t> slices_done{0};
  absl::Status helpers_status;
  absl::Status status = pool_->Run(kAggregateName, [&](PgPool::Lease& l) {
    out.clear();
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
    for (const auto& r : tx.exec_params(kPartitionBlocksSql, PgTextArray(names))) {
      day_blocks[days.at(r[0].as<std::string>())] = r[1].as<int64_t>();
    }
    const std::vector<AggregateSlice> slices =
        PlanAggregateSlices(window, day_blocks, kAggregateConnections);
    slice_count = slices.size();
    std::atomic<size_t> next{0};
    const WindowFilterParams f(window);
    // Takes the next slice until none is left.
    auto drain = [&](pqxx::transaction_base& t) {
      t.exec(kAggregateSettings);
      t.exec(kCustomPlans);
      for (size_t i = next++; i < slices.size(); i = next++) {
        const AggregateSlice& s = slices[i];
        pqxx::result rows =
            s.blocks ? t.exec_prepared(kAggregateBlocksName, PgTime(s.from), PgTime(s.to),
                                       f.sources, f.keys, f.types, f.event_ids,
                                       Tid(s.blocks->first), Tid(s.blocks->second))
                     : t.exec_prepared(kAggregateName, PgTime(s.from), PgTime(s.to), f.sources,
                                       f.keys, f.types, f.event_ids);
        std::lock_guard<std::mutex> lock(out_mu);
        for (const auto& r : rows) {
          WindowAggregate a;
          a.source = r[0].as<std::string>();
          a.outcome = ParseOutcome(r[1].as<std::string>()).value_or(Outcome::kPending);
          if (!r[2].is_null()) a.sequence_bucket = r[2].as<int64_t>();
          a.count = r[3].as<int64_t>();
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
        });
      }));
    }
    drain(tx);
    for (auto& h : helpers) helpers_status.Update(h.get());
  });
  if (!status.ok()) return status;
  // A helper that failed before taking a slice (no free connection) did no
  // harm: the others took its share.
  if (slices_done < slice_count) {
    return helpers_status.ok() ? absl::InternalError("aggregate: a slice was not done")
                               : helpers_status;
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
