// Pure delivery decisions: the backoff schedule, the classification of an HTTP
// answer, and the event's outcome after one attempt. Unit tested
// directly; the sinks and the Deliverer call them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "server/config/config.h"
#include "server/delivery/sink.h"
#include "server/model/retry.h"
#include "server/store/delivery_store.h"

namespace replayd {

// The delay before attempt `attempt + 1` after attempt `attempt` (1-based)
// failed: exponential from base_delay, capped at max_delay, with jitter
// (`jitter` in [0, 1] picks a point between the previous attempt's full delay
// and this one's), so that concurrent events spread out and delays never
// shrink from one attempt to the next.
absl::Duration BackoffDelay(const RetryPolicy& policy, int attempt, double jitter);

// Classifies an HTTP answer: 2xx succeeded, 409 already processed; 408, 429
// and 5xx retryable; any other status final.
DeliveryResult::Kind ClassifyHttpStatus(int status);

// Parses a Retry-After header value (delta seconds or an HTTP date relative to
// `now`); nullopt when absent or unparsable. Negative values become zero.
std::optional<absl::Duration> ParseRetryAfter(std::string_view value, absl::Time now);

// `policy` with the fields `override` sets in place of its own; the cap is
// never below the base.
RetryPolicy WithOverride(RetryPolicy policy, const RetrySettings& override);
// Every field of `policy`, as an attempt records it.
RetrySettings SettingsOf(const RetryPolicy& policy);

// The event's new state after attempt `attempt` ended with `result`: retryable
// results retry (after max(backoff, Retry-After)) until max_attempts, then fail.
OutcomeUpdate DecideOutcome(const DeliveryResult& result, int attempt, const RetryPolicy& policy,
                            double jitter);

}  // namespace replayd
