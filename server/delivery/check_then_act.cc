#include "server/delivery/check_then_act.h"

#include "server/common/names.h"

namespace replayd {

CheckDecision DecideCheckThenAct(const StoredEvent& event, const CheckFacts& facts) {
  const bool delivered = IsDelivered(event.outcome);
  if (delivered && !facts.resend_delivered) {
    return {CheckDecision::Action::kSkipAlreadyDelivered, event.target_record_id};
  }
  // A resend of a delivered event still goes to the create path: the
  // downstream answers 409 on the same idempotency key if it kept the record.
  if (!delivered && facts.downstream_record.has_value() && facts.downstream_record->has_value()) {
    return {CheckDecision::Action::kSkipFoundDownstream, (*facts.downstream_record)->id};
  }
  return {CheckDecision::Action::kDeliver, ""};
}

std::string_view ActionName(CheckDecision::Action action) {
  static constexpr NamedValue<CheckDecision::Action> kNames[] = {
      {CheckDecision::Action::kDeliver, "deliver"},
      {CheckDecision::Action::kSkipAlreadyDelivered, "already_delivered"},
      {CheckDecision::Action::kSkipFoundDownstream, "found_downstream"}};
  return NameIn(kNames, action);
}

}  // namespace replayd
