// The JSON body of POST /v1/events, read into events. No I/O: the route and
// the fuzz target call the same function.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/ingest/validation.h"
#include "server/store/event.h"

namespace replayd {

struct JsonEventBatch {
  nlohmann::json items;  // the body's "events" array, as sent
  // One per item: the event, or INVALID_ARGUMENT saying why that item is rejected.
  std::vector<absl::StatusOr<NewEvent>> events;
};

// Body: {"events": [{"source", "event_id", "sequence"?, "key"?, "type"?,
// "occurred_at"? (RFC 3339), "payload": <any JSON>}]}. INVALID_ARGUMENT for
// a body that is not such JSON or whose batch is empty or over limits.max_batch.
// Problems of one event (unknown fields, wrong types) reject that event only.
absl::StatusOr<JsonEventBatch> ParseJsonEvents(std::string_view body, const IngestLimits& limits);

}  // namespace replayd
