// Time and duration arguments (replayctl, the dashboard's API, the config):
// ParseDurationArg and ParseTimeArg on any text, with their guarantees
// checked: no negative duration, relative times are now -/+ the duration,
// and a parsed time prints (FormatRfc3339) to text that parses back to it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "server/common/time_format.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace replayd;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const absl::Time now = fuzz::Now();

  auto duration = ParseDurationArg(text);
  if (duration.ok()) {
    FUZZ_CHECK(*duration >= absl::ZeroDuration());
  } else {
    FUZZ_CHECK(absl::IsInvalidArgument(duration.status()));
  }

  auto time = ParseTimeArg(text, now);
  if (!time.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(time.status()));
    return 0;
  }
  std::string stripped(text);
  absl::StripAsciiWhitespace(&stripped);
  if (!stripped.empty() && (stripped[0] == '-' || stripped[0] == '+')) {
    auto d = ParseDurationArg(std::string_view(stripped).substr(1));
    FUZZ_CHECK(d.ok());
    FUZZ_CHECK(*time == (stripped[0] == '-' ? now - *d : now + *d));
  }
  // Years 1-9999, the range RFC 3339 can write.
  static const absl::Time kFirst = absl::FromCivil(absl::CivilSecond(1, 1, 1), absl::UTCTimeZone());
  static const absl::Time kEnd = absl::FromCivil(absl::CivilSecond(10000, 1, 1), absl::UTCTimeZone());
  if (*time >= kFirst && *time < kEnd) {
    auto again = ParseTimeArg(FormatRfc3339(*time), now);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(*again == *time);
    absl::Time day = StartOfUtcDay(*time);
    FUZZ_CHECK(day <= *time && *time - day < absl::Hours(24));
  }
  return 0;
}
