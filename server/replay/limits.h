// Server-side enforcement of a replay request: mandatory bounds, a
// window that is neither inverted, empty, in the future nor wider than the
// configured maximum, filters within their limits, a rate within the
// configured limits, and a retry policy and sink that can be used. Pure.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/config/config.h"
#include "server/store/replay_store.h"

namespace replayd {

// A replay request as the client sent it (before defaults).
struct ReplayRequestInput {
  std::optional<absl::Time> from;
  std::optional<absl::Time> to;
  std::vector<std::string> sources;
  std::vector<Outcome> outcomes;  // empty = failed, pending, retrying
  bool include_succeeded = false;
  double rate = 0;  // 0 = replay.default_rate
  int burst = 0;    // 0 = replay.default_burst, else one second's worth
  bool allow_high_rate = false;
  bool verify_downstream = false;
  std::string reason;
  // The request's own circuit breaker settings; nullopt = replay.breaker's.
  std::optional<int> breaker_consecutive_failures;
  std::optional<double> breaker_failure_ratio;
  std::optional<int> breaker_window;
  // Filters within the window (empty = every value): see ReplayWindow.
  std::vector<std::string> keys;
  std::vector<std::string> types;
  std::vector<std::string> event_ids;
  // A configured sink to deliver to instead of each route's; empty = none.
  std::string sink;
  RetrySettings retry;
};

// The most values a request may list in each of keys, types and event_ids.
inline constexpr size_t kMaxFilterValues = 10000;
// The longest key, type or event id a filter may name (the ingest limit of
// an event id and a key).
inline constexpr size_t kMaxFilterValueBytes = 256;
// The bounds of a replay's own retry policy.
inline constexpr int kMaxRetryAttempts = 100;
inline constexpr absl::Duration kMinRetryDelay = absl::Milliseconds(1);
inline constexpr absl::Duration kMaxRetryDelay = absl::Hours(1);

// How far `to` may be ahead of the server's clock (client clock skew).
inline constexpr absl::Duration kFutureTolerance = absl::Seconds(5);

// The spec the server runs, with every default applied. INVALID_ARGUMENT
// whose message says exactly which rule the request breaks.
absl::StatusOr<ReplaySpec> ValidateReplayRequest(const ReplayRequestInput& input,
                                                 const ReplayLimits& limits, absl::Time now);

// The rate a replay runs at: `rate`, or replay.default_rate when 0, within
// replay.max_rate and, without `allow_high_rate`, replay.high_rate_threshold.
// INVALID_ARGUMENT naming the rule broken. Start and resume share it.
absl::StatusOr<double> ValidateRate(double rate, bool allow_high_rate, const ReplayLimits& limits);

// A request's breaker settings, each replay.breaker's where it names none.
// INVALID_ARGUMENT for a count outside [0, kMaxBreakerCount] or a ratio
// outside [0, 1].
absl::StatusOr<BreakerSettings> ValidateBreaker(const ReplayRequestInput& input,
                                                const ReplayLimits& limits);

// A request's retry override: max_attempts within [1, kMaxRetryAttempts],
// delays within [kMinRetryDelay, kMaxRetryDelay], the cap not below the base
// when both are given. INVALID_ARGUMENT naming the field.
absl::Status ValidateRetrySettings(const RetrySettings& retry);

// OK when `sink` is empty or one of `configured`; else INVALID_ARGUMENT that
// lists the configured sinks. The dry run and the start both ask it.
absl::Status ValidateReplaySink(const std::string& sink, std::vector<std::string> configured);

// The outcomes a request selects: `requested` (or the default set), plus the
// delivered ones when include_succeeded.
std::vector<Outcome> SelectedOutcomes(const std::vector<Outcome>& requested,
                                      bool include_succeeded);

// The burst of a replay: the most events it may send in any 100 ms
// (kBurstWindow). `burst` when given, else `default_burst`, else one second's
// worth of `rate`, and at least MinBurst(rate).
int EffectiveBurst(double rate, int burst, int default_burst);

inline constexpr absl::Duration kBurstWindow = absl::Milliseconds(100);
// The smallest burst a rate allows: what the rate itself sends in 100 ms, plus one.
int MinBurst(double rate);
// The token bucket capacity that keeps any 100 ms within `burst`: the rate
// refills rate x 100 ms within the window, so the bucket may hold only the rest.
double BucketCapacity(double rate, int burst);

}  // namespace replayd
