// Diff and compensate, as plain types: how a diff classifies an event of its
// window against the downstream, the change a compensation plan proposes for
// it, and what applying that change did. No I/O here.
//
// A diff is a durable job (ReplayKind::kDiff) whose id is also its
// compensation plan's id; applying a plan is another job
// (ReplayKind::kCompensate) whose spec.plan_id names the plan.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "server/common/names.h"
#include "server/model/outcome.h"

namespace replayd {

// What a diff found for one event. kMissingUpstream is never an entry's
// class: it counts the window's upstream sequence holes (events the log
// never received), listed for the upstream and not fixable here.
enum class DiffClass {
  kInSync,             // delivered, and the downstream holds what replayd last wrote
  kMissingDownstream,  // the log says delivered, the downstream holds nothing
  kUnrecorded,         // the log says failed, pending or retrying; the downstream holds it
  kDiverged,           // the downstream's record is not what replayd last wrote
  kUndelivered,        // neither the log nor the downstream has it delivered
  kMissingUpstream,
};

// What applying a plan does to one event.
enum class CompensationAction {
  kNone,       // in sync: nothing to do
  kCreate,     // deliver it through check-then-act (missing_downstream, undelivered)
  kRecord,     // mark the log already_processed with the downstream's record id, no call
  kKeep,       // leave the downstream's record as it is (the default for diverged)
  kOverwrite,  // send the logged event through the sink's update path
};

inline constexpr NamedValue<DiffClass> kDiffClassNames[] = {
    {DiffClass::kInSync, "in_sync"},          {DiffClass::kMissingDownstream, "missing_downstream"},
    {DiffClass::kUnrecorded, "unrecorded"},   {DiffClass::kDiverged, "diverged"},
    {DiffClass::kUndelivered, "undelivered"}, {DiffClass::kMissingUpstream, "missing_upstream"},
};
inline constexpr NamedValue<CompensationAction> kCompensationActionNames[] = {
    {CompensationAction::kNone, "none"},           {CompensationAction::kCreate, "create"},
    {CompensationAction::kRecord, "record"},       {CompensationAction::kKeep, "keep"},
    {CompensationAction::kOverwrite, "overwrite"},
};

inline std::string_view DiffClassName(DiffClass c) { return NameIn(kDiffClassNames, c); }
inline std::optional<DiffClass> ParseDiffClass(std::string_view name) {
  return ParseIn(kDiffClassNames, name);
}
inline std::string_view CompensationActionName(CompensationAction a) {
  return NameIn(kCompensationActionNames, a);
}
inline std::optional<CompensationAction> ParseCompensationAction(std::string_view name) {
  return ParseIn(kCompensationActionNames, name);
}

// The action a diff proposes for a class.
inline CompensationAction DefaultAction(DiffClass c) {
  switch (c) {
    case DiffClass::kMissingDownstream:
    case DiffClass::kUndelivered: return CompensationAction::kCreate;
    case DiffClass::kUnrecorded: return CompensationAction::kRecord;
    case DiffClass::kDiverged: return CompensationAction::kKeep;
    case DiffClass::kInSync:
    case DiffClass::kMissingUpstream: return CompensationAction::kNone;
  }
  return CompensationAction::kNone;
}

// Whether an operator may give events of class `c` the action `a`: the
// class's default, or keep (leave it) for any class that proposes a change;
// overwrite for diverged only.
inline bool ActionAllowed(DiffClass c, CompensationAction a) {
  if (a == DefaultAction(c)) return true;
  if (c == DiffClass::kInSync || c == DiffClass::kMissingUpstream) return false;
  if (a == CompensationAction::kKeep) return true;
  return c == DiffClass::kDiverged && a == CompensationAction::kOverwrite;
}

// What applying did to one entry; kPending until the apply job reaches it.
enum class CompensationResult {
  kPending,
  kDone,              // created, recorded or overwritten
  kLeft,              // keep or none: nothing sent
  kChangedSinceDiff,  // checked again before acting: no longer as the diff saw it, left alone
  kFailed,
};
inline constexpr NamedValue<CompensationResult> kCompensationResultNames[] = {
    {CompensationResult::kPending, "pending"},
    {CompensationResult::kDone, "done"},
    {CompensationResult::kLeft, "left"},
    {CompensationResult::kChangedSinceDiff, "changed_since_diff"},
    {CompensationResult::kFailed, "failed"},
};
inline std::string_view CompensationResultName(CompensationResult r) {
  return NameIn(kCompensationResultNames, r);
}
inline std::optional<CompensationResult> ParseCompensationResult(std::string_view name) {
  return ParseIn(kCompensationResultNames, name);
}

// The downstream's record as a diff saw it (empty id: it held none).
struct ObservedRecord {
  std::string id;
  std::optional<std::string> version = std::nullopt;
  std::optional<absl::Time> updated_at = std::nullopt;
};

// One event of a compensation plan: the event's log key and identity, what
// the diff found (the log's outcome then, and the downstream's record), the
// proposed or chosen action, and what applying it did.
struct CompensationEntry {
  int64_t position = 0;
  absl::Time ingested_at;
  std::string source;
  std::string event_id;
  DiffClass diff_class = DiffClass::kInSync;
  CompensationAction action = CompensationAction::kNone;
  Outcome log_outcome = Outcome::kPending;
  ObservedRecord downstream;
  std::string detail;  // why diverged (e.g. "version 3, recorded 1"); may be empty
  CompensationResult result = CompensationResult::kPending;
};

// Where a plan is in its life.
enum class CompensationState {
  kDiffing,   // its diff job has not finished
  kReady,     // reviewable and changeable; apply may start
  kApplying,  // an apply job was started (actions are frozen from then on)
  kApplied,   // the apply job ended (completed, failed or cancelled)
  kFailed,    // the diff did not complete (failed or cancelled): cannot be applied
};
inline constexpr NamedValue<CompensationState> kCompensationStateNames[] = {
    {CompensationState::kDiffing, "diffing"},   {CompensationState::kReady, "ready"},
    {CompensationState::kApplying, "applying"}, {CompensationState::kApplied, "applied"},
    {CompensationState::kFailed, "failed"},
};
inline std::string_view CompensationStateName(CompensationState s) {
  return NameIn(kCompensationStateNames, s);
}

// Missing upstream sequence numbers [first, last] of one source.
struct UpstreamHole {
  std::string source;
  int64_t first = 0;
  int64_t last = 0;
};

// A compensation plan's summary: its diff's window and sources, the
// upstream holes found when the diff started, and the entries counted by
// (class, action).
struct CompensationPlan {
  std::string id;  // = its diff job's id
  absl::Time from;
  absl::Time to;
  std::vector<std::string> sources;
  std::vector<UpstreamHole> holes;
  std::map<std::pair<DiffClass, CompensationAction>, int64_t> counts;
  CompensationState state = CompensationState::kDiffing;  // from its jobs' states
  std::string apply_job_id;                               // empty until an apply starts
  std::string created_by;
  absl::Time created_at;
  absl::Time expires_at;

  // Events the holes stand for: the missing_upstream count.
  int64_t MissingUpstream() const {
    int64_t n = 0;
    for (const auto& h : holes) n += h.last - h.first + 1;
    return n;
  }
};

}  // namespace replayd
