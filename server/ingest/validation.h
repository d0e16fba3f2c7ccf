// Pure checks of published events. No I/O.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/store/event.h"

namespace replayd {

inline constexpr int kMaxPayloadDepth = 100;

struct IngestLimits {
  int max_batch = 1000;
  int64_t max_payload_bytes = 1 << 20;
  absl::Duration max_future_skew = absl::Hours(24);
  // Deepest nesting of arrays and objects a payload may have. Deeper input
  // would overflow recursive parsers and serializers (here and in
  // PostgreSQL's jsonb), so it is refused before anything parses it.
  int max_payload_depth = kMaxPayloadDepth;
};

// OK, or INVALID_ARGUMENT whose message says what is wrong with the event:
// source must match [a-z0-9_.-]{1,64}; event_id 1-256 bytes with no control
// characters; key up to 256 and type up to 128 such bytes; occurred_at after
// 1970 and at most max_future_skew past `now`; payload valid JSON of at most
// max_payload_bytes and at most max_payload_depth levels deep. The same as ValidateFields, then
// ValidatePayloadJson.
absl::Status ValidateEvent(const NewEvent& event, const IngestLimits& limits, absl::Time now);

// Every check of ValidateEvent except the payload's JSON syntax (its size,
// emptiness and \u0000 are checked here). The ingester leaves the syntax to
// the store, whose jsonb input checks it for the whole batch at once.
absl::Status ValidateFields(const NewEvent& event, const IngestLimits& limits, absl::Time now);

// The deepest nesting of arrays and objects in JSON `text` (0 for a scalar),
// found by one pass over the bytes without parsing or recursion. Stops
// counting once it passes `stop_above` and returns stop_above + 1.
int JsonNestingDepth(std::string_view text, int stop_above);

// INVALID_ARGUMENT naming the maximum nesting depth `max`.
absl::Status NestingTooDeepError(int max);

// OK, or INVALID_ARGUMENT "payload is not valid JSON".
absl::Status ValidatePayloadJson(const NewEvent& event);

// OK, or INVALID_ARGUMENT for an empty batch or one over limits.max_batch.
absl::Status ValidateBatchSize(size_t size, const IngestLimits& limits);

}  // namespace replayd
