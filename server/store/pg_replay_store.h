// ReplayStore on PostgreSQL (tables replays and replay_audit, reads of the
// partitioned events table). Thread safe.
//
// Its parts: the jobs in pg_replay_jobs.cc, the window reads in
// pg_replay_window.cc, the audit read in pg_audit.cc, the saved plans in
// pg_replay_plans.cc.
#pragma once

#include "server/store/pg_pool.h"
#include "server/store/replay_store.h"

namespace replayd {

class PgReplayStore final : public ReplayStore {
 public:
  explicit PgReplayStore(PgPool* pool) : pool_(pool) {}

  absl::StatusOr<ReplayJob> CreateJob(const ReplayJob& job, const AuditEntry& audit,
                                      bool* existed) override;
  absl::StatusOr<ReplayJob> GetJob(const std::string& id) override;
  absl::StatusOr<std::vector<ReplayJob>> ListJobs(const std::vector<ReplayState>& states,
                                                  int limit) override;
  absl::StatusOr<ReplayJob> RequestCancel(const std::string& id, const AuditEntry& audit) override;
  absl::StatusOr<ReplayJob> RequestPause(const std::string& id, const AuditEntry& audit) override;
  absl::StatusOr<ReplayJob> RequestResume(const std::string& id, double rate,
                                          const AuditEntry& audit) override;
  absl::Status Park(const std::string& id, const std::string& owner, const ReplayCounters& counters,
                    const std::optional<ReplayCursor>& cursor, const std::string& last_error,
                    const std::vector<RetryEvent>& retry, const AuditEntry* audit) override;
  absl::StatusOr<std::optional<ReplayJob>> ClaimJob(
      const std::string& owner, absl::Duration lease,
      const std::vector<std::string>& exclude) override;
  absl::StatusOr<ReplayState> Checkpoint(const std::string& id, const std::string& owner,
                                         const ReplayCounters& counters,
                                         const std::optional<ReplayCursor>& cursor,
                                         double current_rate, absl::Duration lease) override;
  absl::Status Finish(const std::string& id, const std::string& owner, ReplayState state,
                      const ReplayCounters& counters, const std::optional<ReplayCursor>& cursor,
                      const std::string& last_error, const AuditEntry& audit) override;
  absl::Status ReleaseLease(const std::string& id, const std::string& owner) override;
  absl::Status Audit(const AuditEntry& entry) override;
  absl::StatusOr<std::vector<AuditEntry>> ListAudit(const AuditQuery& query) override;

  absl::StatusOr<std::vector<KeyBlocker>> FailedBefore(const std::string& source,
                                                       const std::string& key,
                                                       int64_t before_position, int limit) override;
  absl::StatusOr<std::vector<StoredEvent>> ReadWindowPage(const ReplayWindow& window,
                                                          const std::optional<ReplayCursor>& after,
                                                          int limit) override;
  absl::StatusOr<std::vector<StoredEvent>> FirstEventsWithOutcome(
      const ReplayWindow& window, const std::vector<Outcome>& outcomes, int limit) override;
  using ReplayStore::AggregateWindow;
  absl::StatusOr<std::vector<WindowAggregate>> AggregateWindow(const ReplayWindow& window,
                                                               const WindowPlanSave* save) override;

  absl::Status AddPlanEvents(const std::string& plan_id, int64_t chunk,
                             const std::vector<PlanEntry>& entries) override;
  absl::Status CreatePlan(const ReplayPlan& plan, const AuditEntry& audit) override;
  absl::Status DropPlanEvents(const std::string& plan_id) override;
  absl::StatusOr<ReplayPlan> GetPlan(const std::string& id) override;
  absl::StatusOr<std::vector<PlannedEvent>> ReadPlanPage(const std::string& plan_id,
                                                         const std::optional<ReplayCursor>& after,
                                                         int limit) override;

 private:
  // After a window was saved as plan `plan_id` (`chunks`: each chunk's
  // number and size): the groups of sources without a route get those
  // sources' decisions, and chunks far above kPlanChunkEvents are split.
  absl::Status FinishWindowPlan(const WindowPlanSave& save, const std::vector<std::string>& sources,
                                const std::map<int64_t, int64_t>& chunks);

  PgPool* pool_;
};

}  // namespace replayd
