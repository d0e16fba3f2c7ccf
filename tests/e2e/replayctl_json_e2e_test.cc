// replayctl's `-o json` through the real replayd and replayctl: every command
// prints its response in the protobuf JSON mapping (proto field names, zero
// counts printed, int64 as strings), parsed here with one parser, and
// `--watch -o json` prints one parsable progress object per line.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "replay/v1/ingest.grpc.pb.h"
#include "tests/support/processes.h"
#include "tests/support/replay_config.h"
#include "tests/support/scratch_database.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using nlohmann::json;
using ::testing::AnyOf;

class ReplayctlJsonE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<testing::DaemonProcess>(db_.dsn(),
                                                       testing::ReplayOnlyConfig(ds_.records_url()));
    daemon_->Start();
  }

  // Events orders/e-1 .. e-<count> with sequence numbers 1..count, but for
  // the ones in [hole_first, hole_last], which are never published.
  void Publish(int count, int hole_first, int hole_last) {
    auto channel = grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials());
    auto ingest = pb::IngestService::NewStub(channel);
    pb::PublishRequest req;
    for (int i = 1; i <= count; ++i) {
      if (i >= hole_first && i <= hole_last) continue;
      auto* e = req.add_events();
      e->set_source("orders");
      e->set_event_id(absl::StrCat("e-", i));
      e->set_sequence(i);
      e->set_payload("{}");
    }
    grpc::ClientContext ctx;
    pb::PublishResponse resp;
    grpc::Status s = ingest->Publish(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  testing::CommandResult Replayctl(std::vector<std::string> args) {
    args.insert(args.begin(), testing::kReplayctlPath);
    return testing::RunCommand(args, {{"REPLAYCTL_SERVER", daemon_->grpc_address()}});
  }

  // Every line of stdout, each parsed on its own.
  static std::vector<json> ParseLines(const std::string& out) {
    std::vector<json> docs;
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) docs.push_back(json::parse(line));
    return docs;
  }

  // Runs replayctl with `-o json`; the exit code must be `want_exit` and
  // stdout exactly one JSON document on one line.
  json RunJson(std::vector<std::string> args, int want_exit = 0) {
    args.insert(args.begin(), {"-o", "json"});
    testing::CommandResult r = Replayctl(args);
    EXPECT_EQ(r.exit_code, want_exit) << r.out << r.err;
    std::vector<json> docs = ParseLines(r.out);
    EXPECT_EQ(docs.size(), 1u) << r.out;
    return docs.empty() ? json() : docs.front();
  }

  // The keys scripts rely on in start, progress and cancel (and list's items).
  static void ExpectProgressKeys(const json& p) {
    for (const char* key : {"replay_id", "state", "total", "processed", "delivered", "skipped",
                            "failed"}) {
      EXPECT_TRUE(p.contains(key)) << key << " missing in " << p.dump();
    }
    EXPECT_THAT(p["replay_id"].get<std::string>(), ::testing::StartsWith("rp-"));
    EXPECT_THAT(p["state"].get<std::string>(), ::testing::StartsWith("REPLAY_"));
  }

  static int64_t Int(const json& v) { return std::stoll(v.get<std::string>()); }

  testing::ScratchDatabase db_;
  testing::DownstreamServer ds_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
};

TEST_F(ReplayctlJsonE2eTest, DryRunCarriesThePromisedKeys) {
  Publish(20, 11, 13);
  json d = RunJson({"dry-run", "--from", "-1h", "--to", "now", "--source", "orders"});
  EXPECT_EQ(d["would_deliver"], "17");
  EXPECT_EQ(d["would_skip"], "0");  // a zero count is printed, not left out
  EXPECT_EQ(d["missing"], "3");
  ASSERT_EQ(d["samples"].size(), 5u) << d.dump();
  EXPECT_EQ(d["samples"][0]["category"], "deliver");
  EXPECT_EQ(d["samples"][0]["event_id"], "e-1");
  EXPECT_EQ(d["samples"][0]["outcome"], "PENDING");
  EXPECT_GT(d["estimated_seconds"].get<double>(), 0);
  ASSERT_EQ(d["missing_ranges"].size(), 1u);
  EXPECT_EQ(d["missing_ranges"][0]["first"], "11");
  EXPECT_EQ(d["missing_ranges"][0]["last"], "13");
}

TEST_F(ReplayctlJsonE2eTest, StartWatchPrintsOneProgressObjectPerLine) {
  Publish(40, 0, -1);
  // 40 events at 20/s: about two seconds, so the watch sees several updates.
  testing::CommandResult r = Replayctl({"start", "--yes", "--watch", "-o", "json", "--from",
                                        "-1h", "--to", "now", "--source", "orders", "--rate",
                                        "20"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<json> lines = ParseLines(r.out);
  ASSERT_GE(lines.size(), 2u) << r.out;
  int64_t processed = 0;
  for (const json& p : lines) {
    ExpectProgressKeys(p);
    EXPECT_EQ(p["replay_id"], lines.front()["replay_id"]);
    EXPECT_EQ(p["total"], "40");
    EXPECT_GE(Int(p["processed"]), processed) << "progress went back";
    processed = Int(p["processed"]);
  }
  const json& last = lines.back();
  EXPECT_EQ(last["state"], "REPLAY_COMPLETED");
  EXPECT_EQ(last["processed"], "40");
  EXPECT_EQ(last["delivered"], "40");
  EXPECT_EQ(last["skipped"], "0");
  EXPECT_EQ(last["failed"], "0");
  EXPECT_EQ(ds_.Stats()["records"], 40);

  // progress, progress --watch and list show the same replay in the same shape.
  const std::string id = last["replay_id"];
  json p = RunJson({"progress", id});
  ExpectProgressKeys(p);
  EXPECT_EQ(p, last);
  json watched = RunJson({"progress", "--watch", id});
  EXPECT_EQ(watched, last);
  json list = RunJson({"list", "--state", "completed"});
  ASSERT_EQ(list["replays"].size(), 1u) << list.dump();
  ExpectProgressKeys(list["replays"][0]);
  EXPECT_EQ(list["replays"][0]["replay_id"], id);
}

TEST_F(ReplayctlJsonE2eTest, StartAndCancelCarryThePromisedKeys) {
  Publish(40, 0, -1);
  // 1 event/s: still running when it is cancelled.
  json started = RunJson({"start", "--yes", "--from", "-1h", "--to", "now", "--source", "orders",
                          "--rate", "1", "--reason", "json e2e"});
  ExpectProgressKeys(started);
  EXPECT_EQ(started["total"], "40");
  EXPECT_EQ(started["request"]["reason"], "json e2e");
  const std::string id = started["replay_id"];

  json cancelled = RunJson({"cancel", id, "--reason", "enough"});
  ExpectProgressKeys(cancelled);
  EXPECT_EQ(cancelled["replay_id"], id);
  EXPECT_THAT(cancelled["state"].get<std::string>(),
              AnyOf("REPLAY_CANCELLED", "REPLAY_CANCELLING"));
  EXPECT_LT(Int(cancelled["processed"]), 40);

  // A watch of a replay that ended cancelled: its one line, then exit 6.
  json watched = RunJson({"progress", "--watch", id}, /*want_exit=*/6);
  ExpectProgressKeys(watched);
  EXPECT_EQ(watched["state"], "REPLAY_CANCELLED");
}

TEST_F(ReplayctlJsonE2eTest, InspectionCommandsUseTheSameShape) {
  Publish(20, 11, 13);
  json timeline = RunJson({"timeline", "--from", "-10m"});
  EXPECT_EQ(timeline["totals"]["total"], "17");
  EXPECT_EQ(timeline["totals"]["failed"], "0");
  EXPECT_EQ(timeline["totals"]["pending"], "17");

  json gaps = RunJson({"gaps", "--from", "-10m"});
  EXPECT_EQ(gaps["missing"], "3");
  ASSERT_EQ(gaps["sequence_gaps"].size(), 1u) << gaps.dump();
  EXPECT_EQ(gaps["sequence_gaps"][0]["first_missing"], "11");
  EXPECT_EQ(gaps["sequence_gaps"][0]["last_missing"], "13");

  json trace = RunJson({"trace", "orders", "e-4"});
  EXPECT_EQ(trace["event"]["event"]["event_id"], "e-4");
  EXPECT_EQ(trace["event"]["event"]["sequence"], "4");
  EXPECT_EQ(trace["event"]["outcome"], "PENDING");
  EXPECT_EQ(trace["attempts"], json::array());
}

}  // namespace
}  // namespace replayd
