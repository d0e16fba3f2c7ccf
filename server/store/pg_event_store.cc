#include "server/store/pg_event_store.h"

#include <tuple>
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

// The fast path's probe: which of the batch's keys the log already holds.
constexpr const char* kKnownKeysName = "ingest_known_keys";
constexpr const char* kKnownKeysSql = R"sql(
SELECT k.source, k.event_id
  FROM unnest($1::text[], $2::text[]) AS b(source, event_id)
  JOIN event_keys k USING (source, event_id))sql";

std::string BatchKey(const std::string& source, const std::string& event_id) {
  return absl::StrCat(source, "\n", event_id);
}

// One staging row for COPY; nullptr fields are NULL. libpqxx escapes the rest.
using StageRow = std::tuple<const char*, const char*, const char*, const char*, const char*,
                            const char*, const char*, const char*>;
using KeyRow = std::tuple<const char*, const char*, const char*>;
using LogRow = std::tuple<const char*, const char*, const char*, const char*, const char*,
                          const char*, const char*, const char*, const char*>;

}  // namespace

absl::StatusOr<std::vector<bool>> PgEventStore::Append(absl::Time ingested_at,
                                                       const std::vector<NewEvent>& events) {
  auto result = AppendFast(ingested_at, events);
  // A concurrent writer stored one of these keys between the probe and the
  // COPY: the conflict-safe path sorts out which ones are duplicates.
  if (absl::IsAlreadyExists(result.status())) result = AppendOnce(ingested_at, events);
  if (result.ok() || !absl::IsFailedPrecondition(result.status())) return result;
  if (result.ok() || !absl::IsFailedPrecondition(result.status())) return result;
  // No partition for this day yet (the maintenance loop creates them ahead;
  // this covers a clock jump or a daemon started long after the last run).
  Logger("store")->warn("no partition for {}, creating it", PgTime(ingested_at));
  if (absl::Status s = partitions_->EnsureDays(ingested_at, ingested_at); !s.ok()) return s;
  return AppendOnce(ingested_at, events);
}

absl::StatusOr<std::vector<bool>> PgEventStore::AppendFast(absl::Time ingested_at,
                                                           const std::vector<NewEvent>& events) {
  std::vector<bool> stored(events.size(), true);
  bool missing_partition = false;
  absl::Status status = pool_->Run(kKnownKeysName, [&](PgPool::Lease& lease) {
    lease.Prepare(kKnownKeysName, kKnownKeysSql);
    pqxx::work tx(lease.conn());
    std::vector<std::string> sources, event_ids;
    sources.reserve(events.size());
    event_ids.reserve(events.size());
    for (const NewEvent& e : events) {
      sources.push_back(e.source);
      event_ids.push_back(e.event_id);
    }
    auto known = tx.exec_prepared(kKnownKeysName, PgTextArray(sources), PgTextArray(event_ids));
    if (!known.empty()) {
      std::unordered_map<std::string, size_t> index;
      for (size_t i = 0; i < events.size(); ++i) {
        index.emplace(BatchKey(events[i].source, events[i].event_id), i);
      }
      for (const auto& row : known) {
        stored[index.at(BatchKey(row[0].c_str(), row[1].c_str()))] = false;
      }
    }
    const std::string now = PgTime(ingested_at);
    {
      pqxx::stream_to keys(tx, "event_keys",
                           std::vector<std::string>{"source", "event_id", "ingested_at"});
      for (size_t i = 0; i < events.size(); ++i) {
        if (stored[i]) keys << KeyRow{events[i].source.c_str(), events[i].event_id.c_str(), now.c_str()};
      }
      keys.complete();
    }
    try {
      pqxx::stream_to rows(tx, "events",
                           std::vector<std::string>{"source", "event_id", "sequence", "key", "type",
                                                    "occurred_at", "ingested_at", "next_attempt_at",
                                                    "payload"});
      for (size_t i = 0; i < events.size(); ++i) {
        if (!stored[i]) continue;
        const NewEvent& e = events[i];
        std::string sequence = e.sequence ? absl::StrCat(*e.sequence) : "";
        std::string occurred_at = e.occurred_at ? PgTime(*e.occurred_at) : "";
        rows << LogRow{e.source.c_str(), e.event_id.c_str(), e.sequence ? sequence.c_str() : nullptr,
                       e.key.empty() ? nullptr : e.key.c_str(),
                       e.type.empty() ? nullptr : e.type.c_str(),
                       e.occurred_at ? occurred_at.c_str() : nullptr, now.c_str(), now.c_str(),
                       e.payload.c_str()};
      }
      rows.complete();
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
  return stored;
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
      pqxx::stream_to copy(tx, "ingest_stage",
                           std::vector<std::string>{"ord", "source", "event_id", "sequence", "key",
                                                    "type", "occurred_at", "payload"});
      for (size_t i = 0; i < events.size(); ++i) {
        const NewEvent& e = events[i];
        std::string ord = absl::StrCat(i);
        std::string sequence = e.sequence ? absl::StrCat(*e.sequence) : "";
        std::string occurred_at = e.occurred_at ? PgTime(*e.occurred_at) : "";
        copy << StageRow{ord.c_str(), e.source.c_str(), e.event_id.c_str(),
                         e.sequence ? sequence.c_str() : nullptr,
                         e.key.empty() ? nullptr : e.key.c_str(),
                         e.type.empty() ? nullptr : e.type.c_str(),
                         e.occurred_at ? occurred_at.c_str() : nullptr, e.payload.c_str()};
      }
      copy.complete();
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
    // The dedupe key gives the ingest time, which prunes to one partition.
    lease.Prepare(kFindName, absl::StrCat(
        "SELECT ", StoredEventColumns("e"),
        " FROM event_keys k JOIN events e ON e.ingested_at = k.ingested_at"
        " AND e.source = k.source AND e.event_id = k.event_id"
        " WHERE k.source = $1 AND k.event_id = $2"));
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
