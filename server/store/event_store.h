// The event log as ingest sees it: append a batch durably, look an event up.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/event.h"

namespace replayd {

class EventStore {
 public:
  virtual ~EventStore() = default;

  // Appends the events in one transaction with ingested_at = `ingested_at`.
  // Returns, per event, true if it was stored now and false if its (source,
  // event_id) was already in the log. The batch must not repeat a (source,
  // event_id). Returns only after commit; on error nothing is stored:
  // UNAVAILABLE when the database cannot be reached, INVALID_ARGUMENT when it
  // refuses a value (e.g. a payload that is not valid JSON for jsonb).
  virtual absl::StatusOr<std::vector<bool>> Append(absl::Time ingested_at,
                                                   const std::vector<NewEvent>& events) = 0;

  // The stored event, or NOT_FOUND.
  virtual absl::StatusOr<StoredEvent> Find(const std::string& source,
                                           const std::string& event_id) = 0;
};

}  // namespace replayd
