// Pure checks of published events. No I/O.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/store/event.h"

namespace replayd {

struct IngestLimits {
  int max_batch = 1000;
  int64_t max_payload_bytes = 1 << 20;
  absl::Duration max_future_skew = absl::Hours(24);
};

// OK, or INVALID_ARGUMENT whose message says what is wrong with the event:
// source must match [a-z0-9_.-]{1,64}; event_id 1-256 bytes with no control
// characters; key up to 256 and type up to 128 such bytes; occurred_at after
// 1970 and at most max_future_skew past `now`; payload valid JSON of at most
// max_payload_bytes. The same as ValidateFields, then ValidatePayloadJson.
absl::Status ValidateEvent(const NewEvent& event, const IngestLimits& limits, absl::Time now);

// Every check of ValidateEvent except the payload's JSON syntax (its size,
// emptiness and \u0000 are checked here). The ingester leaves the syntax to
// the store, whose jsonb input checks it for the whole batch at once.
absl::Status ValidateFields(const NewEvent& event, const IngestLimits& limits, absl::Time now);

// OK, or INVALID_ARGUMENT "payload is not valid JSON".
absl::Status ValidatePayloadJson(const NewEvent& event);

// OK, or INVALID_ARGUMENT for an empty batch or one over limits.max_batch.
absl::Status ValidateBatchSize(size_t size, const IngestLimits& limits);

}  // namespace replayd
