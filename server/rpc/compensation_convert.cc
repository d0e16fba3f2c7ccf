#include "server/rpc/compensation_convert.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/rpc/proto_convert.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using proto_convert::ToProto;

// The names of a table's values, comma-separated, but for `except`.
template <typename E, size_t N>
std::string NamesOf(const NamedValue<E> (&table)[N], std::optional<E> except = std::nullopt) {
  std::vector<std::string> names;
  for (const auto& [value, name] : table) {
    if (value != except) names.emplace_back(name);
  }
  return absl::StrJoin(names, ", ");
}

}  // namespace

void ToProto(const CompensationEntry& e, pb::CompensationEntry* out) {
  out->set_source(e.source);
  out->set_event_id(e.event_id);
  ToProto(e.ingested_at, out->mutable_ingested_at());
  out->set_position(e.position);
  out->set_diff_class(std::string(DiffClassName(e.diff_class)));
  out->set_action(std::string(CompensationActionName(e.action)));
  out->set_log_outcome(ToProto(e.log_outcome));
  out->set_record_id(e.downstream.id);
  if (e.downstream.version) out->set_record_version(*e.downstream.version);
  if (e.downstream.updated_at) ToProto(*e.downstream.updated_at, out->mutable_record_updated_at());
  out->set_detail(e.detail);
  out->set_result(std::string(CompensationResultName(e.result)));
}

void ToProto(const CompensationPlan& plan, bool expired, pb::Compensation* out) {
  out->set_plan_id(plan.id);
  out->set_state(std::string(CompensationStateName(plan.state)));
  ToProto(plan.from, out->mutable_from());
  ToProto(plan.to, out->mutable_to());
  for (const std::string& s : plan.sources) out->add_sources(s);
  for (const auto& [class_action, count] : plan.counts) {
    pb::CompensationCount* c = out->add_counts();
    c->set_diff_class(std::string(DiffClassName(class_action.first)));
    c->set_action(std::string(CompensationActionName(class_action.second)));
    c->set_count(count);
  }
  for (const UpstreamHole& h : plan.holes) {
    pb::SequenceRange* r = out->add_holes();
    r->set_source(h.source);
    r->set_first(h.first);
    r->set_last(h.last);
  }
  out->set_missing_upstream(plan.MissingUpstream());
  out->set_apply_job_id(plan.apply_job_id);
  out->set_created_by(plan.created_by);
  ToProto(plan.created_at, out->mutable_created_at());
  ToProto(plan.expires_at, out->mutable_expires_at());
  out->set_expired(expired);
}

void ToProto(const CompensationView& view, pb::Compensation* out) {
  ToProto(view.plan, view.expired, out);
  for (const CompensationEntry& e : view.samples) ToProto(e, out->add_samples());
}

void ToProto(const std::vector<CompensationView>& plans, pb::ListCompensationsResponse* out) {
  for (const CompensationView& p : plans) ToProto(p, out->add_plans());
}

absl::StatusOr<std::optional<DiffClass>> ParseEntryClass(const std::string& name,
                                                         const char* field) {
  if (name.empty()) return std::nullopt;
  std::optional<DiffClass> c = ParseDiffClass(name);
  if (!c || *c == DiffClass::kMissingUpstream) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", name, "\" is not a class of entries (",
                     NamesOf(kDiffClassNames, std::optional(DiffClass::kMissingUpstream)), ")"));
  }
  return c;
}

absl::StatusOr<CompensationAction> ParseAction(const std::string& name) {
  std::optional<CompensationAction> a = ParseCompensationAction(name);
  if (!a) {
    return absl::InvalidArgumentError(absl::StrCat("action: \"", name, "\" is not an action (",
                                                   NamesOf(kCompensationActionNames), ")"));
  }
  return *a;
}

absl::StatusOr<ActionChange> FromProto(const pb::SetCompensationActionsRequest& request) {
  ActionChange change;
  auto c = ParseEntryClass(request.diff_class(), "diff_class");
  if (!c.ok()) return c.status();
  change.diff_class = *c;
  auto a = ParseAction(request.action());
  if (!a.ok()) return a.status();
  change.action = *a;
  change.events.reserve(request.events_size());
  for (const pb::EventRef& e : request.events())
    change.events.emplace_back(e.source(), e.event_id());
  return change;
}

}  // namespace replayd
