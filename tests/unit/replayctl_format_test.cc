// replayctl's output: the one JSON shape of every command (the protobuf JSON
// mapping), the gaps text for a hole whose neighbours share a timestamp, the
// timeline's folding of long runs of empty buckets, and the diff and
// compensate commands' tables, CSV and events file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/replayctl/audit_command.h"
#include "client/replayctl/compensate_commands.h"
#include "client/replayctl/inspect_commands.h"
#include "client/replayctl/json_output.h"
#include "client/replayctl/plan_commands.h"
#include "client/replayctl/replay_commands.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

// 2026-11-18T11:00:00Z, hour-aligned.
const int64_t kT0 = 1795000000 / 3600 * 3600;

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

TEST(ReplayctlJson, ProgressKeepsProtoNamesAndPrintsZeroCounts) {
  pb::ReplayProgress p;
  p.set_replay_id("rp-1");
  p.set_state(pb::REPLAY_RUNNING);
  p.set_total(7);
  std::string out = replayctl::ToJson(p);
  EXPECT_EQ(out.find('\n'), std::string::npos) << "one line per document";
  json j = json::parse(out);
  EXPECT_EQ(j["replay_id"], "rp-1");
  EXPECT_EQ(j["state"], "REPLAY_RUNNING");
  EXPECT_EQ(j["total"], "7");  // int64 is a string in the mapping
  EXPECT_EQ(j["processed"], "0");
  EXPECT_EQ(j["delivered"], "0");
  EXPECT_EQ(j["skipped"], "0");
  EXPECT_EQ(j["failed"], "0");
  EXPECT_EQ(j["last_error"], "");
  EXPECT_FALSE(j.contains("cursor")) << "an unset timestamp is left out";
  EXPECT_FALSE(j.contains("replayId"));
}

TEST(ReplayctlJson, DryRunCarriesThePromisedKeys) {
  pb::DryRunReport d;
  d.set_would_deliver(3);
  d.set_estimated_seconds(1.5);
  auto* s = d.add_samples();
  s->set_category("deliver");
  s->set_event_id("e-1");
  s->mutable_ingested_at()->set_seconds(kT0);
  json j = json::parse(replayctl::ToJson(d));
  EXPECT_EQ(j["would_deliver"], "3");
  EXPECT_EQ(j["would_skip"], "0");
  EXPECT_EQ(j["missing"], "0");
  EXPECT_EQ(j["estimated_seconds"], 1.5);
  ASSERT_EQ(j["samples"].size(), 1u);
  EXPECT_EQ(j["samples"][0]["event_id"], "e-1");
  EXPECT_EQ(j["samples"][0]["ingested_at"], "2026-11-18T11:00:00Z");
  EXPECT_EQ(j["samples"][0]["outcome"], "OUTCOME_UNSPECIFIED");
  EXPECT_EQ(j["skipped_by_reason"], json::array());
}

pb::Gaps OneHole(int64_t after, int64_t before) {
  pb::Gaps g;
  g.mutable_from()->set_seconds(kT0);
  g.mutable_to()->set_seconds(kT0 + 3600);
  g.set_missing(3);
  auto* hole = g.add_sequence_gaps();
  hole->set_source("orders");
  hole->set_first_missing(41);
  hole->set_last_missing(43);
  hole->mutable_after_ingested_at()->set_seconds(after);
  hole->mutable_before_ingested_at()->set_seconds(before);
  return g;
}

TEST(RenderGaps, HoleBetweenNeighboursOfTheSameTimestampSaysAt) {
  std::string text = replayctl::RenderGaps(OneHole(kT0 + 60, kT0 + 60), false);
  EXPECT_THAT(text, HasSubstr("orders  sequence 41..43 (3)  at 2026-11-18T11:01:00Z\n"));
  EXPECT_THAT(text, Not(HasSubstr("between")));
}

TEST(RenderGaps, HoleBetweenDifferentTimestampsSaysBetween) {
  std::string text = replayctl::RenderGaps(OneHole(kT0 + 60, kT0 + 90), false);
  EXPECT_THAT(text, HasSubstr("orders  sequence 41..43 (3)  between 2026-11-18T11:01:00Z and "
                              "2026-11-18T11:01:30Z\n"));
}

// An hour of minute buckets with events in the given minutes.
pb::Timeline HourWithEventsAt(std::initializer_list<int> minutes) {
  pb::Timeline t;
  t.set_bucket_seconds(60);
  t.mutable_from()->set_seconds(kT0);
  t.mutable_to()->set_seconds(kT0 + 3600);
  for (int m : minutes) {
    auto* b = t.add_buckets();
    b->mutable_start()->set_seconds(kT0 + m * 60);
    b->set_source("a");
    b->mutable_counts()->set_succeeded(5);
    b->mutable_counts()->set_total(5);
  }
  return t;
}

TEST(RenderTimeline, FoldsLongRunsOfEmptyBucketsIntoOneLine) {
  std::vector<std::string> lines =
      Lines(replayctl::RenderTimeline(HourWithEventsAt({57, 58}), false, 10));
  // Header (2 lines), the fold, minutes 57 and 58, one empty row (59), totals.
  ASSERT_EQ(lines.size(), 7u) << absl::StrJoin(lines, "\n");
  EXPECT_EQ(lines[2], "  ... 57 empty buckets (11-18 11:00 .. 11-18 11:56) ...");
  EXPECT_THAT(lines[3], HasSubstr("11-18 11:57 |##########"));
  EXPECT_THAT(lines[4], HasSubstr("11-18 11:58 |##########"));
  EXPECT_THAT(lines[5], HasSubstr("11-18 11:59 |"));
  EXPECT_THAT(lines[5], HasSubstr("      0"));
}

TEST(RenderTimeline, ShowsShortRunsOfEmptyBucketsAsRows) {
  std::vector<std::string> lines =
      Lines(replayctl::RenderTimeline(HourWithEventsAt({0, 3, 4, 59}), false, 10));
  // Minutes 1-2 as rows, 5-58 folded.
  ASSERT_EQ(lines.size(), 10u) << absl::StrJoin(lines, "\n");
  EXPECT_THAT(lines[2], HasSubstr("11-18 11:00 |#"));
  EXPECT_THAT(lines[3], HasSubstr("11-18 11:01 |"));
  EXPECT_THAT(lines[4], HasSubstr("11-18 11:02 |"));
  EXPECT_THAT(lines[5], HasSubstr("11-18 11:03 |#"));
  EXPECT_THAT(lines[6], HasSubstr("11-18 11:04 |#"));
  EXPECT_EQ(lines[7], "  ... 54 empty buckets (11-18 11:05 .. 11-18 11:58) ...");
  EXPECT_THAT(lines[8], HasSubstr("11-18 11:59 |#"));
}

pb::ListAuditResponse TwoAuditEntries() {
  pb::ListAuditResponse audit;
  pb::AuditEntry* cancel = audit.add_entries();
  cancel->set_id(8);
  cancel->mutable_at()->set_seconds(kT0 + 60);
  cancel->set_actor("alice");
  cancel->set_action("cancel");
  cancel->set_replay_id("rp-1");
  cancel->set_reason("wrong window");
  cancel->set_detail_json("{}");
  pb::AuditEntry* takeover = audit.add_entries();
  takeover->set_id(7);
  takeover->mutable_at()->set_seconds(kT0);
  takeover->set_actor("replayd-b");
  takeover->set_action("takeover");
  takeover->set_replay_id("rp-1");
  takeover->set_reason("the lease of replayd-a expired");
  takeover->set_detail_json(R"({"previous_owner": "replayd-a"})");
  return audit;
}

TEST(RenderAudit, OneAlignedRowPerEntryNewestFirst) {
  std::vector<std::string> lines = Lines(replayctl::RenderAudit(TwoAuditEntries()));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "AT                    ACTOR      ACTION    REPLAY  REASON / DETAIL");
  EXPECT_EQ(lines[1], "2026-11-18T11:01:00Z  alice      cancel    rp-1    wrong window");
  EXPECT_EQ(lines[2],
            "2026-11-18T11:00:00Z  replayd-b  takeover  rp-1    the lease of replayd-a expired"
            R"(  {"previous_owner": "replayd-a"})");
}

TEST(RenderAudit, NamesTheOlderPageAndTheEmptyCase) {
  pb::ListAuditResponse audit = TwoAuditEntries();
  audit.set_next_before_id(7);
  EXPECT_EQ(Lines(replayctl::RenderAudit(audit)).back(), "Older entries: add --before 7");
  EXPECT_EQ(replayctl::RenderAudit(pb::ListAuditResponse()), "No audit entries.\n");
}

TEST(ReplayctlJson, AuditCarriesThePromisedKeys) {
  json doc = json::parse(replayctl::ToJson(TwoAuditEntries()));
  ASSERT_EQ(doc["entries"].size(), 2u);
  const json& e = doc["entries"][1];
  for (const char* key : {"id", "at", "actor", "action", "replay_id", "reason", "detail_json"}) {
    EXPECT_TRUE(e.contains(key)) << key << " missing in " << e.dump();
  }
  EXPECT_EQ(e["id"], "7");
  EXPECT_EQ(e["at"], "2026-11-18T11:00:00Z");
  EXPECT_EQ(doc["next_before_id"], "0");
}

TEST(ReplayctlPlan, DryRunWithAPlanPrintsTheCommandThatStartsIt) {
  pb::DryRunReport d;
  d.set_plan_id("pl-0123456789abcdef");
  d.mutable_expires_at()->set_seconds(kT0);
  EXPECT_THAT(replayctl::RenderDryRun(d),
              HasSubstr("Saved as plan pl-0123456789abcdef (expires 2026-11-18T11:00:00Z). To "
                        "replay exactly these events:\n  replayctl start --plan "
                        "pl-0123456789abcdef\n"));
  EXPECT_THAT(replayctl::RenderDryRun(pb::DryRunReport()), Not(HasSubstr("plan")));
}

TEST(ReplayctlPlan, PlanShowsItsRequestCountsAndExpiry) {
  pb::Plan p;
  p.set_plan_id("pl-1");
  p.mutable_request()->mutable_from()->set_seconds(kT0);
  p.mutable_request()->mutable_to()->set_seconds(kT0 + 3600);
  p.mutable_request()->add_sources("orders");
  p.mutable_request()->set_reason("INC-1");
  p.set_total(10);
  p.set_would_deliver(7);
  p.set_would_skip(3);
  auto* s = p.add_skipped_by_reason();
  s->set_reason("already_delivered");
  s->set_count(3);
  p.set_created_by("alice");
  p.set_expired(true);
  EXPECT_EQ(Lines(replayctl::RenderPlan(p)),
            (std::vector<std::string>{
                "plan pl-1 (EXPIRED)",
                "  window        [2026-11-18T11:00:00Z, 2026-11-18T12:00:00Z) sources orders",
                "  outcomes      failed,pending,retrying (default)", "  events        10",
                "  would deliver 7", "  would skip    3 (already_delivered 3)",
                "  created       1970-01-01T00:00:00Z by alice",
                "  expires       1970-01-01T00:00:00Z", "  reason        INC-1"}));
  pb::PlanEvent e;
  e.set_source("orders");
  e.set_event_id("o-1");
  e.set_decision("deliver");
  EXPECT_EQ(replayctl::RenderPlanEvent(e), "orders\to-1\tdeliver");
}

// A ready plan of one source: 3 in sync, 2 missing downstream, 1 diverged
// (kept), 5 events missing upstream in two holes, one diverged sample.
pb::Compensation ReadyPlan() {
  pb::Compensation p;
  p.set_plan_id("df-1");
  p.set_state("ready");
  p.mutable_from()->set_seconds(kT0);
  p.mutable_to()->set_seconds(kT0 + 3600);
  p.add_sources("orders");
  for (auto [diff_class, action, count] : {std::tuple{"in_sync", "none", 3},
                                           {"missing_downstream", "create", 2},
                                           {"diverged", "keep", 1}}) {
    auto* c = p.add_counts();
    c->set_diff_class(diff_class);
    c->set_action(action);
    c->set_count(count);
  }
  for (auto [first, last] : {std::pair{10, 13}, {20, 20}}) {
    auto* h = p.add_holes();
    h->set_source("orders");
    h->set_first(first);
    h->set_last(last);
  }
  p.set_missing_upstream(5);
  auto* s = p.add_samples();
  s->set_diff_class("diverged");
  s->set_action("keep");
  s->set_source("orders");
  s->set_event_id("o-7");
  s->mutable_ingested_at()->set_seconds(kT0 + 60);
  s->set_log_outcome(pb::SUCCEEDED);
  s->set_record_id("r-7");
  s->set_record_version("3");
  s->set_detail("version 3, recorded 1");
  p.set_created_by("victor");
  p.mutable_created_at()->set_seconds(kT0 + 3600);
  p.mutable_expires_at()->set_seconds(kT0 + 2 * 3600);
  return p;
}

TEST(ReplayctlCompensate, DiffPrintsItsPlanIdAndTheExactNextCommands) {
  pb::ReplayProgress job;
  job.set_replay_id("df-0123456789abcdef");
  job.set_kind("diff");
  job.set_state(pb::REPLAY_PENDING);
  job.set_total(1000);
  EXPECT_EQ(
      Lines(replayctl::RenderDiffStarted(job)),
      (std::vector<std::string>{
          "diff df-0123456789abcdef: pending, 1000 events to compare (nothing is sent "
          "downstream)",
          "Its plan has the same id. Next:", "  replayctl progress df-0123456789abcdef --watch",
          "  replayctl compensate show df-0123456789abcdef",
          "  replayctl compensate apply df-0123456789abcdef --reason TEXT"}));
}

TEST(ReplayctlCompensate, ShowTablesCountsHolesSamplesAndTheNextStep) {
  EXPECT_EQ(
      Lines(replayctl::RenderCompensation(ReadyPlan())),
      (std::vector<std::string>{
          "plan df-1: ready",
          "  window     [2026-11-18T11:00:00Z, 2026-11-18T12:00:00Z) sources orders",
          "  created    2026-11-18T12:00:00Z by victor, expires 2026-11-18T13:00:00Z",
          "  CLASS                ACTION       ENTRIES",
          "  in_sync              none               3",
          "  missing_downstream   create             2",
          "  diverged             keep               1",
          "  missing_upstream     -                  5 (orders 10-13, orders 20)", "  samples:",
          "    diverged             orders/o-7  2026-11-18T11:01:00Z  log succeeded  "
          "downstream r-7@3  version 3, recorded 1",
          "Next: change actions, then apply:",
          "  replayctl compensate set df-1 --class diverged --action overwrite --reason TEXT",
          "  replayctl compensate apply df-1 --reason TEXT"}));
}

TEST(ReplayctlCompensate, ShowOfAnAppliedOrExpiredPlanProposesNothingMore) {
  pb::Compensation applied = ReadyPlan();
  applied.set_state("applied");
  applied.set_apply_job_id("cp-1");
  std::string text = replayctl::RenderCompensation(applied);
  EXPECT_THAT(text, HasSubstr("plan df-1: applied\n"));
  EXPECT_THAT(text, HasSubstr("  apply job  cp-1\n"));
  EXPECT_THAT(text, Not(HasSubstr("Next")));
  pb::Compensation expired = ReadyPlan();
  expired.set_expired(true);
  EXPECT_THAT(replayctl::RenderCompensation(expired), HasSubstr("plan df-1: ready (EXPIRED)\n"));
  EXPECT_THAT(replayctl::RenderCompensation(expired), Not(HasSubstr("Next")));
}

TEST(ReplayctlCompensate, ApplySummaryCountsEntriesByActionOverClasses) {
  pb::Compensation p = ReadyPlan();
  auto* undelivered = p.add_counts();
  undelivered->set_diff_class("undelivered");
  undelivered->set_action("create");
  undelivered->set_count(4);
  EXPECT_EQ(Lines(replayctl::RenderApplySummary(p)),
            (std::vector<std::string>{
                "Apply plan df-1 (ready), window [2026-11-18T11:00:00Z, 2026-11-18T12:00:00Z) "
                "sources orders",
                "  create             6", "  keep               1", "  none               3"}));
}

TEST(ReplayctlCompensate, ListShowsEachPlansCountsByClass) {
  pb::ListCompensationsResponse list;
  *list.add_plans() = ReadyPlan();
  pb::Compensation expired = ReadyPlan();
  expired.set_plan_id("df-0");
  expired.set_expired(true);
  expired.clear_holes();
  expired.set_missing_upstream(0);
  *list.add_plans() = expired;
  std::vector<std::string> lines = Lines(replayctl::RenderCompensationList(list));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], ::testing::StartsWith("ID "));
  EXPECT_THAT(lines[1],
              ::testing::StartsWith("df-1                ready     2026-11-18T11:00:00Z"));
  EXPECT_THAT(lines[1], ::testing::EndsWith(
                            "diverged 1, in_sync 3, missing_downstream 2, missing_upstream 5"));
  EXPECT_THAT(lines[2], ::testing::StartsWith("df-0                expired "));
  EXPECT_THAT(lines[2], ::testing::EndsWith("diverged 1, in_sync 3, missing_downstream 2"));
}

TEST(ReplayctlCompensate, EntryCsvHasOneColumnPerPromisedFieldAndQuotes) {
  EXPECT_EQ(replayctl::EntryCsvHeader(),
            "source,event_id,class,action,log_outcome,record_id,record_version,result");
  pb::CompensationEntry e;
  e.set_source("orders");
  e.set_event_id("o-1,\"x\"");
  e.set_diff_class("unrecorded");
  e.set_action("record");
  e.set_log_outcome(pb::FAILED);
  e.set_record_id("r-1");
  e.set_result("pending");
  EXPECT_EQ(replayctl::RenderEntryCsv(e),
            "orders,\"o-1,\"\"x\"\"\",unrecorded,record,failed,r-1,,pending");
  EXPECT_EQ(replayctl::RenderEntryLine(e),
            "orders\to-1,\"x\"\tunrecorded\trecord\tfailed\tr-1\t\tpending");
  EXPECT_EQ(Lines(replayctl::RenderCountsCsv(ReadyPlan())),
            (std::vector<std::string>{"class,action,count", "in_sync,none,3",
                                      "missing_downstream,create,2", "diverged,keep,1",
                                      "missing_upstream,,5"}));
}

TEST(ReplayctlCompensate, EntryJsonCarriesThePromisedKeys) {
  pb::CompensationEntry e;
  e.set_source("orders");
  e.set_event_id("o-1");
  e.set_diff_class("diverged");
  e.set_action("overwrite");
  e.set_log_outcome(pb::SUCCEEDED);
  json j = json::parse(replayctl::ToJson(e));
  for (const char* key : {"source", "event_id", "diff_class", "action", "log_outcome", "record_id",
                          "record_version", "result"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["log_outcome"], "SUCCEEDED");
}

TEST(ReplayctlCompensate, EventsFileTakesSourceCommaEventIdLines) {
  auto events = replayctl::ParseEventsFile(
      "# diverged by hand\norders,o-1\n\n  ledger , l-2  \r\norders,o-3");
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(*events, (std::vector<std::pair<std::string, std::string>>{
                         {"orders", "o-1"}, {"ledger", "l-2"}, {"orders", "o-3"}}));
}

TEST(ReplayctlCompensate, EventsFileNamesTheFirstBadLine) {
  for (const char* bad :
       {"orders,o-1\norders\n", "orders,o-1\norders,o-2,x\n", "orders,o-1\n,o-2\n"}) {
    auto events = replayctl::ParseEventsFile(bad);
    EXPECT_EQ(events.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(events.status().message(), HasSubstr("line 2: ")) << bad;
  }
}

TEST(ReplayctlCompensate, ProgressNamesTheJobsKindAndWhatChangedSinceTheDiff) {
  pb::ReplayProgress p;
  p.set_replay_id("cp-1");
  p.set_kind("compensate");
  p.set_state(pb::REPLAY_RUNNING);
  p.set_plan_id("df-1");
  p.set_changed_since_plan(2);
  std::string text = replayctl::RenderProgress(p);
  EXPECT_THAT(text, ::testing::StartsWith("compensate cp-1: running\n"));
  EXPECT_THAT(text, HasSubstr("  plan      df-1: 2 changed since the diff (of skipped: left "
                              "alone)\n"));
  EXPECT_EQ(json::parse(replayctl::ToJson(p))["kind"], "compensate");
  pb::ReplayProgress replay;
  replay.set_replay_id("rp-1");
  replay.set_state(pb::REPLAY_PENDING);
  EXPECT_THAT(replayctl::RenderProgress(replay), ::testing::StartsWith("replay rp-1: pending"))
      << "a progress without a kind is a replay's";
}

}  // namespace
}  // namespace replayd
