// The pure decisions behind the on-call views: bucket widths, the request's
// window defaults, missing sequence numbers per bucket, the replay windows
// worth suggesting and the dry-run command that checks one. No I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/inspection_store.h"

namespace replayd {

// A window may hold at most this many buckets.
inline constexpr int kMaxBuckets = 10000;

// Bucket widths picked automatically, smallest first.
absl::Duration PickBucket(absl::Duration span, int target_buckets = 60);

// Upstream sequence numbers missing per row (rows in Timeline order): the
// holes inside the row's span of sequence numbers plus the hole between it
// and the same source's previous row.
std::vector<int64_t> MissingPerRow(const std::vector<BucketRow>& rows);

struct Window {
  absl::Time from;
  absl::Time to;
  std::vector<std::string> sources;  // sorted
  int64_t failed = 0;
  int64_t pending = 0;
  int64_t retrying = 0;
  int64_t missing = 0;
};

// Runs of buckets holding failed or settled pending/retrying events (rows in
// Timeline order). Buckets without events continue a run; a bucket whose
// events are all delivered (or only freshly pending) ends it. Windows are
// clamped to [clamp_from, clamp_to). Counts cover the window's sources.
std::vector<Window> SuggestWindows(const std::vector<BucketRow>& rows, absl::Duration bucket,
                                   absl::Time clamp_from, absl::Time clamp_to);

// "replayctl dry-run --from <RFC 3339> --to <RFC 3339> --source a --source b".
std::string DryRunCommand(absl::Time from, absl::Time to, const std::vector<std::string>& sources);

struct ResolvedWindow {
  absl::Time from;
  absl::Time to;
  absl::Duration bucket;
};

// Applies the request defaults (to = now, from = to - 1h, automatic bucket);
// `now` is cut to microseconds, as the log stores times. INVALID_ARGUMENT
// when to <= from, bucket_seconds < 0 or the window would hold more than
// kMaxBuckets buckets.
absl::StatusOr<ResolvedWindow> ResolveWindow(std::optional<absl::Time> from,
                                             std::optional<absl::Time> to, int64_t bucket_seconds,
                                             absl::Time now);

// OK when every name follows the source-name rule; else the first offender's
// INVALID_ARGUMENT.
absl::Status ValidateSources(const std::vector<std::string>& sources);

// Sorted, without duplicates.
std::vector<std::string> SourceSet(std::vector<std::string> sources);

}  // namespace replayd
