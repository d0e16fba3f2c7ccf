// Ingest through the real replayd process: durability under kill -9 and a
// Postgres restart, bad input on both APIs, configuration errors, shutdown.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <csignal>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
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
using ::testing::Not;

using testing::IngestStub;

// Events of "orders" numbered `first`.., with sequence numbers, over 17 keys.
replay::v1::PublishRequest Batch(const std::string& prefix, int first, int count) {
  return testing::NumberedBatch(
      {.prefix = prefix, .first = first, .count = count, .keys = 17, .sequence = true});
}

grpc::Status Publish(replay::v1::IngestService::Stub& stub, const replay::v1::PublishRequest& req,
                     replay::v1::PublishResponse* resp, int timeout_ms = 5000) {
  return testing::Publish(stub, req, resp, {.timeout = absl::Milliseconds(timeout_ms)});
}

std::set<std::string> LoggedIds(const testing::ScratchDatabase& db) {
  std::string ids = db.QueryText("SELECT string_agg(event_id, ',') FROM events");
  std::set<std::string> out;
  size_t start = 0;
  while (!ids.empty() && start <= ids.size()) {
    size_t comma = ids.find(',', start);
    if (comma == std::string::npos) comma = ids.size();
    out.insert(ids.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// A publisher that never pauses: every batch is retried until it gets an
// answer, as a real upstream would, and every result is remembered.
class Publisher {
 public:
  explicit Publisher(std::function<std::string()> address) : address_(std::move(address)) {}
  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    thread_.join();
  }
  std::set<std::string> sent, accepted, duplicate;
  std::map<grpc::StatusCode, int> errors;
  std::atomic<int> batches_answered{0};

 private:
  void Loop() {
    int next = 0;
    while (!stop_) {
      auto request = Batch("evt-", next, 50);
      for (const auto& e : request.events()) sent.insert(e.event_id());
      while (true) {
        auto stub = IngestStub(address_());
        replay::v1::PublishResponse response;
        grpc::Status status = Publish(*stub, request, &response, 2000);
        if (status.ok()) {
          for (const auto& r : response.results()) {
            if (r.status() == EventResult::ACCEPTED) {
              EXPECT_TRUE(accepted.insert(r.event_id()).second)
                  << "accepted twice: " << r.event_id();
            } else if (r.status() == EventResult::DUPLICATE) {
              duplicate.insert(r.event_id());
            } else {
              ADD_FAILURE() << "unexpected result for " << r.event_id() << ": " << r.reason();
            }
          }
          ++batches_answered;
          break;
        }
        ++errors[status.error_code()];
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      next += 50;
    }
  }

  std::function<std::string()> address_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

void WaitForBatches(Publisher& p, int at_least, int timeout_s = 30) {
  testing::PollUntil([&] { return p.batches_answered >= at_least; }, absl::Seconds(timeout_s),
                     absl::Milliseconds(20));
  ASSERT_GE(p.batches_answered, at_least) << "publisher made no progress";
}

TEST(IngestE2E, KillDashNineLosesNothingAcknowledged) {
  testing::ScratchDatabase db;
  testing::DaemonProcess daemon(db.dsn(), "delivery: {enabled: false}\n");
  daemon.Start();
  std::mutex mu;
  std::string address = daemon.grpc_address();
  Publisher publisher([&] {
    std::lock_guard lock(mu);
    return address;
  });
  publisher.Start();
  WaitForBatches(publisher, 20);
  daemon.KillHard();
  int before_restart = publisher.batches_answered;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  daemon.Restart();
  {
    std::lock_guard lock(mu);
    address = daemon.grpc_address();
  }
  WaitForBatches(publisher, before_restart + 20);
  publisher.Stop();

  // Every event the client saw ACCEPTED is in the log, and the log holds
  // exactly what the client sent (each batch was retried until answered).
  std::set<std::string> logged = LoggedIds(db);
  for (const auto& id : publisher.accepted) ASSERT_TRUE(logged.count(id)) << id << " lost";
  EXPECT_EQ(logged, publisher.sent);
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM events"),
            static_cast<int64_t>(publisher.sent.size()));
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM event_keys"),
            static_cast<int64_t>(publisher.sent.size()));
  // A DUPLICATE answer only ever comes for an event whose first try was cut off.
  for (const auto& id : publisher.duplicate) EXPECT_FALSE(publisher.accepted.count(id)) << id;
  EXPECT_EQ(publisher.accepted.size() + publisher.duplicate.size(), publisher.sent.size());
  EXPECT_GT(publisher.errors.size(), 0u) << "the kill went unnoticed: the test proved nothing";
}

TEST(IngestE2E, PostgresRestartMeansUnavailableThenRecovery) {
  testing::ScratchDatabase db;
  testing::DaemonProcess daemon(db.dsn(), "delivery: {enabled: false}\n");
  daemon.Start();
  Publisher publisher([&] { return daemon.grpc_address(); });
  publisher.Start();
  WaitForBatches(publisher, 10);

  auto stopped = testing::SetPostgresRunning(false);
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  int answered_before = publisher.batches_answered;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // While Postgres is down nothing is acknowledged.
  EXPECT_LE(publisher.batches_answered, answered_before + 1);
  auto stub = IngestStub(daemon.grpc_address());
  replay::v1::PublishResponse response;
  EXPECT_EQ(Publish(*stub, Batch("probe-", 0, 1), &response).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  auto started = testing::SetPostgresRunning(true);
  ASSERT_EQ(started.exit_code, 0) << started.err;
  WaitForBatches(publisher, answered_before + 10, 60);
  publisher.Stop();
  ASSERT_TRUE(daemon.Running()) << "the daemon must recover by itself, not exit";

  std::set<std::string> logged = LoggedIds(db);
  for (const auto& id : publisher.accepted) ASSERT_TRUE(logged.count(id)) << id << " lost";
  EXPECT_EQ(logged, publisher.sent);
  EXPECT_GT(publisher.errors[grpc::StatusCode::UNAVAILABLE], 0);
  for (const auto& [code, count] : publisher.errors) {
    EXPECT_TRUE(code == grpc::StatusCode::UNAVAILABLE ||
                code == grpc::StatusCode::DEADLINE_EXCEEDED)
        << "unexpected status " << code << " x" << count;
  }
}

class BadInputE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<testing::DaemonProcess>(
        db_.dsn(),
        "delivery: {enabled: false}\ningest: {max_batch: 10, max_payload_bytes: 1024}\n");
    daemon_->Start();
    stub_ = IngestStub(daemon_->grpc_address());
  }
  // Publishes one event and expects it REJECTED with `reason` and nothing stored.
  void ExpectRejected(const replay::v1::Event& e, const std::string& reason) {
    replay::v1::PublishRequest request;
    *request.add_events() = e;
    replay::v1::PublishResponse response;
    ASSERT_TRUE(Publish(*stub_, request, &response).ok());
    ASSERT_EQ(response.results_size(), 1);
    EXPECT_EQ(response.results(0).status(), EventResult::REJECTED) << reason;
    EXPECT_THAT(response.results(0).reason(), HasSubstr(reason));
  }
  httplib::Result PostEvents(const std::string& body,
                             const std::string& content_type = "application/json") {
    httplib::Client client("127.0.0.1", daemon_->http_port());
    return client.Post("/v1/events", body, content_type.c_str());
  }

  testing::ScratchDatabase db_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
  std::unique_ptr<replay::v1::IngestService::Stub> stub_;
};

TEST_F(BadInputE2E, GrpcEventsAreRejectedWithTheirReasonAndNothingStored) {
  replay::v1::Event good = Batch("x", 0, 1).events(0);
  auto e = good;
  e.set_source("");
  ExpectRejected(e, "source is empty");
  e = good;
  e.set_source("Orders!");
  ExpectRejected(e, "does not match [a-z0-9_.-]{1,64}");
  e = good;
  e.set_event_id("");
  ExpectRejected(e, "event_id is empty");
  e = good;
  e.set_event_id(std::string(257, 'a'));
  ExpectRejected(e, "event_id is 257 bytes, over the limit of 256");
  e = good;
  e.set_payload("not json");
  ExpectRejected(e, "payload is not valid JSON");
  e = good;
  e.set_payload(absl::StrCat(R"({"big":")", std::string(2000, 'x'), R"("})"));
  ExpectRejected(e, "over the limit of 1024");
  e = good;
  e.mutable_occurred_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(48)));
  ExpectRejected(e, "too far in the future");

  replay::v1::PublishResponse response;
  grpc::Status empty = Publish(*stub_, replay::v1::PublishRequest(), &response);
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty.error_message(), HasSubstr("no events"));
  grpc::Status big = Publish(*stub_, Batch("big-", 0, 11), &response);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(big.error_message(), HasSubstr("over the maximum of 10"));
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events"), 0);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM event_keys"), 0);
}

TEST_F(BadInputE2E, HttpBodiesAndContentTypes) {
  auto not_json = PostEvents("{events: nope");
  ASSERT_TRUE(not_json);
  EXPECT_EQ(not_json->status, 400);
  EXPECT_THAT(not_json->body, HasSubstr("not valid JSON"));

  auto wrong_type = PostEvents(R"({"events": []})", "text/plain");
  ASSERT_TRUE(wrong_type);
  EXPECT_EQ(wrong_type->status, 415);

  auto no_events = PostEvents(R"({"evnts": []})");
  EXPECT_EQ(no_events->status, 400);
  auto empty = PostEvents(R"({"events": []})");
  EXPECT_EQ(empty->status, 400);
  EXPECT_THAT(empty->body, HasSubstr("no events"));
  json eleven = {{"events", json::array()}};
  for (int i = 0; i < 11; ++i) {
    eleven["events"].push_back(
        {{"source", "web"}, {"event_id", absl::StrCat("b", i)}, {"payload", 1}});
  }
  EXPECT_EQ(PostEvents(eleven.dump())->status, 400);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events"), 0);

  // Unknown fields reject that event only (a typo must not silently drop data).
  json mixed = {{"events",
                 {{{"source", "web"}, {"event_id", "ok-1"}, {"payload", {{"a", 1}}}},
                  {{"source", "web"}, {"event_id", "typo"}, {"payload", 1}, {"payloda", 2}},
                  {{"source", "web"}, {"event_id", "no-payload"}},
                  {{"source", "web"},
                   {"event_id", "ok-2"},
                   {"payload", "text"},
                   {"sequence", 3},
                   {"occurred_at", "2026-01-01T00:00:00Z"}}}}};
  auto res = PostEvents(mixed.dump());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json body = json::parse(res->body);
  EXPECT_EQ(body["results"][0]["status"], "ACCEPTED");
  EXPECT_EQ(body["results"][1]["status"], "REJECTED");
  EXPECT_THAT(body["results"][1]["reason"].get<std::string>(),
              HasSubstr("unknown field \"payloda\""));
  EXPECT_EQ(body["results"][2]["status"], "REJECTED");
  EXPECT_THAT(body["results"][2]["reason"].get<std::string>(), HasSubstr("payload is missing"));
  EXPECT_EQ(body["results"][3]["status"], "ACCEPTED");
  EXPECT_EQ(db_.QueryText("SELECT string_agg(event_id, ',' ORDER BY position) FROM events"),
            "ok-1,ok-2");
  EXPECT_EQ(db_.QueryText("SELECT payload::text FROM events WHERE event_id = 'ok-2'"), "\"text\"");

  // Publishing the same body again: the accepted ones are DUPLICATE now.
  body = json::parse(PostEvents(mixed.dump())->body);
  EXPECT_EQ(body["results"][0]["status"], "DUPLICATE");
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events"), 2);
}

TEST(ConfigE2E, InvalidConfigurationIsRefusedWithEveryProblem) {
  testing::TempDir dir;
  std::string path = dir.File("bad.yaml");
  std::ofstream(path) << R"(
database_url: postgresql://u:hunter2secret@127.0.0.1:1/x
grpc_listen: nowhere
sinks:
  - {name: api, url: "not a url"}
routes:
  - {name: orders, sources: [orders], sink: ghost, retry: {max_attempts: 0}}
)";
  auto check = testing::RunReplayd({"check-config", "--config", path});
  EXPECT_EQ(check.exit_code, 2);
  EXPECT_THAT(check.err, HasSubstr("grpc_listen \"nowhere\" is not host:port"));
  EXPECT_THAT(check.err, HasSubstr("url \"not a url\" is not an http(s) URL"));
  EXPECT_THAT(check.err, HasSubstr("sink \"ghost\" is not defined under sinks"));
  EXPECT_THAT(check.err, HasSubstr("retry.max_attempts must be at least 1"));
  EXPECT_THAT(check.err + check.out, Not(HasSubstr("hunter2secret")));

  auto run = testing::RunReplayd({"--config", path});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("sink \"ghost\""));

  std::ofstream(dir.File("typo.yaml")) << "databse_url: x\n";
  auto typo = testing::RunReplayd({"check-config", "--config", dir.File("typo.yaml")});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_THAT(typo.err, HasSubstr("unknown key \"databse_url\""));

  auto version = testing::RunReplayd({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.out, HasSubstr("replayd "));
}

TEST(LifecycleE2E, SigtermDrainsAndExitsZeroAndNoPasswordIsLogged) {
  testing::ScratchDatabase db;
  // Trust authentication ignores the password; it must still never be printed.
  std::string dsn = db.dsn();
  dsn.insert(dsn.find('@'), ":hunter2secret");
  testing::DaemonProcess daemon(dsn, "log_format: json\ndelivery: {enabled: false}\n");
  daemon.Start();
  auto stub = IngestStub(daemon.grpc_address());
  replay::v1::PublishResponse response;
  ASSERT_TRUE(Publish(*stub, Batch("t-", 0, 5), &response).ok());
  EXPECT_EQ(daemon.Terminate(), 0);
  std::string log = daemon.log();
  EXPECT_THAT(log, Not(HasSubstr("hunter2secret")));
  EXPECT_THAT(log, HasSubstr("***"));
  // JSON logs: every line is a JSON object.
  std::istringstream lines(log);
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << line;
    if (!j.is_discarded()) {
      EXPECT_TRUE(j.contains("msg") && j.contains("level")) << line;
      ++parsed;
    }
  }
  EXPECT_GT(parsed, 3);
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM events"), 5);
}

}  // namespace
}  // namespace replayd
