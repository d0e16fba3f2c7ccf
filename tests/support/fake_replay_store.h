// An in-memory ReplayStore for unit tests of the replay runner: jobs, their
// leases (which never expire on their own), checkpoints, the final write and
// the audit trail, the window read in (ingested_at, position) order, and saved
// plans (read back joined to the events added here). The dry run's aggregate
// reads are not implemented. Thread safe.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/store/replay_store.h"
#include "tests/support/locked.h"

namespace replayd::testing {

class FakeReplayStore final : public ReplayStore {
 public:
  // One Checkpoint call as the store saw it.
  struct CheckpointCall {
    ReplayCounters counters;
    std::optional<ReplayCursor> cursor;
  };

  // Adds a job as if CreateJob had made it (state pending unless set).
  void AddJob(ReplayJob job) {
    std::lock_guard lock(mu_);
    std::string id = job.id;
    jobs_[id] = std::move(job);
  }
  // Adds events to the log the window is read from.
  void AddEvents(const std::vector<StoredEvent>& events) {
    std::lock_guard lock(mu_);
    events_.insert(events_.end(), events.begin(), events.end());
    std::sort(events_.begin(), events_.end(), [](const StoredEvent& a, const StoredEvent& b) {
      return std::tie(a.ingested_at, a.position) < std::tie(b.ingested_at, b.position);
    });
  }
  // The job as stored now; a default job for an unknown id.
  ReplayJob Job(const std::string& id) const {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    return it == jobs_.end() ? ReplayJob{} : it->second;
  }
  std::vector<CheckpointCall> Checkpoints(const std::string& id) const {
    std::lock_guard lock(mu_);
    auto it = checkpoints_.find(id);
    return it == checkpoints_.end() ? std::vector<CheckpointCall>{} : it->second;
  }
  std::vector<AuditEntry> AuditTrail() const { return ReadLocked(mu_, audit_); }
  // Makes Checkpoint and Finish answer FAILED_PRECONDITION, as when another
  // daemon took the lease over.
  void StealLease(const std::string& id, const std::string& new_owner) {
    std::lock_guard lock(mu_);
    jobs_[id].owner = new_owner;
  }

  absl::StatusOr<ReplayJob> CreateJob(const ReplayJob& job, const AuditEntry& audit,
                                      bool* existed) override {
    std::lock_guard lock(mu_);
    if (existed != nullptr) *existed = jobs_.count(job.id) > 0;
    if (jobs_.count(job.id) > 0) return jobs_[job.id];
    jobs_[job.id] = job;
    audit_.push_back(audit);
    return job;
  }

  absl::StatusOr<ReplayJob> GetJob(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("replay ", id, " not found"));
    return it->second;
  }

  absl::StatusOr<std::vector<ReplayJob>> ListJobs(const std::vector<ReplayState>& states,
                                                  int limit) override {
    std::lock_guard lock(mu_);
    std::vector<ReplayJob> out;
    for (const auto& [id, job] : jobs_) {
      if (states.empty() || std::count(states.begin(), states.end(), job.state) > 0) {
        out.push_back(job);
      }
    }
    if (limit > 0 && static_cast<int>(out.size()) > limit) out.resize(limit);
    return out;
  }

  absl::StatusOr<ReplayJob> RequestCancel(const std::string& id, const AuditEntry& audit) override {
    return Request(id, audit, [](ReplayJob& job) -> std::string {
      if (IsTerminal(job.state)) return "replay already ended";
      job.state = job.owner.empty() && job.state == ReplayState::kPending
                      ? ReplayState::kCancelled
                      : ReplayState::kCancelling;
      return "";
    });
  }

  absl::StatusOr<ReplayJob> RequestPause(const std::string& id, const AuditEntry& audit) override {
    return Request(id, audit, [](ReplayJob& job) -> std::string {
      if (job.state != ReplayState::kPending && job.state != ReplayState::kRunning) {
        return "replay is not pending or running";
      }
      job.state = ReplayState::kPaused;
      return "";
    });
  }

  absl::StatusOr<ReplayJob> RequestResume(const std::string& id, double rate,
                                          const AuditEntry& audit) override {
    return Request(id, audit, [rate](ReplayJob& job) -> std::string {
      if (job.state != ReplayState::kPaused || !job.owner.empty()) return "replay is not paused";
      job.state = ReplayState::kRunning;
      if (rate > 0) job.spec.rate = rate;
      return "";
    });
  }

  absl::Status Park(const std::string& id, const std::string& owner, const ReplayCounters& counters,
                    const std::optional<ReplayCursor>& cursor, const std::string& last_error,
                    const std::vector<RetryEvent>& retry, const AuditEntry* audit) override {
    std::lock_guard lock(mu_);
    ReplayJob* job = Held(id, owner);
    if (job == nullptr ||
        (job->state != ReplayState::kRunning && job->state != ReplayState::kPaused)) {
      return absl::FailedPreconditionError("lease lost or cancel asked");
    }
    job->state = ReplayState::kPaused;
    job->counters = counters;
    job->cursor = cursor;
    job->last_error = last_error;
    job->retry = retry;
    job->owner.clear();
    if (audit != nullptr) audit_.push_back(*audit);
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<ReplayJob>> ClaimJob(
      const std::string& owner, absl::Duration /*lease*/,
      const std::vector<std::string>& exclude) override {
    std::lock_guard lock(mu_);
    for (auto& [id, job] : jobs_) {
      if (IsTerminal(job.state) || job.state == ReplayState::kPaused) continue;
      if (!job.owner.empty() && job.owner != owner) continue;
      if (std::count(exclude.begin(), exclude.end(), id) > 0) continue;
      job.owner = owner;
      if (job.state == ReplayState::kPending) job.state = ReplayState::kRunning;
      ++claims_;
      return std::optional<ReplayJob>(job);
    }
    return std::optional<ReplayJob>();
  }

  absl::StatusOr<ReplayState> Checkpoint(const std::string& id, const std::string& owner,
                                         const ReplayCounters& counters,
                                         const std::optional<ReplayCursor>& cursor,
                                         double current_rate, absl::Duration /*lease*/) override {
    std::lock_guard lock(mu_);
    ReplayJob* job = Progressed(id, owner, counters, cursor);
    if (job == nullptr) return absl::FailedPreconditionError("lease lost");
    job->current_rate = current_rate;
    checkpoints_[id].push_back({counters, cursor});
    return job->state;
  }

  absl::Status Finish(const std::string& id, const std::string& owner, ReplayState state,
                      const ReplayCounters& counters, const std::optional<ReplayCursor>& cursor,
                      const std::string& last_error, const AuditEntry& audit) override {
    std::lock_guard lock(mu_);
    ReplayJob* job = Progressed(id, owner, counters, cursor);
    if (job == nullptr) return absl::FailedPreconditionError("lease lost");
    job->state = state;
    job->last_error = last_error;
    job->retry.clear();
    job->owner.clear();
    audit_.push_back(audit);
    return absl::OkStatus();
  }

  absl::Status ReleaseLease(const std::string& id, const std::string& owner) override {
    std::lock_guard lock(mu_);
    if (ReplayJob* job = Held(id, owner)) job->owner.clear();
    return absl::OkStatus();
  }

  absl::Status Audit(const AuditEntry& entry) override {
    std::lock_guard lock(mu_);
    audit_.push_back(entry);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<AuditEntry>> ListAudit(const AuditQuery& query) override {
    std::lock_guard lock(mu_);
    std::vector<AuditEntry> out;
    for (auto it = audit_.rbegin(); it != audit_.rend(); ++it) {
      const int64_t id = audit_.rend() - it;  // 1-based insertion order
      if (!query.replay_id.empty() && it->replay_id != query.replay_id) continue;
      if (query.since && it->at < *query.since) continue;
      if (query.before_id > 0 && id >= query.before_id) continue;
      if (static_cast<int>(out.size()) == query.PageSize()) break;
      out.push_back(*it);
      out.back().id = id;
    }
    return out;
  }

  absl::StatusOr<std::vector<StoredEvent>> ReadWindowPage(const ReplayWindow& window,
                                                          const std::optional<ReplayCursor>& after,
                                                          int limit) override {
    std::lock_guard lock(mu_);
    ++page_reads_;
    std::vector<StoredEvent> out;
    for (const StoredEvent& e : events_) {
      if (static_cast<int>(out.size()) >= limit) break;
      if (!InWindow(window, e)) continue;
      if (after.has_value() &&
          std::tie(e.ingested_at, e.position) <= std::tie(after->ingested_at, after->position)) {
        continue;
      }
      out.push_back(e);
    }
    return out;
  }

  // Marks an event failed for FailedBefore (the record's delivery_failed_keys);
  // `failed` false removes it again.
  void SetFailed(const StoredEvent& e, bool failed) {
    std::lock_guard lock(mu_);
    if (failed) {
      failed_[e.position] = e;
    } else {
      failed_.erase(e.position);
    }
  }

  absl::StatusOr<std::vector<KeyBlocker>> FailedBefore(const std::string& source,
                                                       const std::string& key,
                                                       int64_t before_position,
                                                       int limit) override {
    std::lock_guard lock(mu_);
    std::vector<KeyBlocker> out;
    for (const auto& [position, e] : failed_) {
      if (position >= before_position || static_cast<int>(out.size()) >= limit) break;
      if (e.event.source == source && e.event.key == key) {
        out.push_back({position, e.ingested_at, e.event.event_id});
      }
    }
    return out;
  }

  absl::StatusOr<std::vector<StoredEvent>> FirstEventsWithOutcome(const ReplayWindow&,
                                                                  const std::vector<Outcome>&,
                                                                  int) override {
    return absl::UnimplementedError("FakeReplayStore::FirstEventsWithOutcome");
  }
  using ReplayStore::AggregateWindow;
  absl::StatusOr<std::vector<WindowAggregate>> AggregateWindow(const ReplayWindow&,
                                                               const WindowPlanSave*) override {
    return absl::UnimplementedError("FakeReplayStore::AggregateWindow");
  }

  absl::Status AddPlanEvents(const std::string& plan_id, int64_t /*chunk*/,
                             const std::vector<PlanEntry>& entries) override {
    std::lock_guard lock(mu_);
    auto& plan = plan_events_[plan_id];
    plan.insert(plan.end(), entries.begin(), entries.end());
    return absl::OkStatus();
  }
  absl::Status CreatePlan(const ReplayPlan& plan, const AuditEntry& audit) override {
    std::lock_guard lock(mu_);
    if (plans_.count(plan.id) > 0) return absl::AlreadyExistsError(plan.id);
    plans_[plan.id] = plan;
    audit_.push_back(audit);
    return absl::OkStatus();
  }
  absl::Status DropPlanEvents(const std::string& plan_id) override {
    std::lock_guard lock(mu_);
    plan_events_.erase(plan_id);
    return absl::OkStatus();
  }
  absl::StatusOr<ReplayPlan> GetPlan(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = plans_.find(id);
    if (it == plans_.end()) return absl::NotFoundError(absl::StrCat("plan ", id, " not found"));
    return it->second;
  }
  absl::StatusOr<std::vector<PlannedEvent>> ReadPlanPage(const std::string& plan_id,
                                                         const std::optional<ReplayCursor>& after,
                                                         int limit) override {
    std::lock_guard lock(mu_);
    ++page_reads_;
    std::vector<PlannedEvent> out;
    for (const PlanEntry& p : plan_events_[plan_id]) {
      if (static_cast<int>(out.size()) >= limit) break;
      if (after.has_value() &&
          std::tie(p.ingested_at, p.position) <= std::tie(after->ingested_at, after->position)) {
        continue;
      }
      for (const StoredEvent& e : events_) {
        if (e.position == p.position) out.push_back({e, p.decision});
      }
    }
    return out;
  }
  // Replaces the logged state of the event at `position` (a live retry
  // delivered it, say).
  void SetOutcome(int64_t position, Outcome outcome) {
    std::lock_guard lock(mu_);
    for (StoredEvent& e : events_) {
      if (e.position == position) e.outcome = outcome;
    }
  }

  int claims() const { return ReadLocked(mu_, claims_); }
  int page_reads() const { return ReadLocked(mu_, page_reads_); }

 private:
  // Lets `change` act on job `id`, then records `audit`. `change` returns why
  // it refuses (FAILED_PRECONDITION), or "" once it has changed the job;
  // NOT_FOUND for an unknown id.
  absl::StatusOr<ReplayJob> Request(const std::string& id, const AuditEntry& audit,
                                    const std::function<std::string(ReplayJob&)>& change) {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("replay ", id, " not found"));
    std::string refused = change(it->second);
    if (!refused.empty()) return absl::FailedPreconditionError(refused);
    audit_.push_back(audit);
    return it->second;
  }

  // The job when `owner` holds its lease, else nullptr. mu_ held.
  ReplayJob* Held(const std::string& id, const std::string& owner) {
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.owner != owner) return nullptr;
    return &it->second;
  }
  // Held, with the job's counters and cursor set to those reported. mu_ held.
  ReplayJob* Progressed(const std::string& id, const std::string& owner,
                        const ReplayCounters& counters, const std::optional<ReplayCursor>& cursor) {
    ReplayJob* job = Held(id, owner);
    if (job == nullptr) return nullptr;
    job->counters = counters;
    job->cursor = cursor;
    return job;
  }

  mutable std::mutex mu_;
  std::map<std::string, ReplayJob> jobs_;
  std::map<std::string, std::vector<CheckpointCall>> checkpoints_;
  std::vector<AuditEntry> audit_;
  std::vector<StoredEvent> events_;
  std::map<int64_t, StoredEvent> failed_;  // by position
  std::map<std::string, ReplayPlan> plans_;
  std::map<std::string, std::vector<PlanEntry>> plan_events_;  // in window order
  int claims_ = 0;
  int page_reads_ = 0;
};

}  // namespace replayd::testing
