// Compensation plans on a real PostgreSQL: a diff job creates its plan,
// entries saved again replace the earlier ones, counts by class and action,
// reads by class in window order, changes of actions (and the refused ones,
// which change nothing), the apply job's creation and refusals, the apply
// page joined to the log as it is now, and the job kind in the replays row.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/store/pg_compensation_store.h"
#include "server/store/pg_types.h"
#include "tests/support/pg_replay_fixture.h"

namespace replayd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using PlanCounts = std::map<std::pair<DiffClass, CompensationAction>, int64_t>;

class CompensationStoreTest : public testing::PgReplayFixture {
 protected:
  void SetUp() override {
    ASSERT_TRUE(partitions_.EnsureDays(base_ - absl::Hours(24), base_ + absl::Hours(24)).ok());
  }

  AuditEntry Audit(const std::string& action, const std::string& id) {
    return AuditEntry{"tester", action, id, "why", "{}", absl::Now()};
  }

  // A diff job of "tester" over the fixture's window, of `source` only.
  ReplayJob DiffJob(const std::string& id, const std::string& source) {
    ReplayJob job;
    job.id = id;
    job.spec = Spec(false);
    job.spec.kind = ReplayKind::kDiff;
    job.spec.window.sources = {source};
    job.created_by = "tester";
    return job;
  }

  // Creates diff `id` of `source` and its plan, expiring after `ttl`.
  void CreateDiff(const std::string& id, const std::string& source = "orders",
                  absl::Duration ttl = absl::Hours(1)) {
    ReplayJob job = DiffJob(id, source);
    CompensationPlan plan;
    plan.from = job.spec.window.from;
    plan.to = job.spec.window.to;
    plan.sources = job.spec.window.sources;
    plan.holes = {{source, 10, 12}, {source, 20, 20}};
    plan.expires_at = absl::Now() + ttl;
    bool existed = true;
    auto created = comp_.CreateDiff(job, plan, Audit("diff", id), &existed);
    ASSERT_TRUE(created.ok()) << created.status();
    EXPECT_FALSE(existed);
  }

  // A replay of the fixture's window, every source.
  void CreateReplay(const std::string& id) {
    ReplayJob job;
    job.id = id;
    job.spec = Spec(false);
    job.created_by = "tester";
    bool existed = true;
    ASSERT_TRUE(store_.CreateJob(job, Audit("start", id), &existed).ok());
    EXPECT_FALSE(existed);
  }

  void SetJobState(const std::string& id, const std::string& state) {
    db_.Exec(absl::StrCat("UPDATE replays SET state = '", state, "' WHERE id = '", id, "'"));
  }

  // A completed diff `id` whose plan holds Entries().
  void ReadyPlan(const std::string& id, const std::string& source = "orders") {
    CreateDiff(id, source);
    ASSERT_TRUE(comp_.SaveEntries(id, Entries(source)).ok());
    SetJobState(id, "completed");
  }

  // An entry of event `event_id` at log key (base_ + `second` s, `position`).
  CompensationEntry Entry(int64_t position, int second, const std::string& event_id, DiffClass c,
                          const std::string& source = "orders") {
    CompensationEntry e;
    e.position = position;
    e.ingested_at = base_ + absl::Seconds(second);
    e.source = source;
    e.event_id = event_id;
    e.diff_class = c;
    e.action = DefaultAction(c);
    e.log_outcome = c == DiffClass::kUnrecorded || c == DiffClass::kUndelivered
                        ? Outcome::kFailed
                        : Outcome::kSucceeded;
    if (c != DiffClass::kMissingDownstream && c != DiffClass::kUndelivered) {
      e.downstream.id = "rec-" + event_id;
    }
    return e;
  }

  // Seven entries: window order is e1 .. e7 (e3 and e4 share their second).
  std::vector<CompensationEntry> Entries(const std::string& source = "orders") {
    return {Entry(1, 1, "e1", DiffClass::kInSync, source),
            Entry(2, 2, "e2", DiffClass::kDiverged, source),
            Entry(3, 3, "e3", DiffClass::kMissingDownstream, source),
            Entry(4, 3, "e4", DiffClass::kDiverged, source),
            Entry(5, 4, "e5", DiffClass::kUnrecorded, source),
            Entry(6, 5, "e6", DiffClass::kDiverged, source),
            Entry(7, 6, "e7", DiffClass::kUndelivered, source)};
  }

  // The event ids of a plan's entries of `c` (every class: nullopt), read in pages of `page`.
  std::vector<std::string> ReadIds(const std::string& id, std::optional<DiffClass> c, int page) {
    std::vector<std::string> out;
    EntryQuery q;
    q.diff_class = c;
    q.limit = page;
    while (true) {
      auto got = comp_.ReadEntries(id, q);
      EXPECT_TRUE(got.ok()) << got.status();
      if (!got.ok()) return out;
      for (const auto& e : *got) out.push_back(e.event_id);
      if (static_cast<int>(got->size()) < page) return out;
      q.after = ReplayCursor{got->back().ingested_at, got->back().position};
    }
  }

  // The actions of a plan's entries in window order.
  std::vector<CompensationAction> Actions(const std::string& id) {
    auto got = comp_.ReadEntries(id, EntryQuery{});
    EXPECT_TRUE(got.ok()) << got.status();
    std::vector<CompensationAction> out;
    if (got.ok()) {
      for (const auto& e : *got) out.push_back(e.action);
    }
    return out;
  }

  absl::StatusOr<ReplayJob> Apply(const std::string& apply_id, const std::string& plan_id,
                                  const std::string& request_id = "", bool* existed = nullptr) {
    ReplayJob job;
    job.id = apply_id;
    job.request_id = request_id;
    job.spec = Spec(false);
    job.spec.plan_id = plan_id;
    job.created_by = "tester";
    bool ignored = false;
    return comp_.CreateApply(job, Audit("compensate_apply", apply_id),
                             existed ? existed : &ignored);
  }

  // Changes actions of plan `id` as "tester".
  absl::StatusOr<int64_t> SetActions(const ActionChange& change, const std::string& id = "df-1") {
    return comp_.SetActions(id, change, Audit("compensate_set", id));
  }

  // The plan's counts by (class, action).
  PlanCounts CountsOf(const std::string& id) {
    auto plan = comp_.GetPlan(id);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.ok() ? plan->counts : PlanCounts{};
  }

  int64_t Count(const std::string& sql) { return db_.QueryInt(sql); }

  PgCompensationStore comp_{&pool_};
};

const std::vector<CompensationAction> kDefaultActions = {
    CompensationAction::kNone,  CompensationAction::kKeep,   CompensationAction::kCreate,
    CompensationAction::kKeep,  CompensationAction::kRecord, CompensationAction::kKeep,
    CompensationAction::kCreate};

// A change of the listed events of source orders to `action`.
ActionChange ForEvents(const std::vector<std::string>& ids, CompensationAction action) {
  ActionChange change;
  for (const auto& id : ids) change.events.emplace_back("orders", id);
  change.action = action;
  return change;
}

// Entries()'s default actions but `action` for the events numbered `events` (e1: 1).
std::vector<CompensationAction> DefaultsBut(const std::vector<int>& events,
                                            CompensationAction action) {
  std::vector<CompensationAction> out = kDefaultActions;
  for (int n : events) out[n - 1] = action;
  return out;
}

TEST_F(CompensationStoreTest, ADiffCreatesItsPlanWithTheWindowSourcesAndHoles) {
  CreateDiff("df-1");
  auto plan = comp_.GetPlan("df-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->id, "df-1");
  EXPECT_EQ(plan->from, base_);
  EXPECT_EQ(plan->to, base_ + absl::Hours(1));
  EXPECT_THAT(plan->sources, ElementsAre("orders"));
  ASSERT_EQ(plan->holes.size(), 2u);
  EXPECT_EQ(plan->holes[0].source, "orders");
  EXPECT_EQ(plan->holes[0].first, 10);
  EXPECT_EQ(plan->holes[0].last, 12);
  EXPECT_EQ(plan->MissingUpstream(), 4);
  EXPECT_EQ(plan->state, CompensationState::kDiffing);
  EXPECT_EQ(plan->created_by, "tester");
  EXPECT_TRUE(plan->counts.empty());
  EXPECT_EQ(plan->apply_job_id, "");
  auto job = store_.GetJob("df-1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->spec.kind, ReplayKind::kDiff);
}

TEST_F(CompensationStoreTest, ADiffWithTheSameRequestIdIsTheSameJob) {
  ReplayJob job = DiffJob("df-1", "orders");
  job.request_id = "req-1";
  CompensationPlan plan;
  plan.from = base_;
  plan.to = base_ + absl::Hours(1);
  plan.expires_at = absl::Now() + absl::Hours(1);
  bool existed = true;
  ASSERT_TRUE(comp_.CreateDiff(job, plan, Audit("diff", "df-1"), &existed).ok());
  EXPECT_FALSE(existed);
  job.id = "df-2";
  auto again = comp_.CreateDiff(job, plan, Audit("diff", "df-2"), &existed);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(existed);
  EXPECT_EQ(again->id, "df-1");
  EXPECT_EQ(Count("SELECT count(*) FROM compensation_plans"), 1);
}

TEST_F(CompensationStoreTest, ADiffOverlappingAnUnfinishedReplayIsRefused) {
  CreateReplay("rp-1");
  bool existed = false;
  ReplayJob job = DiffJob("df-1", "orders");
  CompensationPlan plan;
  plan.from = base_;
  plan.to = base_ + absl::Hours(1);
  plan.expires_at = absl::Now() + absl::Hours(1);
  auto got = comp_.CreateDiff(job, plan, Audit("diff", "df-1"), &existed);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got.status().message(), HasSubstr("rp-1"));
  EXPECT_EQ(Count("SELECT count(*) FROM compensation_plans"), 0);
}

TEST_F(CompensationStoreTest, ThePlansStateFollowsItsDiffJob) {
  CreateDiff("df-1");
  const std::vector<std::pair<std::string, CompensationState>> cases = {
      {"running", CompensationState::kDiffing},    {"paused", CompensationState::kDiffing},
      {"cancelling", CompensationState::kDiffing}, {"completed", CompensationState::kReady},
      {"failed", CompensationState::kFailed},      {"cancelled", CompensationState::kFailed}};
  for (const auto& [job_state, plan_state] : cases) {
    SetJobState("df-1", job_state);
    auto plan = comp_.GetPlan("df-1");
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->state, plan_state) << job_state;
  }
}

TEST_F(CompensationStoreTest, AnUnknownPlanIsNotFound) {
  EXPECT_EQ(comp_.GetPlan("df-none").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CompensationStoreTest, EntriesKeepEveryField) {
  CreateDiff("df-1");
  CompensationEntry e = Entry(9, 7, "e9", DiffClass::kDiverged);
  e.downstream.version = "3";
  e.downstream.updated_at = base_ + absl::Microseconds(1234567);
  e.detail = "version 3, recorded 1";
  ASSERT_TRUE(comp_.SaveEntries("df-1", {e, Entry(10, 8, "e10", DiffClass::kUndelivered)}).ok());
  auto got = comp_.ReadEntries("df-1", EntryQuery{});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  const CompensationEntry& a = (*got)[0];
  EXPECT_EQ(a.position, 9);
  EXPECT_EQ(a.ingested_at, base_ + absl::Seconds(7));
  EXPECT_EQ(a.source, "orders");
  EXPECT_EQ(a.event_id, "e9");
  EXPECT_EQ(a.diff_class, DiffClass::kDiverged);
  EXPECT_EQ(a.action, CompensationAction::kKeep);
  EXPECT_EQ(a.log_outcome, Outcome::kSucceeded);
  EXPECT_EQ(a.downstream.id, "rec-e9");
  EXPECT_EQ(a.downstream.version, "3");
  EXPECT_EQ(a.downstream.updated_at, base_ + absl::Microseconds(1234567));
  EXPECT_EQ(a.detail, "version 3, recorded 1");
  EXPECT_EQ(a.result, CompensationResult::kPending);
  const CompensationEntry& b = (*got)[1];
  EXPECT_EQ(b.downstream.id, "");
  EXPECT_FALSE(b.downstream.version.has_value());
  EXPECT_FALSE(b.downstream.updated_at.has_value());
  EXPECT_EQ(b.log_outcome, Outcome::kFailed);
}

TEST_F(CompensationStoreTest, SavingAPositionAgainReplacesItsEntry) {
  CreateDiff("df-1");
  ASSERT_TRUE(comp_.SaveEntries("df-1", Entries()).ok());
  // A resumed diff sees e2 and e3 again, and finds them otherwise.
  ASSERT_TRUE(comp_
                  .SaveEntries("df-1", {Entry(2, 2, "e2", DiffClass::kInSync),
                                        Entry(3, 3, "e3", DiffClass::kInSync)})
                  .ok());
  EXPECT_EQ(Count("SELECT count(*) FROM compensation_entries WHERE plan_id = 'df-1'"), 7);
  EXPECT_EQ(CountsOf("df-1"),
            (PlanCounts{{{DiffClass::kInSync, CompensationAction::kNone}, 3},
                        {{DiffClass::kDiverged, CompensationAction::kKeep}, 2},
                        {{DiffClass::kUnrecorded, CompensationAction::kRecord}, 1},
                        {{DiffClass::kUndelivered, CompensationAction::kCreate}, 1}}));
}

TEST_F(CompensationStoreTest, CountsAreByClassAndAction) {
  ReadyPlan("df-1");
  ASSERT_TRUE(SetActions(ForEvents({"e4"}, CompensationAction::kOverwrite)).ok());
  EXPECT_EQ(CountsOf("df-1"),
            (PlanCounts{{{DiffClass::kInSync, CompensationAction::kNone}, 1},
                        {{DiffClass::kDiverged, CompensationAction::kKeep}, 2},
                        {{DiffClass::kDiverged, CompensationAction::kOverwrite}, 1},
                        {{DiffClass::kMissingDownstream, CompensationAction::kCreate}, 1},
                        {{DiffClass::kUnrecorded, CompensationAction::kRecord}, 1},
                        {{DiffClass::kUndelivered, CompensationAction::kCreate}, 1}}));
}

TEST_F(CompensationStoreTest, EntriesOfOneClassReadInWindowOrderByPages) {
  CreateDiff("df-1");
  std::vector<CompensationEntry> entries = Entries();
  // Saved out of order: the read orders them.
  std::reverse(entries.begin(), entries.end());
  ASSERT_TRUE(comp_.SaveEntries("df-1", entries).ok());
  EXPECT_THAT(ReadIds("df-1", DiffClass::kDiverged, 1), ElementsAre("e2", "e4", "e6"));
  EXPECT_THAT(ReadIds("df-1", DiffClass::kDiverged, 2), ElementsAre("e2", "e4", "e6"));
  EXPECT_THAT(ReadIds("df-1", std::nullopt, 3),
              ElementsAre("e1", "e2", "e3", "e4", "e5", "e6", "e7"));
  EXPECT_THAT(ReadIds("df-1", DiffClass::kMissingUpstream, 5), ElementsAre());
}

TEST_F(CompensationStoreTest, SetActionsByClassChangesEveryEntryOfIt) {
  ReadyPlan("df-1");
  auto changed = SetActions({DiffClass::kDiverged, {}, CompensationAction::kOverwrite});
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(*changed, 3);
  EXPECT_EQ(Actions("df-1"), DefaultsBut({2, 4, 6}, CompensationAction::kOverwrite));
  EXPECT_EQ(Count("SELECT count(*) FROM replay_audit WHERE action = 'compensate_set'"), 1);
}

TEST_F(CompensationStoreTest, SetActionsByEventsChangesOnlyThose) {
  ReadyPlan("df-1");
  auto changed = SetActions(ForEvents({"e3", "e5"}, CompensationAction::kKeep));
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(*changed, 2);
  EXPECT_EQ(Actions("df-1"), DefaultsBut({3, 5}, CompensationAction::kKeep));
}

TEST_F(CompensationStoreTest, AnActionTheClassDoesNotAllowChangesNothing) {
  ReadyPlan("df-1");
  auto by_class = SetActions({DiffClass::kUnrecorded, {}, CompensationAction::kCreate});
  EXPECT_EQ(by_class.status().code(), absl::StatusCode::kInvalidArgument);
  // e2 may be overwritten, e3 (missing_downstream) may not: neither changes.
  auto by_events = SetActions(ForEvents({"e2", "e3"}, CompensationAction::kOverwrite));
  EXPECT_EQ(by_events.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(by_events.status().message(), HasSubstr("orders/e3"));
  EXPECT_EQ(Actions("df-1"), kDefaultActions);
  EXPECT_EQ(Count("SELECT count(*) FROM replay_audit WHERE action = 'compensate_set'"), 0);
}

TEST_F(CompensationStoreTest, AnEventThePlanDoesNotHoldChangesNothing) {
  ReadyPlan("df-1");
  auto got = SetActions(ForEvents({"e2", "e99"}, CompensationAction::kKeep));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("orders/e99"));
  EXPECT_EQ(Actions("df-1"), kDefaultActions);
}

TEST_F(CompensationStoreTest, ActionsChangeOnlyWhileThePlanIsReady) {
  CreateDiff("df-1");
  ASSERT_TRUE(comp_.SaveEntries("df-1", Entries()).ok());
  const ActionChange change{DiffClass::kDiverged, {}, CompensationAction::kOverwrite};
  EXPECT_EQ(SetActions(change).status().code(), absl::StatusCode::kFailedPrecondition);
  SetJobState("df-1", "completed");
  ASSERT_TRUE(Apply("cp-1", "df-1").ok());
  auto applying = SetActions(change);
  EXPECT_EQ(applying.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(applying.status().message(), HasSubstr("applying"));
  EXPECT_EQ(SetActions(change, "df-none").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Actions("df-1"), kDefaultActions);
}

TEST_F(CompensationStoreTest, ApplyingMarksThePlanApplyingUntilTheJobEnds) {
  ReadyPlan("df-1");
  auto job = Apply("cp-1", "df-1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->spec.kind, ReplayKind::kCompensate);
  EXPECT_EQ(job->spec.plan_id, "df-1");
  EXPECT_EQ(job->spec.window.from, base_);
  EXPECT_EQ(job->spec.window.to, base_ + absl::Hours(1));
  EXPECT_THAT(job->spec.window.sources, ElementsAre("orders"));
  auto plan = comp_.GetPlan("df-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->state, CompensationState::kApplying);
  EXPECT_EQ(plan->apply_job_id, "cp-1");
  SetJobState("cp-1", "completed");
  EXPECT_EQ(comp_.GetPlan("df-1")->state, CompensationState::kApplied);
}

TEST_F(CompensationStoreTest, AnApplyWithTheSameRequestIdIsTheSameJob) {
  ReadyPlan("df-1");
  bool existed = true;
  ASSERT_TRUE(Apply("cp-1", "df-1", "req-1", &existed).ok());
  EXPECT_FALSE(existed);
  auto again = Apply("cp-2", "df-1", "req-1", &existed);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(existed);
  EXPECT_EQ(again->id, "cp-1");
}

TEST_F(CompensationStoreTest, OnlyAReadyUnexpiredPlanIsApplied) {
  CreateDiff("df-diffing", "s1");
  CreateDiff("df-failed", "s2");
  SetJobState("df-failed", "failed");
  CreateDiff("df-expired", "s3", -absl::Minutes(1));
  SetJobState("df-expired", "completed");
  ReadyPlan("df-applied", "s4");
  ASSERT_TRUE(Apply("cp-first", "df-applied").ok());
  SetJobState("cp-first", "completed");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"df-diffing", "still diffing"},
      {"df-failed", "ended failed"},
      {"df-expired", "expired"},
      {"df-applied", "already applied by job cp-first"}};
  for (const auto& [plan_id, why] : cases) {
    auto got = Apply("cp-" + plan_id, plan_id);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition) << plan_id;
    EXPECT_THAT(got.status().message(), HasSubstr(why));
  }
  EXPECT_EQ(Apply("cp-none", "df-none").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Count("SELECT count(*) FROM replays WHERE kind = 'compensate'"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM compensation_plans WHERE apply_job_id IS NOT NULL"), 1);
}

TEST_F(CompensationStoreTest, TheApplyPageJoinsEachEntryWithItsEventNow) {
  // Events e1 .. e5 at base_ + i s; e3 is then dropped from the log (retention).
  db_.Exec(
      absl::StrCat("INSERT INTO events (position, source, event_id, ingested_at, outcome, payload)"
                   " SELECT i, 'orders', 'e' || i, '",
                   PgTime(base_),
                   "'::timestamptz + i * interval '1 second', 'failed', '{\"n\": 1}'"
                   " FROM generate_series(1, 5) i"));
  CreateDiff("df-1");
  std::vector<CompensationEntry> entries;
  for (int i = 1; i <= 5; ++i) {
    entries.push_back(Entry(i, i, absl::StrCat("e", i), DiffClass::kUndelivered));
  }
  ASSERT_TRUE(comp_.SaveEntries("df-1", entries).ok());
  db_.Exec("DELETE FROM events WHERE position = 3");
  db_.Exec("UPDATE events SET outcome = 'succeeded', target_record_id = 'r4' WHERE position = 4");
  std::vector<std::string> ids;
  std::vector<CompensationItem> items;
  std::optional<ReplayCursor> after;
  while (true) {
    auto page = comp_.ReadApplyPage("df-1", after, 2);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& item : *page) items.push_back(item);
    if (page->size() < 2) break;
    after = ReplayCursor{page->back().entry.ingested_at, page->back().entry.position};
  }
  ASSERT_EQ(items.size(), 4u);
  for (const auto& item : items) {
    EXPECT_EQ(item.entry.event_id, item.event.event.event_id);
    EXPECT_EQ(item.entry.position, item.event.position);
    ids.push_back(item.entry.event_id);
  }
  EXPECT_THAT(ids, ElementsAre("e1", "e2", "e4", "e5"));
  EXPECT_EQ(items[2].event.outcome, Outcome::kSucceeded);
  EXPECT_EQ(items[2].event.target_record_id, "r4");
  EXPECT_EQ(items[2].entry.log_outcome, Outcome::kFailed);
  EXPECT_EQ(items[0].event.outcome, Outcome::kFailed);
}

TEST_F(CompensationStoreTest, AResultIsRecordedPerEntry) {
  ReadyPlan("df-1");
  ASSERT_TRUE(comp_
                  .SetResults("df-1", {{3, CompensationResult::kDone},
                                       {4, CompensationResult::kChangedSinceDiff}})
                  .ok());
  // An unknown position refuses the whole batch: entry 5 stays pending.
  EXPECT_EQ(
      comp_.SetResults("df-1", {{5, CompensationResult::kDone}, {99, CompensationResult::kDone}})
          .code(),
      absl::StatusCode::kNotFound);
  auto got = comp_.ReadEntries("df-1", EntryQuery{});
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<CompensationResult> results;
  for (const auto& e : *got) results.push_back(e.result);
  EXPECT_THAT(results, ElementsAre(CompensationResult::kPending, CompensationResult::kPending,
                                   CompensationResult::kDone, CompensationResult::kChangedSinceDiff,
                                   CompensationResult::kPending, CompensationResult::kPending,
                                   CompensationResult::kPending));
}

TEST_F(CompensationStoreTest, PlansListNewestFirstWithTheirCounts) {
  ReadyPlan("df-a", "s1");
  CreateDiff("df-b", "s2");
  db_.Exec(
      "UPDATE compensation_plans SET created_at = created_at - interval '1 minute'"
      " WHERE id = 'df-a'");
  auto plans = comp_.ListPlans(0);
  ASSERT_TRUE(plans.ok()) << plans.status();
  ASSERT_EQ(plans->size(), 2u);
  EXPECT_EQ((*plans)[0].id, "df-b");
  EXPECT_EQ((*plans)[0].state, CompensationState::kDiffing);
  EXPECT_TRUE((*plans)[0].counts.empty());
  EXPECT_EQ((*plans)[1].id, "df-a");
  EXPECT_EQ((*plans)[1].state, CompensationState::kReady);
  EXPECT_EQ(((*plans)[1].counts.at({DiffClass::kDiverged, CompensationAction::kKeep})), 3);
  EXPECT_EQ(comp_.ListPlans(1)->size(), 1u);
}

TEST_F(CompensationStoreTest, AReplayJobKeepsItsKind) {
  CreateReplay("rp-1");
  auto got = store_.GetJob("rp-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->spec.kind, ReplayKind::kReplay);
  EXPECT_EQ(db_.QueryText("SELECT kind FROM replays WHERE id = 'rp-1'"), "replay");
}

}  // namespace
}  // namespace replayd
