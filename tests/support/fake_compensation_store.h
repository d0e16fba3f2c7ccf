// An in-memory CompensationStore for unit tests of diff and compensate jobs:
// plans with their entries by position (a save replaces an entry, and every
// save is counted), results, action changes by class or event, and the apply
// page joined to the events as a test's log holds them now (`events`, e.g.
// FakeDeliveryStore::Event). A test can make the writes fail. Thread safe.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/store/compensation_store.h"

namespace replayd::testing {

class FakeCompensationStore final : public CompensationStore {
 public:
  // The event at a position as the log holds it now; nullopt: gone.
  using EventAt = std::function<std::optional<StoredEvent>(int64_t position)>;
  explicit FakeCompensationStore(EventAt events) : events_(std::move(events)) {}

  // Sets a plan's state (e.g. ready once its diff completed).
  void SetState(const std::string& plan_id, CompensationState state) {
    std::lock_guard lock(mu_);
    plans_[plan_id].plan.state = state;
  }
  // The plan's entries in window order.
  std::vector<CompensationEntry> Entries(const std::string& plan_id) const {
    std::lock_guard lock(mu_);
    std::vector<CompensationEntry> out;
    auto it = plans_.find(plan_id);
    if (it == plans_.end()) return out;
    for (const auto& [key, e] : it->second.entries) out.push_back(e);
    return out;
  }
  // How many times SaveEntries wrote the entry at `position`.
  int Saves(const std::string& plan_id, int64_t position) const {
    std::lock_guard lock(mu_);
    auto it = saves_.find({plan_id, position});
    return it == saves_.end() ? 0 : it->second;
  }
  // The result of the entry at `position`; kPending when none was set.
  CompensationResult Result(const std::string& plan_id, int64_t position) const {
    for (const CompensationEntry& e : Entries(plan_id)) {
      if (e.position == position) return e.result;
    }
    return CompensationResult::kPending;
  }

  absl::StatusOr<ReplayJob> CreateDiff(const ReplayJob& job, const CompensationPlan& plan,
                                       const AuditEntry& /*audit*/, bool* existed) override {
    std::lock_guard lock(mu_);
    if (existed != nullptr) *existed = plans_.count(job.id) > 0;
    Plan& p = plans_[job.id];
    p.plan = plan;
    p.plan.id = job.id;
    p.plan.state = CompensationState::kDiffing;
    return job;
  }

  absl::Status SaveEntries(const std::string& plan_id,
                           const std::vector<CompensationEntry>& entries) override {
    std::lock_guard lock(mu_);
    Plan& p = plans_[plan_id];
    for (const CompensationEntry& e : entries) {
      p.entries[Key(e)] = e;
      ++saves_[{plan_id, e.position}];
    }
    return absl::OkStatus();
  }

  absl::StatusOr<CompensationPlan> GetPlan(const std::string& plan_id) override {
    std::lock_guard lock(mu_);
    auto it = plans_.find(plan_id);
    if (it == plans_.end()) return absl::NotFoundError(absl::StrCat("plan ", plan_id));
    CompensationPlan plan = it->second.plan;
    plan.counts.clear();
    for (const auto& [key, e] : it->second.entries) ++plan.counts[{e.diff_class, e.action}];
    return plan;
  }

  absl::StatusOr<std::vector<CompensationPlan>> ListPlans(int limit) override {
    std::vector<std::string> ids;
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, p] : plans_) ids.push_back(id);
    }
    std::vector<CompensationPlan> out;
    for (const std::string& id : ids) {
      if (static_cast<int>(out.size()) >= (limit <= 0 ? 20 : limit)) break;
      out.push_back(*GetPlan(id));
    }
    return out;
  }

  absl::StatusOr<std::vector<CompensationEntry>> ReadEntries(const std::string& plan_id,
                                                             const EntryQuery& query) override {
    std::vector<CompensationEntry> out;
    for (const CompensationEntry& e : Entries(plan_id)) {
      if (static_cast<int>(out.size()) >= query.limit) break;
      if (query.diff_class && e.diff_class != *query.diff_class) continue;
      if (query.after && !After(e, *query.after)) continue;
      out.push_back(e);
    }
    return out;
  }

  absl::StatusOr<std::vector<CompensationItem>> ReadApplyPage(
      const std::string& plan_id, const std::optional<ReplayCursor>& after, int limit) override {
    std::vector<CompensationItem> out;
    for (const CompensationEntry& e : Entries(plan_id)) {
      if (static_cast<int>(out.size()) >= limit) break;
      if (after && !After(e, *after)) continue;
      std::optional<StoredEvent> now = events_(e.position);
      if (now) out.push_back({e, *now});
    }
    return out;
  }

  absl::StatusOr<int64_t> SetActions(const std::string& plan_id, const ActionChange& change,
                                     const AuditEntry& /*audit*/) override {
    std::lock_guard lock(mu_);
    auto it = plans_.find(plan_id);
    if (it == plans_.end()) return absl::NotFoundError(absl::StrCat("plan ", plan_id));
    if (it->second.plan.state != CompensationState::kReady) {
      return absl::FailedPreconditionError("plan is not ready");
    }
    std::vector<CompensationEntry*> chosen;
    for (auto& [key, e] : it->second.entries) {
      const bool listed = std::count(change.events.begin(), change.events.end(),
                                     std::make_pair(e.source, e.event_id)) > 0;
      if ((change.diff_class && e.diff_class == *change.diff_class) || listed) {
        if (!ActionAllowed(e.diff_class, change.action)) {
          return absl::InvalidArgumentError("action not allowed for the class");
        }
        chosen.push_back(&e);
      }
    }
    for (CompensationEntry* e : chosen) e->action = change.action;
    return static_cast<int64_t>(chosen.size());
  }

  absl::StatusOr<ReplayJob> CreateApply(const ReplayJob& job, const AuditEntry& /*audit*/,
                                        bool* existed) override {
    std::lock_guard lock(mu_);
    auto it = plans_.find(job.spec.plan_id);
    if (it == plans_.end() || it->second.plan.state != CompensationState::kReady) {
      return absl::FailedPreconditionError("plan is not ready");
    }
    if (existed != nullptr) *existed = false;
    it->second.plan.state = CompensationState::kApplying;
    it->second.plan.apply_job_id = job.id;
    return job;
  }

  absl::Status SetResults(const std::string& plan_id,
                          const std::vector<EntryResult>& results) override {
    std::lock_guard lock(mu_);
    std::map<int64_t, CompensationEntry*> by_position;
    for (auto& [key, e] : plans_[plan_id].entries) by_position[e.position] = &e;
    for (const auto& [position, result] : results) {
      if (by_position.count(position) == 0) {
        return absl::NotFoundError(absl::StrCat("no entry at ", position));
      }
    }
    for (const auto& [position, result] : results) by_position[position]->result = result;
    return absl::OkStatus();
  }

 private:
  using EntryKey = std::pair<absl::Time, int64_t>;  // window order
  struct Plan {
    CompensationPlan plan;
    std::map<EntryKey, CompensationEntry> entries;
  };
  static EntryKey Key(const CompensationEntry& e) { return {e.ingested_at, e.position}; }
  static bool After(const CompensationEntry& e, const ReplayCursor& c) {
    return std::tie(e.ingested_at, e.position) > std::tie(c.ingested_at, c.position);
  }

  const EventAt events_;
  mutable std::mutex mu_;
  std::map<std::string, Plan> plans_;
  std::map<std::pair<std::string, int64_t>, int> saves_;
};

}  // namespace replayd::testing
