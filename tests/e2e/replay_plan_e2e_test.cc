// Saved plans through the real replayd, replayctl and downstream test server:
// a dry run saves a plan, more failed events land in its window, and the
// start of the plan delivers exactly the planned events; one that a live
// retry delivered in between is counted changed_since_plan and not sent again.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
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
using ::testing::HasSubstr;

constexpr int kPlanned = 100;
constexpr int kLater = 50;

class ReplayPlanE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // orders fail for good at their first failure; "retried" is tried again
    // 10 s later, when the downstream is back.
    daemon_ = std::make_unique<testing::DaemonProcess>(db_.dsn(), absl::StrCat(R"(
delivery:
  enabled: true
  poll_interval: 20ms
sinks:
  - name: down
    url: )",
                                                                               ds_.records_url(),
                                                                               R"(
    replay_rate_budget: 1000
routes:
  - {name: orders, sources: [orders], sink: down,
     retry: {max_attempts: 1, base_delay: 10ms, max_delay: 10ms}}
  - {name: retried, sources: [retried], sink: down,
     retry: {max_attempts: 3, base_delay: 10s, max_delay: 10s}}
)"));
    daemon_->Start();
    stub_ = pb::ReplayService::NewStub(
        grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
  }

  int64_t Count(const std::string& where) {
    return db_.QueryInt(absl::StrCat("SELECT count(*) FROM events WHERE ", where));
  }

  testing::CommandResult Replayctl(const std::vector<std::string>& args) {
    return testing::RunReplayctl(args, {{"REPLAYCTL_SERVER", daemon_->grpc_address()}});
  }

  testing::ScratchDatabase db_;
  testing::DownstreamServer ds_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
  std::unique_ptr<pb::ReplayService::Stub> stub_;
};

TEST_F(ReplayPlanE2eTest, StartOfAPlanDeliversExactlyThePlannedEvents) {
  ds_.SetFaults({{"status", 503}});
  testing::PublishAccepted(
      daemon_->grpc_address(),
      testing::NumberedBatch({.source = "retried", .prefix = "r", .count = 1}));
  testing::PublishAccepted(
      daemon_->grpc_address(),
      testing::NumberedBatch({.source = "orders", .prefix = "a", .count = kPlanned}));
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        return Count("outcome = 'failed'") == kPlanned && Count("outcome = 'retrying'") == 1;
      },
      absl::Seconds(30)))
      << "failed " << Count("outcome = 'failed'");

  // The window reaches 4 s ahead: the later events land in it.
  testing::CommandResult dry = Replayctl({"dry-run", "--from", "-1h", "--to", "+4s", "--source",
                                          "orders,retried", "--save-plan", "-o", "json"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  json report = json::parse(dry.out);
  const std::string plan_id = report["plan_id"];
  ASSERT_FALSE(plan_id.empty());
  EXPECT_EQ(report["would_deliver"], std::to_string(kPlanned + 1));
  testing::PublishAccepted(
      daemon_->grpc_address(),
      testing::NumberedBatch({.source = "orders", .prefix = "b", .count = kLater}));
  ASSERT_TRUE(testing::PollUntil([&] { return Count("outcome = 'failed'") == kPlanned + kLater; },
                                 absl::Seconds(30)));
  // Inside the plan's window: a replay of the window would take them.
  testing::CommandResult show = Replayctl({"plan", "show", plan_id, "-o", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  const std::string window_to = json::parse(show.out)["request"]["to"];
  EXPECT_EQ(db_.QueryInt(absl::StrCat("SELECT count(*) FROM events WHERE event_id LIKE 'b%'"
                                      " AND ingested_at < '",
                                      window_to, "'")),
            kLater);
  ds_.ClearFaults();
  ASSERT_TRUE(testing::PollUntil([&] { return Count("outcome = 'succeeded'") == 1; },
                                 absl::Seconds(60)))
      << "the live retry did not deliver r0";
  ds_.Reset();

  testing::CommandResult start =
      Replayctl({"start", "--plan", plan_id, "--rate", "200", "--reason", "exactly the plan",
                 "--yes", "--watch", "-o", "json"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  json last;
  for (const auto& line : absl::StrSplit(start.out, '\n', absl::SkipEmpty())) {
    last = json::parse(std::string(line));
  }
  EXPECT_EQ(last["state"], "REPLAY_COMPLETED");
  EXPECT_EQ(last["plan_id"], plan_id);
  EXPECT_EQ(last["total"], std::to_string(kPlanned + 1));
  EXPECT_EQ(last["delivered"], std::to_string(kPlanned));
  EXPECT_EQ(last["skipped"], "1");
  EXPECT_EQ(last["changed_since_plan"], "1");

  std::set<std::string> keys;
  for (const json& r : ds_.Requests()) keys.insert(r["idempotency_key"].get<std::string>());
  EXPECT_EQ(ds_.Requests().size(), static_cast<size_t>(kPlanned));
  std::set<std::string> planned;
  for (int i = 0; i < kPlanned; ++i) planned.insert(absl::StrCat("orders:a", i));
  EXPECT_EQ(keys, planned);
  EXPECT_EQ(Count("event_id LIKE 'b%' AND outcome = 'failed'"), kLater);
  EXPECT_EQ(Count("event_id LIKE 'a%' AND outcome = 'succeeded'"), kPlanned);
}

TEST_F(ReplayPlanE2eTest, PlanShowListsTheRequestCountsAndEveryEvent) {
  ds_.SetFaults({{"status", 503}});
  testing::PublishAccepted(daemon_->grpc_address(),
                           testing::NumberedBatch({.source = "orders", .prefix = "a", .count = 3}));
  ASSERT_TRUE(testing::PollUntil([&] { return Count("outcome = 'failed'") == 3; },
                                 absl::Seconds(30)));
  testing::CommandResult dry =
      Replayctl({"dry-run", "--from", "-1h", "--to", "now", "--save-plan", "--reason", "why"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  const size_t at = dry.out.find("replayctl start --plan ");
  ASSERT_NE(at, std::string::npos) << dry.out;
  const std::string plan_id = dry.out.substr(at + 23, 19);

  testing::CommandResult show = Replayctl({"plan", "show", plan_id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr(absl::StrCat("plan ", plan_id, "\n")));
  EXPECT_THAT(show.out, HasSubstr("would deliver 3\n"));
  EXPECT_THAT(show.out, HasSubstr("reason        why\n"));

  testing::CommandResult events = Replayctl({"plan", "show", plan_id, "--events", "-o", "json"});
  ASSERT_EQ(events.exit_code, 0) << events.err;
  std::set<std::string> ids;
  for (const auto& line : absl::StrSplit(events.out, '\n', absl::SkipEmpty())) {
    json e = json::parse(std::string(line));
    EXPECT_EQ(e["source"], "orders");
    EXPECT_EQ(e["decision"], "deliver");
    ids.insert(e["event_id"].get<std::string>());
  }
  EXPECT_EQ(ids, (std::set<std::string>{"a0", "a1", "a2"}));
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_audit WHERE action = 'plan'"), 1);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replays"), 0);
}

}  // namespace
}  // namespace replayd
