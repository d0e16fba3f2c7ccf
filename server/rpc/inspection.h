// The inspection views as replay.v1 messages: Inspector answers the gRPC
// InspectionService, the dashboard's /api routes and replayctl alike by
// mapping server/inspection's plain structs to protobuf; what the views mean
// is decided there.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "replay/v1/inspection.pb.h"
#include "server/common/clock.h"
#include "server/inspection/inspector.h"
#include "server/store/delivery_store.h"
#include "server/store/event_store.h"
#include "server/store/inspection_store.h"

namespace replayd {

replay::v1::Timeline ToProto(const TimelineView& view);
replay::v1::Gaps ToProto(const GapsView& view);
replay::v1::EventTrace ToProto(const EventTrace& trace);

class Inspector {
 public:
  // `delivery_store` may be null: the trace then shows the event without attempts.
  // Pending/retrying events younger than `settle` are in-flight, not gaps.
  Inspector(InspectionStore* store, EventStore* events, DeliveryStore* delivery_store,
            const Clock* clock, absl::Duration settle = absl::Minutes(1))
      : inspection_(store, events, delivery_store, clock, settle) {}

  // The status codes of Inspection's calls. Thread safe.
  absl::StatusOr<replay::v1::Timeline> GetTimeline(const replay::v1::TimelineRequest& request);
  absl::StatusOr<replay::v1::Gaps> GetGaps(const replay::v1::GapsRequest& request);
  absl::StatusOr<replay::v1::EventTrace> GetEventTrace(
      const replay::v1::EventTraceRequest& request);

 private:
  Inspection inspection_;
};

// Proto JSON (field names as in the .proto, every field printed).
std::string ToJson(const google::protobuf::Message& message);

}  // namespace replayd
