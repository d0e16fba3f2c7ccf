#include "server/replay/selection.h"

#include <algorithm>

#include "server/delivery/check_then_act.h"

namespace replayd {

std::string_view CategoryName(ReplayCategory category) {
  switch (category) {
    case ReplayCategory::kDeliver: return "deliver";
    case ReplayCategory::kSkipAlreadyDelivered: return "already_delivered";
    case ReplayCategory::kSkipFoundDownstream: return "found_downstream";
    case ReplayCategory::kSkipOutcomeNotSelected: return "outcome_not_selected";
    case ReplayCategory::kSkipNoRoute: return "no_route";
    case ReplayCategory::kSkipHeldByKey: return "held_by_key";
  }
  return "deliver";
}

bool OutcomeSelected(const ReplaySpec& spec, Outcome outcome) {
  return std::find(spec.outcomes.begin(), spec.outcomes.end(), outcome) != spec.outcomes.end();
}

bool NeedsLookup(const StoredEvent& event, const ReplaySpec& spec, bool routed) {
  return spec.verify_downstream && routed && OutcomeSelected(spec, event.outcome) &&
         !IsDelivered(event.outcome);
}

ReplayCategory Classify(const StoredEvent& event, const ReplaySpec& spec, bool routed,
                        const std::optional<std::optional<DownstreamRecord>>& downstream_record) {
  if (!OutcomeSelected(spec, event.outcome)) {
    return IsDelivered(event.outcome) ? ReplayCategory::kSkipAlreadyDelivered
                                      : ReplayCategory::kSkipOutcomeNotSelected;
  }
  CheckFacts facts;
  facts.resend_delivered = spec.include_succeeded;
  if (NeedsLookup(event, spec, routed)) facts.downstream_record = downstream_record;
  switch (DecideCheckThenAct(event, facts).action) {
    case CheckDecision::Action::kSkipAlreadyDelivered: return ReplayCategory::kSkipAlreadyDelivered;
    case CheckDecision::Action::kSkipFoundDownstream: return ReplayCategory::kSkipFoundDownstream;
    case CheckDecision::Action::kDeliver: break;
  }
  return routed ? ReplayCategory::kDeliver : ReplayCategory::kSkipNoRoute;
}

std::optional<KeyBlocker> KeyOrderBlocker(bool strict, bool keyed,
                                          const std::vector<KeyBlocker>& failed_before,
                                          const std::set<int64_t>& delivered_first) {
  if (!strict || !keyed) return std::nullopt;
  for (const KeyBlocker& b : failed_before) {
    if (delivered_first.count(b.position) == 0) return b;
  }
  return std::nullopt;
}

}  // namespace replayd
