// The ingest path Publish and POST /v1/events end in, for their fuzz
// targets: an Ingester on an in-memory store, and the checks of its results.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/clock.h"
#include "server/ingest/ingester.h"
#include "server/ingest/validation.h"
#include "server/store/event_store.h"
#include "tests/fuzz/fuzz_check.h"

namespace replayd::fuzz {

// Small limits, so that inputs of a few kilobytes reach them.
inline IngestLimits Limits() {
  IngestLimits limits;
  limits.max_batch = 16;
  limits.max_payload_bytes = 512;
  limits.max_future_skew = absl::Hours(1);
  return limits;
}

// Stores (source, event_id) pairs; refuses a whole batch holding a payload
// that is not JSON, as PostgreSQL's jsonb input does.
class MemoryEventStore final : public EventStore {
 public:
  absl::StatusOr<std::vector<bool>> Append(absl::Time, const std::vector<NewEvent>& events) override {
    for (const NewEvent& e : events) {
      if (!ValidatePayloadJson(e).ok()) {
        return absl::InvalidArgumentError("invalid input syntax for type json");
      }
    }
    std::vector<bool> stored;
    for (const NewEvent& e : events) stored.push_back(keys_.insert({e.source, e.event_id}).second);
    return stored;
  }
  absl::StatusOr<StoredEvent> Find(const std::string&, const std::string&) override {
    return absl::NotFoundError("not stored");
  }

 private:
  std::set<std::pair<std::string, std::string>> keys_;
};

// Runs `events` through a fresh Ingester and checks its contract: one result
// per event; an event that fails the field checks is REJECTED with a reason;
// an ACCEPTED event passes every check of ValidateEvent; no (source,
// event_id) is accepted twice; a batch out of limits is INVALID_ARGUMENT.
inline void IngestAndCheck(const std::vector<NewEvent>& events) {
  MemoryEventStore store;
  FakeClock clock(Now());
  Ingester ingester(&store, &clock, Limits());
  auto results = ingester.Ingest(events);
  if (events.empty() || events.size() > static_cast<size_t>(Limits().max_batch)) {
    FUZZ_CHECK(absl::IsInvalidArgument(results.status()));
    return;
  }
  FUZZ_CHECK(results.ok());
  FUZZ_CHECK(results->size() == events.size());
  std::set<std::pair<std::string, std::string>> accepted;
  for (size_t i = 0; i < events.size(); ++i) {
    const IngestResult& r = (*results)[i];
    if (!ValidateFields(events[i], Limits(), Now()).ok()) {
      FUZZ_CHECK(r.status == IngestResult::Status::kRejected);
    }
    if (r.status == IngestResult::Status::kRejected) FUZZ_CHECK(!r.reason.empty());
    if (r.status == IngestResult::Status::kAccepted) {
      FUZZ_CHECK(ValidateEvent(events[i], Limits(), Now()).ok());
      FUZZ_CHECK(accepted.insert({events[i].source, events[i].event_id}).second);
    }
  }
}

}  // namespace replayd::fuzz
