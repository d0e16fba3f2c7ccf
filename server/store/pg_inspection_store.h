// InspectionStore on PostgreSQL: single-pass aggregates over the partitioned
// events table (partition pruning on ingested_at), no per-event round trips.
#pragma once

#include "server/store/inspection_store.h"
#include "server/store/pg_pool.h"

namespace replayd {

class PgInspectionStore final : public InspectionStore {
 public:
  explicit PgInspectionStore(PgPool* pool) : pool_(pool) {}

  absl::StatusOr<std::vector<BucketRow>> Timeline(const TimelineQuery& query) override;
  absl::StatusOr<SequenceHoles> FindSequenceHoles(absl::Time from, absl::Time to,
                                                  const std::vector<SequenceRange>& ranges,
                                                  int limit) override;
  absl::StatusOr<Backlog> CountBacklog() override;

 private:
  PgPool* pool_;
};

}  // namespace replayd
