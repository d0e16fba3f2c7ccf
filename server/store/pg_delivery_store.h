// DeliveryStore on PostgreSQL. Claims are rows of delivery_claims; attempts
// go to the partitioned delivery_attempts table. RecordAttempt calls from many
// workers are group-committed by one writer thread: each caller blocks until
// the statement holding its record commits.
//
// Its parts: claims in pg_delivery_claims.cc, the record writer in
// pg_record_writer.h, the PostgreSQL sink's writes in pg_log_table_sink.cc.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "server/common/clock.h"
#include "server/store/delivery_store.h"
#include "server/store/pg_pool.h"

namespace replayd {

class PgRecordWriter;

class PgDeliveryStore final : public DeliveryStore {
 public:
  // `max_group` bounds how many records one commit holds. `clock` times the
  // log-table sink's attempts and paces the writes again of a failed group.
  explicit PgDeliveryStore(PgPool* pool, int max_group = 512,
                           const Clock* clock = &SystemClock::Get());
  ~PgDeliveryStore() override;

  absl::StatusOr<std::vector<UndeliveredEvent>> ScanUndelivered(
      const std::vector<std::string>& sources, int64_t after_position, int limit) override;
  absl::StatusOr<std::vector<ClaimResult>> Claim(
      const std::vector<EventRef>& events, const std::string& owner, absl::Duration lease,
      const std::vector<std::string>& strict_sources) override;
  absl::StatusOr<std::vector<int64_t>> StillFailed(const std::vector<EventRef>& events) override;
  absl::StatusOr<std::optional<StoredEvent>> TryClaim(int64_t position, absl::Time ingested_at,
                                                      const std::string& owner,
                                                      absl::Duration lease) override;
  absl::Status Release(const std::vector<int64_t>& positions, const std::string& owner) override;
  absl::Status ExtendClaims(const std::string& owner, absl::Duration lease) override;
  absl::Status ReleaseAll(const std::string& owner) override;
  absl::StatusOr<bool> RecordAttempt(const AttemptRecord& attempt, const OutcomeUpdate& update,
                                     const std::string& owner) override;
  void RecordAttemptAsync(const AttemptRecord& attempt, const OutcomeUpdate& update,
                          const std::string& owner, RecordDone done) override;
  absl::StatusOr<LogTableDelivery> DeliverToLogTable(const std::string& table,
                                                     const std::string& idempotency_key,
                                                     const std::string& payload_json,
                                                     const AttemptRecord& attempt,
                                                     const std::string& owner) override;
  absl::StatusOr<EventTrace> GetTrace(const std::string& source,
                                      const std::string& event_id) override;

 private:
  PgPool* pool_;
  const Clock* clock_;
  std::unique_ptr<PgRecordWriter> writer_;
  std::mutex tables_mu_;
  std::unordered_set<std::string> tables_ready_;  // DeliverToLogTable's tables
};

}  // namespace replayd
