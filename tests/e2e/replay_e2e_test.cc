// Replays through the real replayd, replayctl and downstream test server:
// the on-call scenario with replayctl only, the rate limiter measured from the
// downstream's arrival times, prompt cancel, and resume after kill -9.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "replay/v1/ingest.grpc.pb.h"
#include "replay/v1/replay.grpc.pb.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/time.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using nlohmann::json;

class ReplayE2eTest : public ::testing::Test {
 protected:
  // A sink entry at the downstream test server, with its lookup.
  std::string Sink(const std::string& name, int replay_rate_budget) const {
    return absl::StrCat("  - name: ", name, "\n    url: ", ds_.records_url(),
                        "\n    lookup_url: ", ds_.lookup_url(),
                        "\n    replay_rate_budget: ", replay_rate_budget, "\n");
  }

  void StartDaemon(bool delivery) {
    daemon_ = std::make_unique<testing::DaemonProcess>(
        db_.dsn(), absl::StrCat("delivery:\n  enabled: ", delivery ? "true" : "false", R"(
  poll_interval: 20ms
sinks:
)",
                                Sink("down", 1000), Sink("shared", 100), R"(routes:
  - name: orders
    sources: [orders]
    sink: down
    retry: {max_attempts: 1, base_delay: 10ms, max_delay: 10ms}
  - name: ab
    sources: [a, b]
    sink: shared
    retry: {max_attempts: 1, base_delay: 10ms, max_delay: 10ms}
)"));
    daemon_->Start();
    Connect();
  }
  void Connect() {
    auto channel = grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials());
    stub_ = pb::ReplayService::NewStub(channel);
  }

  void Publish(const std::string& source, const std::string& prefix, int count) {
    testing::PublishAccepted(
        daemon_->grpc_address(),
        testing::NumberedBatch({.source = source, .prefix = prefix, .count = count, .keys = 50}),
        {.batch = 1000});
  }

  double MetricValue(const std::string& prefix) {
    return testing::MetricValue(daemon_->http_port(), prefix);
  }

  int64_t CountOutcome(const std::string& outcome) {
    return db_.QueryInt(
        absl::StrCat("SELECT count(*) FROM events WHERE outcome = '", outcome, "'"));
  }

  pb::ReplayRequest Request(const std::string& source, double rate, int burst = 0) {
    pb::ReplayRequest r;
    *r.mutable_from() = testing::ProtoTime(absl::Now() - absl::Hours(1));
    *r.mutable_to() = testing::ProtoTime(absl::Now() + absl::Seconds(1));
    r.add_sources(source);
    r.set_rate(rate);
    r.set_burst(burst);
    r.set_reason("e2e");
    return r;
  }
  pb::ReplayProgress Start(const pb::ReplayRequest& r) {
    grpc::ClientContext ctx;
    pb::ReplayProgress out;
    grpc::Status s = stub_->StartReplay(&ctx, r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  pb::ReplayProgress Get(const std::string& id) {
    grpc::ClientContext ctx;
    pb::GetProgressRequest req;
    req.set_replay_id(id);
    pb::ReplayProgress out;
    grpc::Status s = stub_->GetProgress(&ctx, req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  pb::ReplayProgress WaitEnded(const std::string& id, absl::Duration timeout) {
    pb::ReplayProgress p;
    EXPECT_TRUE(testing::PollUntil(
        [&] {
          p = Get(id);
          return p.state() == pb::REPLAY_COMPLETED || p.state() == pb::REPLAY_CANCELLED ||
                 p.state() == pb::REPLAY_FAILED;
        },
        timeout))
        << "timed out waiting for the replay to end";
    return p;
  }

  static double Rate(const std::vector<int64_t>& t) {
    return t.size() < 2 ? 0 : (t.size() - 1) * 1e6 / static_cast<double>(t.back() - t.front());
  }
  static int MaxIn(const std::vector<int64_t>& t, int64_t window_us) {
    int best = 0;
    for (size_t i = 0, j = 0; i < t.size(); ++i) {
      while (t[i] - t[j] >= window_us) ++j;
      best = std::max(best, static_cast<int>(i - j + 1));
    }
    return best;
  }

  testing::CommandResult Replayctl(std::vector<std::string> args) {
    return testing::RunReplayctl(args, {{"REPLAYCTL_SERVER", daemon_->grpc_address()}});
  }

  testing::ScratchDatabase db_;
  testing::DownstreamServer ds_{"non-idempotent"};
  std::unique_ptr<testing::DaemonProcess> daemon_;
  std::unique_ptr<pb::ReplayService::Stub> stub_;
};

// The on-call scenario: a partial outage, then dry-run, start --yes --watch, with replayctl only.
TEST_F(ReplayE2eTest, PartialOutageIsClosedWithReplayctl) {
  StartDaemon(/*delivery=*/true);
  Publish("orders", "before-", 100);
  EXPECT_TRUE(
      testing::PollUntil([&] { return CountOutcome("succeeded") == 100; }, absl::Seconds(30)))
      << "timed out waiting for delivery";
  ds_.SetFaults({{"status", 503}});
  Publish("orders", "outage-", 100);
  EXPECT_TRUE(testing::PollUntil([&] { return CountOutcome("failed") == 100; }, absl::Seconds(30)))
      << "timed out waiting for failures";
  ds_.ClearFaults();
  Publish("orders", "after-", 100);
  EXPECT_TRUE(
      testing::PollUntil([&] { return CountOutcome("succeeded") == 200; }, absl::Seconds(30)))
      << "timed out waiting for delivery";
  ASSERT_EQ(ds_.Stats()["records"], 200);

  auto dry =
      Replayctl({"dry-run", "-o", "json", "--from", "-1h", "--to", "now", "--source", "orders"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  json report = json::parse(dry.out);
  EXPECT_EQ(report["would_deliver"], "100");
  EXPECT_EQ(report["would_skip"], "200");
  ASSERT_EQ(report["skipped_by_reason"].size(), 1u);
  EXPECT_EQ(report["skipped_by_reason"][0]["reason"], "already_delivered");
  EXPECT_EQ(report["skipped_by_reason"][0]["count"], "200");
  EXPECT_EQ(report["missing"], "0");
  ASSERT_EQ(report["samples"].size(), 10u);
  EXPECT_EQ(report["samples"][0]["category"], "deliver");
  EXPECT_EQ(report["samples"][0]["event_id"], "outage-0");
  EXPECT_GT(report["estimated_seconds"].get<double>(), 0);
  EXPECT_EQ(ds_.Stats()["requests"], 300) << "the dry run must not call the downstream";

  // Without --yes and without a terminal, start refuses (exit 3) and starts nothing.
  auto refused = Replayctl({"start", "--from", "-1h", "--to", "now", "--source", "orders"});
  EXPECT_EQ(refused.exit_code, 3) << refused.err;
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replays"), 0);

  auto run = Replayctl({"start", "--yes", "--watch", "-o", "json", "--from", "-1h", "--to", "now",
                        "--source", "orders", "--rate", "200", "--reason", "outage INC-1"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  // One progress object per line; the last is final.
  json done = json::parse(run.out.substr(run.out.rfind('\n', run.out.size() - 2) + 1));
  EXPECT_EQ(done["state"], "REPLAY_COMPLETED");
  EXPECT_EQ(done["total"], "300");
  EXPECT_EQ(done["processed"], "300");
  EXPECT_EQ(done["delivered"], "100");
  EXPECT_EQ(done["skipped"], "200");
  EXPECT_EQ(done["failed"], "0");

  json stats = ds_.Stats();
  EXPECT_EQ(stats["records"], 300);
  EXPECT_EQ(stats["distinct_keys"], 300);
  EXPECT_EQ(stats["duplicates"], 0);
  EXPECT_EQ(CountOutcome("succeeded"), 300);
  // The replay's results reach /metrics through the runner's observer.
  EXPECT_EQ(MetricValue(R"(replayd_replay_events_total{result="delivered"})"), 100);
  EXPECT_EQ(MetricValue(R"(replayd_replay_events_total{result="skipped"})"), 200);
  EXPECT_EQ(MetricValue(R"(replayd_replay_events_total{result="failed"})"), 0);

  auto progress = Replayctl({"progress", "-o", "json", done["replay_id"]});
  ASSERT_EQ(progress.exit_code, 0) << progress.err;
  EXPECT_EQ(json::parse(progress.out)["delivered"], "100");
  auto list = Replayctl({"list", "-o", "json", "--state", "completed"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(json::parse(list.out)["replays"].size(), 1u);
  auto cancel = Replayctl({"cancel", done["replay_id"]});
  EXPECT_EQ(cancel.exit_code, 1);
  EXPECT_THAT(cancel.err, ::testing::HasSubstr("already ended"));

  // The dry run now has nothing left to deliver.
  dry = Replayctl({"dry-run", "-o", "json", "--from", "-1h", "--to", "now"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(json::parse(dry.out)["would_deliver"], "0");
}

TEST_F(ReplayE2eTest, RateIsHeldFromDownstreamArrivalTimes) {
  StartDaemon(/*delivery=*/false);
  Publish("orders", "e", 3000);
  pb::ReplayProgress job = Start(Request("orders", 100, 20));
  EXPECT_EQ(job.total(), 3000);
  pb::ReplayProgress end = WaitEnded(job.replay_id(), absl::Seconds(90));
  EXPECT_EQ(end.state(), pb::REPLAY_COMPLETED);
  EXPECT_EQ(end.delivered(), 3000);
  std::vector<int64_t> t = ds_.ArrivalTimes(job.replay_id());
  ASSERT_EQ(t.size(), 3000u);
  double rate = Rate(t);
  RecordProperty("achieved_rate", std::to_string(rate));
  // Never above the asked rate (1% for the clocks); the ±1% accuracy target
  // is measured by `bench/run ratelimit`, not by a timed test on a shared machine.
  EXPECT_LE(rate, 101.0);
  EXPECT_GE(rate, 90.0);
  // A token bucket's bound over any 100 ms: the burst (20) plus what refills
  // meanwhile (100/s × 0.1 s). Arrivals bunch after a stall of the machine,
  // so the burst alone is not a bound (26 in one CI run under load).
  EXPECT_LE(MaxIn(t, 100000), 20 + 10) << "more than burst + refill in some 100 ms";
}

TEST_F(ReplayE2eTest, TwoReplaysShareTheSinkBudget) {
  StartDaemon(/*delivery=*/false);
  Publish("a", "a", 500);
  Publish("b", "b", 500);
  // Each asks 100/s; the sink's replay budget is 100/s for both together.
  pb::ReplayProgress ja = Start(Request("a", 100));
  pb::ReplayProgress jb = Start(Request("b", 100));
  EXPECT_EQ(WaitEnded(ja.replay_id(), absl::Seconds(60)).delivered(), 500);
  EXPECT_EQ(WaitEnded(jb.replay_id(), absl::Seconds(60)).delivered(), 500);
  std::vector<int64_t> ta = ds_.ArrivalTimes(ja.replay_id());
  std::vector<int64_t> tb = ds_.ArrivalTimes(jb.replay_id());
  std::vector<int64_t> all = ta;
  all.insert(all.end(), tb.begin(), tb.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), 1000u);
  // Two replays asking 100/s each against a 100/s sink budget must have waited on the sink.
  EXPECT_GT(MetricValue(R"(replayd_rate_limiter_waits_total{limiter="sink:)"), 0);
  EXPECT_GT(MetricValue(R"(replayd_rate_limiter_wait_seconds_total{limiter="sink:)"), 1.0);
  // Both ran side by side (neither waited for the other to finish) ...
  EXPECT_LT(ta.front(), tb.back());
  EXPECT_LT(tb.front(), ta.back());
  // ... and together stayed within the budget.
  double rate = Rate(all);
  RecordProperty("combined_rate", std::to_string(rate));
  EXPECT_LE(rate, 101.0);
  EXPECT_GE(rate, 95.0);
}

TEST_F(ReplayE2eTest, CancelStopsDeliveriesWithin200ms) {
  StartDaemon(/*delivery=*/false);
  Publish("orders", "e", 3000);
  pb::ReplayProgress job = Start(Request("orders", 100));
  EXPECT_TRUE(testing::PollUntil([&] { return Get(job.replay_id()).processed() >= 150; },
                                 absl::Seconds(30)))
      << "timed out waiting for progress";
  const int64_t cancel_sent_us = absl::ToUnixMicros(absl::Now());
  grpc::ClientContext ctx;
  pb::CancelReplayRequest req;
  req.set_replay_id(job.replay_id());
  req.set_reason("stop");
  pb::ReplayProgress cancelled;
  ASSERT_TRUE(stub_->CancelReplay(&ctx, req, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), pb::REPLAY_CANCELLED);
  absl::SleepFor(absl::Seconds(1));
  std::vector<int64_t> t = ds_.ArrivalTimes(job.replay_id());
  int64_t late =
      std::count_if(t.begin(), t.end(), [&](int64_t at) { return at > cancel_sent_us + 200000; });
  EXPECT_EQ(late, 0) << "deliveries went on after the cancel";
  // Exact final counts: what the downstream received.
  EXPECT_EQ(cancelled.delivered(), static_cast<int64_t>(t.size()));
  EXPECT_EQ(cancelled.processed(), cancelled.delivered());
  EXPECT_EQ(ds_.Stats()["records"], static_cast<int64_t>(t.size()));
  EXPECT_EQ(Get(job.replay_id()).delivered(), cancelled.delivered());
}

TEST_F(ReplayE2eTest, ResumesAfterKill9WithEachEventOnce) {
  StartDaemon(/*delivery=*/false);
  Publish("orders", "e", 1000);
  pb::ReplayProgress job = Start(Request("orders", 200));
  EXPECT_TRUE(testing::PollUntil([&] { return ds_.Stats()["records"].get<int64_t>() >= 300; },
                                 absl::Seconds(30)))
      << "timed out waiting for progress";
  daemon_->KillHard();
  int64_t before = ds_.Stats()["records"];
  EXPECT_LT(before, 1000);
  daemon_->Restart();
  Connect();
  pb::ReplayProgress end = WaitEnded(job.replay_id(), absl::Seconds(90));
  EXPECT_EQ(end.state(), pb::REPLAY_COMPLETED) << end.last_error();
  EXPECT_EQ(end.processed(), 1000);
  EXPECT_EQ(end.failed(), 0);
  EXPECT_EQ(end.delivered() + end.skipped(), 1000);
  json stats = ds_.Stats();
  EXPECT_EQ(stats["records"], 1000);
  EXPECT_EQ(stats["distinct_keys"], 1000);
  EXPECT_EQ(stats["duplicates"], 0);
  // A delivery in flight at the kill reached the downstream unrecorded: the
  // lookup after the takeover finds it and marks it already_processed.
  EXPECT_EQ(CountOutcome("succeeded") + CountOutcome("already_processed"), 1000);
  EXPECT_EQ(db_.QueryInt(absl::StrCat("SELECT count(*) FROM replay_audit WHERE replay_id = '",
                                      job.replay_id(), "' AND action = 'takeover'")),
            1);
}

}  // namespace
}  // namespace replayd
