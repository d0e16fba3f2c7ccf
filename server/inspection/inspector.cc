#include "server/inspection/inspector.h"

#include <algorithm>

#include "absl/status/status.h"

namespace replayd {

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
  auto holes = store_->SequenceHoles(window->from, window->to, sources, kMaxSequenceHoles);
  if (!holes.ok()) return holes.status();

  GapsView out;
  out.window = *window;
  out.holes = *std::move(holes);
  for (const SequenceHole& h : out.holes) out.missing += h.last_missing - h.first_missing + 1;
  // A replay window must not reach into the future (the server refuses it).
  for (Window& w :
       SuggestWindows(*rows, window->bucket, window->from, std::min(window->to, now))) {
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
