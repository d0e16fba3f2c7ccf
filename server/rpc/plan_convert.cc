#include "server/rpc/plan_convert.h"

#include <google/protobuf/util/json_util.h>

#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/rpc/proto_convert.h"

namespace replayd {
namespace {

namespace pb = replay::v1;

// What a start of a plan may set: how it is paced and why, not what it selects.
const std::set<std::string>& StartOnlyFields() {
  static const std::set<std::string> fields = {"plan_id", "rate",   "burst",     "allow_high_rate",
                                               "breaker", "reason", "request_id"};
  return fields;
}

}  // namespace

absl::Status CheckPlanStart(const pb::ReplayRequest& start) {
  std::vector<const google::protobuf::FieldDescriptor*> set;
  start.GetReflection()->ListFields(start, &set);
  std::vector<std::string> selection;
  for (const auto* field : set) {
    if (StartOnlyFields().count(field->name()) == 0) selection.push_back(field->name());
  }
  if (!selection.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan_id: a plan carries its selection; do not also set ",
                     absl::StrJoin(selection, ", "),
                     " (only rate, burst, allow_high_rate, breaker, reason and request_id)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::ReplayRequest> PlanStartRequest(const pb::ReplayRequest& start,
                                                   const std::string& plan_json) {
  pb::ReplayRequest out;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(plan_json, &out, options).ok()) {
    return absl::InternalError(
        absl::StrCat("plan ", start.plan_id(), ": its request is unreadable"));
  }
  out.clear_save_plan();
  out.clear_request_id();
  // The start's own fields win; the breaker's unset ones keep the plan's.
  out.MergeFrom(start);
  return out;
}

std::string PlanRequestJson(const pb::ReplayRequest& request) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(request, &json);
  return json;
}

void ToProto(const ReplayPlan& plan, absl::Time now, pb::Plan* out) {
  out->set_plan_id(plan.id);
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  (void)google::protobuf::util::JsonStringToMessage(plan.request_json, out->mutable_request(),
                                                    options);
  out->set_total(plan.Total());
  for (const auto& [decision, count] : plan.counts) {
    if (decision == "deliver") {
      out->set_would_deliver(count);
      continue;
    }
    out->set_would_skip(out->would_skip() + count);
    auto* s = out->add_skipped_by_reason();
    s->set_reason(decision);
    s->set_count(count);
  }
  out->set_created_by(plan.created_by);
  proto_convert::ToProto(plan.created_at, out->mutable_created_at());
  proto_convert::ToProto(plan.expires_at, out->mutable_expires_at());
  out->set_expired(now >= plan.expires_at);
}

void ToProto(const PlannedEvent& e, pb::PlanEvent* out) {
  out->set_source(e.event.event.source);
  out->set_event_id(e.event.event.event_id);
  out->set_decision(e.decision);
  proto_convert::ToProto(e.event.ingested_at, out->mutable_ingested_at());
  out->set_position(e.event.position);
}

}  // namespace replayd
