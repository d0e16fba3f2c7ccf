// The on-call views of the log (SPEC §6): timeline, gaps and suggested replay
// windows, one event's trace. Inspector answers in replay.v1 messages so that
// the gRPC InspectionService, the dashboard's /api routes and replayctl all
// show the same thing; the decisions are pure functions tested directly.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "replay/v1/inspection.pb.h"
#include "server/common/clock.h"
#include "server/store/delivery_store.h"
#include "server/store/event_store.h"
#include "server/store/inspection_store.h"

namespace replayd {

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

// Applies the request defaults (to = now, from = to - 1h, automatic bucket).
// INVALID_ARGUMENT when to <= from, bucket_seconds < 0 or the window would
// hold more than 10,000 buckets.
absl::StatusOr<ResolvedWindow> ResolveWindow(const google::protobuf::Timestamp* from,
                                             const google::protobuf::Timestamp* to,
                                             int64_t bucket_seconds, absl::Time now);

class Inspector {
 public:
  // `delivery_store` may be null: the trace then shows the event without attempts.
  // Pending/retrying events younger than `settle` are in-flight, not gaps.
  Inspector(InspectionStore* store, EventStore* events, DeliveryStore* delivery_store,
            const Clock* clock, absl::Duration settle = absl::Minutes(1))
      : store_(store),
        events_(events),
        delivery_store_(delivery_store),
        clock_(clock),
        settle_(settle) {}

  // INVALID_ARGUMENT for a bad window or source name, UNAVAILABLE when the
  // database cannot be reached. Thread safe.
  absl::StatusOr<replay::v1::Timeline> GetTimeline(const replay::v1::TimelineRequest& request);
  absl::StatusOr<replay::v1::Gaps> GetGaps(const replay::v1::GapsRequest& request);
  // NOT_FOUND when the event is not in the log.
  absl::StatusOr<replay::v1::EventTrace> GetEventTrace(
      const replay::v1::EventTraceRequest& request);

 private:
  InspectionStore* store_;
  EventStore* events_;
  DeliveryStore* delivery_store_;
  const Clock* clock_;
  const absl::Duration settle_;
};

// Proto JSON (field names as in the .proto, every field printed).
std::string ToJson(const google::protobuf::Message& message);

}  // namespace replayd
