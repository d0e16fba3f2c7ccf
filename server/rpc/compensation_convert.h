// Compensation plans on the wire: plans, their samples and entries as
// replay.v1 messages, and the class and action names a request gives.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "replay/v1/replay.pb.h"
#include "server/replay/controller.h"

namespace replayd {

void ToProto(const CompensationEntry& e, replay::v1::CompensationEntry* out);
// The plan without samples.
void ToProto(const CompensationPlan& plan, bool expired, replay::v1::Compensation* out);
// The plan with its samples.
void ToProto(const CompensationView& view, replay::v1::Compensation* out);
void ToProto(const std::vector<CompensationView>& plans,
             replay::v1::ListCompensationsResponse* out);

// nullopt for "" (every class); INVALID_ARGUMENT naming `field` and the
// classes for any other name that is not an entry's class.
absl::StatusOr<std::optional<DiffClass>> ParseEntryClass(const std::string& name,
                                                         const char* field);
// INVALID_ARGUMENT naming the actions for a name that is not one.
absl::StatusOr<CompensationAction> ParseAction(const std::string& name);

// The change a SetCompensationActions request asks for: its class or its
// events, and its action. INVALID_ARGUMENT for an unknown class or action.
absl::StatusOr<ActionChange> FromProto(const replay::v1::SetCompensationActionsRequest& request);

}  // namespace replayd
