// EventStore on PostgreSQL: event_keys holds the global (source, event_id)
// uniqueness, events the partitioned log.
#pragma once

#include "server/store/event_store.h"
#include "server/store/partitions.h"
#include "server/store/pg_pool.h"

namespace replayd {

class PgEventStore final : public EventStore {
 public:
  PgEventStore(PgPool* pool, Partitions* partitions) : pool_(pool), partitions_(partitions) {}

  absl::StatusOr<std::vector<bool>> Append(absl::Time ingested_at,
                                           const std::vector<NewEvent>& events) override;
  absl::StatusOr<StoredEvent> Find(const std::string& source, const std::string& event_id) override;

 private:
  // COPYs the batch straight into event_keys and events. ALREADY_EXISTS when
  // a key is already in the log (stored before, or by a concurrent writer).
  absl::StatusOr<std::vector<bool>> AppendFast(absl::Time ingested_at,
                                               const std::vector<NewEvent>& events);
  // Conflict-safe: stage, then claim keys with ON CONFLICT DO NOTHING.
  absl::StatusOr<std::vector<bool>> AppendOnce(absl::Time ingested_at,
                                               const std::vector<NewEvent>& events);

  PgPool* pool_;
  Partitions* partitions_;
};

}  // namespace replayd
