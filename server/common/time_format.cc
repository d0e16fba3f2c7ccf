#include "server/common/time_format.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace replayd {

std::string FormatRfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<absl::Duration> ParseDurationArg(std::string_view text) {
  std::string s(text);
  s = std::string(absl::StripAsciiWhitespace(s));
  if (s.empty()) return absl::InvalidArgumentError("empty duration");
  absl::Duration d;
  if (s.back() == 'd') {
    double days = 0;
    if (!absl::SimpleAtod(s.substr(0, s.size() - 1), &days)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", s, "\""));
    }
    d = absl::Hours(24) * days;
  } else if (!absl::ParseDuration(s, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration \"", s, "\" (use e.g. 30s, 15m, 6h, 7d)"));
  }
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("negative duration \"", s, "\""));
  }
  return d;
}

absl::StatusOr<absl::Time> ParseTimeArg(std::string_view text, absl::Time now) {
  std::string s(text);
  s = std::string(absl::StripAsciiWhitespace(s));
  if (s == "now") return now;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    auto d = ParseDurationArg(s.substr(1));
    if (!d.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid relative time \"", s, "\" (use e.g. -6h, -90m, -2d, now)"));
    }
    return s[0] == '-' ? now - *d : now + *d;
  }
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return t;
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid time \"", s, "\": want RFC 3339 (2026-11-22T03:00:00Z) or relative (-6h, now)"));
}

absl::Time StartOfUtcDay(absl::Time t) {
  absl::CivilDay day = absl::ToCivilDay(t, absl::UTCTimeZone());
  return absl::FromCivil(day, absl::UTCTimeZone());
}

}  // namespace replayd
