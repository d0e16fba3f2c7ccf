#include "server/store/pg_delivery_store.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/await.h"
#include "server/common/logging.h"
#include "server/common/time_format.h"
#include "server/store/delivery_table.h"
#include "server/store/partitions.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// Index-driven plans only: the CTE row estimates are guesses, and a hash join
// would scan every partition of the log.
// JIT compilation costs more than these short statements ever run.
constexpr const char* kIndexJoins =
    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL jit = off";

// Index paths only, joins as the planner likes: see RecordSql.
constexpr const char* kIndexScans = "SET LOCAL enable_seqscan = off";

// The dispatcher's scan: $1 routed sources, $2 after this position, $3 limit.
// Reads events_undelivered (position) from the cursor on, in index order:
// with stale statistics the planner would rather collect every undelivered
// event through a bitmap and sort them (25 ms instead of 1.5 ms for 1,500 of
// 50,000 in EXPLAIN ANALYZE).
constexpr const char* kIndexOrder =
    "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off;"
    " SET LOCAL enable_sort = off; SET LOCAL jit = off";
constexpr const char* kScanName = "delivery_scan_undelivered";
std::string ScanSql() {
  return absl::StrCat("SELECT position, ", EpochUs("ingested_at"), R"sql(, source, key,
       GREATEST(0, extract(epoch FROM next_attempt_at - now()) * 1e6)::bigint
  FROM events
 WHERE outcome IN ('pending', 'retrying') AND position > $2 AND source = ANY($1::text[])
 ORDER BY position
 LIMIT $3)sql");
}

// Claiming takes two or three statements in one transaction.
//
// 1. kClaimSql, $1 positions, $2 their ingested_at in epoch microseconds,
// $3 owner, $4 lease in microseconds: inserts the claims in position order,
// so two claimers never deadlock (one racing for the same events waits on the
// first row it shares with the other and then finds it taken). Takes over
// expired claims and renews the owner's own. Returns the positions taken.
//
// 2. ClaimVerifySql re-reads what was taken, as of now: every competing claim
// or record on these events has committed by then (the insert waited for it
// or found its claim row gone). One statement per day partition, named
// directly (DayPartitionOf): $1 positions taken, $2 their ingested_at in
// epoch microseconds. Each row comes with whether it is still undelivered and
// how long until it is due.
//
// 3. Only for undelivered keyed events of strict sources, BlockersSql: the
// earliest failed event of each one's key before it, from
// delivery_failed_keys (migration 0008). $1 positions, $2 sources, $3 keys.
//
// Claim() gives back all but the due ones in the same transaction.
constexpr const char* kClaimName = "delivery_claim";
constexpr const char* kClaimSql = R"sql(
INSERT INTO delivery_claims AS c (position, ingested_at, owner, expires_at)
SELECT t.position, 'epoch'::timestamptz + t.us * interval '1 microsecond', $3,
       now() + $4 * interval '1 microsecond'
  FROM unnest($1::bigint[], $2::bigint[]) AS t(position, us)
 ORDER BY t.position
ON CONFLICT (position) DO UPDATE
   SET owner = excluded.owner, expires_at = excluded.expires_at
 WHERE c.owner = excluded.owner OR c.expires_at < now()
RETURNING c.position)sql";

constexpr const char* kClaimVerifyName = "delivery_claim_verify";
std::string ClaimVerifySql(const std::string& partition) {
  return absl::StrCat("SELECT ", StoredEventColumns("e"), R"sql(,
       e.outcome IN ('pending', 'retrying') AS undelivered,
       GREATEST(0, extract(epoch FROM e.next_attempt_at - now()) * 1e6)::bigint AS due_in_us
  FROM unnest($1::bigint[], $2::bigint[]) AS t(position, us)
  JOIN )sql", partition, R"sql( e
    ON e.ingested_at = 'epoch'::timestamptz + t.us * interval '1 microsecond'
   AND e.position = t.position)sql");
}

// $1 partition names: those that exist (retention may have dropped one).
constexpr const char* kExistingPartitionsName = "delivery_existing_partitions";
constexpr const char* kExistingPartitionsSql =
    "SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL";

constexpr const char* kBlockersName = "delivery_claim_blockers";
std::string BlockersSql() {
  return absl::StrCat("SELECT t.position, f.position, ", EpochUs("f.ingested_at"), R"sql(
  FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(position, source, key)
  JOIN LATERAL (
    SELECT p.position, p.ingested_at FROM delivery_failed_keys p
     WHERE p.source = t.source AND p.key = t.key AND p.position < t.position
     ORDER BY p.position
     LIMIT 1) f ON true)sql");
}

// $1 positions, $2 their ingested_at in epoch microseconds: those still
// failed. The others leave delivery_failed_keys in the same statement, so a
// blocker whose outcome changed outside a record (by hand in SQL) stops
// holding back its key.
constexpr const char* kStillFailedName = "delivery_still_failed";
constexpr const char* kStillFailedSql = R"sql(
WITH failed AS (
  SELECT e.position
    FROM unnest($1::bigint[], $2::bigint[]) AS t(position, us)
    JOIN events e ON e.ingested_at = 'epoch'::timestamptz + t.us * interval '1 microsecond'
                 AND e.position = t.position
   WHERE e.outcome = 'failed'
), healed AS (
  DELETE FROM delivery_failed_keys
   WHERE position = ANY($1::bigint[]) AND position NOT IN (SELECT position FROM failed)
)
SELECT position FROM failed)sql";

// $1 owner, $2 positions: also Release().
constexpr const char* kGiveBackName = "delivery_give_back";
constexpr const char* kGiveBackSql =
    "DELETE FROM delivery_claims WHERE owner = $1 AND position = ANY($2::bigint[])";

// $1 ingested_at, $2 position, $3 owner, $4 lease in microseconds. Takes the
// claim when it is free, expired, or already `owner`'s.
constexpr const char* kTryClaimName = "delivery_try_claim";
constexpr const char* kTryClaimSql = R"sql(
INSERT INTO delivery_claims AS c (position, ingested_at, owner, expires_at)
VALUES ($2, $1, $3, now() + $4 * interval '1 microsecond')
ON CONFLICT (position) DO UPDATE
   SET owner = excluded.owner, expires_at = excluded.expires_at
 WHERE c.owner = excluded.owner OR c.expires_at < now()
RETURNING 1)sql";

// Whether an event is in its day's partition: $1 ingested_at, $2 position.
constexpr const char* kExistsName = "delivery_event_exists";
std::string ExistsSql(const std::string& partition) {
  return absl::StrCat("SELECT 1 FROM ", partition, " WHERE ingested_at = $1 AND position = $2");
}

// One event from its day's partition: $1 ingested_at, $2 position.
constexpr const char* kEventName = "delivery_event";
std::string EventSql(const std::string& partition) {
  return absl::StrCat("SELECT ", StoredEventColumns("e"), " FROM ", partition,
                      " e WHERE e.ingested_at = $1 AND e.position = $2");
}

constexpr const char* kExtendName = "delivery_extend_claims";
// Claims being released right now (a record deleting them) are skipped, so
// the heartbeat never waits on a record group nor the other way round.
constexpr const char* kExtendSql = R"sql(
UPDATE delivery_claims c SET expires_at = now() + $2 * interval '1 microsecond'
  FROM (SELECT position FROM delivery_claims WHERE owner = $1
           FOR UPDATE SKIP LOCKED) mine
 WHERE c.position = mine.position)sql";

constexpr const char* kSweepName = "delivery_sweep_claims";
constexpr const char* kSweepSql = R"sql(
DELETE FROM delivery_claims
 WHERE position IN (SELECT position FROM delivery_claims
                     WHERE expires_at < now() - interval '1 hour'
                       FOR UPDATE SKIP LOCKED))sql";

constexpr const char* kReleaseAllName = "delivery_release_all";
constexpr const char* kReleaseAllSql = "DELETE FROM delivery_claims WHERE owner = $1";

// A group of records in one statement, in one round trip (besides the
// transaction's own), under kIndexScans only. The plan Postgres caches for it
// is made while delivery_claims is small, and a hash join over a seq scan of
// it would then read every dead claim row the table gathers until the next
// vacuum (in the deliver bench it was the cached plan, scanning up to 50,000
// dead rows per group). With seq scans off, the plan (EXPLAIN ANALYZE, custom
// and generic) walks `s` in array order through nested loops on the primary
// keys of delivery_claims and events, which keeps the lock order below; a
// deadlock from another plan would be retried by WriteGroup. Not under
// kIndexJoins: Postgres used 40-50 us more per event in the deliver bench
// with hash joins off too (bench/README.md).
//
// $1..$15 are the group's columns as arrays, in position order (rows are
// locked in that global order: two daemons' groups cannot deadlock). Times
// are epoch microseconds; empty text, and http_status 0, stand for NULL.
// The statement writes one day's partitions of events and delivery_attempts,
// named directly (DayPartitionOf); a group that spans two days is two
// statements in one transaction.
//
// `released` deletes the claims the group's owners still hold; only those
// records update their events: an event whose claim expired and was taken
// over is left to its new owner (its attempt is still inserted), even when the
// new owner's record is in the same group. Returns the released (position,
// owner) pairs. A keyed event that fails joins delivery_failed_keys (what
// strict routes park behind, migration 0008) and leaves it with any other
// outcome: a replay that delivers it, or leaves it to be retried. Only a
// later attempt can follow a failure, so first attempts, most of live
// delivery, do not look.
//
// The attempts go in with a plain INSERT: Postgres's speculative insertion
// for ON CONFLICT cost about 8% of the statement (bench/README.md). Two
// records of one attempt number can meet only when a claim expired while its
// owner was still delivering (both read the same attempt count); that
// group's unique violation makes WriteGroup write it again with
// kRecordKeepFirstName, which keeps the attempt row already there.
constexpr const char* kRecordName = "delivery_record";
constexpr const char* kRecordKeepFirstName = "delivery_record_keep_first";
std::string RecordSql(bool keep_first, absl::Time day) {
  return absl::StrCat(R"sql(
WITH s AS (
  SELECT t.position, 'epoch'::timestamptz + t.ingested_us * interval '1 microsecond' AS ingested_at,
         t.attempt, t.trigger, t.route,
         'epoch'::timestamptz + t.started_us * interval '1 microsecond' AS started_at,
         t.duration_us / 1000.0 AS duration_ms, NULLIF(t.http_status, 0) AS http_status,
         NULLIF(t.error, '') AS error, t.outcome, NULLIF(t.record_id, '') AS record_id,
         NULLIF(t.last_error, '') AS last_error, NULLIF(t.target_record_id, '') AS target_record_id,
         t.retry_delay_us, t.owner
    FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::text[], $6::bigint[],
                $7::bigint[], $8::int[], $9::text[], $10::text[], $11::text[], $12::text[],
                $13::text[], $14::bigint[], $15::text[])
      AS t(position, ingested_us, attempt, trigger, route, started_us, duration_us, http_status,
           error, outcome, record_id, last_error, target_record_id, retry_delay_us, owner)
), released AS (
  DELETE FROM delivery_claims c USING s
   WHERE c.position = s.position AND c.owner = s.owner
  RETURNING c.position, c.owner
), updated AS (
  UPDATE )sql", DayPartitionOf("events", day), R"sql( e
     SET outcome = s.outcome,
         attempts = GREATEST(e.attempts, s.attempt),
         last_error = s.last_error,
         target_record_id = COALESCE(s.target_record_id, e.target_record_id),
         next_attempt_at = CASE WHEN s.outcome = 'retrying'
                                THEN now() + s.retry_delay_us * interval '1 microsecond'
                                WHEN s.outcome = 'pending' THEN e.next_attempt_at END,
         processed_at = CASE WHEN s.outcome IN ('succeeded', 'already_processed', 'failed')
                             THEN now() END
    FROM s JOIN released r ON r.position = s.position AND r.owner = s.owner
   WHERE e.ingested_at = s.ingested_at AND e.position = s.position
  RETURNING e.position, e.ingested_at, e.source, e.key, s.outcome, s.attempt
), failed_keys AS (
  INSERT INTO delivery_failed_keys (position, ingested_at, source, key)
  SELECT position, ingested_at, source, key FROM updated
   WHERE outcome = 'failed' AND key IS NOT NULL
  ON CONFLICT (position) DO NOTHING
), replayed_keys AS (
  DELETE FROM delivery_failed_keys f USING updated u
   WHERE f.position = u.position AND u.outcome <> 'failed' AND u.key IS NOT NULL
     AND u.attempt > 1
), inserted AS (
  INSERT INTO )sql", DayPartitionOf("delivery_attempts", day), R"sql(
              (event_position, event_ingested_at, attempt, trigger, route, started_at,
               duration_ms, http_status, error, outcome, record_id, worker)
  SELECT position, ingested_at, attempt, trigger, route, started_at, duration_ms, http_status,
         error, outcome, record_id, owner
    FROM s
)sql", keep_first ? "  ON CONFLICT DO NOTHING\n" : "", R"sql()
SELECT position, owner FROM released)sql");
}

// DeliverToLogTable: the claim's release (which also checks it is still
// held), the attempt, and the event's outcome; the downstream insert is
// DeliveryTableInsertSql.
constexpr const char* kLogTableHeldName = "delivery_log_table_held";
constexpr const char* kLogTableHeldSql = R"sql(
DELETE FROM delivery_claims WHERE position = $1 AND owner = $2 RETURNING 1)sql";
// The attempt and the outcome go to the event's day partitions (see RecordSql).
constexpr const char* kLogTableAttemptName = "delivery_log_table_attempt";
std::string LogTableAttemptSql(const std::string& partition) {
  return absl::StrCat("INSERT INTO ", partition, R"sql(
       (event_position, event_ingested_at, attempt, trigger, route, started_at, duration_ms,
        http_status, error, outcome, record_id, worker)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9, $10)
ON CONFLICT DO NOTHING)sql");
}
constexpr const char* kLogTableOutcomeName = "delivery_log_table_outcome";
// The event is delivered: no longer a failed event a strict key waits behind
// (only a later attempt can follow a failure, as in RecordSql).
std::string LogTableOutcomeSql(const std::string& partition) {
  return absl::StrCat("WITH replayed AS (DELETE FROM delivery_failed_keys"
                      " WHERE position = $2 AND $4 > 1) UPDATE ", partition, R"sql(
   SET outcome = $3, attempts = GREATEST(attempts, $4), last_error = NULL,
       target_record_id = $5, processed_at = now()
 WHERE ingested_at = $1 AND position = $2)sql");
}

constexpr const char* kTraceEventName = "delivery_trace_event";
constexpr const char* kTraceAttemptsName = "delivery_trace_attempts";
std::string TraceAttemptsSql() {
  return absl::StrCat("SELECT event_position, ", EpochUs("event_ingested_at"),
                      ", attempt, trigger, route, ", EpochUs("started_at"),
                      ", duration_ms, http_status, error, outcome, record_id, worker"
                      " FROM delivery_attempts WHERE event_ingested_at = $1"
                      " AND event_position = $2 ORDER BY attempt");
}

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

// RecordSql's parameters: the group's columns as array literals.
struct RecordArrays {
  std::vector<int64_t> position, ingested_us, attempt, started_us, duration_us, http_status,
      retry_delay_us;
  std::vector<std::string> trigger, route, error, outcome, record_id, last_error,
      target_record_id, owner;

  void Add(const AttemptRecord& a, const OutcomeUpdate& u, const std::string& by) {
    position.push_back(a.event_position);
    ingested_us.push_back(absl::ToUnixMicros(a.event_ingested_at));
    attempt.push_back(a.attempt);
    trigger.push_back(a.trigger);
    route.push_back(a.route);
    started_us.push_back(absl::ToUnixMicros(a.started_at));
    duration_us.push_back(std::llround(a.duration_ms * 1000));
    http_status.push_back(a.http_status.value_or(0));
    // The downstream's words (an answer's body, a record id header) may be
    // cut mid-character or hold NUL bytes: one such text must not fail
    // every record of the group.
    error.push_back(PgText(a.error));
    outcome.push_back(std::string(OutcomeName(u.outcome)));
    record_id.push_back(PgText(a.record_id));
    last_error.push_back(PgText(u.last_error));
    target_record_id.push_back(PgText(u.target_record_id));
    retry_delay_us.push_back(Micros(u.retry_delay));
    owner.push_back(by);
  }
};

}  // namespace

struct PgDeliveryStore::PendingRecord {
  AttemptRecord attempt;
  OutcomeUpdate update;
  std::string owner;
  RecordDone done;
};

PgDeliveryStore::PgDeliveryStore(PgPool* pool, int max_group)
    : pool_(pool), max_group_(max_group) {
  writer_ = std::thread([this] { WriterLoop(); });
}

PgDeliveryStore::~PgDeliveryStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

absl::StatusOr<std::vector<UndeliveredEvent>> PgDeliveryStore::ScanUndelivered(
    const std::vector<std::string>& sources, int64_t after_position, int limit) {
  std::vector<UndeliveredEvent> found;
  if (sources.empty() || limit <= 0) return found;
  absl::Status status = pool_->Run(kScanName, [&](PgPool::Lease& lease) {
    lease.Prepare(kScanName, ScanSql());
    found.clear();
    pqxx::read_transaction tx(lease.conn());
    tx.exec0(kIndexOrder);
    for (const auto& row : tx.exec_prepared(kScanName, PgTextArray(sources), after_position, limit)) {
      UndeliveredEvent e;
      e.ref.position = row[0].as<int64_t>();
      e.ref.ingested_at = TimeFromEpochUs(row[1]).value_or(absl::UnixEpoch());
      e.source = row[2].as<std::string>();
      e.key = row[3].is_null() ? "" : row[3].as<std::string>();
      e.due_in = row[4].is_null() ? absl::ZeroDuration() : absl::Microseconds(row[4].as<int64_t>());
      found.push_back(std::move(e));
    }
  });
  if (!status.ok()) return status;
  return found;
}

namespace {

// The name a statement on one day partition is prepared under.
std::string OnPartition(const char* name, const std::string& partition) {
  return absl::StrCat(name, ":", partition);
}

// Runs `fn` in one transaction and commits what it did. `fn` reaches day
// partitions by name, and a day may have been dropped by retention since its
// events were read: `fn` runs first told that none of `partitions` is gone;
// if a statement then meets a dropped one (undefined_table), the transaction
// rolls back and `fn` runs again, told which are gone, so it leaves them out
// instead of failing. `fn` sets its results anew on each run. ABORTED when a
// day is dropped during the second run too.
using DayWork = std::function<void(PgPool::Lease& lease, pqxx::work& tx,
                                   const std::unordered_set<std::string>& gone)>;
absl::Status RunOnDays(PgPool* pool, const char* what, const std::vector<std::string>& partitions,
                       const DayWork& fn) {
  std::unordered_set<std::string> gone;
  for (int run = 0; run < 2; ++run) {
    bool dropped = false;
    absl::Status status = pool->Run(what, [&](PgPool::Lease& lease) {
      pqxx::work tx(lease.conn());
      if (run > 0) {
        lease.Prepare(kExistingPartitionsName, kExistingPartitionsSql);
        gone.insert(partitions.begin(), partitions.end());
        for (const auto& row : tx.exec_prepared(kExistingPartitionsName, PgTextArray(partitions))) {
          gone.erase(row[0].as<std::string>());
        }
      }
      try {
        fn(lease, tx, gone);
      } catch (const pqxx::undefined_table&) {
        dropped = true;
        return;  // rolled back
      }
      tx.commit();
    });
    if (!status.ok() || !dropped) return status;
  }
  return absl::AbortedError(absl::StrCat(what, ": a day partition was dropped while in use"));
}

std::pair<std::string, std::string> RefArrays(const std::vector<EventRef>& events) {
  std::vector<int64_t> positions, us;
  for (const EventRef& e : events) {
    positions.push_back(e.position);
    us.push_back(absl::ToUnixMicros(e.ingested_at));
  }
  return {PgBigintArray(positions), PgBigintArray(us)};
}

}  // namespace

absl::StatusOr<std::vector<ClaimResult>> PgDeliveryStore::Claim(
    const std::vector<EventRef>& events, const std::string& owner, absl::Duration lease_time,
    const std::vector<std::string>& strict_sources) {
  std::vector<ClaimResult> results;
  if (events.empty()) return results;
  const auto [positions, ingested_us] = RefArrays(events);
  std::unordered_map<int64_t, size_t> index;
  std::vector<std::string> partition_of(events.size());  // each event's day partition
  std::set<std::string> partitions;
  for (size_t i = 0; i < events.size(); ++i) {
    index.emplace(events[i].position, i);
    partition_of[i] = DayPartitionOf("events", events[i].ingested_at);
    partitions.insert(partition_of[i]);
  }
  const std::unordered_set<std::string> strict(strict_sources.begin(), strict_sources.end());
  auto claim = [&](PgPool::Lease& lease, pqxx::work& tx,
                   const std::unordered_set<std::string>& gone) {
    lease.Prepare(kClaimName, kClaimSql);
    lease.Prepare(kBlockersName, BlockersSql());
    for (const std::string& partition : partitions) {
      lease.Prepare(OnPartition(kClaimVerifyName, partition), ClaimVerifySql(partition));
    }
    results.assign(events.size(), ClaimResult{});
    tx.exec0(kIndexJoins);
    // Taken positions by partition, with their ingested_at.
    std::map<std::string, std::pair<std::vector<int64_t>, std::vector<int64_t>>> taken;
    for (const auto& row : tx.exec_prepared(kClaimName, positions, ingested_us, owner,
                                            Micros(lease_time))) {
      const size_t i = index.at(row[0].as<int64_t>());
      auto& [p, us] = taken[partition_of[i]];
      p.push_back(events[i].position);
      us.push_back(absl::ToUnixMicros(events[i].ingested_at));
    }
    if (taken.empty()) return;  // all busy
    std::unordered_set<int64_t> seen;
    std::vector<int64_t> strict_keyed;  // undelivered keyed events of strict sources
    for (const auto& [partition, refs] : taken) {
      if (gone.count(partition) > 0) continue;
      for (const auto& row :
           tx.exec_prepared(OnPartition(kClaimVerifyName, partition), PgBigintArray(refs.first),
                            PgBigintArray(refs.second))) {
        const int n = kStoredEventColumnCount;
        ClaimResult& r = results[index.at(row[0].as<int64_t>())];
        r.event = StoredEventFromRow(row);
        seen.insert(r.event.position);
        r.due_in = row[n + 1].is_null() ? absl::ZeroDuration()
                                        : absl::Microseconds(row[n + 1].as<int64_t>());
        if (!row[n].as<bool>()) {
          r.state = ClaimResult::State::kSettled;
        } else if (r.due_in > absl::ZeroDuration()) {
          r.state = ClaimResult::State::kNotDue;
        } else {
          r.state = ClaimResult::State::kClaimed;
        }
        if (r.state != ClaimResult::State::kSettled && !r.event.event.key.empty() &&
            strict.count(r.event.event.source) > 0) {
          strict_keyed.push_back(r.event.position);
        }
      }
    }
    if (!strict_keyed.empty()) {
      // Keyed events of strict sources: an earlier failed event of the key
      // parks them, due or not.
      std::vector<std::string> sources, keys;
      for (int64_t position : strict_keyed) {
        const StoredEvent& e = results[index.at(position)].event;
        sources.push_back(e.event.source);
        keys.push_back(e.event.key);
      }
      for (const auto& row : tx.exec_prepared(kBlockersName, PgBigintArray(strict_keyed),
                                              PgTextArray(sources), PgTextArray(keys))) {
        ClaimResult& r = results[index.at(row[0].as<int64_t>())];
        r.state = ClaimResult::State::kBehindFailure;
        r.blocker = {row[1].as<int64_t>(), TimeFromEpochUs(row[2]).value_or(absl::UnixEpoch())};
      }
    }
    std::vector<int64_t> given_back;
    for (const auto& [partition, refs] : taken) {
      for (int64_t position : refs.first) {
        ClaimResult& r = results[index.at(position)];
        // Taken but gone from the log (its partition dropped by retention).
        if (seen.count(position) == 0) r.state = ClaimResult::State::kSettled;
        if (r.state != ClaimResult::State::kClaimed) given_back.push_back(position);
      }
    }
    if (!given_back.empty()) {
      lease.Prepare(kGiveBackName, kGiveBackSql);
      tx.exec_prepared(kGiveBackName, owner, PgBigintArray(given_back));
    }
  };
  absl::Status status = RunOnDays(pool_, kClaimName, {partitions.begin(), partitions.end()}, claim);
  if (!status.ok()) return status;
  return results;
}

absl::StatusOr<std::vector<int64_t>> PgDeliveryStore::StillFailed(
    const std::vector<EventRef>& events) {
  std::vector<int64_t> failed;
  if (events.empty()) return failed;
  const auto [positions, ingested_us] = RefArrays(events);
  absl::Status status = pool_->Run(kStillFailedName, [&](PgPool::Lease& lease) {
    lease.Prepare(kStillFailedName, kStillFailedSql);
    failed.clear();
    pqxx::work tx(lease.conn());
    tx.exec0(kIndexJoins);
    for (const auto& row : tx.exec_prepared(kStillFailedName, positions, ingested_us)) {
      failed.push_back(row[0].as<int64_t>());
    }
    tx.commit();
  });
  if (!status.ok()) return status;
  return failed;
}

absl::StatusOr<std::optional<StoredEvent>> PgDeliveryStore::TryClaim(int64_t position,
                                                                    absl::Time ingested_at,
                                                                    const std::string& owner,
                                                                    absl::Duration lease_time) {
  std::optional<StoredEvent> claimed;
  bool exists = false;
  const std::string partition = DayPartitionOf("events", ingested_at);
  const std::string exists_name = OnPartition(kExistsName, partition);
  const std::string event_name = OnPartition(kEventName, partition);
  absl::Status status = pool_->Run(kTryClaimName, [&](PgPool::Lease& lease) {
    lease.Prepare(kTryClaimName, kTryClaimSql);
    lease.Prepare(exists_name, ExistsSql(partition));
    lease.Prepare(event_name, EventSql(partition));
    const std::string at = PgTime(ingested_at);
    pqxx::work tx(lease.conn());
    try {
      exists = !tx.exec_prepared(exists_name, at, position).empty();
    } catch (const pqxx::undefined_table&) {
      return;  // its day's partition is gone (retention), or never was
    }
    if (!exists) return;
    if (tx.exec_prepared(kTryClaimName, at, position, owner, Micros(lease_time)).empty()) return;
    // Read again under the claim: a record committed by the previous owner
    // while this claim waited for it is in the row now.
    claimed = StoredEventFromRow(tx.exec_prepared1(event_name, at, position));
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!exists) {
    return absl::NotFoundError(absl::StrCat("event at position ", position, " is not in the log"));
  }
  return claimed;
}

absl::Status PgDeliveryStore::Release(const std::vector<int64_t>& positions,
                                      const std::string& owner) {
  if (positions.empty()) return absl::OkStatus();
  return pool_->Run(kGiveBackName, [&](PgPool::Lease& lease) {
    lease.Prepare(kGiveBackName, kGiveBackSql);
    pqxx::work tx(lease.conn());
    tx.exec_prepared(kGiveBackName, owner, PgBigintArray(positions));
    tx.commit();
  });
}

absl::Status PgDeliveryStore::ExtendClaims(const std::string& owner, absl::Duration lease_time) {
  return pool_->Run(kExtendName, [&](PgPool::Lease& lease) {
    lease.Prepare(kExtendName, kExtendSql);
    lease.Prepare(kSweepName, kSweepSql);
    pqxx::work tx(lease.conn());
    tx.exec_prepared(kExtendName, owner, Micros(lease_time));
    tx.exec_prepared(kSweepName);
    tx.commit();
  });
}

absl::Status PgDeliveryStore::ReleaseAll(const std::string& owner) {
  return pool_->Run(kReleaseAllName, [&](PgPool::Lease& lease) {
    lease.Prepare(kReleaseAllName, kReleaseAllSql);
    pqxx::work tx(lease.conn());
    tx.exec_prepared(kReleaseAllName, owner);
    tx.commit();
  });
}

absl::StatusOr<bool> PgDeliveryStore::RecordAttempt(const AttemptRecord& attempt,
                                                    const OutcomeUpdate& update,
                                                    const std::string& owner) {
  return Await<absl::StatusOr<bool>>(
      [&](RecordDone done) { RecordAttemptAsync(attempt, update, owner, std::move(done)); });
}

void PgDeliveryStore::RecordAttemptAsync(const AttemptRecord& attempt,
                                         const OutcomeUpdate& update, const std::string& owner,
                                         RecordDone done) {
  auto record = std::make_shared<PendingRecord>();
  record->attempt = attempt;
  record->update = update;
  record->owner = owner;
  record->done = std::move(done);
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(record));
      record = nullptr;
    }
  }
  if (record != nullptr) {
    record->done(absl::UnavailableError("delivery store is stopping"));
    return;
  }
  cv_.notify_one();
}

void PgDeliveryStore::WriterLoop() {
  std::vector<std::shared_ptr<PendingRecord>> group;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && static_cast<int>(group.size()) < max_group_) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // Rows locked in one global order: two daemons' groups cannot deadlock.
    std::sort(group.begin(), group.end(), [](const auto& a, const auto& b) {
      return a->attempt.event_position < b->attempt.event_position;
    });
    WriteGroup(group);
    group.clear();
  }
}

void PgDeliveryStore::WriteGroup(std::vector<std::shared_ptr<PendingRecord>>& group) {
  absl::StatusOr<std::set<std::pair<int64_t, std::string>>> held;
  // A deadlock or a dropped connection rolls the whole group back: write it
  // again a few times before its callers see the error.
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(25 << attempt));
    held = WriteGroupOnce(group, /*keep_first=*/false);
    // An attempt recorded twice (see RecordSql): keep the first, write the rest.
    if (absl::IsAlreadyExists(held.status())) held = WriteGroupOnce(group, /*keep_first=*/true);
    if (held.ok()) break;
    Logger("store")->warn("writing {} delivery records failed (try {} of 4): {}", group.size(),
                          attempt + 1, held.status());
  }
  for (auto& r : group) {
    if (!held.ok()) {
      r->done(held.status());
    } else {
      r->done(held->count({r->attempt.event_position, r->owner}) > 0);
    }
  }
}

absl::StatusOr<std::set<std::pair<int64_t, std::string>>> PgDeliveryStore::WriteGroupOnce(
    const std::vector<std::shared_ptr<PendingRecord>>& group, bool keep_first) {
  // Runs of consecutive records of one UTC day, one statement each, in the
  // group's position order: rows are locked in position order across the
  // whole group, as a claim locks them (an event's day and its position need
  // not agree: ingest batches take their time from the clock, positions
  // from a sequence).
  std::vector<std::pair<absl::Time, RecordArrays>> runs;
  std::vector<std::string> partitions;
  for (const auto& r : group) {
    const absl::Time day = StartOfUtcDay(r->attempt.event_ingested_at);
    if (runs.empty() || runs.back().first != day) {
      runs.emplace_back(day, RecordArrays{});
      partitions.push_back(DayPartitionOf("events", day));
      partitions.push_back(DayPartitionOf("delivery_attempts", day));
    }
    runs.back().second.Add(r->attempt, r->update, r->owner);
  }
  const char* base = keep_first ? kRecordKeepFirstName : kRecordName;
  std::set<std::pair<int64_t, std::string>> held;
  // A day retention dropped while its events were being delivered is left
  // out: its records are not held, and the rest of the group is written.
  auto write = [&](PgPool::Lease& lease, pqxx::work& tx,
                   const std::unordered_set<std::string>& gone) {
    held.clear();
    tx.exec0(kIndexScans);
    for (const auto& [day, c] : runs) {
      const std::string events = DayPartitionOf("events", day);
      if (gone.count(events) > 0 || gone.count(DayPartitionOf("delivery_attempts", day)) > 0) {
        continue;
      }
      const std::string name = OnPartition(base, events);
      lease.Prepare(name, RecordSql(keep_first, day));
      const pqxx::result released = tx.exec_prepared(
          name, PgBigintArray(c.position), PgBigintArray(c.ingested_us), PgBigintArray(c.attempt),
          PgTextArray(c.trigger), PgTextArray(c.route), PgBigintArray(c.started_us),
          PgBigintArray(c.duration_us), PgBigintArray(c.http_status), PgTextArray(c.error),
          PgTextArray(c.outcome), PgTextArray(c.record_id), PgTextArray(c.last_error),
          PgTextArray(c.target_record_id), PgBigintArray(c.retry_delay_us), PgTextArray(c.owner));
      for (const auto& row : released) {
        held.emplace(row[0].as<int64_t>(), row[1].as<std::string>());
      }
    }
  };
  absl::Status status = RunOnDays(pool_, base, partitions, write);
  if (!status.ok()) return status;
  return held;
}

absl::StatusOr<LogTableDelivery> PgDeliveryStore::DeliverToLogTable(
    const std::string& table, const std::string& idempotency_key, const std::string& payload_json,
    const AttemptRecord& attempt, const std::string& owner) {
  bool ready;
  {
    std::lock_guard lock(tables_mu_);
    ready = tables_ready_.count(table) > 0;
  }
  if (!ready) {
    if (absl::Status s = CreateDeliveryTable(pool_, table); !s.ok()) return s;
    std::lock_guard lock(tables_mu_);
    tables_ready_.insert(table);
  }
  LogTableDelivery result;
  const std::string insert_name = absl::StrCat("delivery_log_table_insert:", table);
  const std::string events_partition = DayPartitionOf("events", attempt.event_ingested_at);
  const std::string attempts_partition =
      DayPartitionOf("delivery_attempts", attempt.event_ingested_at);
  const std::string attempt_name = OnPartition(kLogTableAttemptName, attempts_partition);
  const std::string outcome_name = OnPartition(kLogTableOutcomeName, events_partition);
  absl::Status status = pool_->Run(kLogTableOutcomeName, [&](PgPool::Lease& lease) {
    lease.Prepare(kLogTableHeldName, kLogTableHeldSql);
    lease.Prepare(insert_name, DeliveryTableInsertSql(table));
    lease.Prepare(attempt_name, LogTableAttemptSql(attempts_partition));
    lease.Prepare(outcome_name, LogTableOutcomeSql(events_partition));
    result = LogTableDelivery{};
    const std::string ingested_at = PgTime(attempt.event_ingested_at);
    pqxx::work tx(lease.conn());
    if (tx.exec_prepared(kLogTableHeldName, attempt.event_position, owner).empty()) {
      return;  // claim lost: nothing written
    }
    auto rows = tx.exec_prepared1(insert_name, idempotency_key, payload_json);
    result.held = true;
    result.record_id = rows[0].as<std::string>();
    result.created = rows[1].as<bool>();
    const std::string outcome(
        OutcomeName(result.created ? Outcome::kSucceeded : Outcome::kAlreadyProcessed));
    const double duration_ms = absl::ToDoubleMilliseconds(absl::Now() - attempt.started_at);
    tx.exec_prepared(attempt_name, attempt.event_position, ingested_at, attempt.attempt,
                     attempt.trigger, attempt.route, PgTime(attempt.started_at), duration_ms,
                     outcome, result.record_id, owner);
    tx.exec_prepared0(outcome_name, ingested_at, attempt.event_position, outcome,
                      attempt.attempt, result.record_id);
    tx.commit();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<EventTrace> PgDeliveryStore::GetTrace(const std::string& source,
                                                     const std::string& event_id) {
  std::optional<EventTrace> trace;
  absl::Status status = pool_->Run(kTraceEventName, [&](PgPool::Lease& lease) {
    lease.Prepare(kTraceEventName,
                  absl::StrCat("SELECT ", StoredEventColumns("e"),
                               " FROM event_keys k JOIN events e ON e.ingested_at = k.ingested_at"
                               " AND e.source = k.source AND e.event_id = k.event_id"
                               " WHERE k.source = $1 AND k.event_id = $2"));
    lease.Prepare(kTraceAttemptsName, TraceAttemptsSql());
    pqxx::read_transaction tx(lease.conn());
    auto rows = tx.exec_prepared(kTraceEventName, source, event_id);
    if (rows.empty()) return;
    trace.emplace();
    trace->event = StoredEventFromRow(rows[0]);
    auto attempts = tx.exec_prepared(kTraceAttemptsName, PgTime(trace->event.ingested_at),
                                     trace->event.position);
    for (const auto& row : attempts) {
      AttemptRecord a;
      a.event_position = row[0].as<int64_t>();
      a.event_ingested_at = TimeFromEpochUs(row[1]).value_or(absl::UnixEpoch());
      a.attempt = row[2].as<int>();
      a.trigger = row[3].as<std::string>();
      a.route = row[4].as<std::string>();
      a.started_at = TimeFromEpochUs(row[5]).value_or(absl::UnixEpoch());
      a.duration_ms = row[6].as<double>();
      if (!row[7].is_null()) a.http_status = row[7].as<int>();
      a.error = row[8].is_null() ? "" : row[8].as<std::string>();
      a.outcome = ParseOutcome(row[9].as<std::string>()).value_or(Outcome::kPending);
      a.record_id = row[10].is_null() ? "" : row[10].as<std::string>();
      a.worker = row[11].as<std::string>();
      trace->attempts.push_back(std::move(a));
    }
  });
  if (!status.ok()) return status;
  if (!trace) {
    return absl::NotFoundError(absl::StrCat("event ", source, "/", event_id, " is not in the log"));
  }
  return *std::move(trace);
}

}  // namespace replayd
