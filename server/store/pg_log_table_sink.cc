// PgDeliveryStore's side of the PostgreSQL sink: an event written to a
// downstream log table, its attempt and its outcome in one transaction.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/store/day_partitions.h"
#include "server/store/delivery_table.h"
#include "server/store/pg_delivery_store.h"
#include "server/store/pg_replay_rows.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// DeliverToLogTable: the claim's release (which also checks it is still
// held), the attempt, and the event's outcome; the downstream insert is
// DeliveryTableInsertSql.
constexpr const char* kLogTableHeldName = "delivery_log_table_held";
constexpr const char* kLogTableHeldSql = R"sql(
DELETE FROM delivery_claims WHERE position = $1 AND owner = $2 RETURNING 1)sql";
// The attempt and the outcome go to the event's day partitions (see RecordSql in
// pg_record_writer.cc).
constexpr const char* kLogTableAttemptName = "delivery_log_table_attempt";
std::string LogTableAttemptSql(const std::string& partition) {
  return absl::StrCat("INSERT INTO ", partition, R"sql(
       (event_position, event_ingested_at, attempt, trigger, route, started_at, duration_ms,
        http_status, error, outcome, record_id, worker, sink, retry_max_attempts, retry_base_us,
        retry_cap_us)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING)sql");
}
constexpr const char* kLogTableOutcomeName = "delivery_log_table_outcome";
// The event is delivered: no longer a failed event a strict key waits behind
// (only a later attempt can follow a failure, as in RecordSql).
std::string LogTableOutcomeSql(const std::string& partition) {
  return absl::StrCat(
      "WITH replayed AS (DELETE FROM delivery_failed_keys"
      " WHERE position = $2 AND $4 > 1) UPDATE ",
      partition, R"sql(
   SET outcome = $3, attempts = GREATEST(attempts, $4), last_error = NULL,
       target_record_id = $5, target_version = $6, target_updated_at = $7,
       processed_at = now()
 WHERE ingested_at = $1 AND position = $2)sql");
}

}  // namespace

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
    result.version = rows[2].as<std::string>();
    result.updated_at = TimeFromEpochUs(rows[3]).value_or(absl::UnixEpoch());
    const std::string outcome(
        OutcomeName(result.created ? Outcome::kSucceeded : Outcome::kAlreadyProcessed));
    const double duration_ms = absl::ToDoubleMilliseconds(clock_->Now() - attempt.started_at);
    tx.exec_prepared(attempt_name, attempt.event_position, ingested_at, attempt.attempt,
                     attempt.trigger, attempt.route, PgTime(attempt.started_at), duration_ms,
                     outcome, result.record_id, owner, attempt.sink, attempt.retry.max_attempts,
                     MicrosOrNull(attempt.retry.base_delay), MicrosOrNull(attempt.retry.max_delay));
    tx.exec_prepared0(outcome_name, ingested_at, attempt.event_position, outcome, attempt.attempt,
                      result.record_id, result.version, PgTime(result.updated_at));
    tx.commit();
  });
  if (!status.ok()) return status;
  return result;
}

}  // namespace replayd
