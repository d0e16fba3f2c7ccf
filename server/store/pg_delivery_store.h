// DeliveryStore on PostgreSQL. Claims are rows of delivery_claims; attempts
// go to the partitioned delivery_attempts table. RecordAttempt calls from many
// workers are group-committed by one writer thread: each caller blocks until
// the statement holding its record commits.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "server/store/delivery_store.h"
#include "server/store/pg_pool.h"

namespace replayd {

class PgDeliveryStore final : public DeliveryStore {
 public:
  // `max_group` bounds how many records one commit holds.
  explicit PgDeliveryStore(PgPool* pool, int max_group = 512);
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
  struct PendingRecord;

  void WriterLoop();
  // Writes a group in one transaction and completes every record in it.
  void WriteGroup(std::vector<std::shared_ptr<PendingRecord>>& group);
  // The (position, owner) of the records whose claims were still held.
  // ALREADY_EXISTS when an attempt is in the log already, unless
  // `keep_first`, which keeps that one and writes the rest.
  absl::StatusOr<std::set<std::pair<int64_t, std::string>>> WriteGroupOnce(
      const std::vector<std::shared_ptr<PendingRecord>>& group, bool keep_first);

  PgPool* pool_;
  const int max_group_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<PendingRecord>> queue_;
  bool stopping_ = false;
  // One writer: while it commits a group, the next group gathers. Two
  // writers committing half-size groups side by side cost Postgres about a
  // fifth more CPU per record in the deliver bench (bench/README.md).
  std::thread writer_;
  std::mutex tables_mu_;
  std::unordered_set<std::string> tables_ready_;  // DeliverToLogTable's tables
};

}  // namespace replayd
