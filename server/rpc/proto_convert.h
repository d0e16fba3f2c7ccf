// Conversions between the daemon's types and replay.v1 messages, shared by
// the gRPC services.
#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <optional>

#include "absl/time/time.h"
#include "replay/v1/events.pb.h"
#include "server/store/event.h"

namespace replayd::proto_convert {

void ToProto(absl::Time t, google::protobuf::Timestamp* out);
replay::v1::Outcome ToProto(Outcome outcome);

absl::Time FromProto(const google::protobuf::Timestamp& t);
// A published event as the ingester takes it (Publish and its fuzz target).
NewEvent FromProto(const replay::v1::Event& e);
// nullopt for OUTCOME_UNSPECIFIED and unknown values.
std::optional<Outcome> FromProto(replay::v1::Outcome outcome);

void ToProto(absl::Duration d, google::protobuf::Duration* out);
absl::Duration FromProto(const google::protobuf::Duration& d);
// The fields that are set, each way; none set leaves `out` untouched.
void ToProto(const RetrySettings& r, replay::v1::RetryPolicy* out);
RetrySettings FromProto(const replay::v1::RetryPolicy& r);

}  // namespace replayd::proto_convert
