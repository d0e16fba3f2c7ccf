#include "server/inspection/decisions.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/source_name.h"
#include "server/common/time_format.h"

namespace replayd {
namespace {

bool Unsettled(const BucketRow& row) { return row.counts.failed > 0 || row.settled_unfinished > 0; }

}  // namespace

absl::Duration PickBucket(absl::Duration span, int target_buckets) {
  static constexpr int64_t kWidths[] = {1,   2,   5,    10,   15,   30,    60,    120,   300,
                                        600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400};
  absl::Duration want = span / std::max(1, target_buckets);
  for (int64_t w : kWidths) {
    if (absl::Seconds(w) >= want) return absl::Seconds(w);
  }
  int64_t days = static_cast<int64_t>(std::ceil(absl::FDivDuration(want, absl::Hours(24))));
  return absl::Hours(24) * days;
}

std::vector<int64_t> MissingPerRow(const std::vector<BucketRow>& rows) {
  std::vector<int64_t> out(rows.size(), 0);
  std::map<std::string, int64_t> last_max;
  for (size_t i = 0; i < rows.size(); ++i) {
    const BucketRow& r = rows[i];
    if (!r.min_sequence || !r.max_sequence || r.sequenced == 0) continue;
    int64_t inside = std::max<int64_t>(0, *r.max_sequence - *r.min_sequence + 1 - r.sequenced);
    int64_t between = 0;
    auto it = last_max.find(r.source);
    if (it != last_max.end()) {
      between = std::max<int64_t>(0, *r.min_sequence - it->second - 1);
      it->second = std::max(it->second, *r.max_sequence);
    } else {
      last_max.emplace(r.source, *r.max_sequence);
    }
    out[i] = inside + between;
  }
  return out;
}

std::vector<Window> SuggestWindows(const std::vector<BucketRow>& rows, absl::Duration bucket,
                                   absl::Time clamp_from, absl::Time clamp_to) {
  std::vector<int64_t> missing = MissingPerRow(rows);
  // Group the rows of each bucket start.
  struct Run {
    absl::Time start;
    absl::Time end;
    std::vector<size_t> rows;
    std::set<std::string> sources;
  };
  std::vector<Run> runs;
  std::optional<Run> open;
  for (size_t i = 0; i < rows.size();) {
    size_t j = i;
    bool bad = false;
    std::set<std::string> bad_sources;
    while (j < rows.size() && rows[j].start == rows[i].start) {
      if (Unsettled(rows[j])) {
        bad = true;
        bad_sources.insert(rows[j].source);
      }
      ++j;
    }
    if (bad) {
      if (!open) open = Run{rows[i].start, rows[i].start, {}, {}};
      open->end = rows[i].start + bucket;
      for (size_t k = i; k < j; ++k) open->rows.push_back(k);
      open->sources.insert(bad_sources.begin(), bad_sources.end());
    } else if (open) {
      runs.push_back(std::move(*open));
      open.reset();
    }
    i = j;
  }
  if (open) runs.push_back(std::move(*open));

  std::vector<Window> out;
  for (const Run& run : runs) {
    Window w;
    w.from = std::max(run.start, clamp_from);
    w.to = std::min(run.end, clamp_to);
    if (w.to <= w.from) continue;
    w.sources.assign(run.sources.begin(), run.sources.end());
    for (size_t k : run.rows) {
      if (!run.sources.count(rows[k].source)) continue;
      w.failed += rows[k].counts.failed;
      w.pending += rows[k].counts.pending;
      w.retrying += rows[k].counts.retrying;
      w.missing += missing[k];
    }
    out.push_back(std::move(w));
  }
  return out;
}

std::string DryRunCommand(absl::Time from, absl::Time to, const std::vector<std::string>& sources) {
  std::string out =
      absl::StrCat("replayctl dry-run --from ", FormatRfc3339(from), " --to ", FormatRfc3339(to));
  for (const std::string& s : sources) absl::StrAppend(&out, " --source ", s);
  return out;
}

absl::StatusOr<ResolvedWindow> ResolveWindow(std::optional<absl::Time> from,
                                             std::optional<absl::Time> to, int64_t bucket_seconds,
                                             absl::Time now) {
  ResolvedWindow w;
  now = absl::FromUnixMicros(absl::ToUnixMicros(now));
  w.to = to.value_or(now);
  w.from = from.value_or(w.to - absl::Hours(1));
  if (w.to <= w.from) {
    return absl::InvalidArgumentError(absl::StrCat(
        "to (", FormatRfc3339(w.to), ") must be after from (", FormatRfc3339(w.from), ")"));
  }
  if (bucket_seconds < 0) {
    return absl::InvalidArgumentError("bucket_seconds must not be negative");
  }
  w.bucket = bucket_seconds == 0 ? PickBucket(w.to - w.from) : absl::Seconds(bucket_seconds);
  if (absl::FDivDuration(w.to - w.from, w.bucket) > kMaxBuckets) {
    return absl::InvalidArgumentError(
        absl::StrCat("a bucket of ", bucket_seconds, "s gives more than ", kMaxBuckets,
                     " buckets over this window; widen the bucket or narrow the window"));
  }
  return w;
}

absl::Status ValidateSources(const std::vector<std::string>& sources) {
  for (const std::string& s : sources) {
    if (absl::Status status = ValidateSourceName(s); !status.ok()) return status;
  }
  return absl::OkStatus();
}

std::vector<std::string> SourceSet(std::vector<std::string> sources) {
  std::sort(sources.begin(), sources.end());
  sources.erase(std::unique(sources.begin(), sources.end()), sources.end());
  return sources;
}

}  // namespace replayd
