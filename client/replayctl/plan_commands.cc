#include "client/replayctl/plan_commands.h"

#include <algorithm>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/replayctl/json_output.h"
#include "client/replayctl/proto_time.h"
#include "server/common/time_format.h"

namespace replayd::replayctl {
namespace {

namespace pb = replay::v1;

std::string OutcomeList(const pb::ReplayRequest& r) {
  if (r.outcomes().empty()) return "failed,pending,retrying (default)";
  std::vector<std::string> names;
  for (int o : r.outcomes()) {
    std::string s = pb::Outcome_Name(static_cast<pb::Outcome>(o));
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    names.push_back(s);
  }
  return absl::StrJoin(names, ",");
}

}  // namespace

std::string RenderPlan(const pb::Plan& p) {
  const pb::ReplayRequest& r = p.request();
  std::string out = absl::StrCat("plan ", p.plan_id(), p.expired() ? " (EXPIRED)" : "", "\n");
  absl::StrAppend(&out, "  window        [", FormatRfc3339(FromTimestamp(r.from())), ", ",
                  FormatRfc3339(FromTimestamp(r.to())), ")",
                  r.sources().empty() ? " every source"
                                      : absl::StrCat(" sources ", absl::StrJoin(r.sources(), ",")),
                  "\n");
  absl::StrAppend(&out, "  outcomes      ", OutcomeList(r), "\n");
  std::vector<std::string> flags;
  if (r.include_succeeded()) flags.push_back("include_succeeded");
  if (r.verify_downstream()) flags.push_back("verify_downstream");
  if (!flags.empty()) absl::StrAppend(&out, "  flags         ", absl::StrJoin(flags, ", "), "\n");
  std::vector<std::string> reasons;
  for (const auto& s : p.skipped_by_reason()) {
    reasons.push_back(absl::StrCat(s.reason(), " ", s.count()));
  }
  absl::StrAppend(&out, "  events        ", p.total(), "\n  would deliver ", p.would_deliver(),
                  "\n  would skip    ", p.would_skip(),
                  reasons.empty() ? "" : absl::StrCat(" (", absl::StrJoin(reasons, ", "), ")"),
                  "\n");
  absl::StrAppend(&out, "  created       ", FormatRfc3339(FromTimestamp(p.created_at())), " by ",
                  p.created_by(), "\n");
  absl::StrAppend(&out, "  expires       ", FormatRfc3339(FromTimestamp(p.expires_at())), "\n");
  if (!r.reason().empty()) absl::StrAppend(&out, "  reason        ", r.reason(), "\n");
  return out;
}

std::string RenderPlanEvent(const pb::PlanEvent& e) {
  return absl::StrFormat("%s\t%s\t%s", e.source(), e.event_id(), e.decision());
}

void RegisterPlanCommands(CLI::App& app, CommonOptions& o) {
  auto* plan = app.add_subcommand("plan", "saved plans: what a dry run with --save-plan selected");
  plan->require_subcommand(1);
  auto id = std::make_shared<std::string>();
  auto events = std::make_shared<bool>(false);
  auto* show = plan->add_subcommand("show", "a plan's request, counts and expiry, and its events");
  show->add_option("plan_id", *id, "the plan id (from dry-run --save-plan)")->required();
  show->add_flag("--events", *events,
                 "also every event of the plan: source, event id and decision (streamed)");
  show->callback([&o, id, events] {
    client::ReplayClient c(o.ClientOptionsFor());
    auto p = c.GetPlan(*id);
    if (!p.ok()) throw CLI::RuntimeError(ReportError(p.status()));
    if (!*events) {
      std::cout << (o.json() ? ToJson(*p) + "\n" : RenderPlan(*p));
      return;
    }
    // JSON: one object per event (NDJSON); text: the plan, then a line per event.
    if (!o.json()) std::cout << RenderPlan(*p) << "SOURCE\tEVENT_ID\tDECISION\n";
    absl::Status s = c.ListPlanEvents(*id, [&o](const pb::PlanEvent& e) {
      std::cout << (o.json() ? ToJson(e) : RenderPlanEvent(e)) << "\n";
    });
    if (!s.ok()) throw CLI::RuntimeError(ReportError(s));
  });
}

}  // namespace replayd::replayctl
