// Daily range partitions of the log (events and delivery_attempts), by UTC
// ingest day: created ahead and on demand, dropped past retention.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/pg_pool.h"

namespace replayd {

// "events_pYYYYMMDD": the events partition of the UTC day starting at `day_start`.
std::string EventsPartitionName(absl::Time day_start);

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
