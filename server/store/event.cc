#include "server/store/event.h"

namespace replayd {

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kPending: return "pending";
    case Outcome::kRetrying: return "retrying";
    case Outcome::kSucceeded: return "succeeded";
    case Outcome::kAlreadyProcessed: return "already_processed";
    case Outcome::kFailed: return "failed";
  }
  return "pending";
}

std::optional<Outcome> ParseOutcome(std::string_view name) {
  for (Outcome o : {Outcome::kPending, Outcome::kRetrying, Outcome::kSucceeded,
                    Outcome::kAlreadyProcessed, Outcome::kFailed}) {
    if (OutcomeName(o) == name) return o;
  }
  return std::nullopt;
}

}  // namespace replayd
