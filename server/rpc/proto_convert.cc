#include "server/rpc/proto_convert.h"

namespace replayd::proto_convert {

namespace pb = replay::v1;

void ToProto(absl::Time t, google::protobuf::Timestamp* out) {
  int64_t ns = absl::ToUnixNanos(t);
  int64_t seconds = ns / 1000000000;
  int64_t nanos = ns % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(nanos));
}

pb::Outcome ToProto(Outcome o) {
  switch (o) {
    case Outcome::kPending: return pb::PENDING;
    case Outcome::kRetrying: return pb::RETRYING;
    case Outcome::kSucceeded: return pb::SUCCEEDED;
    case Outcome::kAlreadyProcessed: return pb::ALREADY_PROCESSED;
    case Outcome::kFailed: return pb::FAILED;
  }
  return pb::OUTCOME_UNSPECIFIED;
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

NewEvent FromProto(const pb::Event& e) {
  NewEvent out;
  out.source = e.source();
  out.event_id = e.event_id();
  if (e.has_sequence()) out.sequence = e.sequence();
  out.key = e.key();
  out.type = e.type();
  if (e.has_occurred_at()) out.occurred_at = FromProto(e.occurred_at());
  out.payload = e.payload();
  return out;
}

std::optional<Outcome> FromProto(pb::Outcome o) {
  switch (o) {
    case pb::PENDING: return Outcome::kPending;
    case pb::RETRYING: return Outcome::kRetrying;
    case pb::SUCCEEDED: return Outcome::kSucceeded;
    case pb::ALREADY_PROCESSED: return Outcome::kAlreadyProcessed;
    case pb::FAILED: return Outcome::kFailed;
    default: return std::nullopt;
  }
}

}  // namespace replayd::proto_convert
