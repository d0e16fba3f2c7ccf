// Saved plans on a real PostgreSQL: a dry run saves what it selected (in the
// database by one statement, or chunk by chunk as it streams), the plan reads
// back in window order across chunks and pages with the events' state now,
// later events of the window stay out, and expired plans lose their events.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/common/clock.h"
#include "server/replay/dry_run.h"
#include "server/replay/limits.h"
#include "server/store/partitions.h"
#include "server/store/pg_inspection_store.h"
#include "server/store/pg_pool.h"
#include "server/store/pg_replay_store.h"
#include "server/store/pg_types.h"
#include "tests/support/pg_replay_fixture.h"

namespace replayd {
namespace {

class ReplayPlanStoreTest : public testing::PgReplayFixture {
 protected:
  void SetUp() override {
    ASSERT_TRUE(partitions_.EnsureDays(base_ - absl::Hours(24), base_ + absl::Hours(24)).ok());
    route_.name = "orders";
    route_.sink_name = "down";
    route_.strict_order = false;
  }

  // `n` events of `source` from base_, `step_us` apart (0: all in one
  // microsecond), the i-th failed when i % 4 == 0, else succeeded.
  void Insert(const std::string& source, int n, int step_us, const std::string& prefix = "e") {
    db_.Exec(absl::StrCat(
        "INSERT INTO events (source, event_id, ingested_at, outcome, payload) SELECT '", source,
        "', '", prefix, "' || i, '", PgTime(base_), "'::timestamptz + (i / 2)::bigint * ", step_us,
        " * interval '1 microsecond', CASE i % 4 WHEN 0 THEN 'failed' ELSE 'succeeded' END, '{}'"
        " FROM generate_series(0, ",
        n - 1, ") i"));
  }

  // Saves plan `id` of Spec(verify); returns the dry run's result.
  DryRunResult Save(const std::string& id, bool verify = false,
                    absl::Duration ttl = absl::Hours(1)) {
    auto result = Runner().Run(Spec(verify), id);
    EXPECT_TRUE(result.ok()) << result.status();
    ReplayPlan plan;
    plan.id = id;
    plan.request_json = R"({"reason":"test"})";
    plan.counts["deliver"] = result->would_deliver;
    for (const auto& [reason, count] : result->skipped_by_reason) plan.counts[reason] = count;
    plan.created_by = "tester";
    plan.expires_at = absl::Now() + ttl;
    AuditEntry audit{"tester", "plan", "", "", "{}", absl::Now()};
    EXPECT_TRUE(store_.CreatePlan(plan, audit).ok());
    return *result;
  }

  // Every event of the plan, read in pages of `page`.
  std::vector<PlannedEvent> ReadAll(const std::string& id, int page) {
    std::vector<PlannedEvent> out;
    std::optional<ReplayCursor> after;
    while (true) {
      auto got = store_.ReadPlanPage(id, after, page);
      EXPECT_TRUE(got.ok()) << got.status();
      if (!got.ok()) return out;
      out.insert(out.end(), got->begin(), got->end());
      if (static_cast<int>(got->size()) < page) return out;
      after = ReplayCursor{got->back().event.ingested_at, got->back().event.position};
    }
  }

  // The window's events in (ingested_at, position) order, from the log.
  std::vector<int64_t> WindowPositions() {
    std::vector<int64_t> out;
    std::optional<ReplayCursor> after;
    while (true) {
      auto page = store_.ReadWindowPage(Spec(false).window, after, 5000);
      EXPECT_TRUE(page.ok());
      for (const StoredEvent& e : *page) out.push_back(e.position);
      if (page->size() < 5000) return out;
      after = ReplayCursor{page->back().ingested_at, page->back().position};
    }
  }

  // Saves plan `id` of 12,000 events of orders and checks that it holds
  // each event of the window once, in rows of one kind: a decision per group
  // (`grouped`) or per event.
  void ExpectEveryEventSavedOnce(const std::string& id, bool grouped) {
    Insert("orders", 12000, 10);
    DryRunResult result = Save(id);
    EXPECT_EQ(result.would_deliver, 3000);
    EXPECT_EQ(db_.QueryInt(absl::StrCat("SELECT count(*) FROM replay_plan_events WHERE plan_id = '",
                                        id, "' AND decisions IS ", grouped ? "NOT NULL" : "NULL")),
              0);
    std::vector<PlannedEvent> events = ReadAll(id, 1000);
    EXPECT_EQ(Positions(events), WindowPositions());
    EXPECT_EQ(Decisions(events),
              (std::map<std::string, int64_t>{{"already_delivered", 9000}, {"deliver", 3000}}));
  }

  static std::vector<int64_t> Positions(const std::vector<PlannedEvent>& events) {
    std::vector<int64_t> out;
    for (const PlannedEvent& e : events) out.push_back(e.event.position);
    return out;
  }

  static std::map<std::string, int64_t> Decisions(const std::vector<PlannedEvent>& events) {
    std::map<std::string, int64_t> out;
    for (const PlannedEvent& e : events) ++out[e.decision];
    return out;
  }
};

TEST_F(ReplayPlanStoreTest, SpreadWindowIsSavedInTimeChunksAndReadsBackInOrder) {
  Insert("orders", 30000, 200000);  // pairs 0.2 s apart over 50 minutes
  DryRunResult result = Save("pl-spread");
  EXPECT_EQ(result.total, 30000);
  EXPECT_EQ(result.would_deliver, 7500);
  // Chunks sized from the partition's size: none far above kPlanChunkEvents.
  EXPECT_GE(db_.QueryInt("SELECT count(DISTINCT chunk) FROM replay_plan_events"
                         " WHERE plan_id = 'pl-spread'"),
            3);
  EXPECT_LE(db_.QueryInt("SELECT max(n) FROM (SELECT sum(cardinality(positions)) AS n"
                         " FROM replay_plan_events WHERE plan_id = 'pl-spread' GROUP BY chunk) c"),
            2 * kPlanChunkEvents);
  std::vector<PlannedEvent> events = ReadAll("pl-spread", 999);
  EXPECT_EQ(Positions(events), WindowPositions());
}

TEST_F(ReplayPlanStoreTest, BurstIsSplitInSortedChunksAndReadsBackInWindowOrder) {
  // 25,000 events in 1.25 s, in pairs sharing a microsecond: one slice of
  // time, split; chunks and pages split ties.
  Insert("orders", 25000, 100);
  Insert("ghost", 10, 100, "g");
  DryRunResult result = Save("pl-window");
  EXPECT_EQ(result.total, 25010);
  EXPECT_EQ(result.would_deliver, 6250);
  // A delivered event of a source without a route is already_delivered.
  EXPECT_EQ(result.skipped_by_reason["already_delivered"], 18757);
  EXPECT_EQ(result.skipped_by_reason["no_route"], 3);
  EXPECT_EQ(db_.QueryInt("SELECT max(cardinality(positions)) FROM replay_plan_events"
                         " WHERE plan_id = 'pl-window'"),
            kPlanChunkEvents);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_plan_events WHERE plan_id = 'pl-window'"), 3);

  std::vector<PlannedEvent> events = ReadAll("pl-window", 777);
  EXPECT_EQ(Positions(events), WindowPositions());
  EXPECT_EQ(Decisions(events),
            (std::map<std::string, int64_t>{
                {"already_delivered", 18757}, {"deliver", 6250}, {"no_route", 3}}));
  for (const PlannedEvent& e : events) {
    const bool failed = e.event.outcome == Outcome::kFailed;
    if (e.event.event.source == "orders") {
      EXPECT_EQ(e.decision == "deliver", failed);
    }
  }
}

TEST_F(ReplayPlanStoreTest, SavedWindowGivesASourceWithoutARouteItsOwnDecisions) {
  Insert("orders", 8, 1000);      // e0, e4 failed; the rest succeeded
  Insert("ghost", 4, 1000, "g");  // g0 failed; the rest succeeded; no route
  DryRunResult result = Save("pl-ghost");
  EXPECT_EQ(result.would_deliver, 2);
  EXPECT_EQ(result.skipped_by_reason["no_route"], 1);
  EXPECT_EQ(result.skipped_by_reason["already_delivered"], 9);
  std::vector<PlannedEvent> events = ReadAll("pl-ghost", 4);
  std::vector<std::string> ids;
  for (const PlannedEvent& e : events) {
    ids.push_back(absl::StrCat(e.event.event.event_id, ":", e.decision));
  }
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre(
                       "e0:deliver", "e1:already_delivered", "e2:already_delivered",
                       "e3:already_delivered", "e4:deliver", "e5:already_delivered",
                       "e6:already_delivered", "e7:already_delivered", "g0:no_route",
                       "g1:already_delivered", "g2:already_delivered", "g3:already_delivered"));
}

TEST_F(ReplayPlanStoreTest, SavingReadCountsAsThePlainAggregate) {
  Insert("orders", 3000, 1000);
  Insert("ghost", 1000, 3000, "g");
  db_.Exec("UPDATE events SET sequence = position WHERE source = 'orders' AND position % 7 <> 0");
  auto plain = store_.AggregateWindow(Spec(false).window);
  ASSERT_TRUE(plain.ok()) << plain.status();
  WindowPlanSave save{"pl-agg",
                      [](Outcome o, bool routed) {
                        return std::string(o == Outcome::kFailed ? (routed ? "deliver" : "no_route")
                                                                 : "already_delivered");
                      },
                      [](const std::string& source) { return source == "orders"; }};
  auto saving = store_.AggregateWindow(Spec(false).window, &save);
  ASSERT_TRUE(saving.ok()) << saving.status();
  auto totals = [](const std::vector<WindowAggregate>& rows) {
    std::map<std::tuple<std::string, Outcome, std::optional<int64_t>>, int64_t> out;
    for (const WindowAggregate& a : rows) out[{a.source, a.outcome, a.sequence_bucket}] += a.count;
    return out;
  };
  EXPECT_EQ(totals(*saving), totals(*plain));
  // no_route: ghost's failed events (every 4th of 1,000), and those alone.
  EXPECT_EQ(db_.QueryInt("SELECT coalesce(sum(cardinality(positions)), 0) FROM replay_plan_events"
                         " WHERE plan_id = 'pl-agg' AND decision = 4"),
            250);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_plan_events WHERE plan_id = 'pl-agg'"
                         " AND decision = 4 AND source <> 'ghost'"),
            0);
  save.decide = [](Outcome, bool) { return std::string("resend"); };
  EXPECT_EQ(store_.AggregateWindow(Spec(false).window, &save).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ReplayPlanStoreTest, StrictRouteElsewhereSavesTheWindowByASecondRead) {
  config_.routes.push_back({"payments", {"payments"}, "down", /*strict_order=*/true, {}});
  ExpectEveryEventSavedOnce("pl-second-read", /*grouped=*/true);
}

TEST_F(ReplayPlanStoreTest, StrictRouteFoundByTheReadSavesTheWindowAsItStreams) {
  // The route turns strict where the check before the read does not look:
  // the events the read saved are dropped and the streamed ones kept.
  route_.strict_order = true;
  ExpectEveryEventSavedOnce("pl-turned-strict", /*grouped=*/false);
}

TEST_F(ReplayPlanStoreTest, StreamedPlanKeepsPerEventDecisions) {
  Insert("orders", 12000, 10);
  DryRunResult result = Save("pl-streamed", /*verify=*/true);  // no lookup: the sink has none
  EXPECT_EQ(result.would_deliver, 3000);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_plan_events WHERE plan_id = 'pl-streamed'"),
            2);
  std::vector<PlannedEvent> events = ReadAll("pl-streamed", 1000);
  ASSERT_EQ(events.size(), 12000u);
  EXPECT_EQ(Positions(events), WindowPositions());
  EXPECT_EQ(Decisions(events),
            (std::map<std::string, int64_t>{{"already_delivered", 9000}, {"deliver", 3000}}));
}

TEST_F(ReplayPlanStoreTest, LaterEventsStayOutAndReadsShowTheStateNow) {
  Insert("orders", 8, 1000);
  Save("pl-frozen");
  Insert("orders", 4, 1000, "late");  // the same window, after the plan
  db_.Exec("UPDATE events SET outcome = 'succeeded' WHERE event_id = 'e0'");

  std::vector<PlannedEvent> events = ReadAll("pl-frozen", 3);
  ASSERT_EQ(events.size(), 8u);
  for (const PlannedEvent& e : events) EXPECT_EQ(e.event.event.event_id.rfind("e", 0), 0u);
  EXPECT_EQ(events[0].event.event.event_id, "e0");
  EXPECT_EQ(events[0].decision, "deliver");
  EXPECT_EQ(events[0].event.outcome, Outcome::kSucceeded);
}

TEST_F(ReplayPlanStoreTest, PlanKeepsItsRequestCountsAndExpiry) {
  Insert("orders", 8, 1000);
  Save("pl-meta");
  auto plan = store_.GetPlan("pl-meta");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->request_json, R"({"reason": "test"})");  // as jsonb prints it
  EXPECT_EQ(plan->counts,
            (std::map<std::string, int64_t>{{"already_delivered", 6}, {"deliver", 2}}));
  EXPECT_EQ(plan->Total(), 8);
  EXPECT_EQ(plan->created_by, "tester");
  EXPECT_GT(plan->expires_at, absl::Now());
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_audit WHERE action = 'plan'"), 1);
}

TEST_F(ReplayPlanStoreTest, UnknownPlanIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(store_.GetPlan("pl-none").status()));
  auto page = store_.ReadPlanPage("pl-none", std::nullopt, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->empty());
}

TEST_F(ReplayPlanStoreTest, ExpiredPlanKeepsItsRowAndLosesItsEventsAtTheNextSave) {
  Insert("orders", 8, 1000);
  Save("pl-old", false, -absl::Minutes(1));
  Save("pl-new");
  EXPECT_TRUE(store_.GetPlan("pl-old").ok());
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_plan_events WHERE plan_id = 'pl-old'"), 0);
  EXPECT_EQ(ReadAll("pl-new", 100).size(), 8u);
}

}  // namespace
}  // namespace replayd
