// Targeted replays through the real replayd, replayctl and downstream test
// servers: keys, types and an event-ids file deliver exactly what they name,
// the dry run's counts equal what the replay does (counted at the
// downstream), and a replay sent to another configured sink goes only there,
// under its own retry policy, while live delivery keeps its route.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "replay/v1/ingest.grpc.pb.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using nlohmann::json;

// The idempotency keys ("<source>:<event id>") a downstream received from
// replays, and how many requests that was.
struct Received {
  std::multiset<std::string> keys;
  size_t live = 0;  // requests without X-Replay-Id
};

Received ReceivedBy(testing::DownstreamServer& ds) {
  Received out;
  for (const json& r : ds.Requests()) {
    if (r["replay_id"].is_null()) {
      ++out.live;
    } else {
      out.keys.insert(r["idempotency_key"].get<std::string>());
    }
  }
  return out;
}

class ReplayFiltersE2eTest : public ::testing::Test {
 protected:
  // `delivery`: live delivery on. Sinks: "down" (ds_, the orders route's)
  // and "down-v2" (ds2_, named by no route).
  void StartDaemon(bool delivery) {
    auto sink = [](const std::string& name, testing::DownstreamServer& ds) {
      return absl::StrCat("  - {name: ", name, ", url: \"", ds.records_url(),
                          "\", replay_rate_budget: 1000}\n");
    };
    const std::string yaml = absl::StrCat(
        "delivery: {enabled: ", delivery ? "true" : "false", ", poll_interval: 20ms}\n",
        "replay: {default_rate: 500, high_rate_threshold: 1000, max_rate: 2000}\n", "sinks:\n",
        sink("down", ds_), sink("down-v2", ds2_),
        "routes:\n  - name: orders\n    sources: [orders]\n    sink: down\n",
        "    retry: {max_attempts: 1, base_delay: 10ms, max_delay: 10ms}\n");
    daemon_ = std::make_unique<testing::DaemonProcess>(db_.dsn(), yaml);
    daemon_->Start();
  }

  // `n` failed events of orders e1..e<n> in the last half hour: key k<i % 10>,
  // type t<i % 3>, as the log holds them after their delivery failed.
  void InsertFailed(int n) {
    db_.Exec(absl::StrCat(
        "INSERT INTO events (source, event_id, key, type, ingested_at, outcome, attempts,"
        " last_error, processed_at, payload)"
        " SELECT 'orders', 'e' || i, 'k' || (i % 10), 't' || (i % 3),"
        " now() - interval '30 minutes' + i * interval '1 millisecond', 'failed', 1, 'HTTP 503',"
        " now(), jsonb_build_object('n', i) FROM generate_series(1, ",
        n, ") i"));
  }

  testing::CommandResult Replayctl(std::vector<std::string> args) {
    return testing::RunReplayctl(args, {{"REPLAYCTL_SERVER", daemon_->grpc_address()}});
  }

  // A dry run's JSON report for the last hour of orders with `filters`.
  json DryRun(const std::vector<std::string>& filters) {
    std::vector<std::string> args = {"dry-run", "-o", "json", "--from", "-1h", "--to", "now",
                                     "--source", "orders"};
    args.insert(args.end(), filters.begin(), filters.end());
    auto r = Replayctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }

  // Runs a replay of the last hour of orders with `flags` to its end; its
  // final progress.
  json Replay(const std::vector<std::string>& flags) {
    std::vector<std::string> args = {"start", "--yes", "--watch", "-o", "json", "--from", "-1h",
                                     "--to", "now", "--source", "orders", "--reason", "e2e"};
    args.insert(args.end(), flags.begin(), flags.end());
    auto r = Replayctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    if (r.exit_code != 0) return json::object();
    return json::parse(r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1));
  }

  static std::multiset<std::string> Keys(const std::vector<std::string>& ids) {
    std::multiset<std::string> out;
    for (const std::string& id : ids) out.insert("orders:" + id);
    return out;
  }

  testing::ScratchDatabase db_;
  testing::DownstreamServer ds_{"idempotent"};
  testing::DownstreamServer ds2_{"idempotent"};
  std::unique_ptr<testing::DaemonProcess> daemon_;
  testing::TempDir files_;
};

TEST_F(ReplayFiltersE2eTest, KeyFilterDeliversOnlyThoseKeysAsTheDryRunCounted) {
  StartDaemon(/*delivery=*/false);
  InsertFailed(300);
  json dry = DryRun({"--key", "k1", "--key", "k7"});
  EXPECT_EQ(dry["total"], "60");
  EXPECT_EQ(dry["would_deliver"], "60");

  json done = Replay({"--key", "k1", "--key", "k7"});
  EXPECT_EQ(done["state"], "REPLAY_COMPLETED");
  EXPECT_EQ(done["delivered"], dry["would_deliver"]);
  EXPECT_EQ(done["request"]["keys"], json::array({"k1", "k7"}));

  std::vector<std::string> expected;
  for (int i = 1; i <= 300; ++i) {
    if (i % 10 == 1 || i % 10 == 7) expected.push_back(absl::StrCat("e", i));
  }
  Received got = ReceivedBy(ds_);
  EXPECT_EQ(got.keys, Keys(expected));
  EXPECT_EQ(got.live, 0u);
}

TEST_F(ReplayFiltersE2eTest, EventIdsFileDeliversExactlyItsHundredIdsOutOfTenThousand) {
  StartDaemon(/*delivery=*/false);
  InsertFailed(10000);
  std::vector<std::string> ids;
  const std::string path = files_.File("ids.txt");
  {
    std::ofstream out(path);
    out << "# the events the downstream lost\n\n";
    for (int i = 1; i <= 100; ++i) {
      ids.push_back(absl::StrCat("e", i * 97));
      out << ids.back() << "\n";
      if (i % 25 == 0) out << "\n# another page\n";
    }
  }
  json dry = DryRun({"--event-ids-file", path});
  EXPECT_EQ(dry["total"], "100");
  EXPECT_EQ(dry["would_deliver"], "100");

  json done = Replay({"--event-ids-file", path});
  EXPECT_EQ(done["state"], "REPLAY_COMPLETED");
  EXPECT_EQ(done["total"], "100");
  EXPECT_EQ(done["delivered"], dry["would_deliver"]);
  EXPECT_EQ(ReceivedBy(ds_).keys, Keys(ids));
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events WHERE outcome = 'succeeded'"), 100);
}

TEST_F(ReplayFiltersE2eTest, TypeFilterDeliversOnlyThatTypeAsTheDryRunCounted) {
  StartDaemon(/*delivery=*/false);
  InsertFailed(90);
  json dry = DryRun({"--type", "t2"});
  EXPECT_EQ(dry["would_deliver"], "30");

  json done = Replay({"--type", "t2"});
  EXPECT_EQ(done["state"], "REPLAY_COMPLETED");
  EXPECT_EQ(done["delivered"], dry["would_deliver"]);
  std::vector<std::string> expected;
  for (int i = 1; i <= 90; ++i) {
    if (i % 3 == 2) expected.push_back(absl::StrCat("e", i));
  }
  EXPECT_EQ(ReceivedBy(ds_).keys, Keys(expected));
}

TEST_F(ReplayFiltersE2eTest, ReplayToAnotherSinkSendsOnlyThereWhileLiveKeepsItsRoute) {
  StartDaemon(/*delivery=*/true);
  // The old endpoint is gone: every live delivery fails (max_attempts 1).
  ds_.SetFaults({{"status", 503}});
  testing::PublishAccepted(daemon_->grpc_address(),
                           testing::NumberedBatch({.prefix = "lost-", .count = 40, .keys = 5}));
  ASSERT_TRUE(testing::PollUntil(
      [&] { return db_.QueryInt("SELECT count(*) FROM events WHERE outcome = 'failed'") == 40; },
      absl::Seconds(30)));
  const size_t old_requests = ds_.Requests().size();

  // Its first attempt answers 503: the replay's own policy retries it there.
  ds2_.SetFaults({{"status", 503}, {"count", 1}});
  json done = Replay({"--sink", "down-v2", "--max-attempts", "3", "--retry-base", "20ms",
                      "--retry-cap", "40ms"});
  EXPECT_EQ(done["state"], "REPLAY_COMPLETED");
  EXPECT_EQ(done["delivered"], "40");
  EXPECT_EQ(done["request"]["sink"], "down-v2");
  EXPECT_EQ(ds_.Requests().size(), old_requests) << "the old endpoint got a replayed event";
  std::vector<std::string> lost;
  for (int i = 0; i < 40; ++i) lost.push_back(absl::StrCat("lost-", i));
  std::multiset<std::string> once = Keys(lost);
  Received got = ReceivedBy(ds2_);
  EXPECT_EQ(std::set<std::string>(got.keys.begin(), got.keys.end()),
            std::set<std::string>(once.begin(), once.end()));
  EXPECT_EQ(got.keys.size(), 41u);  // one event twice: the 503, then its retry
  EXPECT_EQ(got.live, 0u);

  // The trace shows each attempt's sink and policy: the live one by the
  // route, the replay's by its own.
  auto trace = Replayctl({"trace", "orders", "lost-0", "-o", "json"});
  ASSERT_EQ(trace.exit_code, 0) << trace.err;
  json attempts = json::parse(trace.out)["attempts"];
  ASSERT_GE(attempts.size(), 2u);
  EXPECT_EQ(attempts[0]["sink"], "down");
  EXPECT_EQ(attempts[0]["retry"]["max_attempts"], 1);
  EXPECT_EQ(attempts[0]["retry"]["base"], "0.010s");
  const json& replayed = attempts[attempts.size() - 1];
  EXPECT_EQ(replayed["sink"], "down-v2");
  EXPECT_EQ(replayed["outcome"], "SUCCEEDED");
  EXPECT_EQ(replayed["retry"]["max_attempts"], 3);
  EXPECT_EQ(replayed["retry"]["base"], "0.020s");
  EXPECT_EQ(replayed["retry"]["cap"], "0.040s");

  // Live traffic of the route still goes to the route's sink.
  ds_.ClearFaults();
  testing::PublishAccepted(daemon_->grpc_address(),
                           testing::NumberedBatch({.prefix = "live-", .count = 10}));
  ASSERT_TRUE(testing::PollUntil(
      [&] { return db_.QueryInt("SELECT count(*) FROM events WHERE outcome = 'succeeded'") == 50; },
      absl::Seconds(30)));
  EXPECT_EQ(ReceivedBy(ds_).live, old_requests + 10);
  EXPECT_EQ(ReceivedBy(ds2_).live, 0u);
}

TEST_F(ReplayFiltersE2eTest, BadFiltersSinkOrRetryStartNothing) {
  StartDaemon(/*delivery=*/false);
  InsertFailed(10);
  auto unknown = Replayctl({"start", "--yes", "--from", "-1h", "--to", "now", "--sink", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.out + unknown.err,
              ::testing::HasSubstr(
                  "sink \"nope\" is not configured; the configured sinks are: down, down-v2"));
  auto retry = Replayctl({"start", "--yes", "--from", "-1h", "--to", "now", "--retry-base", "2s",
                          "--retry-cap", "1s"});
  EXPECT_EQ(retry.exit_code, 1);
  EXPECT_THAT(retry.out + retry.err, ::testing::HasSubstr("retry.cap 1s is below retry.base 2s"));
  auto empty = Replayctl({"start", "--yes", "--from", "-1h", "--to", "now", "--key", ""});
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_THAT(empty.out + empty.err, ::testing::HasSubstr("keys[0] is empty"));
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replays"), 0);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_audit"), 0);
  EXPECT_TRUE(ReceivedBy(ds_).keys.empty());
}

}  // namespace
}  // namespace replayd
