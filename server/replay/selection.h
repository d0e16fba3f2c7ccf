// What a replay does with each event of its window: the one decision shared
// by the dry run and the live replay. Pure: the caller gathers the facts
// (the event as logged, whether its source has a route, the sink's lookup
// answer when it asked), this decides, through the same DecideCheckThenAct
// as live delivery.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "server/delivery/sink.h"
#include "server/store/event.h"
#include "server/store/replay_store.h"

namespace replayd {

enum class ReplayCategory {
  kDeliver,
  // The log records it delivered (succeeded, already_processed).
  kSkipAlreadyDelivered,
  // The sink's lookup found a downstream record (verify_downstream).
  kSkipFoundDownstream,
  // Its outcome is not among the selected ones (e.g. pending when only
  // failed events were asked for).
  kSkipOutcomeNotSelected,
  // Its source has no route: nowhere to deliver it.
  kSkipNoRoute,
  // A strict route's key with an earlier event that is not delivered: held
  // (see KeyOrderBlocker).
  kSkipHeldByKey,
};

// "deliver", "already_delivered", "found_downstream", "outcome_not_selected",
// "no_route", "held_by_key": the names in dry-run reports, samples and logs.
std::string_view CategoryName(ReplayCategory category);

bool OutcomeSelected(const ReplaySpec& spec, Outcome outcome);

// Whether the decision for `event` depends on the sink's lookup; when false,
// Classify ignores `downstream_record`.
bool NeedsLookup(const StoredEvent& event, const ReplaySpec& spec, bool routed);

// `downstream_record`: nullopt when the lookup was not asked; otherwise the
// downstream's record, or an inner nullopt when the downstream has none.
ReplayCategory Classify(const StoredEvent& event, const ReplaySpec& spec, bool routed,
                        const std::optional<std::optional<DownstreamRecord>>& downstream_record);

// Strict order under replay: what holds back an event that Classify would
// deliver. On a strict route a keyed event waits while an earlier event of its
// key (in log position order, inside or outside the window) is failed, unless
// this replay delivers that one first. `failed_before`: the key's failed
// events before this one, lowest first; `delivered_first`: positions this
// replay delivers before it (the dry run's prediction; the live replay's own
// deliveries are no longer failed, so it passes none). Returns the blocking
// event, or nullopt when the event may go. Pure.
std::optional<KeyBlocker> KeyOrderBlocker(bool strict, bool keyed,
                                          const std::vector<KeyBlocker>& failed_before,
                                          const std::set<int64_t>& delivered_first);

// How many failed events KeyOrderBlocker is given at most: enough to find one
// that the replay does not deliver first in all but pathological windows.
inline constexpr int kKeyBlockersRead = 64;

}  // namespace replayd
