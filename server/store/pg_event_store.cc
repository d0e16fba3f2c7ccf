#include "server/store/pg_event_store.h"

#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/store/pg_errors.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// Per-session staging table that the batch is COPYed into.
constexpr const char* kCreateStage = R"sql(
CREATE TEMP TABLE IF NOT EXISTS ingest_stage (
    ord         integer,
    source      text,
    event_id    text,
    sequence    bigint,
    key         text,
    type        text,
    occurred_at timestamptz,
    payload     text
) ON COMMIT DELETE ROWS)sql";

// Claims the dedupe keys that are new; only those rows reach the log, in
// batch order so that log positions follow the request.
constexpr const char* kAppendName = "ingest_append";
constexpr const char* kAppendSql = R"sql(
WITH new_keys AS (
    INSERT INTO event_keys (source, event_id, ingested_at)
    SELECT source, event_id, $1 FROM ingest_stage
    ON CONFLICT DO NOTHING
    RETURNING source, event_id)
INSERT INTO events (source, event_id, sequence, key, type, occurred_at, ingested_at,
                    next_attempt_at, payload)
SELECT s.source, s.event_id, s.sequence, s.key, s.type, s.occurred_at, $1, $1, s.payload::jsonb
  FROM ingest_stage s JOIN new_keys k USING (source, event_id)
 ORDER BY s.ord
RETURNING source, event_id)sql";

constexpr const char* kFindName = "event_find";

// The fast path: COPY straight into event_keys and events.
constexpr const char* kCopyName = "ingest_copy";

std::string BatchKey(const std::string& source, const std::string& event_id) {
  return absl::StrCat(source, "\n", event_id);
}

// An event's columns sequence, key, type and occurred_at, each NULL when unset.
void CopyOptionalColumns(CopyWriter& row, const NewEvent& e) {
  if (e.sequence) {
    row.Int(*e.sequence);
  } else {
    row.Null();
  }
  row.TextOrNull(e.key).TextOrNull(e.type);
  if (e.occurred_at) {
    row.Text(PgTime(*e.occurred_at));
  } else {
    row.Null();
  }
}

}  // namespace

absl::StatusOr<std::vector<bool>> PgEventStore::Append(absl::Time ingested_at,
                                                       const std::vector<NewEvent>& events) {
  auto result = AppendFast(ingested_at, events);
  // Some of these keys are in the log already (a retried batch, or a
  // concurrent writer): the conflict-safe path sorts out which ones.
  if (absl::IsAlreadyExists(result.status())) result = AppendOnce(ingested_at, events);
  if (result.ok() || !absl::IsFailedPrecondition(result.status())) return result;
  // No partition for this day yet (the maintenance loop creates them ahead;
  // this covers a clock jump or a daemon started long after the last run).
  Logger("store")->warn("no partition for {}, creating it", PgTime(ingested_at));
  if (absl::Status s = partitions_->EnsureDays(ingested_at, ingested_at); !s.ok()) return s;
  return AppendOnce(ingested_at, events);
}

absl::StatusOr<std::vector<bool>> PgEventStore::AppendFast(absl::Time ingested_at,
                                                           const std::vector<NewEvent>& events) {
  bool missing_partition = false;
  absl::Status status = pool_->Run(kCopyName, [&](PgPool::Lease& lease) {
    pqxx::work tx(lease.conn());
    const std::string now = PgTime(ingested_at);
    // The COPY is the probe: a key already in the log fails it with a unique
    // violation (ALREADY_EXISTS), and the caller takes the conflict-safe path.
    // The rows up to the first known key are wasted.
    {
      CopyWriter keys(tx, "event_keys", {"source", "event_id", "ingested_at"});
      for (const NewEvent& e : events) {
        keys.Text(e.source).Text(e.event_id).Text(now).EndRow();
      }
      keys.Complete();
    }
    try {
      CopyWriter rows(tx, "events",
                      {"source", "event_id", "sequence", "key", "type", "occurred_at",
                       "ingested_at", "next_attempt_at", "payload"});
      for (const NewEvent& e : events) {
        rows.Text(e.source).Text(e.event_id);
        CopyOptionalColumns(rows, e);
        rows.Text(now).Text(now).Text(e.payload).EndRow();
      }
      rows.Complete();
    } catch (const pqxx::check_violation&) {
      missing_partition = true;  // 23514 "no partition of relation found for row"
      return;
    }
    tx.commit();
  });
  if (!status.ok()) return status;
  if (missing_partition) {
    return absl::FailedPreconditionError("no events partition for the ingest day");
  }
  return std::vector<bool>(events.size(), true);
}

absl::StatusOr<std::vector<bool>> PgEventStore::AppendOnce(absl::Time ingested_at,
                                                           const std::vector<NewEvent>& events) {
  std::vector<bool> stored(events.size(), false);
  bool missing_partition = false;
  absl::Status status = pool_->Run(kAppendName, [&](PgPool::Lease& lease) {
    lease.Prepare(kAppendName, kAppendSql);
    if (!lease.HasFlag("ingest_stage")) {
      pqxx::nontransaction(lease.conn()).exec0(kCreateStage);
      lease.SetFlag("ingest_stage");
    }
    pqxx::work tx(lease.conn());
    {
      CopyWriter stage(
          tx, "ingest_stage",
          {"ord", "source", "event_id", "sequence", "key", "type", "occurred_at", "payload"});
      for (size_t i = 0; i < events.size(); ++i) {
        const NewEvent& e = events[i];
        stage.Int(static_cast<int64_t>(i)).Text(e.source).Text(e.event_id);
        CopyOptionalColumns(stage, e);
        stage.Text(e.payload).EndRow();
      }
      stage.Complete();
    }
    pqxx::result rows;
    try {
      rows = tx.exec_prepared(kAppendName, PgTime(ingested_at));
    } catch (const pqxx::check_violation&) {
      // 23514 "no partition of relation found for row"
      missing_partition = true;
      return;
    }
    tx.commit();
    std::unordered_map<std::string, size_t> index;
    index.reserve(events.size());
    for (size_t i = 0; i < events.size(); ++i) {
      index.emplace(BatchKey(events[i].source, events[i].event_id), i);
    }
    for (const auto& row : rows) {
      stored[index.at(BatchKey(row[0].c_str(), row[1].c_str()))] = true;
    }
  });
  if (!status.ok()) return status;
  if (missing_partition) {
    return absl::FailedPreconditionError("no events partition for the ingest day");
  }
  return stored;
}

absl::StatusOr<StoredEvent> PgEventStore::Find(const std::string& source,
                                               const std::string& event_id) {
  std::optional<StoredEvent> found;
  absl::Status status = pool_->Run(kFindName, [&](PgPool::Lease& lease) {
    lease.Prepare(kFindName, SelectEventByIdSql());
    pqxx::read_transaction tx(lease.conn());
    auto rows = tx.exec_prepared(kFindName, source, event_id);
    if (!rows.empty()) found = StoredEventFromRow(rows[0]);
  });
  if (!status.ok()) return status;
  if (!found) {
    return absl::NotFoundError(absl::StrCat("event ", source, "/", event_id, " is not in the log"));
  }
  return *found;
}

}  // namespace replayd
