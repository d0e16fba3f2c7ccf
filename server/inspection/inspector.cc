#include "server/inspection/inspector.h"

#include <algorithm>
#include <map>

#include "absl/status/status.h"

namespace replayd {
namespace {

// Each source's lowest to highest sequence number in `rows`.
std::vector<SequenceRange> SequenceRanges(const std::vector<BucketRow>& rows) {
  std::map<std::string, SequenceRange> by_source;
  for (const BucketRow& r : rows) {
    if (!r.min_sequence || !r.max_sequence) continue;
    auto [it, added] =
        by_source.try_emplace(r.source, SequenceRange{r.source, *r.min_sequence, *r.max_sequence});
    it->second.first = std::min(it->second.first, *r.min_sequence);
    it->second.last = std::max(it->second.last, *r.max_sequence);
  }
  std::vector<SequenceRange> out;
  for (auto& [source, range] : by_source) out.push_back(std::move(range));
  return out;
}

}  // namespace

absl::StatusOr<TimelineView> Inspection::Timeline(const WindowQuery& query) {
  auto window = ResolveWindow(query.from, query.to, query.bucket_seconds, clock_->Now());
  if (!window.ok()) return window.status();
  if (absl::Status s = ValidateSources(query.sources); !s.ok()) return s;
  auto rows = store_->Timeline(
      TimelineQuery{window->from, window->to, window->bucket, SourceSet(query.sources)});
  if (!rows.ok()) return rows.status();
  std::vector<int64_t> missing = MissingPerRow(*rows);
  TimelineView out;
  out.window = *window;
  out.buckets.reserve(rows->size());
  for (size_t i = 0; i < rows->size(); ++i) {
    const BucketRow& r = (*rows)[i];
    out.buckets.push_back({r.start, r.source, r.counts, missing[i]});
    out.totals += r.counts;
  }
  return out;
}

absl::StatusOr<GapsView> Inspection::Gaps(const WindowQuery& query) {
  // Microseconds, as Postgres stores them: a window clamped to now prints short.
  absl::Time now = absl::FromUnixMicros(absl::ToUnixMicros(clock_->Now()));
  auto window = ResolveWindow(query.from, query.to, query.bucket_seconds, now);
  if (!window.ok()) return window.status();
  if (absl::Status s = ValidateSources(query.sources); !s.ok()) return s;
  std::vector<std::string> sources = SourceSet(query.sources);
  auto rows = store_->Timeline(
      TimelineQuery{window->from, window->to, window->bucket, sources, now - settle_});
  if (!rows.ok()) return rows.status();
  auto holes =
      store_->FindSequenceHoles(window->from, window->to, SequenceRanges(*rows), kMaxSequenceHoles);
  if (!holes.ok()) return holes.status();

  GapsView out;
  out.window = *window;
  out.holes = std::move(holes->holes);
  out.missing = holes->missing;
  // A replay window must not reach into the future (the server refuses it).
  for (Window& w : SuggestWindows(*rows, window->bucket, window->from, std::min(window->to, now))) {
    std::string command = DryRunCommand(w.from, w.to, w.sources);
    out.windows.push_back({std::move(w), std::move(command)});
  }
  return out;
}

absl::StatusOr<EventTrace> Inspection::Trace(const std::string& source,
                                             const std::string& event_id) {
  if (source.empty() || event_id.empty()) {
    return absl::InvalidArgumentError("source and event_id are both required");
  }
  if (delivery_store_ != nullptr) return delivery_store_->GetTrace(source, event_id);
  auto event = events_->Find(source, event_id);
  if (!event.ok()) return event.status();
  return EventTrace{*std::move(event), {}};
}

}  // namespace replayd
