// Validates a batch, writes its good events durably in one transaction, and
// answers each event: ACCEPTED, DUPLICATE or REJECTED with a reason.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/clock.h"
#include "server/ingest/validation.h"
#include "server/store/event_store.h"

namespace replayd {

struct IngestResult {
  enum class Status { kAccepted, kDuplicate, kRejected };
  Status status = Status::kRejected;
  std::string reason;  // for kRejected
};

// Called after each batch with its results, e.g. to count them in metrics.
class IngestObserver {
 public:
  virtual ~IngestObserver() = default;
  virtual void OnIngested(const std::vector<NewEvent>& events,
                          const std::vector<IngestResult>& results) = 0;
};

class Ingester {
 public:
  Ingester(EventStore* store, const Clock* clock, IngestLimits limits,
           IngestObserver* observer = nullptr)
      : store_(store), clock_(clock), limits_(limits), observer_(observer) {}

  // One result per event, in order, returned only after the accepted events
  // are committed. A bad event never affects the good ones: when the store
  // refuses the batch (INVALID_ARGUMENT, e.g. a payload that is not JSON), the
  // bad events are found and rejected and the rest stored. Errors for the
  // whole batch: INVALID_ARGUMENT (empty, too large), UNAVAILABLE (database;
  // retrying the batch is safe, stored events come back as duplicates).
  // Thread safe.
  absl::StatusOr<std::vector<IngestResult>> Ingest(const std::vector<NewEvent>& events);

  const IngestLimits& limits() const { return limits_; }

 private:
  // After the store refused `to_store` (INVALID_ARGUMENT, nothing stored):
  // stores the events whose payload parses here in one batch and tries every
  // other one alone, filling in `results`. Errors other than refusals.
  absl::Status StoreRefusedBatch(absl::Time now, const std::vector<NewEvent>& events,
                                 const std::vector<size_t>& to_store,
                                 std::vector<IngestResult>& results);

  EventStore* store_;
  const Clock* clock_;
  const IngestLimits limits_;
  IngestObserver* observer_;
};

}  // namespace replayd
