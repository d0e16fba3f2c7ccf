#include "server/delivery/retry_policy.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace replayd {

namespace {

// base * 2^(n-1), capped; n = 0 gives base / 2. Doubling stops at the cap.
absl::Duration CappedExponential(const RetryPolicy& policy, int n) {
  absl::Duration d = policy.base_delay / 2;
  for (int i = 0; i < n && d < policy.max_delay; ++i) d *= 2;
  return std::min(d, policy.max_delay);
}

}  // namespace

absl::Duration BackoffDelay(const RetryPolicy& policy, int attempt, double jitter) {
  attempt = std::max(attempt, 1);
  jitter = std::clamp(jitter, 0.0, 1.0);
  absl::Duration previous = CappedExponential(policy, attempt - 1);
  absl::Duration d = CappedExponential(policy, attempt);
  return previous + (d - previous) * jitter;
}

DeliveryResult::Kind ClassifyHttpStatus(int status) {
  if (status >= 200 && status < 300) return DeliveryResult::Kind::kSucceeded;
  if (status == 409) return DeliveryResult::Kind::kAlreadyProcessed;
  if (status == 408 || status == 429 || (status >= 500 && status < 600)) {
    return DeliveryResult::Kind::kRetryable;
  }
  if (status < 200) return DeliveryResult::Kind::kRetryable;  // 1xx final answer: a broken peer
  return DeliveryResult::Kind::kFinal;
}

std::optional<absl::Duration> ParseRetryAfter(std::string_view value, absl::Time now) {
  std::string v = std::string(absl::StripAsciiWhitespace(std::string(value)));
  if (v.empty()) return std::nullopt;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(v, &seconds)) return absl::Seconds(std::max<int64_t>(seconds, 0));
  absl::Time at;
  std::string err;
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", v, absl::UTCTimeZone(), &at, &err)) {
    return std::max(at - now, absl::ZeroDuration());
  }
  return std::nullopt;
}

RetryPolicy WithOverride(RetryPolicy policy, const RetrySettings& override) {
  if (override.max_attempts) policy.max_attempts = *override.max_attempts;
  if (override.base_delay) policy.base_delay = *override.base_delay;
  if (override.max_delay) policy.max_delay = *override.max_delay;
  policy.max_delay = std::max(policy.max_delay, policy.base_delay);
  return policy;
}

RetrySettings SettingsOf(const RetryPolicy& policy) {
  return {policy.max_attempts, policy.base_delay, policy.max_delay};
}

OutcomeUpdate DecideOutcome(const DeliveryResult& result, int attempt, const RetryPolicy& policy,
                            double jitter) {
  OutcomeUpdate u;
  u.target_record_id = result.record_id;
  u.target_version = result.record_version.value_or("");
  u.target_updated_at = result.record_updated_at;
  switch (result.kind) {
    case DeliveryResult::Kind::kSucceeded: u.outcome = Outcome::kSucceeded; return u;
    case DeliveryResult::Kind::kAlreadyProcessed: u.outcome = Outcome::kAlreadyProcessed; return u;
    case DeliveryResult::Kind::kFinal:
    case DeliveryResult::Kind::kPreconditionFailed:
      u.outcome = Outcome::kFailed;
      u.last_error = result.error;
      return u;
    case DeliveryResult::Kind::kRetryable:
      u.last_error = result.error;
      if (attempt >= policy.max_attempts) {
        u.outcome = Outcome::kFailed;
        u.last_error = absl::StrCat(result.error, " (gave up after ", attempt, " attempts)");
        return u;
      }
      u.outcome = Outcome::kRetrying;
      u.retry_delay = BackoffDelay(policy, attempt, jitter);
      if (result.retry_after) u.retry_delay = std::max(u.retry_delay, *result.retry_after);
      return u;
  }
  return u;
}

}  // namespace replayd
