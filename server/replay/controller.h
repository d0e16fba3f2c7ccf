// The replay control plane behind replay.v1.ReplayService, free of gRPC:
// validation and enforcement, dry run, durable jobs with idempotent start,
// pause, resume, cancel, progress and history. Every control action is audited with the
// caller's principal.
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

class ReplayController {
 public:
  // `runner` may be null (a daemon that only serves the API); every other
  // pointer outlives this.
  ReplayController(ReplayStore* store, DryRunner* dry_runner, ReplayRunner* runner,
                   const Config* config, const Clock* clock)
      : store_(store), dry_runner_(dry_runner), runner_(runner), config_(config), clock_(clock) {}

  // INVALID_ARGUMENT per ValidateReplayRequest; UNAVAILABLE without a database.
  absl::StatusOr<DryRunResult> DryRun(const ReplayRequestInput& input);

  // Validates, then creates the job (or returns the one with the same
  // request_id). FAILED_PRECONDITION when it overlaps an active replay.
  absl::StatusOr<ReplayJob> Start(const ReplayRequestInput& input, const std::string& request_id,
                                  const Principal& who);

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
std::string StartAuditDetail(const ReplaySpec& spec, int64_t would_deliver, int64_t total);

// A new job id: "rp-" + 16 hex digits.
std::string NewReplayId();

}  // namespace replayd
