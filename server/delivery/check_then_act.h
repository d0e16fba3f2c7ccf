// The check-then-act decision, shared by live delivery, the dry run and the
// live replay. Pure: the caller gathers the facts (the event as logged, and
// the sink's lookup answer when it asked), this decides.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "server/delivery/sink.h"
#include "server/store/event.h"

namespace replayd {

struct CheckFacts {
  // The sink's read-only lookup, when it was asked: the downstream's record
  // (nullopt = it has none). Only its id counts here.
  std::optional<std::optional<DownstreamRecord>> downstream_record;
  // Resend events the log already records as delivered (include_succeeded).
  bool resend_delivered = false;
};

struct CheckDecision {
  enum class Action {
    kDeliver,
    // The log already records it delivered (succeeded or already_processed).
    kSkipAlreadyDelivered,
    // The downstream's lookup found a record: mark already_processed, no call.
    kSkipFoundDownstream,
  };
  Action action = Action::kDeliver;
  std::string record_id;  // for kSkipFoundDownstream, and delivered events
};

CheckDecision DecideCheckThenAct(const StoredEvent& event, const CheckFacts& facts);

// Stable snake_case names used in dry-run reports, metrics and logs:
// "deliver", "already_delivered", "found_downstream".
std::string_view ActionName(CheckDecision::Action action);

}  // namespace replayd
