// The replay control plane behind replay.v1.ReplayService, free of gRPC:
// validation and enforcement, dry run, durable jobs with idempotent start,
// pause, resume, cancel, progress and history, saved plans (a dry run's
// selection, frozen, that a start replays exactly), and diff and compensate
// (a diff job fills in a compensation plan that operators review, change and
// apply with another job). Every control action is audited with the
// caller's principal.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/auth.h"
#include "server/common/clock.h"
#include "server/config/config.h"
#include "server/delivery/deliverer.h"
#include "server/model/compensation.h"
#include "server/replay/dry_run.h"
#include "server/replay/limits.h"
#include "server/replay/runner.h"
#include "server/store/compensation_store.h"
#include "server/store/replay_store.h"

namespace replayd {

// A dry run to save as a plan: the request as the client sent it (protobuf
// JSON, kept as is so that every field is carried) and who asks.
struct PlanSave {
  std::string request_json;
  Principal who;
};

// A compensation plan as a reviewer sees it: the plan, the first
// kSamplesPerCategory entries of each class, and whether it has expired.
struct CompensationView {
  CompensationPlan plan;
  std::vector<CompensationEntry> samples;
  bool expired = false;
};

class ReplayController {
 public:
  // `runner` may be null (a daemon that only serves the API); every other
  // pointer outlives this. `deliverer` knows each source's route and sink
  // (a diff asks their lookups).
  ReplayController(ReplayStore* store, DryRunner* dry_runner, ReplayRunner* runner,
                   const Config* config, const Clock* clock,
                   CompensationStore* compensations = nullptr, const Deliverer* deliverer = nullptr)
      : store_(store),
        dry_runner_(dry_runner),
        runner_(runner),
        config_(config),
        clock_(clock),
        compensations_(compensations),
        deliverer_(deliverer) {}

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

  // Starts a diff of `input`'s window (its rate, burst, breaker and reason;
  // sources default to every routed source; outcomes, filters and sink are
  // ignored): a job (kind kDiff, id "df-" + 16 hex) and its plan, holding
  // the window's upstream sequence holes, expiring replay.plan_ttl from now.
  // Audited as "diff". INVALID_ARGUMENT per ValidateReplayRequest;
  // FAILED_PRECONDITION naming the sources without a route, the sinks
  // without a lookup, or an overlapping job. Same request_id: the same job.
  absl::StatusOr<ReplayJob> StartDiff(const ReplayRequestInput& input,
                                      const std::string& request_id, const Principal& who);

  // A plan with its samples. INVALID_ARGUMENT without an id, NOT_FOUND.
  absl::StatusOr<CompensationView> GetCompensation(const std::string& plan_id);
  // A page of a plan's entries (see CompensationStore::ReadEntries); the
  // first page is INVALID_ARGUMENT without an id, NOT_FOUND for an unknown plan.
  absl::StatusOr<std::vector<CompensationEntry>> CompensationEntries(const std::string& plan_id,
                                                                     const EntryQuery& query);
  // Changes actions (see CompensationStore::SetActions), audited as
  // "compensate_set"; returns how many entries changed. INVALID_ARGUMENT
  // without a reason, for both or neither of a class and events, for more
  // than kMaxActionEvents events or an action the class does not allow;
  // FAILED_PRECONDITION unless the plan is ready (saying what it is
  // instead), or once it has expired.
  absl::StatusOr<int64_t> SetActions(const std::string& plan_id, const ActionChange& change,
                                     const std::string& reason, const Principal& who);
  // Starts applying a ready plan: a job (kind kCompensate, id "cp-" + 16
  // hex, spec.plan_id = the plan, total = every entry of the plan) paced by
  // `pacing`'s rate, burst and breaker (the rest of the window is the
  // plan's), with its reason; audited as "compensate_apply".
  // INVALID_ARGUMENT without a reason or for a rate over the limits;
  // NOT_FOUND; FAILED_PRECONDITION for an expired plan or one that is not
  // ready (see CompensationStore::CreateApply).
  absl::StatusOr<ReplayJob> Apply(const std::string& plan_id, const ReplayRequestInput& pacing,
                                  const std::string& request_id, const Principal& who);
  // Newest first, at most `limit` (0: 20; up to 1000), without samples.
  absl::StatusOr<std::vector<CompensationView>> ListCompensations(int limit);

  static constexpr size_t kMaxActionEvents = 100000;

  // Seconds left at the job's current rate (or its configured rate).
  static double EtaSeconds(const ReplayJob& job);

 private:
  // The plans store, or UNIMPLEMENTED when this daemon has none.
  absl::StatusOr<CompensationStore*> Compensations() const;
  // The sources a diff compares: `asked`, or every routed source.
  // FAILED_PRECONDITION naming those without a route and the sinks without a lookup.
  absl::StatusOr<std::vector<std::string>> DiffSources(const std::vector<std::string>& asked) const;
  // INVALID_ARGUMENT without an id, NOT_FOUND.
  absl::StatusOr<CompensationPlan> GetCompensationPlan(const std::string& plan_id);

  ReplayStore* store_;
  DryRunner* dry_runner_;
  ReplayRunner* runner_;
  const Config* config_;
  const Clock* clock_;
  CompensationStore* compensations_;
  const Deliverer* deliverer_;
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
// A new diff job's id, also its compensation plan's: "df-" + 16 hex digits.
std::string NewDiffId();
// A new apply job id: "cp-" + 16 hex digits.
std::string NewCompensateId();

}  // namespace replayd
