#include "server/store/partitions.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/common/time_format.h"

namespace replayd {
namespace {

// pg_advisory_xact_lock key serialising partition DDL across daemons.
constexpr int64_t kPartitionLockKey = 0x7265706c61796470;

// The partitioned tables, all split by the same UTC day.
constexpr const char* kPartitionedTables[] = {"events", "delivery_attempts"};

std::string DayName(absl::Time day_start) {
  return absl::FormatTime("%Y%m%d", day_start, absl::UTCTimeZone());
}

constexpr const char* kListDays = R"sql(
SELECT substring(c.relname from 9) AS day
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'
 ORDER BY 1)sql";

}  // namespace

std::string DayPartitionOf(absl::string_view table, absl::Time t) {
  return absl::StrCat(table, "_p", DayName(StartOfUtcDay(t)));
}

absl::Status Partitions::EnsureDays(absl::Time from, absl::Time to) {
  std::vector<absl::Time> days;
  for (absl::Time d = StartOfUtcDay(from); d <= to; d += absl::Hours(24)) days.push_back(d);
  if (days.empty()) return absl::OkStatus();
  return pool_->Run("ensure_partitions", [&](PgPool::Lease& lease) {
    pqxx::work tx(lease.conn());
    tx.exec(absl::StrCat("SELECT pg_advisory_xact_lock(", kPartitionLockKey, ")"));
    for (absl::Time day : days) {
      std::string lower = FormatRfc3339(day);
      std::string upper = FormatRfc3339(day + absl::Hours(24));
      for (const char* table : kPartitionedTables) {
        tx.exec0(absl::StrCat("CREATE TABLE IF NOT EXISTS ", DayPartitionOf(table, day),
                              " PARTITION OF ", table, " FOR VALUES FROM ('", lower, "') TO ('",
                              upper, "')"));
      }
    }
    tx.commit();
  });
}

absl::StatusOr<std::vector<std::string>> Partitions::ListDays() {
  std::vector<std::string> days;
  absl::Status status = pool_->Run("list_partitions", [&](PgPool::Lease& lease) {
    pqxx::read_transaction tx(lease.conn());
    for (const auto& row : tx.exec(kListDays)) days.push_back(row[0].as<std::string>());
  });
  if (!status.ok()) return status;
  return days;
}

absl::StatusOr<std::vector<std::string>> Partitions::DropExpired(absl::Time now,
                                                                 int retention_days) {
  std::vector<std::string> dropped;
  if (retention_days <= 0) return dropped;
  std::string cutoff = DayName(StartOfUtcDay(now) - absl::Hours(24) * retention_days);
  auto days = ListDays();
  if (!days.ok()) return days.status();
  auto log = Logger("store");
  for (const std::string& day : *days) {
    // A partition holds day D; it is expired once D + 1 <= cutoff, i.e. D < cutoff.
    if (day >= cutoff) break;
    absl::Status status = pool_->Run("drop_partition", [&](PgPool::Lease& lease) {
      pqxx::work tx(lease.conn());
      tx.exec(absl::StrCat("SELECT pg_advisory_xact_lock(", kPartitionLockKey, ")"));
      std::string events = absl::StrCat("events_p", day);
      if (!tx.exec1(absl::StrCat("SELECT to_regclass('", events, "') IS NOT NULL"))[0].as<bool>()) {
        return;  // another daemon dropped it first
      }
      tx.exec0(absl::StrCat("DELETE FROM event_keys k USING ", events,
                            " e WHERE k.source = e.source AND k.event_id = e.event_id"));
      // Failed events of the day no longer hold back their strict keys.
      tx.exec0(
          absl::StrCat("DELETE FROM delivery_failed_keys WHERE ingested_at <"
                       " (date '",
                       day, "' + 1)::timestamp AT TIME ZONE 'UTC'"));
      for (const char* table : kPartitionedTables) {
        tx.exec0(absl::StrCat("DROP TABLE IF EXISTS ", table, "_p", day));
      }
      tx.commit();
      dropped.push_back(events);
    });
    if (!status.ok()) return status;
    log->info("retention: dropped partitions of {} (older than {} days)", day, retention_days);
  }
  return dropped;
}

}  // namespace replayd
