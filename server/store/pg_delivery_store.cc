#include "server/store/pg_delivery_store.h"

#include <algorithm>
#include <future>
#include <tuple>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/store/delivery_table.h"
#include "server/store/pg_errors.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// Index-driven plans only: the stage and CTE row estimates are guesses, and a
// hash join would scan every partition of the log.
// JIT compilation costs more than these short statements ever run.
constexpr const char* kIndexJoins =
    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL jit = off";

// $1 routed sources, $2 scan window, $3 strict sources, $4 claim limit,
// $5 owner, $6 lease in microseconds.
// `cand` locks the first due, unclaimed events (SKIP LOCKED: rows
// another claimer is taking right now are left to it). `ok` keeps an event of
// rank r among its key's events in `cand` only when its key has exactly r
// earlier undelivered events (pending, retrying, or failed on a strict route)
// in the whole log: the earlier ones are then all in `cand`, so a key's events
// are claimed as one ordered chain, never around an event someone else holds,
// one not yet due, or a strict route's failed one. The probe stops at r + 1.
constexpr const char* kClaimDueName = "delivery_claim_due";
std::string ClaimDueSql() {
  return absl::StrCat(R"sql(
WITH cand AS (
  SELECT ingested_at, position, source, key FROM events
   WHERE outcome IN ('pending', 'retrying')
     AND next_attempt_at <= now()
     AND (claim_expires_at IS NULL OR claim_expires_at < now())
     AND source = ANY($1::text[])
   ORDER BY next_attempt_at, position
   LIMIT $2
   FOR UPDATE SKIP LOCKED),
ranked AS (
  SELECT c.*, row_number() OVER (PARTITION BY c.source, c.key ORDER BY c.position) - 1 AS rank
    FROM cand c),
ok AS (
  SELECT r.ingested_at, r.position FROM ranked r
   WHERE r.key IS NULL OR r.rank = (
     SELECT count(*) FROM (
       SELECT 1 FROM events p
        WHERE p.key IS NOT NULL
          AND p.outcome IN ('pending', 'retrying', 'failed')
          AND p.source = r.source AND p.key = r.key AND p.position < r.position
          AND (p.outcome <> 'failed' OR p.source = ANY($3::text[]))
        LIMIT r.rank + 1) earlier)
   ORDER BY r.position
   LIMIT $4)
UPDATE events e
   SET claimed_by = $5, claim_expires_at = now() + $6 * interval '1 microsecond'
  FROM ok
 WHERE e.ingested_at = ok.ingested_at AND e.position = ok.position
RETURNING )sql",
                      StoredEventColumns("e"));
}

constexpr const char* kTryClaimName = "delivery_try_claim";
std::string TryClaimSql() {
  return absl::StrCat(R"sql(
UPDATE events e
   SET claimed_by = $3, claim_expires_at = now() + $4 * interval '1 microsecond'
 WHERE e.ingested_at = $1 AND e.position = $2
   AND (e.claimed_by IS NULL OR e.claimed_by = $3 OR e.claim_expires_at < now())
RETURNING )sql",
                      StoredEventColumns("e"));
}

constexpr const char* kExistsName = "delivery_event_exists";
constexpr const char* kExistsSql = "SELECT 1 FROM events WHERE ingested_at = $1 AND position = $2";

constexpr const char* kReleaseName = "delivery_release";
constexpr const char* kReleaseSql = R"sql(
UPDATE events SET claimed_by = NULL, claim_expires_at = NULL
 WHERE ingested_at = $1 AND position = $2 AND claimed_by = $3)sql";

constexpr const char* kExtendName = "delivery_extend_claims";
// Rows being written right now (a record releasing them) are skipped, so the
// heartbeat never waits on a record group nor the other way round.
constexpr const char* kExtendSql = R"sql(
UPDATE events e SET claim_expires_at = now() + $2 * interval '1 microsecond'
  FROM (SELECT ingested_at, position FROM events
         WHERE outcome IN ('pending', 'retrying') AND claimed_by = $1
         FOR UPDATE SKIP LOCKED) mine
 WHERE e.ingested_at = mine.ingested_at AND e.position = mine.position)sql";

constexpr const char* kReleaseAllName = "delivery_release_all";
constexpr const char* kReleaseAllSql = R"sql(
UPDATE events SET claimed_by = NULL, claim_expires_at = NULL
 WHERE outcome IN ('pending', 'retrying') AND claimed_by = $1)sql";

// Per-session staging table the group of records is COPYed into.
constexpr const char* kCreateRecordStage = R"sql(
CREATE TEMP TABLE IF NOT EXISTS record_stage (
    ingested_at      timestamptz,
    position         bigint,
    attempt          integer,
    trigger          text,
    route            text,
    started_at       timestamptz,
    duration_ms      double precision,
    http_status      integer,
    error            text,
    outcome          text,
    record_id        text,
    last_error       text,
    target_record_id text,
    retry_delay_us   bigint,
    owner            text
) ON COMMIT DELETE ROWS)sql";

constexpr const char* kRecordUpdateName = "delivery_record_update";
constexpr const char* kRecordUpdateSql = R"sql(
UPDATE events e
   SET outcome = s.outcome,
       attempts = GREATEST(e.attempts, s.attempt),
       last_error = NULLIF(s.last_error, ''),
       target_record_id = COALESCE(NULLIF(s.target_record_id, ''), e.target_record_id),
       next_attempt_at = CASE WHEN s.outcome = 'retrying'
                              THEN now() + s.retry_delay_us * interval '1 microsecond'
                              WHEN s.outcome = 'pending' THEN e.next_attempt_at END,
       processed_at = CASE WHEN s.outcome IN ('succeeded', 'already_processed', 'failed')
                           THEN now() END,
       claimed_by = NULL,
       claim_expires_at = NULL
  FROM record_stage s
 WHERE e.ingested_at = s.ingested_at AND e.position = s.position AND e.claimed_by = s.owner
RETURNING e.position)sql";

constexpr const char* kRecordInsertName = "delivery_record_insert";
constexpr const char* kRecordInsertSql = R"sql(
INSERT INTO delivery_attempts (event_position, event_ingested_at, attempt, trigger, route,
                               started_at, duration_ms, http_status, error, outcome, record_id)
SELECT position, ingested_at, attempt, trigger, route, started_at, duration_ms, http_status,
       NULLIF(error, ''), outcome, NULLIF(record_id, '')
  FROM record_stage
ON CONFLICT DO NOTHING)sql";

// DeliverToLogTable: the claim check (locks the event row), the attempt, and
// the event's outcome; the downstream insert is DeliveryTableInsertSql.
constexpr const char* kLogTableHeldName = "delivery_log_table_held";
constexpr const char* kLogTableHeldSql = R"sql(
SELECT 1 FROM events
 WHERE ingested_at = $1 AND position = $2 AND claimed_by = $3
   FOR UPDATE)sql";
constexpr const char* kLogTableAttemptName = "delivery_log_table_attempt";
constexpr const char* kLogTableAttemptSql = R"sql(
INSERT INTO delivery_attempts (event_position, event_ingested_at, attempt, trigger, route,
                               started_at, duration_ms, http_status, error, outcome, record_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9)
ON CONFLICT DO NOTHING)sql";
constexpr const char* kLogTableOutcomeName = "delivery_log_table_outcome";
constexpr const char* kLogTableOutcomeSql = R"sql(
UPDATE events
   SET outcome = $3, attempts = GREATEST(attempts, $4), last_error = NULL,
       target_record_id = $5, processed_at = now(), claimed_by = NULL, claim_expires_at = NULL
 WHERE ingested_at = $1 AND position = $2)sql";

constexpr const char* kTraceEventName = "delivery_trace_event";
constexpr const char* kTraceAttemptsName = "delivery_trace_attempts";
std::string TraceAttemptsSql() {
  return absl::StrCat("SELECT event_position, ", EpochUs("event_ingested_at"),
                      ", attempt, trigger, route, ", EpochUs("started_at"),
                      ", duration_ms, http_status, error, outcome, record_id"
                      " FROM delivery_attempts WHERE event_ingested_at = $1"
                      " AND event_position = $2 ORDER BY attempt");
}

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

using RecordRow = std::tuple<std::string, int64_t, int, std::string, std::string, std::string,
                             double, const char*, std::string, std::string, std::string,
                             std::string, std::string, int64_t, std::string>;

}  // namespace

struct PgDeliveryStore::PendingRecord {
  AttemptRecord attempt;
  OutcomeUpdate update;
  std::string owner;
  RecordDone done;
};

PgDeliveryStore::PgDeliveryStore(PgPool* pool, int max_group)
    : pool_(pool), max_group_(max_group), writer_([this] { WriterLoop(); }) {}

PgDeliveryStore::~PgDeliveryStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

absl::StatusOr<std::vector<StoredEvent>> PgDeliveryStore::ClaimDue(const ClaimDueRequest& r) {
  std::vector<StoredEvent> claimed;
  if (r.sources.empty() || r.limit <= 0) return claimed;
  absl::Status status = pool_->Run(kClaimDueName, [&](PgPool::Lease& lease) {
    lease.Prepare(kClaimDueName, ClaimDueSql());
    pqxx::work tx(lease.conn());
    tx.exec0(kIndexJoins);
    auto rows = tx.exec_prepared(kClaimDueName, PgTextArray(r.sources), r.limit * 2,
                                 PgTextArray(r.strict_sources), r.limit, r.owner,
                                 Micros(r.lease));
    tx.commit();
    claimed.reserve(rows.size());
    for (const auto& row : rows) claimed.push_back(StoredEventFromRow(row));
  });
  if (!status.ok()) return status;
  std::sort(claimed.begin(), claimed.end(),
            [](const StoredEvent& a, const StoredEvent& b) { return a.position < b.position; });
  return claimed;
}

absl::StatusOr<std::optional<StoredEvent>> PgDeliveryStore::TryClaim(int64_t position,
                                                                    absl::Time ingested_at,
                                                                    const std::string& owner,
                                                                    absl::Duration lease_time) {
  std::optional<StoredEvent> claimed;
  bool exists = false;
  absl::Status status = pool_->Run(kTryClaimName, [&](PgPool::Lease& lease) {
    lease.Prepare(kTryClaimName, TryClaimSql());
    lease.Prepare(kExistsName, kExistsSql);
    pqxx::work tx(lease.conn());
    auto rows = tx.exec_prepared(kTryClaimName, PgTime(ingested_at), position, owner,
                                 Micros(lease_time));
    if (!rows.empty()) {
      claimed = StoredEventFromRow(rows[0]);
      exists = true;
    } else {
      exists = !tx.exec_prepared(kExistsName, PgTime(ingested_at), position).empty();
    }
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!exists) {
    return absl::NotFoundError(absl::StrCat("event at position ", position, " is not in the log"));
  }
  return claimed;
}

absl::Status PgDeliveryStore::Release(int64_t position, absl::Time ingested_at,
                                      const std::string& owner) {
  return pool_->Run(kReleaseName, [&](PgPool::Lease& lease) {
    lease.Prepare(kReleaseName, kReleaseSql);
    pqxx::work tx(lease.conn());
    tx.exec_prepared(kReleaseName, PgTime(ingested_at), position, owner);
    tx.commit();
  });
}

absl::Status PgDeliveryStore::ExtendClaims(const std::string& owner, absl::Duration lease_time) {
  return pool_->Run(kExtendName, [&](PgPool::Lease& lease) {
    lease.Prepare(kExtendName, kExtendSql);
    pqxx::work tx(lease.conn());
    tx.exec_prepared(kExtendName, owner, Micros(lease_time));
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
  std::promise<absl::StatusOr<bool>> recorded;
  auto result = recorded.get_future();
  RecordAttemptAsync(attempt, update, owner,
                     [&recorded](absl::StatusOr<bool> held) { recorded.set_value(std::move(held)); });
  return result.get();
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
  std::unordered_set<int64_t> updated;
  absl::Status status;
  // A deadlock or a dropped connection rolls the whole group back: write it
  // again a few times before its callers see the error.
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(25 << attempt));
    updated.clear();
    status = WriteGroupOnce(group, &updated);
    if (status.ok()) break;
    Logger("store")->warn("writing {} delivery records failed (try {} of 4): {}", group.size(),
                          attempt + 1, status);
  }
  for (auto& r : group) {
    if (!status.ok()) {
      r->done(status);
    } else {
      r->done(updated.count(r->attempt.event_position) > 0);
    }
  }
}

absl::Status PgDeliveryStore::WriteGroupOnce(
    const std::vector<std::shared_ptr<PendingRecord>>& group, std::unordered_set<int64_t>* out) {
  std::unordered_set<int64_t>& updated = *out;
  return pool_->Run(kRecordUpdateName, [&](PgPool::Lease& lease) {
    lease.Prepare(kRecordUpdateName, kRecordUpdateSql);
    lease.Prepare(kRecordInsertName, kRecordInsertSql);
    // Session set-up outside the transaction: a rollback must not undo it.
    if (!lease.HasFlag("record_stage")) {
      pqxx::nontransaction(lease.conn()).exec0(kCreateRecordStage);
      lease.SetFlag("record_stage");
    }
    pqxx::work tx(lease.conn());
    tx.exec0(kIndexJoins);
    {
      pqxx::stream_to copy(
          tx, "record_stage",
          std::vector<std::string>{"ingested_at", "position", "attempt", "trigger", "route",
                                   "started_at", "duration_ms", "http_status", "error", "outcome",
                                   "record_id", "last_error", "target_record_id",
                                   "retry_delay_us", "owner"});
      for (const auto& r : group) {
        const AttemptRecord& a = r->attempt;
        std::string status_text = a.http_status ? absl::StrCat(*a.http_status) : "";
        copy << RecordRow{PgTime(a.event_ingested_at),
                          a.event_position,
                          a.attempt,
                          a.trigger,
                          a.route,
                          PgTime(a.started_at),
                          a.duration_ms,
                          a.http_status ? status_text.c_str() : nullptr,
                          a.error,
                          std::string(OutcomeName(r->update.outcome)),
                          a.record_id,
                          r->update.last_error,
                          r->update.target_record_id,
                          Micros(r->update.retry_delay),
                          r->owner};
      }
      copy.complete();
    }
    auto rows = tx.exec_prepared(kRecordUpdateName);
    tx.exec_prepared(kRecordInsertName);
    tx.commit();
    for (const auto& row : rows) updated.insert(row[0].as<int64_t>());
  });
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
    absl::Status s = pool_->Run("delivery_log_table_create", [&](PgPool::Lease& lease) {
      pqxx::work tx(lease.conn());
      tx.exec0(DeliveryTableDdl(table));
      tx.commit();
    });
    // Two creators at once: the loser sees a unique violation on the catalog.
    if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
    std::lock_guard lock(tables_mu_);
    tables_ready_.insert(table);
  }
  LogTableDelivery result;
  const std::string insert_name = absl::StrCat("delivery_log_table_insert:", table);
  absl::Status status = pool_->Run(kLogTableOutcomeName, [&](PgPool::Lease& lease) {
    lease.Prepare(kLogTableHeldName, kLogTableHeldSql);
    lease.Prepare(insert_name, DeliveryTableInsertSql(table));
    lease.Prepare(kLogTableAttemptName, kLogTableAttemptSql);
    lease.Prepare(kLogTableOutcomeName, kLogTableOutcomeSql);
    result = LogTableDelivery{};
    const std::string ingested_at = PgTime(attempt.event_ingested_at);
    pqxx::work tx(lease.conn());
    if (tx.exec_prepared(kLogTableHeldName, ingested_at, attempt.event_position, owner).empty()) {
      return;  // claim lost: nothing written
    }
    auto rows = tx.exec_prepared1(insert_name, idempotency_key, payload_json);
    result.held = true;
    result.record_id = rows[0].as<std::string>();
    result.created = rows[1].as<bool>();
    const std::string outcome(
        OutcomeName(result.created ? Outcome::kSucceeded : Outcome::kAlreadyProcessed));
    const double duration_ms = absl::ToDoubleMilliseconds(absl::Now() - attempt.started_at);
    tx.exec_prepared(kLogTableAttemptName, attempt.event_position, ingested_at, attempt.attempt,
                     attempt.trigger, attempt.route, PgTime(attempt.started_at), duration_ms,
                     outcome, result.record_id);
    tx.exec_prepared0(kLogTableOutcomeName, ingested_at, attempt.event_position, outcome,
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
