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

void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void ToProto(const RetrySettings& r, pb::RetryPolicy* out) {
  if (r.max_attempts) out->set_max_attempts(*r.max_attempts);
  if (r.base_delay) ToProto(*r.base_delay, out->mutable_base());
  if (r.max_delay) ToProto(*r.max_delay, out->mutable_cap());
}

RetrySettings FromProto(const pb::RetryPolicy& r) {
  RetrySettings out;
  if (r.has_max_attempts()) out.max_attempts = r.max_attempts();
  if (r.has_base()) out.base_delay = FromProto(r.base());
  if (r.has_cap()) out.max_delay = FromProto(r.cap());
  return out;
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
