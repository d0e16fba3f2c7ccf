// Compensation plans: what a diff job found for each event of its window and
// the change proposed for it, reviewed and changed by operators, then applied
// by a compensate job. A plan is created with its diff job (same id), filled
// in as the diff runs, and frozen once an apply starts.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/model/compensation.h"
#include "server/model/replay_types.h"
#include "server/store/event.h"

namespace replayd {

// Which entries to read: of one class (nullopt = every class), after a log
// key (nullopt = from the start), at most `limit`.
struct EntryQuery {
  std::optional<DiffClass> diff_class;
  std::optional<ReplayCursor> after;
  int limit = 500;
};

// An entry with its event as the log holds it now: what an apply job acts on.
struct CompensationItem {
  CompensationEntry entry;
  StoredEvent event;
};

// An operator's change of actions: every entry of a class, or the listed
// events (source, event_id), to `action`.
struct ActionChange {
  std::optional<DiffClass> diff_class;
  std::vector<std::pair<std::string, std::string>> events;  // (source, event_id)
  CompensationAction action = CompensationAction::kKeep;
};

class CompensationStore {
 public:
  virtual ~CompensationStore() = default;

  // Creates the diff job `job` (kind kDiff; see ReplayStore::CreateJob for
  // request_id and overlap) and its empty plan (window, sources and holes
  // from `plan`), atomically, and audits `audit`.
  virtual absl::StatusOr<ReplayJob> CreateDiff(const ReplayJob& job, const CompensationPlan& plan,
                                               const AuditEntry& audit, bool* existed) = 0;

  // Saves what the diff found for these events (an entry already saved for
  // a position is replaced: a diff resumed after a crash sees some events
  // again). Called by the diff job before each checkpoint.
  virtual absl::Status SaveEntries(const std::string& plan_id,
                                   const std::vector<CompensationEntry>& entries) = 0;

  // The plan with its counts and state. NOT_FOUND for an unknown id.
  virtual absl::StatusOr<CompensationPlan> GetPlan(const std::string& plan_id) = 0;
  // Newest first, at most `limit` (<= 0: 20).
  virtual absl::StatusOr<std::vector<CompensationPlan>> ListPlans(int limit) = 0;
  // Entries in window order.
  virtual absl::StatusOr<std::vector<CompensationEntry>> ReadEntries(const std::string& plan_id,
                                                                     const EntryQuery& query) = 0;

  // Up to `limit` entries after `after` (nullopt = from the start), in
  // window order, each with its event as the log holds it now; entries whose
  // event the log no longer holds (retention) are left out. Fewer than
  // `limit` only at the end.
  virtual absl::StatusOr<std::vector<CompensationItem>> ReadApplyPage(
      const std::string& plan_id, const std::optional<ReplayCursor>& after, int limit) = 0;

  // Changes actions and audits `audit` (action "compensate_set"), in one
  // transaction; returns how many entries changed. FAILED_PRECONDITION
  // unless the plan is ready (diff completed, no apply started);
  // INVALID_ARGUMENT for an action the class does not allow (ActionAllowed)
  // or a listed event the plan does not hold (the message names it), and
  // then nothing changes. NOT_FOUND for an unknown plan.
  virtual absl::StatusOr<int64_t> SetActions(const std::string& plan_id, const ActionChange& change,
                                             const AuditEntry& audit) = 0;

  // Creates the apply job `job` (kind kCompensate, spec.plan_id = the plan)
  // and marks the plan applying, atomically, and audits `audit`.
  // FAILED_PRECONDITION when the plan is not ready (still diffing, diff
  // failed, expired, or already applied: the message says which and names
  // the apply job). Same request_id: the same job, *existed = true.
  virtual absl::StatusOr<ReplayJob> CreateApply(const ReplayJob& job, const AuditEntry& audit,
                                                bool* existed) = 0;

  // Records what applying did to these entries (position, result), in one
  // statement: an apply job writes those it finished before each checkpoint.
  // NOT_FOUND (and nothing written) when the plan holds no entry at one of
  // the positions.
  using EntryResult = std::pair<int64_t, CompensationResult>;
  virtual absl::Status SetResults(const std::string& plan_id,
                                  const std::vector<EntryResult>& results) = 0;
};

}  // namespace replayd
