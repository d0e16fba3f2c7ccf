// CompensationStore on PostgreSQL (tables compensation_plans and
// compensation_entries; the jobs are rows of replays, created as
// PgReplayStore creates a replay). A plan's state is not stored: it follows
// from its diff job's state and its apply job's. Thread safe.
#pragma once

#include "server/store/compensation_store.h"
#include "server/store/pg_pool.h"

namespace replayd {

class PgCompensationStore final : public CompensationStore {
 public:
  explicit PgCompensationStore(PgPool* pool);

  absl::StatusOr<CompensationPlan> GetPlan(const std::string& plan_id) override;
  absl::StatusOr<std::vector<CompensationPlan>> ListPlans(int limit) override;
  absl::StatusOr<std::vector<CompensationEntry>> ReadEntries(const std::string& plan_id,
                                                             const EntryQuery& query) override;
  absl::StatusOr<std::vector<CompensationItem>> ReadApplyPage(
      const std::string& plan_id, const std::optional<ReplayCursor>& after, int limit) override;

  // The diff job and its plan; the plan takes the job's id and creator.
  absl::StatusOr<ReplayJob> CreateDiff(const ReplayJob& job, const CompensationPlan& plan,
                                       const AuditEntry& audit, bool* existed) override;
  absl::Status SaveEntries(const std::string& plan_id,
                           const std::vector<CompensationEntry>& entries) override;
  absl::StatusOr<int64_t> SetActions(const std::string& plan_id, const ActionChange& change,
                                     const AuditEntry& audit) override;
  // The apply job runs over the plan's window and sources, whatever `job`
  // says of them: the overlap check sees what it will change.
  absl::StatusOr<ReplayJob> CreateApply(const ReplayJob& job, const AuditEntry& audit,
                                        bool* existed) override;
  absl::Status SetResults(const std::string& plan_id,
                          const std::vector<EntryResult>& results) override;

 private:
  PgPool* pool_;
};

}  // namespace replayd
