// The replay control plane behind replay.v1.ReplayService, free of gRPC:
// validation and enforcement, dry run, durable jobs with idempotent start,
// pause, resume, cancel, progress and history, and saved plans (a dry run's
// selection, frozen, that a start replays exactly). Every control action is
// audited with the caller's principal.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/auth.h"
#include "server/common/clock.h"
#include "server/config/config.h"
#include "server/replay/dry_run.h"
#include "server/replay/limits.h"
#include "server/replay/runner.h"
#include "server/store/replay_store.h"

namespace replayd {

// A dry run to save as a plan: the request as the client sent it (protobuf
// JSON, kept as is so that every field is carried) and who asks.
struct PlanSave {
  std::string request_json;
  Principal who;
};

class ReplayController {
 public:
  // `runner` may be null (a daemon that only serves the API); every other
  // pointer outlives this.
  ReplayController(ReplayStore* store, DryRunner* dry_runner, ReplayRunner* runner,
                   const Config* config, const Clock* clock)
      : store_(store), dry_runner_(dry_runner), runner_(runner), config_(config), clock_(clock) {}

  // INVALID_ARGUMENT per ValidateReplayRequest; UNAVAILABLE without a
  // database. With `save`, the selection is also saved as a plan that
  // expires after replay.plan_ttl (audited as "plan").
  absl::StatusOr<DryRunResult> DryRun(const ReplayRequestInput& input,
                                      const PlanSave* save = nullptr);

  // Validates, then creates the job (or returns the one with the same
  // request_id). FAILED_PRECONDITION when it overlaps an active replay.
  // With `plan` (from PlanToStart; `input` is its request), the job replays
  // exactly the plan's events and its total is the plan's.
  absl::StatusOr<ReplayJob> Start(const ReplayRequestInput& input, const std::string& request_id,
                                  const Principal& who, const ReplayPlan* plan = nullptr);

  // A saved plan, expired or not. INVALID_ARGUMENT without an id, NOT_FOUND.
  absl::StatusOr<ReplayPlan> GetPlan(const std::string& id);
  // A plan that can still be started or listed: as GetPlan, and
  // FAILED_PRECONDITION once it has expired.
  absl::StatusOr<ReplayPlan> LivePlan(const std::string& id);
  // A page of a plan's events (see ReplayStore::ReadPlanPage).
  absl::StatusOr<std::vector<PlannedEvent>> PlanEvents(const std::string& id,
                                                       const std::optional<ReplayCursor>& after,
                                                       int limit);

  absl::StatusOr<ReplayJob> Get(const std::string& id);
  absl::StatusOr<std::vector<ReplayJob>> List(const std::vector<ReplayState>& states, int limit);

  // Records the cancel, stops the local run at once and waits (up to
  // `wait`) for the job to end so that the returned counts are final.
  // NOT_FOUND, FAILED_PRECONDITION when it already ended.
  absl::StatusOr<ReplayJob> Cancel(const std::string& id, const std::string& reason,
                                   const Principal& who, absl::Duration wait = absl::Seconds(5));

  // Records the pause, stops the local run at once and waits (up to `wait`)
  // until the job is parked: its in-flight deliveries are done and nothing
  // more is sent. INVALID_ARGUMENT without a reason, NOT_FOUND,
  // FAILED_PRECONDITION unless it is pending or running.
  absl::StatusOr<ReplayJob> Pause(const std::string& id, const std::string& reason,
                                  const Principal& who, absl::Duration wait = absl::Seconds(5));

  // Resumes a paused job at its rate, or at `rate` (> 0, the same rules as
  // a start; `allow_high_rate` to go above replay.high_rate_threshold).
  // INVALID_ARGUMENT without a reason or for a rate over the limits,
  // NOT_FOUND, FAILED_PRECONDITION unless it is paused (and parked).
  absl::StatusOr<ReplayJob> Resume(const std::string& id, const std::string& reason, double rate,
                                   bool allow_high_rate, const Principal& who);

  // Seconds left at the job's current rate (or its configured rate).
  static double EtaSeconds(const ReplayJob& job);

 private:
  ReplayStore* store_;
  DryRunner* dry_runner_;
  ReplayRunner* runner_;
  const Config* config_;
  const Clock* clock_;
};

// The audit detail of a start, a JSON object: the validated request (window,
// sources, outcomes, rate, burst, flags; keys, types, event ids, sink and
// retry when given), would_deliver and total. Every byte
// of a source name is kept (control characters escaped); bytes that are not
// UTF-8 become U+FFFD. The reason has the audit entry's own field.
// A plan's id is kept as "plan_id" (the spec's, or `plan_id` when given).
std::string StartAuditDetail(const ReplaySpec& spec, int64_t would_deliver, int64_t total,
                             const std::string& plan_id = "");

// A new job id: "rp-" + 16 hex digits.
std::string NewReplayId();
// A new plan id: "pl-" + 16 hex digits.
std::string NewPlanId();

}  // namespace replayd
