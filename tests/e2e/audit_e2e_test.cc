// The audit of a replay's life through the real replayd and replayctl: a
// start and a cancel read back with `replayctl audit` (who, what, why, when),
// the --since filter, the viewer role, and the dashboard's /api/audit.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/replay_config.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kPublisherToken = "publisher-secret-token-1234";
constexpr const char* kOperatorToken = "operator-secret-token-12345";
constexpr const char* kViewerToken = "viewer-secret-token-123456";

class AuditE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Delivery off: published events stay pending, so the replay has work.
    daemon_ = std::make_unique<testing::DaemonProcess>(
        db_.dsn(), testing::ReplayOnlyConfig(ds_.records_url(), R"(
tokens:
  - {token: publisher-secret-token-1234, role: publisher, name: upstream}
  - {token: operator-secret-token-12345, role: operator, name: alice}
  - {token: viewer-secret-token-123456, role: viewer, name: dashboard}
)"));
    daemon_->Start();
    ASSERT_NO_FATAL_FAILURE(StartAndCancel());
  }

  // A replay at 1 event/s of 40 events, cancelled while it runs.
  void StartAndCancel() {
    auto stub = testing::IngestStub(daemon_->grpc_address());
    replay::v1::PublishResponse published;
    grpc::Status s = testing::Publish(*stub, testing::NumberedBatch({.count = 40}), &published,
                                      {.token = kPublisherToken, .timeout = absl::Seconds(10)});
    ASSERT_TRUE(s.ok()) << s.error_message();
    testing::CommandResult started = Replayctl(
        kOperatorToken, {"start", "--yes", "--from", "-1h", "--to", "now", "--source", "orders",
                         "--rate", "1", "--reason", "backfill the outage", "-o", "json"});
    ASSERT_EQ(started.exit_code, 0) << started.err;
    replay_id_ = json::parse(started.out)["replay_id"];
    testing::CommandResult cancelled =
        Replayctl(kOperatorToken, {"cancel", replay_id_, "--reason", "wrong window"});
    ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
    // The owner's own "cancelled" entry lands when the job stops.
    ASSERT_TRUE(testing::PollUntil(
        [&] {
          return db_.QueryText(absl::StrCat("SELECT state FROM replays WHERE id = '", replay_id_,
                                            "'")) == "cancelled";
        },
        absl::Seconds(30)));
  }

  testing::CommandResult Replayctl(const std::string& token, std::vector<std::string> args) {
    args.insert(args.begin(), testing::kReplayctlPath);
    std::map<std::string, std::string> env = {{"REPLAYCTL_SERVER", daemon_->grpc_address()}};
    if (!token.empty()) env["REPLAYCTL_TOKEN"] = token;
    return testing::RunCommand(args, env);
  }

  // `replayctl audit <args> -o json` as the viewer: its one JSON line.
  json AuditJson(std::vector<std::string> args) {
    args.insert(args.begin(), "audit");
    args.insert(args.end(), {"-o", "json"});
    testing::CommandResult r = Replayctl(kViewerToken, args);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    return r.exit_code == 0 ? json::parse(r.out) : json();
  }

  // The operator's entries (actions by a token), newest first, "action:reason".
  static std::vector<std::string> ByAlice(const json& audit) {
    std::vector<std::string> out;
    for (const json& e : audit["entries"]) {
      if (e["actor"] == "alice")
        out.push_back(
            absl::StrCat(e["action"].get<std::string>(), ":", e["reason"].get<std::string>()));
    }
    return out;
  }

  testing::ScratchDatabase db_;
  testing::DownstreamServer ds_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
  std::string replay_id_;
};

TEST_F(AuditE2eTest, ReplayctlShowsTheStartAndTheCancelWithWhoWhatWhyAndWhen) {
  json audit = AuditJson({"--replay", replay_id_});
  EXPECT_THAT(ByAlice(audit), ElementsAre("cancel:wrong window", "start:backfill the outage"));
  const absl::Time now = absl::Now();
  int64_t previous_id = INT64_MAX;
  for (const json& e : audit["entries"]) {
    EXPECT_EQ(e["replay_id"], replay_id_);
    // Newest first; int64 as strings, times as RFC 3339 (the protobuf JSON mapping).
    int64_t id = std::stoll(e["id"].get<std::string>());
    EXPECT_LT(id, previous_id);
    previous_id = id;
    absl::Time at;
    std::string error;
    ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, e["at"].get<std::string>(), &at, &error))
        << error;
    EXPECT_LT(absl::AbsDuration(now - at), absl::Minutes(2)) << e.dump();
  }
  // The start's detail is the validated request, as JSON.
  json start = audit["entries"].back();
  EXPECT_EQ(start["action"], "start");
  json detail = json::parse(start["detail_json"].get<std::string>());
  EXPECT_TRUE(detail.is_object()) << start.dump();
  // The owner daemon wrote the end of the job (its instance, not a token name).
  json end = audit["entries"].front();
  if (end["action"] == "cancelled") {
    EXPECT_NE(end["actor"], "alice");
  }
  EXPECT_EQ(audit["entries"].size(), end["action"] == "cancelled" ? 3u : 2u) << audit.dump();
}

TEST_F(AuditE2eTest, SinceLeavesOlderEntriesOut) {
  db_.Exec(
      absl::StrCat("UPDATE replay_audit SET at = now() - interval '3 hours'"
                   " WHERE action = 'start' AND replay_id = '",
                   replay_id_, "'"));
  EXPECT_THAT(ByAlice(AuditJson({"--replay", replay_id_, "--since", "-1h"})),
              ElementsAre("cancel:wrong window"));
  EXPECT_THAT(ByAlice(AuditJson({"--replay", replay_id_, "--since", "-24h"})),
              ElementsAre("cancel:wrong window", "start:backfill the outage"));
  EXPECT_THAT(ByAlice(AuditJson({"--replay", "rp-no-such-replay"})), ElementsAre());
}

TEST_F(AuditE2eTest, TextOutputIsATableWithTheReason) {
  testing::CommandResult r = Replayctl(kViewerToken, {"audit", "--replay", replay_id_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string header;
  std::getline(lines, header);
  EXPECT_THAT(header, HasSubstr("ACTOR"));
  EXPECT_THAT(r.out, HasSubstr("wrong window"));
  EXPECT_THAT(r.out, HasSubstr("backfill the outage"));
}

TEST_F(AuditE2eTest, NeedsAToken) {
  testing::CommandResult none = Replayctl("", {"audit", "--replay", replay_id_});
  EXPECT_EQ(none.exit_code, 5) << none.out << none.err;
  EXPECT_THAT(none.err, HasSubstr("missing bearer token"));
  EXPECT_EQ(none.out, "");
}

TEST_F(AuditE2eTest, DashboardApiAnswersTheSameEntries) {
  httplib::Client http("127.0.0.1", daemon_->http_port());
  auto as_viewer = http.Get(absl::StrCat("/api/audit?replay=", replay_id_).c_str(),
                            {{"Authorization", std::string("Bearer ") + kViewerToken}});
  ASSERT_TRUE(as_viewer);
  ASSERT_EQ(as_viewer->status, 200) << as_viewer->body;
  json audit = json::parse(as_viewer->body);
  EXPECT_THAT(ByAlice(audit), ElementsAre("cancel:wrong window", "start:backfill the outage"));

  auto anonymous = http.Get(absl::StrCat("/api/audit?replay=", replay_id_).c_str());
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto bad_since = http.Get("/api/audit?since=yesterday-ish",
                            {{"Authorization", std::string("Bearer ") + kViewerToken}});
  ASSERT_TRUE(bad_since);
  EXPECT_EQ(bad_since->status, 400) << bad_since->body;
}

}  // namespace
}  // namespace replayd
