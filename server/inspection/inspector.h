// The on-call views of the log: the timeline, its gaps with the replay
// windows worth suggesting, and one event's trace, as plain structs. The
// gRPC InspectionService and the dashboard's /api routes map these to
// replay.v1 messages, so both show the same thing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/inspection/decisions.h"
#include "server/store/delivery_store.h"
#include "server/store/event_store.h"
#include "server/store/inspection_store.h"

namespace replayd {

// A window of the log as asked: unset times and bucket take the defaults of
// ResolveWindow.
struct WindowQuery {
  std::optional<absl::Time> from;
  std::optional<absl::Time> to;
  int64_t bucket_seconds = 0;        // 0 = automatic
  std::vector<std::string> sources;  // empty = every source
};

struct TimelineBucket {
  absl::Time start;
  std::string source;
  OutcomeTally counts;
  int64_t missing = 0;  // upstream sequence numbers missing (MissingPerRow)
};

struct TimelineView {
  ResolvedWindow window;
  std::vector<TimelineBucket> buckets;  // by start, then source
  OutcomeTally totals;
};

struct SuggestedWindow {
  Window window;
  std::string dry_run_command;
};

struct GapsView {
  ResolvedWindow window;
  std::vector<SequenceHole> holes;  // by source, then sequence
  int64_t missing = 0;              // numbers in all the holes, listed or not
  std::vector<SuggestedWindow> windows;
};

// At most this many sequence holes are listed.
inline constexpr int kMaxSequenceHoles = 1000;

class Inspection {
 public:
  // `delivery_store` may be null: the trace then shows the event without attempts.
  // Pending/retrying events younger than `settle` are in-flight, not gaps.
  Inspection(InspectionStore* store, EventStore* events, DeliveryStore* delivery_store,
             const Clock* clock, absl::Duration settle = absl::Minutes(1))
      : store_(store),
        events_(events),
        delivery_store_(delivery_store),
        clock_(clock),
        settle_(settle) {}

  // INVALID_ARGUMENT for a bad window or source name, UNAVAILABLE when the
  // database cannot be reached. Thread safe.
  absl::StatusOr<TimelineView> Timeline(const WindowQuery& query);
  absl::StatusOr<GapsView> Gaps(const WindowQuery& query);
  // INVALID_ARGUMENT without a source or event id; NOT_FOUND when the event
  // is not in the log.
  absl::StatusOr<EventTrace> Trace(const std::string& source, const std::string& event_id);

 private:
  InspectionStore* store_;
  EventStore* events_;
  DeliveryStore* delivery_store_;
  const Clock* clock_;
  const absl::Duration settle_;
};

}  // namespace replayd
