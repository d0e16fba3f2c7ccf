#include "server/store/event.h"

#include "server/common/names.h"

namespace replayd {

namespace {

constexpr NamedValue<Outcome> kOutcomeNames[] = {{Outcome::kPending, "pending"},
                                                 {Outcome::kRetrying, "retrying"},
                                                 {Outcome::kSucceeded, "succeeded"},
                                                 {Outcome::kAlreadyProcessed, "already_processed"},
                                                 {Outcome::kFailed, "failed"}};

}  // namespace

std::string_view OutcomeName(Outcome outcome) { return NameIn(kOutcomeNames, outcome); }

std::optional<Outcome> ParseOutcome(std::string_view name) { return ParseIn(kOutcomeNames, name); }

}  // namespace replayd
