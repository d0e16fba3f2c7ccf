#include "server/store/pg_replay_store.h"

#include <atomic>
#include <future>
#include <map>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/common/time_format.h"
#include "server/store/partitions.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// pg_advisory_xact_lock key serialising job creation (overlap check, request ids).
constexpr int64_t kCreateJobLockKey = 0x7265706c61793031;

constexpr const char* kActiveStates = "('pending', 'running', 'cancelling')";

// The window predicate; $1 from, $2 to, $3 sources (text[], empty = all).
constexpr const char* kWindowPredicate =
    "ingested_at >= $1::timestamptz AND ingested_at < $2::timestamptz"
    " AND (cardinality($3::text[]) = 0 OR source = ANY($3::text[]))";

// The dry run's few statements are planned for their actual window, range
// and outcomes: a generic plan cannot prune partitions or see that a
// sequence range is narrow, and picks a scan of the whole window.
constexpr const char* kCustomPlans = "SET LOCAL plan_cache_mode = force_custom_plan";

constexpr const char* kReadPageName = "replay_read_page";
constexpr const char* kFirstWithOutcomeName = "replay_first_with_outcome";
constexpr const char* kAggregateName = "replay_aggregate_window";
constexpr const char* kAggregateBlocksName = "replay_aggregate_blocks";
constexpr const char* kGapsName = "replay_sequence_gaps";
constexpr const char* kCheckpointName = "replay_checkpoint";

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

// `blocks`: the slice is also limited to ctid in [$4, $5).
std::string AggregateSql(bool blocks) {
  return absl::StrCat(R"sql(
SELECT source, outcome, sequence >> )sql", kSequenceBucketBits, R"sql(, count(*)
  FROM events
 WHERE )sql", kWindowPredicate,
                      blocks ? "\n   AND ctid >= $4::tid AND ctid < $5::tid" : "", R"sql(
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

constexpr const char* kGapsSql = R"sql(
SELECT r.source, s.prev + 1, s.sequence - 1, sum(s.sequence - s.prev - 1) OVER ()
  FROM unnest($3::text[], $4::bigint[], $5::bigint[]) AS r(source, lo, hi)
 CROSS JOIN LATERAL (
    SELECT sequence, lag(sequence) OVER (ORDER BY sequence) AS prev
      FROM events
     WHERE ingested_at >= $1::timestamptz AND ingested_at < $2::timestamptz
       AND source = r.source AND sequence BETWEEN r.lo AND r.hi) s
 WHERE s.sequence > s.prev + 1
 ORDER BY 1, 2
 LIMIT $6)sql";

constexpr const char* kCheckpointSql = R"sql(
UPDATE replays
   SET total = $3, processed = $4, delivered = $5, skipped = $6, failed = $7,
       cursor_ingested_at = $8::timestamptz, cursor_position = $9, current_rate = $10,
       lease_until = now() + make_interval(secs => $11), updated_at = now()
 WHERE id = $1 AND owner = $2
RETURNING state)sql";

std::string JobColumns() {
  return absl::StrJoin(
      {std::string("id"), std::string("coalesce(request_id, '')"), std::string("state"),
       EpochUs("window_from"), EpochUs("window_to"),
       std::string("array_to_string(sources, E'\\n')"),
       std::string("array_to_string(outcomes, E'\\n')"), std::string("include_succeeded"),
       std::string("verify_downstream"), std::string("rate"), std::string("burst"),
       std::string("allow_high_rate"), std::string("reason"), std::string("created_by"),
       EpochUs("created_at"), EpochUs("started_at"), EpochUs("finished_at"),
       std::string("total"), std::string("processed"), std::string("delivered"),
       std::string("skipped"), std::string("failed"), std::string("current_rate"),
       EpochUs("cursor_ingested_at"), std::string("cursor_position"), std::string("last_error"),
       std::string("coalesce(owner, '')"), EpochUs("lease_until"), std::string("cancel_reason")},
      ", ");
}

std::vector<std::string> SplitLines(const std::string& text) {
  if (text.empty()) return {};
  return absl::StrSplit(text, '\n');
}

ReplayJob JobFromRow(const pqxx::row& r) {
  ReplayJob j;
  j.id = r[0].as<std::string>();
  j.request_id = r[1].as<std::string>();
  j.state = ParseReplayState(r[2].as<std::string>()).value_or(ReplayState::kFailed);
  j.spec.window.from = *TimeFromEpochUs(r[3]);
  j.spec.window.to = *TimeFromEpochUs(r[4]);
  j.spec.window.sources = SplitLines(r[5].as<std::string>());
  for (const auto& name : SplitLines(r[6].as<std::string>())) {
    if (auto o = ParseOutcome(name)) j.spec.outcomes.push_back(*o);
  }
  j.spec.include_succeeded = r[7].as<bool>();
  j.spec.verify_downstream = r[8].as<bool>();
  j.spec.rate = r[9].as<double>();
  j.spec.burst = r[10].as<int>();
  j.spec.allow_high_rate = r[11].as<bool>();
  j.spec.reason = r[12].as<std::string>();
  j.created_by = r[13].as<std::string>();
  j.created_at = *TimeFromEpochUs(r[14]);
  j.started_at = TimeFromEpochUs(r[15]);
  j.finished_at = TimeFromEpochUs(r[16]);
  j.counters.total = r[17].as<int64_t>();
  j.counters.processed = r[18].as<int64_t>();
  j.counters.delivered = r[19].as<int64_t>();
  j.counters.skipped = r[20].as<int64_t>();
  j.counters.failed = r[21].as<int64_t>();
  j.current_rate = r[22].as<double>();
  if (!r[23].is_null() && !r[24].is_null()) {
    j.cursor = ReplayCursor{*TimeFromEpochUs(r[23]), r[24].as<int64_t>()};
  }
  j.last_error = r[25].as<std::string>();
  j.owner = r[26].as<std::string>();
  j.lease_until = TimeFromEpochUs(r[27]);
  j.cancel_reason = r[28].as<std::string>();
  return j;
}

std::string OutcomeArray(const std::vector<Outcome>& outcomes) {
  std::vector<std::string> names;
  for (Outcome o : outcomes) names.emplace_back(OutcomeName(o));
  return PgTextArray(names);
}

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

void InsertAudit(pqxx::work& tx, const AuditEntry& a) {
  tx.exec_params(
      "INSERT INTO replay_audit (actor, action, replay_id, reason, detail)"
      " VALUES ($1, $2, NULLIF($3, ''), $4, $5::jsonb)",
      a.actor, a.action, a.replay_id, a.reason, a.detail_json.empty() ? "{}" : a.detail_json);
}

std::string SelectJob(const std::string& where) {
  return absl::StrCat("SELECT ", JobColumns(), " FROM replays WHERE ", where);
}

}  // namespace

std::string_view ReplayStateName(ReplayState state) {
  switch (state) {
    case ReplayState::kPending: return "pending";
    case ReplayState::kRunning: return "running";
    case ReplayState::kCancelling: return "cancelling";
    case ReplayState::kCancelled: return "cancelled";
    case ReplayState::kCompleted: return "completed";
    case ReplayState::kFailed: return "failed";
  }
  return "failed";
}

std::optional<ReplayState> ParseReplayState(std::string_view name) {
  for (ReplayState s : {ReplayState::kPending, ReplayState::kRunning, ReplayState::kCancelling,
                        ReplayState::kCancelled, ReplayState::kCompleted, ReplayState::kFailed}) {
    if (ReplayStateName(s) == name) return s;
  }
  return std::nullopt;
}

bool IsTerminal(ReplayState state) {
  return state == ReplayState::kCancelled || state == ReplayState::kCompleted ||
         state == ReplayState::kFailed;
}

absl::StatusOr<ReplayJob> PgReplayStore::CreateJob(const ReplayJob& job, const AuditEntry& audit,
                                                   bool* existed) {
  std::optional<ReplayJob> out;
  std::string conflict;
  *existed = false;
  absl::Status status = pool_->Run("replay_create_job", [&](PgPool::Lease& lease) {
    out.reset();
    conflict.clear();
    pqxx::work tx(lease.conn());
    tx.exec(absl::StrCat("SELECT pg_advisory_xact_lock(", kCreateJobLockKey, ")"));
    if (!job.request_id.empty()) {
      auto rows = tx.exec_params(SelectJob("request_id = $1"), job.request_id);
      if (!rows.empty()) {
        out = JobFromRow(rows[0]);
        *existed = true;
        tx.commit();
        return;
      }
    }
    const ReplaySpec& s = job.spec;
    std::string sources = PgTextArray(s.window.sources);
    auto overlap = tx.exec_params(
        absl::StrCat("SELECT id, window_from, window_to, array_to_string(sources, ',')"
                     "  FROM replays WHERE state IN ",
                     kActiveStates,
                     "   AND window_from < $2::timestamptz AND window_to > $1::timestamptz"
                     "   AND (cardinality(sources) = 0 OR cardinality($3::text[]) = 0"
                     "        OR sources && $3::text[])"
                     " ORDER BY created_at LIMIT 1"),
        PgTime(s.window.from), PgTime(s.window.to), sources);
    if (!overlap.empty()) {
      const auto& r = overlap[0];
      std::string their_sources = r[3].as<std::string>();
      conflict = absl::StrCat("the window overlaps replay ", r[0].as<std::string>(), " [",
                              r[1].as<std::string>(), ", ", r[2].as<std::string>(), ") on ",
                              their_sources.empty() ? "every source" : "sources " + their_sources,
                              ", which is still active: wait for it or cancel it");
      return;
    }
    auto rows = tx.exec_params(
        absl::StrCat(
            "INSERT INTO replays (id, request_id, state, window_from, window_to, sources,"
            " outcomes, include_succeeded, verify_downstream, rate, burst, allow_high_rate,"
            " reason, created_by, total)"
            " VALUES ($1, NULLIF($2, ''), 'pending', $3::timestamptz, $4::timestamptz,"
            " $5::text[], $6::text[], $7, $8, $9, $10, $11, $12, $13, $14) RETURNING ",
            JobColumns()),
        job.id, job.request_id, PgTime(s.window.from), PgTime(s.window.to), sources,
        OutcomeArray(s.outcomes), s.include_succeeded, s.verify_downstream, s.rate, s.burst,
        s.allow_high_rate, s.reason, job.created_by, job.counters.total);
    out = JobFromRow(rows[0]);
    InsertAudit(tx, audit);
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!conflict.empty()) return absl::FailedPreconditionError(conflict);
  return *out;
}

absl::StatusOr<ReplayJob> PgReplayStore::GetJob(const std::string& id) {
  std::optional<ReplayJob> out;
  absl::Status status = pool_->Run("replay_get_job", [&](PgPool::Lease& lease) {
    pqxx::read_transaction tx(lease.conn());
    auto rows = tx.exec_params(SelectJob("id = $1"), id);
    if (!rows.empty()) out = JobFromRow(rows[0]);
  });
  if (!status.ok()) return status;
  if (!out) return absl::NotFoundError(absl::StrCat("no replay with id \"", id, "\""));
  return *out;
}

absl::StatusOr<std::vector<ReplayJob>> PgReplayStore::ListJobs(
    const std::vector<ReplayState>& states, int limit) {
  std::vector<std::string> names;
  for (ReplayState s : states) names.emplace_back(ReplayStateName(s));
  std::vector<ReplayJob> out;
  absl::Status status = pool_->Run("replay_list_jobs", [&](PgPool::Lease& lease) {
    pqxx::read_transaction tx(lease.conn());
    auto rows = tx.exec_params(
        SelectJob("(cardinality($1::text[]) = 0 OR state = ANY($1::text[]))"
                  " ORDER BY created_at DESC, id LIMIT $2"),
        PgTextArray(names), limit <= 0 ? 100 : limit);
    for (const auto& r : rows) out.push_back(JobFromRow(r));
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<ReplayJob> PgReplayStore::RequestCancel(const std::string& id,
                                                       const AuditEntry& audit) {
  std::optional<ReplayJob> out;
  std::string ended;
  absl::Status status = pool_->Run("replay_request_cancel", [&](PgPool::Lease& lease) {
    out.reset();
    ended.clear();
    pqxx::work tx(lease.conn());
    auto rows = tx.exec_params(
        "SELECT state, owner IS NOT NULL AND lease_until > now() FROM replays"
        " WHERE id = $1 FOR UPDATE",
        id);
    if (rows.empty()) return;
    std::string state = rows[0][0].as<std::string>();
    bool held = rows[0][1].as<bool>();
    auto parsed = ParseReplayState(state);
    if (parsed && IsTerminal(*parsed)) {
      ended = state;
      return;
    }
    if (state == "pending" && !held) {
      tx.exec_params(
          "UPDATE replays SET state = 'cancelled', finished_at = now(), updated_at = now(),"
          " cancel_reason = $2, owner = NULL, lease_until = NULL WHERE id = $1",
          id, audit.reason);
    } else if (state != "cancelling") {
      tx.exec_params(
          "UPDATE replays SET state = 'cancelling', cancel_reason = $2, updated_at = now()"
          " WHERE id = $1",
          id, audit.reason);
    }
    InsertAudit(tx, audit);
    out = JobFromRow(tx.exec_params(SelectJob("id = $1"), id)[0]);
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!ended.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("replay ", id, " already ended (", ended, "): nothing to cancel"));
  }
  if (!out) return absl::NotFoundError(absl::StrCat("no replay with id \"", id, "\""));
  return *out;
}

absl::StatusOr<std::optional<ReplayJob>> PgReplayStore::ClaimJob(
    const std::string& owner, absl::Duration lease, const std::vector<std::string>& exclude) {
  std::optional<ReplayJob> out;
  absl::Status status = pool_->Run("replay_claim_job", [&](PgPool::Lease& l) {
    out.reset();
    pqxx::work tx(l.conn());
    auto rows = tx.exec_params(
        absl::StrCat("SELECT id, state, coalesce(owner, '') FROM replays WHERE state IN ",
                     kActiveStates,
                     "   AND (owner IS NULL OR owner = $1 OR lease_until < now())"
                     "   AND NOT (id = ANY($2::text[]))"
                     " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED"),
        owner, PgTextArray(exclude));
    if (rows.empty()) return;
    std::string id = rows[0][0].as<std::string>();
    std::string state = rows[0][1].as<std::string>();
    std::string previous = rows[0][2].as<std::string>();
    auto job = tx.exec_params(
        absl::StrCat("UPDATE replays SET owner = $2,"
                     " lease_until = now() + make_interval(secs => $3),"
                     " state = CASE WHEN state = 'pending' THEN 'running' ELSE state END,"
                     " started_at = coalesce(started_at, now()), updated_at = now()"
                     " WHERE id = $1 RETURNING ",
                     JobColumns()),
        id, owner, absl::ToDoubleSeconds(lease));
    out = JobFromRow(job[0]);
    if (state != "pending") {
      AuditEntry a{owner, previous.empty() || previous == owner ? "resume" : "takeover", id, "",
                   previous.empty() ? "{}"
                                    : absl::StrCat("{\"previous_owner\":\"", previous, "\"}"),
                   absl::Now()};
      InsertAudit(tx, a);
    }
    tx.commit();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<ReplayState> PgReplayStore::Checkpoint(const std::string& id,
                                                      const std::string& owner,
                                                      const ReplayCounters& c,
                                                      const std::optional<ReplayCursor>& cursor,
                                                      double current_rate, absl::Duration lease) {
  std::optional<ReplayState> state;
  absl::Status status = pool_->Run(kCheckpointName, [&](PgPool::Lease& l) {
    l.Prepare(kCheckpointName, kCheckpointSql);
    pqxx::work tx(l.conn());
    std::optional<std::string> cursor_time;
    std::optional<int64_t> cursor_position;
    if (cursor) {
      cursor_time = PgTime(cursor->ingested_at);
      cursor_position = cursor->position;
    }
    auto rows = tx.exec_prepared(kCheckpointName, id, owner, c.total, c.processed, c.delivered,
                                 c.skipped, c.failed, cursor_time, cursor_position, current_rate,
                                 absl::ToDoubleSeconds(lease));
    tx.commit();
    state.reset();
    if (!rows.empty()) state = ParseReplayState(rows[0][0].as<std::string>());
  });
  if (!status.ok()) return status;
  if (!state) {
    return absl::FailedPreconditionError(
        absl::StrCat("replay ", id, ": lease lost to another daemon"));
  }
  return *state;
}

absl::Status PgReplayStore::Finish(const std::string& id, const std::string& owner,
                                   ReplayState state, const ReplayCounters& c,
                                   const std::optional<ReplayCursor>& cursor,
                                   const std::string& last_error, const AuditEntry& audit) {
  bool lost = false;
  absl::Status status = pool_->Run("replay_finish", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    std::optional<std::string> cursor_time;
    std::optional<int64_t> cursor_position;
    if (cursor) {
      cursor_time = PgTime(cursor->ingested_at);
      cursor_position = cursor->position;
    }
    auto rows = tx.exec_params(
        "UPDATE replays SET state = $3, total = $4, processed = $5, delivered = $6,"
        " skipped = $7, failed = $8, cursor_ingested_at = $9::timestamptz,"
        " cursor_position = $10, last_error = $11, current_rate = 0, finished_at = now(),"
        " updated_at = now(), owner = NULL, lease_until = NULL"
        " WHERE id = $1 AND owner = $2 RETURNING id",
        id, owner, std::string(ReplayStateName(state)), c.total, c.processed, c.delivered,
        c.skipped, c.failed, cursor_time, cursor_position, last_error);
    lost = rows.empty();
    if (lost) return;
    InsertAudit(tx, audit);
    tx.commit();
  });
  if (!status.ok()) return status;
  if (lost) {
    return absl::FailedPreconditionError(
        absl::StrCat("replay ", id, ": lease lost to another daemon"));
  }
  return absl::OkStatus();
}

absl::Status PgReplayStore::ReleaseLease(const std::string& id, const std::string& owner) {
  return pool_->Run("replay_release_lease", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    tx.exec_params(
        "UPDATE replays SET owner = NULL, lease_until = NULL, current_rate = 0,"
        " updated_at = now() WHERE id = $1 AND owner = $2",
        id, owner);
    tx.commit();
  });
}

absl::Status PgReplayStore::Audit(const AuditEntry& entry) {
  return pool_->Run("replay_audit", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    InsertAudit(tx, entry);
    tx.commit();
  });
}

absl::StatusOr<std::vector<AuditEntry>> PgReplayStore::ListAudit(const std::string& replay_id) {
  std::vector<AuditEntry> out;
  absl::Status status = pool_->Run("replay_list_audit", [&](PgPool::Lease& l) {
    pqxx::read_transaction tx(l.conn());
    auto rows = tx.exec_params(
        absl::StrCat("SELECT actor, action, coalesce(replay_id, ''), reason, detail::text, ",
                     EpochUs("at"), " FROM replay_audit WHERE replay_id = $1 ORDER BY id"),
        replay_id);
    for (const auto& r : rows) {
      AuditEntry a{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                   r[3].as<std::string>(), r[4].as<std::string>(), *TimeFromEpochUs(r[5])};
      out.push_back(std::move(a));
    }
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<StoredEvent>> PgReplayStore::ReadWindowPage(
    const ReplayWindow& window, const std::optional<ReplayCursor>& after, int limit) {
  ReplayCursor from = after.value_or(StartCursor(window));
  std::vector<StoredEvent> out;
  absl::Status status = pool_->Run(kReadPageName, [&](PgPool::Lease& l) {
    l.Prepare(kReadPageName,
              absl::StrCat("SELECT ", StoredEventColumns(), " FROM events WHERE ",
                           kWindowPredicate,
                           " AND (ingested_at, position) > ($4::timestamptz, $5)"
                           " ORDER BY ingested_at, position LIMIT $6"));
    pqxx::read_transaction tx(l.conn());
    // Planned for its bounds each time: a generic plan would lock every
    // partition of the log at each page.
    tx.exec(kCustomPlans);
    auto rows = tx.exec_prepared(kReadPageName, PgTime(window.from), PgTime(window.to),
                                 PgTextArray(window.sources), PgTime(from.ingested_at),
                                 from.position, limit);
    out.clear();
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(StoredEventFromRow(r));
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<StoredEvent>> PgReplayStore::FirstEventsWithOutcome(
    const ReplayWindow& window, const std::vector<Outcome>& outcomes, int limit) {
  std::vector<StoredEvent> out;
  absl::Status status = pool_->Run(kFirstWithOutcomeName, [&](PgPool::Lease& l) {
    l.Prepare(kFirstWithOutcomeName,
              absl::StrCat("SELECT ", StoredEventColumns(), " FROM events WHERE ",
                           kWindowPredicate,
                           " AND outcome = ANY($4::text[]) ORDER BY ingested_at, position"
                           " LIMIT $5"));
    pqxx::read_transaction tx(l.conn());
    tx.exec(kCustomPlans);
    auto rows = tx.exec_prepared(kFirstWithOutcomeName, PgTime(window.from), PgTime(window.to),
                                 PgTextArray(window.sources), OutcomeArray(outcomes), limit);
    out.clear();
    for (const auto& r : rows) out.push_back(StoredEventFromRow(r));
  });
  if (!status.ok()) return status;
  return out;
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
    const std::string import_snapshot = absl::StrCat(
        "SET TRANSACTION SNAPSHOT '",
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
    // Takes the next slice until none is left.
    auto drain = [&](pqxx::transaction_base& t) {
      t.exec(kAggregateSettings);
      t.exec(kCustomPlans);
      for (size_t i = next++; i < slices.size(); i = next++) {
        const AggregateSlice& s = slices[i];
        pqxx::result rows =
            s.blocks ? t.exec_prepared(kAggregateBlocksName, PgTime(s.from), PgTime(s.to),
                                       PgTextArray(window.sources), Tid(s.blocks->first),
                                       Tid(s.blocks->second))
                     : t.exec_prepared(kAggregateName, PgTime(s.from), PgTime(s.to),
                                       PgTextArray(window.sources));
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

absl::StatusOr<std::vector<SequenceGap>> PgReplayStore::SequenceGaps(
    const ReplayWindow& window, const std::vector<SequenceGap>& ranges, int limit,
    int64_t* missing) {
  std::vector<SequenceGap> out;
  *missing = 0;
  if (ranges.empty()) return out;
  std::vector<std::string> sources;
  std::vector<int64_t> los, his;
  for (const SequenceGap& r : ranges) {
    sources.push_back(r.source);
    los.push_back(r.first);
    his.push_back(r.last);
  }
  absl::Status status = pool_->Run(kGapsName, [&](PgPool::Lease& l) {
    l.Prepare(kGapsName, kGapsSql);
    pqxx::read_transaction tx(l.conn());
    tx.exec(kCustomPlans);
    auto rows =
        tx.exec_prepared(kGapsName, PgTime(window.from), PgTime(window.to), PgTextArray(sources),
                         PgBigintArray(los), PgBigintArray(his), limit);
    out.clear();
    *missing = 0;
    for (const auto& r : rows) {
      out.push_back({r[0].as<std::string>(), r[1].as<int64_t>(), r[2].as<int64_t>()});
      *missing = r[3].as<int64_t>();
    }
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace replayd
