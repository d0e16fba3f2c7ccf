// Replays when things go wrong, through the real replayd, replayctl and
// downstream test server: strict key order under replay (held_by_key, the dry
// run predicting it), the circuit breaker pausing a replay into a failing
// downstream and resume delivering every event once, pause surviving kill -9
// of every replica, a replay ending FAILED (start --watch exits 6), and the
// refusals of pause and resume.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

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

constexpr const char* kOperatorToken = "operator-secret-token-1234";
constexpr const char* kViewerToken = "viewer-secret-token-123456";
constexpr const char* kPublisherToken = "publisher-secret-token-1234";

class ReplaySafetyE2eTest : public ::testing::Test {
 protected:
  // `inventory` is routed strict, `orders` not; one attempt each, so a
  // failure is final at once.
  std::string Config(bool delivery, bool tokens = false) const {
    std::string yaml = absl::StrCat("delivery:\n  enabled: ", delivery ? "true" : "false", R"(
  poll_interval: 20ms
sinks:
  - name: down
    url: )",
                                    ds_.records_url(), R"(
    replay_rate_budget: 1000
routes:
  - name: inventory
    sources: [inventory]
    sink: down
    strict_order: true
    retry: {max_attempts: 1, base_delay: 10ms, max_delay: 10ms}
  - name: orders
    sources: [orders]
    sink: down
    retry: {max_attempts: 1, base_delay: 10ms, max_delay: 10ms}
)");
    if (tokens) {
      absl::StrAppend(&yaml, "tokens:\n  - {token: ", kOperatorToken,
                      ", role: operator, name: oncall}\n  - {token: ", kViewerToken,
                      ", role: viewer, name: dashboard}\n  - {token: ", kPublisherToken,
                      ", role: publisher, name: upstream}\n");
    }
    return yaml;
  }

  testing::DaemonProcess& StartDaemon(bool delivery, bool tokens = false) {
    daemons_.push_back(
        std::make_unique<testing::DaemonProcess>(db_.dsn(), Config(delivery, tokens)));
    daemons_.back()->Start();
    Connect(*daemons_.back());
    return *daemons_.back();
  }
  void Connect(const testing::DaemonProcess& d) {
    stub_ = pb::ReplayService::NewStub(
        grpc::CreateChannel(d.grpc_address(), grpc::InsecureChannelCredentials()));
    address_ = d.grpc_address();
  }

  void Publish(const pb::PublishRequest& request) {
    testing::PublishAccepted(address_, request, {.token = token_, .batch = 500});
  }

  // Key K of the strict route gets e1, which fails live (the downstream
  // answers 503), then e2, which the live dispatcher holds behind it. Then
  // the daemon is replaced by one without live delivery, so that only the
  // replay sends. Returns the time between e1 and e2.
  absl::Time FailE1ThenPublishE2() {
    testing::DaemonProcess& live = StartDaemon(/*delivery=*/true);
    ds_.SetFaults({{"status", 503}});
    Publish(testing::KeyedBatch("inventory", {{"e1", "K"}}));
    EXPECT_TRUE(testing::PollUntil([&] { return Outcome("e1") == "failed"; }, absl::Seconds(30)))
        << "timed out waiting for e1 to fail";
    absl::SleepFor(absl::Milliseconds(20));
    const absl::Time between = absl::Now();
    absl::SleepFor(absl::Milliseconds(20));
    Publish(testing::KeyedBatch("inventory", {{"e2", "K"}}));
    absl::SleepFor(absl::Milliseconds(300));  // the dispatcher saw e2 and held it
    EXPECT_EQ(Outcome("e2"), "pending");
    EXPECT_EQ(live.Terminate(), 0);
    ds_.ClearFaults();
    ds_.Reset();
    StartDaemon(/*delivery=*/false);
    return between;
  }

  std::string Outcome(const std::string& event_id) {
    return db_.QueryText(
        absl::StrCat("SELECT outcome FROM events WHERE event_id = '", event_id, "'"));
  }

  // `from` to the microsecond: the strict tests put it between two events.
  pb::ReplayRequest Request(const std::string& source, absl::Time from, double rate) {
    pb::ReplayRequest r;
    r.mutable_from()->set_seconds(absl::ToUnixSeconds(from));
    r.mutable_from()->set_nanos(static_cast<int32_t>(absl::ToUnixMicros(from) % 1000000 * 1000));
    *r.mutable_to() = testing::ProtoTime(absl::Now() + absl::Seconds(1));
    r.add_sources(source);
    r.set_rate(rate);
    r.set_reason("e2e");
    return r;
  }
  template <typename Fn>
  grpc::Status Call(Fn&& fn, const std::string& token = "") {
    grpc::ClientContext ctx;
    const std::string& t = token.empty() ? token_ : token;
    if (!t.empty()) ctx.AddMetadata("authorization", "Bearer " + t);
    return fn(&ctx);
  }
  pb::DryRunReport DryRun(const pb::ReplayRequest& r) {
    pb::DryRunReport out;
    grpc::Status s = Call([&](grpc::ClientContext* c) { return stub_->DryRun(c, r, &out); });
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  pb::ReplayProgress Start(const pb::ReplayRequest& r) {
    pb::ReplayProgress out;
    grpc::Status s = Call([&](grpc::ClientContext* c) { return stub_->StartReplay(c, r, &out); });
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  pb::ReplayProgress Get(const std::string& id) {
    pb::GetProgressRequest req;
    req.set_replay_id(id);
    pb::ReplayProgress out;
    grpc::Status s = Call([&](grpc::ClientContext* c) { return stub_->GetProgress(c, req, &out); });
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  pb::ReplayProgress WaitFor(const std::string& id, const std::vector<pb::ReplayState>& states,
                             absl::Duration timeout) {
    pb::ReplayProgress p;
    EXPECT_TRUE(testing::PollUntil(
        [&] {
          p = Get(id);
          return std::count(states.begin(), states.end(), p.state()) > 0;
        },
        timeout))
        << "timed out waiting for replay " << id << ", state " << pb::ReplayState_Name(p.state());
    return p;
  }
  pb::ReplayProgress WaitEnded(const std::string& id, absl::Duration timeout) {
    return WaitFor(id, {pb::REPLAY_COMPLETED, pb::REPLAY_CANCELLED, pb::REPLAY_FAILED}, timeout);
  }
  grpc::Status Pause(const std::string& id, const std::string& reason, pb::ReplayProgress* out,
                     const std::string& token = "") {
    pb::PauseReplayRequest req;
    req.set_replay_id(id);
    req.set_reason(reason);
    return Call([&](grpc::ClientContext* c) { return stub_->PauseReplay(c, req, out); }, token);
  }
  grpc::Status Resume(const std::string& id, const std::string& reason, pb::ReplayProgress* out,
                      const std::string& token = "") {
    pb::ResumeReplayRequest req;
    req.set_replay_id(id);
    req.set_reason(reason);
    return Call([&](grpc::ClientContext* c) { return stub_->ResumeReplay(c, req, out); }, token);
  }

  testing::CommandResult Replayctl(std::vector<std::string> args) {
    std::map<std::string, std::string> env = {{"REPLAYCTL_SERVER", address_}};
    if (!token_.empty()) env["REPLAYCTL_TOKEN"] = token_;
    return testing::RunReplayctl(args, env);
  }

  // The idempotency keys of the create requests, in arrival order.
  std::vector<std::string> Arrivals() {
    std::vector<std::string> out;
    for (const json& r : ds_.Requests()) out.push_back(r["idempotency_key"]);
    return out;
  }
  int64_t Requests() { return ds_.Stats()["requests"].get<int64_t>(); }

  int64_t Audit(const std::string& id, const std::string& action) {
    return db_.QueryInt(absl::StrCat("SELECT count(*) FROM replay_audit WHERE replay_id = '", id,
                                     "' AND action = '", action, "'"));
  }

  static int64_t Skipped(const pb::DryRunReport& d, const std::string& reason) {
    for (const auto& s : d.skipped_by_reason()) {
      if (s.reason() == reason) return s.count();
    }
    return 0;
  }

  testing::ScratchDatabase db_;
  testing::DownstreamServer ds_{"non-idempotent"};
  std::vector<std::unique_ptr<testing::DaemonProcess>> daemons_;
  std::unique_ptr<pb::ReplayService::Stub> stub_;
  std::string address_;
  std::string token_;
};

TEST_F(ReplaySafetyE2eTest, StrictKeyBehindAFailedEventOutsideTheWindowIsHeld) {
  const absl::Time between = FailE1ThenPublishE2();
  pb::ReplayRequest only_e2 = Request("inventory", between, 100);

  pb::DryRunReport dry = DryRun(only_e2);
  EXPECT_EQ(dry.total(), 1);
  EXPECT_EQ(dry.would_deliver(), 0);
  EXPECT_EQ(Skipped(dry, "held_by_key"), 1);
  ASSERT_EQ(dry.samples_size(), 1);
  EXPECT_EQ(dry.samples(0).category(), "held_by_key");
  EXPECT_EQ(dry.samples(0).event_id(), "e2");
  EXPECT_THAT(dry.samples(0).detail(), ::testing::HasSubstr("failed event e1"));

  pb::ReplayProgress end = WaitEnded(Start(only_e2).replay_id(), absl::Seconds(30));
  EXPECT_EQ(end.state(), pb::REPLAY_COMPLETED) << end.last_error();
  EXPECT_EQ(end.processed(), 1);
  EXPECT_EQ(end.delivered(), 0);
  EXPECT_EQ(end.skipped(), 1);
  EXPECT_EQ(end.held_by_key(), 1);
  // The dry run's counts are the replay's.
  EXPECT_EQ(dry.would_deliver(), end.delivered() + end.failed());
  EXPECT_EQ(dry.would_skip(), end.skipped());
  EXPECT_EQ(Requests(), 0) << "nothing of K may reach the downstream";
  EXPECT_EQ(Outcome("e2"), "pending");
}

TEST_F(ReplaySafetyE2eTest, StrictKeyInTheWindowGoesInOrderWhenTheDownstreamIsHealthy) {
  FailE1ThenPublishE2();
  pb::ReplayRequest both = Request("inventory", absl::Now() - absl::Hours(1), 100);

  pb::DryRunReport dry = DryRun(both);
  EXPECT_EQ(dry.total(), 2);
  EXPECT_EQ(dry.would_deliver(), 2);
  EXPECT_EQ(Skipped(dry, "held_by_key"), 0);

  pb::ReplayProgress end = WaitEnded(Start(both).replay_id(), absl::Seconds(30));
  EXPECT_EQ(end.state(), pb::REPLAY_COMPLETED) << end.last_error();
  EXPECT_EQ(end.delivered(), 2);
  EXPECT_EQ(end.held_by_key(), 0);
  EXPECT_EQ(dry.would_deliver(), end.delivered() + end.failed());
  EXPECT_EQ(dry.would_skip(), end.skipped());
  EXPECT_EQ(Arrivals(), (std::vector<std::string>{"inventory:e1", "inventory:e2"}));
}

TEST_F(ReplaySafetyE2eTest, StrictKeyIsHeldWhenTheDownstreamRefusesItsEarlierEvent) {
  FailE1ThenPublishE2();
  pb::ReplayRequest both = Request("inventory", absl::Now() - absl::Hours(1), 100);
  pb::DryRunReport dry = DryRun(both);
  EXPECT_EQ(dry.total(), 2);

  ds_.SetFaults({{"status", 422}, {"count", 1}});
  pb::ReplayProgress end = WaitEnded(Start(both).replay_id(), absl::Seconds(30));
  EXPECT_EQ(end.state(), pb::REPLAY_FAILED);
  EXPECT_EQ(end.total(), dry.total());
  EXPECT_EQ(end.processed(), 2);
  EXPECT_EQ(end.failed(), 1);
  EXPECT_EQ(end.delivered(), 0);
  EXPECT_EQ(end.held_by_key(), 1);
  EXPECT_THAT(end.last_error(), ::testing::HasSubstr("inventory/e1"));
  EXPECT_EQ(Arrivals(), (std::vector<std::string>{"inventory:e1"}));
  EXPECT_EQ(Outcome("e2"), "pending");
}

TEST_F(ReplaySafetyE2eTest, BreakerPausesAReplayIntoAFailingDownstreamAndResumeDeliversAll) {
  testing::DaemonProcess& d = StartDaemon(/*delivery=*/false);
  Publish(testing::NumberedBatch({.source = "orders", .prefix = "o", .count = 500, .keys = 500}));
  ds_.SetFaults({{"status", 503}});
  pb::ReplayProgress job = Start(Request("orders", absl::Now() - absl::Hours(1), 200));

  pb::ReplayProgress paused = WaitFor(job.replay_id(), {pb::REPLAY_PAUSED}, absl::Seconds(30));
  EXPECT_THAT(paused.last_error(), ::testing::HasSubstr("circuit breaker: 10 deliveries failed"));
  const int64_t sent = Requests();
  // At most consecutive_failures plus the calls in flight (64 per replay).
  EXPECT_GE(sent, 10);
  EXPECT_LE(sent, 10 + 64);
  RecordProperty("calls_before_pause", std::to_string(sent));
  EXPECT_EQ(paused.failed(), 0) << "the burst is retried on resume, not counted failed";
  EXPECT_EQ(Audit(job.replay_id(), "paused"), 1);
  EXPECT_EQ(testing::MetricValue(d.http_port(), R"(replayd_replay_pauses_total{cause="breaker"})"),
            1);
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(Requests(), sent) << "a paused replay sends nothing";
  EXPECT_EQ(Get(job.replay_id()).state(), pb::REPLAY_PAUSED);

  ds_.ClearFaults();
  auto resumed = Replayctl({"resume", job.replay_id(), "--reason", "downstream recovered"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  pb::ReplayProgress end = WaitEnded(job.replay_id(), absl::Seconds(60));
  EXPECT_EQ(end.state(), pb::REPLAY_COMPLETED) << end.last_error();
  EXPECT_EQ(end.processed(), 500);
  EXPECT_EQ(end.delivered(), 500);
  EXPECT_EQ(end.failed(), 0);
  json stats = ds_.Stats();
  EXPECT_EQ(stats["records"], 500);
  EXPECT_EQ(stats["distinct_keys"], 500);
  EXPECT_EQ(stats["duplicates"], 0);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events WHERE outcome = 'succeeded'"), 500);
}

TEST_F(ReplaySafetyE2eTest, PauseStopsSendingSurvivesKill9OfEveryReplicaAndResumeCompletes) {
  testing::DaemonProcess& a = StartDaemon(/*delivery=*/false);
  testing::DaemonProcess& b = StartDaemon(/*delivery=*/false);
  Publish(testing::NumberedBatch({.source = "orders", .prefix = "p", .count = 1000, .keys = 1000}));
  pb::ReplayProgress job = Start(Request("orders", absl::Now() - absl::Hours(1), 100));
  EXPECT_TRUE(testing::PollUntil([&] { return Get(job.replay_id()).processed() >= 100; },
                                 absl::Seconds(30)))
      << "timed out waiting for progress";

  Connect(a);
  auto pause = Replayctl({"pause", job.replay_id(), "--reason", "maintenance", "-o", "json"});
  const int64_t answered_us = absl::ToUnixMicros(absl::Now());
  ASSERT_EQ(pause.exit_code, 0) << pause.err;
  EXPECT_EQ(json::parse(pause.out)["state"], "REPLAY_PAUSED");
  absl::SleepFor(absl::Seconds(1));
  std::vector<int64_t> t = ds_.ArrivalTimes(job.replay_id());
  EXPECT_EQ(
      std::count_if(t.begin(), t.end(), [&](int64_t at) { return at > answered_us + 200000; }), 0)
      << "deliveries went on after the pause answered";
  const int64_t sent = Requests();
  EXPECT_LT(sent, 1000);

  a.KillHard();
  b.KillHard();
  a.Restart();
  b.Restart();
  Connect(b);
  absl::SleepFor(absl::Seconds(2));  // longer than the runners' poll and a lease
  pb::ReplayProgress still = Get(job.replay_id());
  EXPECT_EQ(still.state(), pb::REPLAY_PAUSED);
  EXPECT_EQ(Requests(), sent) << "a restart must not resume a paused replay";
  auto list = Replayctl({"list", "-o", "json", "--state", "paused"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  ASSERT_EQ(json::parse(list.out)["replays"].size(), 1u);
  EXPECT_EQ(json::parse(list.out)["replays"][0]["replay_id"], job.replay_id());

  // An overlapping start is still refused: the paused replay holds its window.
  pb::ReplayProgress refused;
  grpc::Status overlap = Call([&](grpc::ClientContext* c) {
    return stub_->StartReplay(c, Request("orders", absl::Now() - absl::Hours(1), 100), &refused);
  });
  EXPECT_EQ(overlap.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  auto resumed = Replayctl({"resume", job.replay_id(), "--reason", "done", "--rate", "200"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  pb::ReplayProgress end = WaitEnded(job.replay_id(), absl::Seconds(60));
  EXPECT_EQ(end.state(), pb::REPLAY_COMPLETED) << end.last_error();
  EXPECT_EQ(end.request().rate(), 200);
  EXPECT_EQ(end.processed(), 1000);
  EXPECT_EQ(end.delivered(), 1000);
  json stats = ds_.Stats();
  EXPECT_EQ(stats["records"], 1000);
  EXPECT_EQ(stats["distinct_keys"], 1000);
  EXPECT_EQ(stats["duplicates"], 0);
  EXPECT_EQ(Audit(job.replay_id(), "pause"), 1);
  EXPECT_EQ(Audit(job.replay_id(), "resume"), 2);  // the operator's, then the claiming daemon's
}

TEST_F(ReplaySafetyE2eTest, ReplayWhoseEventsAllFailEndsFailedAndWatchExits6) {
  StartDaemon(/*delivery=*/false);
  Publish(testing::NumberedBatch({.source = "orders", .prefix = "f", .count = 20}));
  ds_.SetFaults({{"status", 503}});
  auto run = Replayctl({"start", "--yes", "--watch", "-o", "json", "--from", "-1h", "--to", "now",
                        "--source", "orders", "--rate", "100", "--reason", "e2e",
                        "--breaker-consecutive-failures", "0", "--breaker-failure-ratio", "0"});
  EXPECT_EQ(run.exit_code, 6) << run.out << run.err;
  json done = json::parse(run.out.substr(run.out.rfind('\n', run.out.size() - 2) + 1));
  EXPECT_EQ(done["state"], "REPLAY_FAILED");
  EXPECT_EQ(done["processed"], "20");
  EXPECT_EQ(done["failed"], "20");
  EXPECT_THAT(done["last_error"].get<std::string>(), ::testing::HasSubstr("HTTP 503"));
  EXPECT_EQ(Requests(), 20);
  auto list = Replayctl({"list", "-o", "json", "--state", "failed"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(json::parse(list.out)["replays"].size(), 1u);
}

TEST_F(ReplaySafetyE2eTest, PauseAndResumeRefuseBadRequestsAndChangeNothing) {
  token_ = kPublisherToken;
  StartDaemon(/*delivery=*/false, /*tokens=*/true);
  Publish(testing::NumberedBatch({.source = "orders", .prefix = "a", .count = 3}));
  Publish(testing::NumberedBatch({.source = "inventory", .prefix = "b", .count = 200}));
  token_ = kOperatorToken;
  pb::ReplayProgress ended = WaitEnded(
      Start(Request("orders", absl::Now() - absl::Hours(1), 100)).replay_id(), absl::Seconds(30));
  ASSERT_EQ(ended.state(), pb::REPLAY_COMPLETED);
  pb::ReplayProgress running = Start(Request("inventory", absl::Now() - absl::Hours(1), 1));
  WaitFor(running.replay_id(), {pb::REPLAY_RUNNING}, absl::Seconds(10));
  const int64_t audit_rows = db_.QueryInt("SELECT count(*) FROM replay_audit");

  pb::ReplayProgress out;
  grpc::Status s = Pause(ended.replay_id(), "why", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), absl::StrCat("replay ", ended.replay_id(),
                                            " is completed: only a pending or running replay "
                                            "can be paused"));
  s = Resume(running.replay_id(), "why", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), absl::StrCat("replay ", running.replay_id(),
                                            " is running: only a paused replay can be resumed"));
  s = Pause("rp-unknown", "why", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no replay with id \"rp-unknown\"");
  s = Resume("rp-unknown", "why", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  s = Pause(running.replay_id(), "", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "reason is required (why it is paused)");
  s = Resume(running.replay_id(), "", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "reason is required (why it is resumed)");
  s = Pause(running.replay_id(), "why", &out, kViewerToken);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  s = Resume(running.replay_id(), "why", &out, kViewerToken);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // replayctl: a missing --reason is a usage error, a refusal exit 1.
  auto no_reason = Replayctl({"pause", running.replay_id()});
  EXPECT_EQ(no_reason.exit_code, 2) << no_reason.err;
  auto refused = Replayctl({"resume", running.replay_id(), "--reason", "why"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, ::testing::HasSubstr("only a paused replay can be resumed"));

  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_audit"), audit_rows);
  EXPECT_EQ(Get(ended.replay_id()).state(), pb::REPLAY_COMPLETED);
  EXPECT_EQ(Get(running.replay_id()).state(), pb::REPLAY_RUNNING);
}

}  // namespace
}  // namespace replayd
