// The group-committing writer behind PgDeliveryStore::RecordAttempt: records
// from many workers queue up, and one thread writes them in groups, each in
// one transaction; every record's callback runs once the statement holding it
// has committed. Internal to store/.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/clock.h"
#include "server/store/delivery_store.h"
#include "server/store/pg_pool.h"

namespace replayd {

class PgRecordWriter {
 public:
  struct Options {
    // How many records one commit holds at the most.
    int max_group = 512;
    // Paces the writes again of a group that failed.
    const Clock* clock = &SystemClock::Get();
  };

  PgRecordWriter(PgPool* pool, Options options);
  // Writes what is queued, then stops the writer thread.
  ~PgRecordWriter();

  // Queues a record. `done` gets whether `owner` still held the claim (and so
  // updated the event), or the group's error; UNAVAILABLE once stopping.
  void Submit(const AttemptRecord& attempt, const OutcomeUpdate& update, const std::string& owner,
              DeliveryStore::RecordDone done);

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
  const Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<PendingRecord>> queue_;
  bool stopping_ = false;
  // One writer: while it commits a group, the next group gathers. Two
  // writers committing half-size groups side by side cost Postgres about a
  // fifth more CPU per record in the deliver bench (bench/README.md).
  std::thread writer_;
};

}  // namespace replayd
