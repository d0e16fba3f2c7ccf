// Hostile input and infrastructure faults against the real daemon: nesting
// limits, bad query bytes, pathological bodies, a replica killed mid-delivery
// and a database that is not up yet.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <thread>

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
using replay::v1::EventResult;
using ::testing::HasSubstr;

constexpr int kMaxDepth = 100;  // the documented maximum payload depth

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string EventJson(const std::string& id, const std::string& payload) {
  return absl::StrCat(R"({"source":"orders","event_id":")", id, R"(","payload":)", payload, "}");
}

int64_t Count(const testing::ScratchDatabase& db, const std::string& where) {
  return db.QueryInt(absl::StrCat("SELECT count(*) FROM events WHERE ", where));
}

// The resident set of process `pid`, in KiB (VmRSS of /proc/PID/status).
int64_t RssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

class HostileInputE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<testing::DaemonProcess>(db_.dsn(), "delivery: {enabled: false}\n");
    daemon_->Start();
  }
  httplib::Result Post(const std::string& body) {
    httplib::Client client("127.0.0.1", daemon_->http_port());
    client.set_read_timeout(120, 0);
    client.set_write_timeout(120, 0);
    return client.Post("/v1/events", body, "application/json");
  }
  httplib::Result Get(const std::string& path) {
    httplib::Client client("127.0.0.1", daemon_->http_port());
    return client.Get(path);
  }

  testing::ScratchDatabase db_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
};

TEST_F(HostileInputE2E, PayloadSeventyThousandLevelsDeepIsRejectedAndTheDaemonLives) {
  const std::string body = absl::StrCat(R"({"events":[)", EventJson("deep", Nested(70000)), "]}");
  auto res = Post(body);
  ASSERT_TRUE(res) << "no answer; log:\n" << daemon_->log();
  ASSERT_EQ(res->status, 200) << res->body;
  json out = json::parse(res->body);
  ASSERT_EQ(out["results"].size(), 1u);
  EXPECT_EQ(out["results"][0]["status"], "REJECTED");
  EXPECT_EQ(out["results"][0]["reason"],
            absl::StrCat("payload nests deeper than the maximum of ", kMaxDepth, " levels"));
  EXPECT_TRUE(daemon_->Running());
  EXPECT_EQ(Count(db_, "true"), 0);
}

TEST_F(HostileInputE2E, HttpBatchWithOneTooDeepEventStoresTheGoodOnes) {
  const std::string body = absl::StrCat(R"({"events":[)", EventJson("good-1", Nested(kMaxDepth)),
                                        ",", EventJson("deep", Nested(kMaxDepth + 1)), ",",
                                        EventJson("good-2", R"({"a":1})"), "]}");
  auto res = Post(body);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json out = json::parse(res->body);
  ASSERT_EQ(out["results"].size(), 3u);
  EXPECT_EQ(out["results"][0]["status"], "ACCEPTED") << out.dump();
  EXPECT_EQ(out["results"][1]["status"], "REJECTED");
  EXPECT_THAT(out["results"][1]["reason"].get<std::string>(), HasSubstr("deeper than the maximum"));
  EXPECT_EQ(out["results"][2]["status"], "ACCEPTED");
  EXPECT_EQ(Count(db_, "event_id IN ('good-1', 'good-2')"), 2);
  EXPECT_EQ(Count(db_, "event_id = 'deep'"), 0);
}

// 20,000 levels is deeper than PostgreSQL's jsonb input can take: refused
// before it reaches the database, without failing the rest of the batch.
TEST_F(HostileInputE2E, GrpcBatchWithOneTooDeepEventStoresTheGoodOnes) {
  replay::v1::PublishRequest request =
      testing::KeyedBatch("orders", {{"good-1", ""}, {"deep", ""}, {"good-2", ""}});
  request.mutable_events(1)->set_payload(Nested(20000));
  auto stub = testing::IngestStub(daemon_->grpc_address());
  replay::v1::PublishResponse response;
  grpc::Status status = testing::Publish(*stub, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 3);
  EXPECT_EQ(response.results(0).status(), EventResult::ACCEPTED);
  EXPECT_EQ(response.results(1).status(), EventResult::REJECTED);
  EXPECT_EQ(response.results(1).reason(),
            absl::StrCat("payload nests deeper than the maximum of ", kMaxDepth, " levels"));
  EXPECT_EQ(response.results(2).status(), EventResult::ACCEPTED);
  EXPECT_EQ(Count(db_, "event_id IN ('good-1', 'good-2')"), 2);
}

TEST_F(HostileInputE2E, InvalidUtf8InQueryParametersAnswers400) {
  for (const std::string path :
       {"/api/gaps?from=%ff", "/api/timeline?to=%c3", "/api/timeline?source=%ff"}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 400) << path << ": " << res->body;
    json body = json::parse(res->body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << path << ": " << res->body;
    EXPECT_FALSE(body.value("error", "").empty()) << path << ": " << res->body;
  }
  EXPECT_TRUE(daemon_->Running());
}

TEST_F(HostileInputE2E, PathologicalBodiesLeaveRssBounded) {
  const pid_t pid = daemon_->pid();
  const int64_t start_kib = RssKib(pid);
  ASSERT_GT(start_kib, 0);
  // Just under the 64 MiB body limit, so that every body reaches the route.
  const size_t size = (64u << 20) - 64;
  const std::string brackets(size, '[');
  const std::string wrapped =
      absl::StrCat(R"({"events":[{"payload":)", std::string(size - 64, '['));
  int64_t peak_kib = start_kib;
  for (int i = 0; i < 20; ++i) {
    auto res = Post(i % 2 == 0 ? brackets : wrapped);
    ASSERT_TRUE(res) << "request " << i << " got no answer; log:\n" << daemon_->log();
    EXPECT_EQ(res->status, 400) << res->body;
    peak_kib = std::max(peak_kib, RssKib(pid));
  }
  const int64_t end_kib = RssKib(pid);
  std::cout << "RSS " << start_kib << " KiB -> " << end_kib << " KiB, peak seen " << peak_kib
            << " KiB\n";
  EXPECT_LT(end_kib - start_kib, 100 * 1024)
      << "RSS " << start_kib << " KiB -> " << end_kib << " KiB (peak seen " << peak_kib << ")";
  EXPECT_TRUE(daemon_->Running());
}

// Two replicas; the first holds every event's claim (its calls hang) when it
// is killed. The survivor must deliver them all within 10 s of the kill.
TEST(TakeOverE2E, SurvivorDeliversTheKilledReplicasKeysWithinTenSeconds) {
  testing::ScratchDatabase db;
  testing::DownstreamServer ds;
  const std::string yaml =
      absl::StrCat("sinks:\n  - name: downstream\n    type: http\n    url: ", ds.records_url(),
                   "\n    timeout: 60s\n    connect_timeout: 1s\n",
                   "routes:\n  - name: orders\n    sources: [orders]\n    sink: downstream\n",
                   "    retry: {max_attempts: 10, base_delay: 50ms, max_delay: 500ms}\n");
  testing::DaemonProcess first(db.dsn(), yaml), survivor(db.dsn(), yaml);
  ds.SetFaults({{"hang_ms", 120000}});
  first.Start();
  const int n = 20;
  testing::PublishAccepted(first.grpc_address(),
                           testing::NumberedBatch({.prefix = "t", .count = n, .keys = n}));
  ASSERT_TRUE(testing::PollUntil(
      [&] { return db.QueryInt("SELECT count(*) FROM delivery_claims") == n; }, absl::Seconds(30)))
      << first.log();
  survivor.Start();
  // The survivor sees every event claimed by the first replica.
  ASSERT_TRUE(testing::PollUntil(
      [&] { return survivor.log().find("claimed by another daemon") != std::string::npos; },
      absl::Seconds(10)));
  first.KillHard();
  const int64_t killed_us = absl::ToUnixMicros(absl::Now());
  ds.ClearFaults();

  std::set<std::string> delivered;
  int64_t last_us = 0;
  testing::PollUntil(
      [&] {
        delivered.clear();
        for (const json& r : ds.Requests()) {
          const int status = r["status"].is_number() ? r["status"].get<int>() : 0;
          const int64_t at = r["arrival_us"].get<int64_t>();
          if (at < killed_us || status < 200 || status >= 300) continue;
          if (delivered.insert(r["idempotency_key"].get<std::string>()).second) {
            last_us = std::max(last_us, at);
          }
        }
        return static_cast<int>(delivered.size()) == n;
      },
      absl::Seconds(30), absl::Milliseconds(100));
  ASSERT_EQ(static_cast<int>(delivered.size()), n) << survivor.log();
  std::cout << "the survivor delivered the last key " << (last_us - killed_us) / 1000
            << " ms after the kill\n";
  // The claims expire within the 4 s lease; the survivor claims them at its
  // next try (200 ms) and calls at once.
  EXPECT_LE(last_us - killed_us, 10'000'000)
      << "took over after " << (last_us - killed_us) << " µs";
  // Every claim attempt that found the dead replica's claims is counted.
  EXPECT_GE(testing::MetricValue(survivor.http_port(), "replayd_delivery_claim_waits_total"), n);
  EXPECT_EQ(survivor.Terminate(), 0);
}

TEST(StartupE2E, DaemonStartedBeforePostgresServesOnceItIsUp) {
  testing::ScratchDatabase db;
  auto stopped = testing::SetPostgresRunning(false);
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  testing::DaemonProcess daemon(db.dsn(), "delivery: {enabled: false}\n");
  std::thread starter([] {
    std::this_thread::sleep_for(std::chrono::seconds(4));
    testing::SetPostgresRunning(true);
  });
  daemon.Start();  // waits until it listens, which needs the database
  starter.join();
  ASSERT_TRUE(daemon.Running()) << daemon.log();
  EXPECT_THAT(daemon.log(), HasSubstr("database not reachable"));
  testing::PublishAccepted(daemon.grpc_address(),
                           testing::NumberedBatch({.prefix = "s", .count = 3}));
  EXPECT_EQ(Count(db, "event_id LIKE 's%'"), 3);
  EXPECT_EQ(daemon.Terminate(), 0);
}

TEST(StartupE2E, DaemonGivesUpAfterTheStartupTimeout) {
  testing::ScratchDatabase db;
  auto stopped = testing::SetPostgresRunning(false);
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  testing::TempDir dir;
  std::ofstream(dir.File("replayd.yaml")) << "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\n"
                                          << "database_startup_timeout: 2s\n";
  const absl::Time start = absl::Now();
  auto run =
      testing::RunReplayd({"--config", dir.File("replayd.yaml"), "--database-url", db.dsn()});
  const absl::Duration took = absl::Now() - start;
  auto started = testing::SetPostgresRunning(true);
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_GE(took, absl::Seconds(2));
  EXPECT_LT(took, absl::Seconds(20));
  EXPECT_THAT(run.out + run.err, HasSubstr("database not reachable"));
}

}  // namespace
}  // namespace replayd
