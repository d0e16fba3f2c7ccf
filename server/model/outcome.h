// What became of an event's delivery: the outcome every layer speaks of.
// Its spelling in the log ("pending", ...) is the store's: OutcomeName in
// server/store/event.h.
#pragma once

namespace replayd {

enum class Outcome { kPending, kRetrying, kSucceeded, kAlreadyProcessed, kFailed };
inline constexpr Outcome kOutcomes[] = {Outcome::kPending, Outcome::kRetrying, Outcome::kSucceeded,
                                        Outcome::kAlreadyProcessed, Outcome::kFailed};

// Whether the downstream has the event, as far as the log knows: created
// (succeeded) or found there (already_processed).
inline bool IsDelivered(Outcome o) {
  return o == Outcome::kSucceeded || o == Outcome::kAlreadyProcessed;
}

}  // namespace replayd
