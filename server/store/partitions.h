// Daily range partitions of the log (events and delivery_attempts), by UTC
// ingest day: created ahead and on demand, dropped past retention.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/store/pg_pool.h"

namespace replayd {

// "<table>_pYYYYMMDD": the partition of `table` ("events" or
// "delivery_attempts") that holds the rows of time `t`. Statements that reach
// rows by their key name it directly: through the parent, Postgres 15 locks
// and sets up every partition of the log at each execution of a prepared
// statement (bench/README.md: the deliver bench with 90 days of partitions).
std::string DayPartitionOf(absl::string_view table, absl::Time t);

class Partitions {
 public:
  explicit Partitions(PgPool* pool) : pool_(pool) {}

  // Creates the partitions of every UTC day from the day of `from` through the
  // day of `to`, where missing. Safe to call concurrently from several daemons.
  absl::Status EnsureDays(absl::Time from, absl::Time to);

  // Drops the partitions whose whole day ended before
  // StartOfUtcDay(now) - retention_days, and the dedupe keys of their events.
  // Returns the names of the dropped event partitions.
  absl::StatusOr<std::vector<std::string>> DropExpired(absl::Time now, int retention_days);

  // The days (as "YYYYMMDD") that have an events partition, ascending.
  absl::StatusOr<std::vector<std::string>> ListDays();

 private:
  PgPool* pool_;
};

}  // namespace replayd
