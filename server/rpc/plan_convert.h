// Saved plans on the wire: the request a start of a plan runs (the plan's own,
// with the few fields a start may add) and plans and their events as
// replay.v1 messages.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "replay/v1/replay.pb.h"
#include "server/store/replay_store.h"

namespace replayd {

// INVALID_ARGUMENT when a StartReplay with plan_id also sets a selection
// field: any field but rate, burst, allow_high_rate, breaker, reason and
// request_id (fields added later included). The plan carries the selection.
absl::Status CheckPlanStart(const replay::v1::ReplayRequest& start);

// The request a StartReplay with plan_id runs: the plan's request
// (`plan_json`, protobuf JSON) with `start`'s pacing, breaker, reason and
// request id. `start` passed CheckPlanStart.
absl::StatusOr<replay::v1::ReplayRequest> PlanStartRequest(const replay::v1::ReplayRequest& start,
                                                           const std::string& plan_json);

// The request as a plan keeps it: protobuf JSON.
std::string PlanRequestJson(const replay::v1::ReplayRequest& request);

void ToProto(const ReplayPlan& plan, absl::Time now, replay::v1::Plan* out);
void ToProto(const PlannedEvent& e, replay::v1::PlanEvent* out);

}  // namespace replayd
