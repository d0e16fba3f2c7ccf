#include "server/replay/limits.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/source_name.h"
#include "server/common/time_format.h"

namespace replayd {
namespace {

std::string Rate(double r) { return absl::StrCat(r, "/s"); }

std::string Span(absl::Duration d) {
  if (d % absl::Hours(24) == absl::ZeroDuration()) {
    return absl::StrCat(absl::IDivDuration(d, absl::Hours(24), &d), "d");
  }
  return absl::FormatDuration(d);
}

// A filter list, sorted and without duplicates; INVALID_ARGUMENT for an
// empty or too long value, or too many values.
absl::StatusOr<std::vector<std::string>> FilterList(const char* field,
                                                    std::vector<std::string> values) {
  if (values.size() > kMaxFilterValues) {
    return absl::InvalidArgumentError(absl::StrCat(field, " lists ", values.size(),
                                                   " values, over the limit of ", kMaxFilterValues,
                                                   ": split the replay"));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "] is empty"));
    }
    if (std::any_of(values[i].begin(), values[i].end(),
                    [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "] contains control characters"));
    }
    if (values[i].size() > kMaxFilterValueBytes) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "] is ", values[i].size(),
                                                     " bytes, over the limit of ",
                                                     kMaxFilterValueBytes));
    }
  }
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

absl::Status CheckRetryDelay(const char* field, const std::optional<absl::Duration>& d) {
  if (d && (*d < kMinRetryDelay || *d > kMaxRetryDelay)) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", absl::FormatDuration(*d),
                                                   " must be between ",
                                                   absl::FormatDuration(kMinRetryDelay), " and ",
                                                   absl::FormatDuration(kMaxRetryDelay)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRetrySettings(const RetrySettings& retry) {
  if (retry.max_attempts && (*retry.max_attempts < 1 || *retry.max_attempts > kMaxRetryAttempts)) {
    return absl::InvalidArgumentError(absl::StrCat("retry.max_attempts ", *retry.max_attempts,
                                                   " must be between 1 and ", kMaxRetryAttempts));
  }
  if (absl::Status s = CheckRetryDelay("retry.base", retry.base_delay); !s.ok()) return s;
  if (absl::Status s = CheckRetryDelay("retry.cap", retry.max_delay); !s.ok()) return s;
  if (retry.base_delay && retry.max_delay && *retry.max_delay < *retry.base_delay) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retry.cap ", absl::FormatDuration(*retry.max_delay), " is below retry.base ",
        absl::FormatDuration(*retry.base_delay)));
  }
  return absl::OkStatus();
}

absl::Status ValidateReplaySink(const std::string& sink, std::vector<std::string> configured) {
  if (sink.empty()) return absl::OkStatus();
  std::sort(configured.begin(), configured.end());
  if (std::binary_search(configured.begin(), configured.end(), sink)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("sink \"", sink, "\" is not configured; the configured sinks are: ",
                   configured.empty() ? "(none)" : absl::StrJoin(configured, ", ")));
}

std::vector<Outcome> SelectedOutcomes(const std::vector<Outcome>& requested,
                                      bool include_succeeded) {
  std::vector<Outcome> out = requested;
  if (out.empty()) out = {Outcome::kFailed, Outcome::kPending, Outcome::kRetrying};
  if (include_succeeded) {
    out.push_back(Outcome::kSucceeded);
    out.push_back(Outcome::kAlreadyProcessed);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int MinBurst(double rate) {
  return static_cast<int>(std::ceil(rate * absl::ToDoubleSeconds(kBurstWindow))) + 1;
}

int EffectiveBurst(double rate, int burst, int default_burst) {
  if (burst > 0) return burst;
  if (default_burst > 0) return std::max(default_burst, MinBurst(rate));
  return std::max(static_cast<int>(std::ceil(rate)), MinBurst(rate));
}

double BucketCapacity(double rate, int burst) {
  return std::max(1.0, burst - rate * absl::ToDoubleSeconds(kBurstWindow));
}

absl::StatusOr<ReplaySpec> ValidateReplayRequest(const ReplayRequestInput& in,
                                                 const ReplayLimits& limits, absl::Time now) {
  if (!in.from && !in.to) {
    return absl::InvalidArgumentError(
        "from and to are required: a replay needs explicit time bounds [from, to)");
  }
  if (!in.from) return absl::InvalidArgumentError("from is required (the start of the window)");
  if (!in.to) return absl::InvalidArgumentError("to is required (the end of the window)");
  const absl::Time from = *in.from;
  const absl::Time to = *in.to;
  if (to == from) {
    return absl::InvalidArgumentError(
        absl::StrCat("the window is empty: to equals from (", FormatRfc3339(from), ")"));
  }
  if (to < from) {
    return absl::InvalidArgumentError(absl::StrCat("to (", FormatRfc3339(to), ") is before from (",
                                                   FormatRfc3339(from),
                                                   "): the window is inverted"));
  }
  if (to > now + kFutureTolerance) {
    return absl::InvalidArgumentError(absl::StrCat(
        "to (", FormatRfc3339(to), ") is in the future (server time ", FormatRfc3339(now), ")"));
  }
  if (to - from > limits.max_window) {
    return absl::InvalidArgumentError(
        absl::StrCat("the window is too wide: ", Span(to - from), " exceeds replay.max_window ",
                     Span(limits.max_window), "; split it into smaller replays"));
  }
  for (const std::string& s : in.sources) {
    if (absl::Status status = ValidateSourceName(s); !status.ok()) return status;
  }
  auto keys = FilterList("keys", in.keys);
  if (!keys.ok()) return keys.status();
  auto types = FilterList("types", in.types);
  if (!types.ok()) return types.status();
  auto event_ids = FilterList("event_ids", in.event_ids);
  if (!event_ids.ok()) return event_ids.status();
  if (absl::Status s = ValidateRetrySettings(in.retry); !s.ok()) return s;
  auto validated_rate = ValidateRate(in.rate, in.allow_high_rate, limits);
  if (!validated_rate.ok()) return validated_rate.status();
  const double rate = *validated_rate;
  auto breaker = ValidateBreaker(in, limits);
  if (!breaker.ok()) return breaker.status();
  if (in.burst < 0) {
    return absl::InvalidArgumentError(absl::StrCat("burst ", in.burst, " must be positive"));
  }
  const int burst = EffectiveBurst(rate, in.burst, limits.default_burst);
  if (burst < MinBurst(rate)) {
    return absl::InvalidArgumentError(absl::StrCat("burst ", burst, " is below what rate ",
                                                   Rate(rate), " sends in 100 ms: use at least ",
                                                   MinBurst(rate)));
  }
  if (burst > std::max(1.0, limits.max_rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "burst ", burst, " is above the hard cap replay.max_rate (", limits.max_rate, ")"));
  }
  if (in.reason.size() > 1000) {
    return absl::InvalidArgumentError("reason is longer than 1000 bytes");
  }

  ReplaySpec spec;
  spec.window = {from, to, in.sources, *std::move(keys), *std::move(types), *std::move(event_ids)};
  std::sort(spec.window.sources.begin(), spec.window.sources.end());
  spec.window.sources.erase(std::unique(spec.window.sources.begin(), spec.window.sources.end()),
                            spec.window.sources.end());
  spec.outcomes = SelectedOutcomes(in.outcomes, in.include_succeeded);
  spec.include_succeeded = in.include_succeeded;
  spec.verify_downstream = in.verify_downstream;
  spec.rate = rate;
  spec.burst = burst;
  spec.allow_high_rate = in.allow_high_rate;
  spec.reason = in.reason;
  spec.breaker = *breaker;
  spec.sink = in.sink;
  spec.retry = in.retry;
  return spec;
}

absl::StatusOr<double> ValidateRate(double requested, bool allow_high_rate,
                                    const ReplayLimits& limits) {
  if (std::isnan(requested) || requested < 0) {
    return absl::InvalidArgumentError(absl::StrCat("rate ", requested, " must be positive"));
  }
  const double rate = requested == 0 ? limits.default_rate : requested;
  if (rate > limits.max_rate) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rate ", Rate(rate), " is above the hard cap replay.max_rate ", Rate(limits.max_rate)));
  }
  if (rate > limits.high_rate_threshold && !allow_high_rate) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rate ", Rate(rate), " is above replay.high_rate_threshold ",
        Rate(limits.high_rate_threshold), ": set allow_high_rate to confirm (--allow-high-rate)"));
  }
  return rate;
}

absl::StatusOr<BreakerSettings> ValidateBreaker(const ReplayRequestInput& in,
                                                const ReplayLimits& limits) {
  const BreakerSettings b{
      in.breaker_consecutive_failures.value_or(limits.breaker.consecutive_failures),
      in.breaker_failure_ratio.value_or(limits.breaker.failure_ratio),
      in.breaker_window.value_or(limits.breaker.window)};
  if (b.consecutive_failures < 0 || b.consecutive_failures > kMaxBreakerCount) {
    return absl::InvalidArgumentError(absl::StrCat("breaker.consecutive_failures ",
                                                   b.consecutive_failures,
                                                   " must be between 0 and ", kMaxBreakerCount));
  }
  if (b.window < 0 || b.window > kMaxBreakerCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("breaker.window ", b.window, " must be between 0 and ", kMaxBreakerCount));
  }
  if (std::isnan(b.failure_ratio) || b.failure_ratio < 0 || b.failure_ratio > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("breaker.failure_ratio ", b.failure_ratio, " must be between 0 and 1"));
  }
  return b;
}

}  // namespace replayd
