// POST /v1/events: the request body through ParseJsonEvents (the route's own
// parser), then every converted event through the ingester's validation.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/ingest/json_events.h"
#include "tests/fuzz/ingest_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace replayd;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto batch = ParseJsonEvents(body, fuzz::Limits());
  if (!batch.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(batch.status()));
    return 0;
  }
  FUZZ_CHECK(batch->items.is_array());
  FUZZ_CHECK(batch->events.size() == batch->items.size());
  std::vector<NewEvent> events;
  for (const auto& e : batch->events) {
    if (!e.ok()) {
      FUZZ_CHECK(absl::IsInvalidArgument(e.status()));
      continue;
    }
    // The payload is re-serialized JSON: the store must never refuse it.
    FUZZ_CHECK(ValidatePayloadJson(*e).ok());
    events.push_back(*e);
  }
  if (!events.empty()) fuzz::IngestAndCheck(events);
  return 0;
}
