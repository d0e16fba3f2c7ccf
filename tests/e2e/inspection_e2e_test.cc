// The on-call view through the real processes: the standard gRPC health
// service's overall status flips with Postgres ("liveness" does not), server reflection lists the
// API, /metrics is valid Prometheus text whose counters agree with the log after a scripted run
// (deliveries, an outage, duplicates, a rejection), and replayctl timeline / gaps / trace show that
// run.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstring>
#include <fstream>

#include <map>
#include <regex>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "protos/health_subset.grpc.pb.h"
#include "protos/reflection_subset.grpc.pb.h"
#include "replay/v1/ingest.grpc.pb.h"
#include "replay/v1/inspection.grpc.pb.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

// The health status, or UNKNOWN when the call itself fails.
HealthStatus::ServingStatus Health(const std::string& address, const std::string& service = "") {
  auto stub = grpc::health::v1::Health::NewStub(Channel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthStatus response;
  grpc::Status status = stub->Check(&ctx, request, &response);
  if (!status.ok()) {
    std::cerr << "health check of \"" << service << "\": " << status.error_code() << " "
              << status.error_message() << "\n";
    return HealthStatus::UNKNOWN;
  }
  return response.status();
}

bool WaitForHealth(const std::string& address, HealthStatus::ServingStatus want, int seconds) {
  return testing::PollUntil([&] { return Health(address) == want; }, absl::Seconds(seconds),
                            absl::Milliseconds(100));
}

TEST(HealthE2E, FlipsToNotServingWhilePostgresIsDownAndBack) {
  testing::ScratchDatabase db;
  testing::DaemonProcess daemon(db.dsn(), "delivery: {enabled: false}\n");
  daemon.Start();
  EXPECT_EQ(Health(daemon.grpc_address()), HealthStatus::SERVING);
  EXPECT_EQ(Health(daemon.grpc_address(), "liveness"), HealthStatus::SERVING);

  auto stopped = testing::SetPostgresRunning(false);
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  bool flipped_down = WaitForHealth(daemon.grpc_address(), HealthStatus::NOT_SERVING, 20);
  // Liveness stays up: a database outage must not restart every replica.
  HealthStatus::ServingStatus liveness_while_down = Health(daemon.grpc_address(), "liveness");
  auto started = testing::SetPostgresRunning(true);
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_TRUE(flipped_down) << "health stayed SERVING while Postgres was down";
  EXPECT_EQ(liveness_while_down, HealthStatus::SERVING);
  EXPECT_TRUE(WaitForHealth(daemon.grpc_address(), HealthStatus::SERVING, 30))
      << "health did not come back when Postgres did";
  EXPECT_TRUE(daemon.Running());
  EXPECT_THAT(daemon.log(), HasSubstr("health: NOT_SERVING"));
  EXPECT_THAT(daemon.log(), HasSubstr("health: SERVING"));
}

TEST(ReflectionE2E, ListsTheApiAndHealthServices) {
  testing::ScratchDatabase db;
  testing::DaemonProcess daemon(db.dsn(), "delivery: {enabled: false}\n");
  daemon.Start();
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(Channel(daemon.grpc_address()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  auto stream = stub->ServerReflectionInfo(&ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  std::vector<std::string> names;
  for (const auto& s : response.list_services_response().service()) names.push_back(s.name());
  EXPECT_THAT(names, IsSupersetOf({"replay.v1.IngestService", "replay.v1.ReplayService",
                                   "replay.v1.InspectionService", "grpc.health.v1.Health"}));
}

TEST(InspectionAuthE2E, ViewerRoleOnGrpcAndTheDashboardApi) {
  testing::ScratchDatabase db;
  testing::DaemonProcess daemon(
      db.dsn(),
      "delivery: {enabled: false}\n"
      "tokens:\n"
      "  - {token: viewer-token-0123456789, role: viewer, name: alice}\n"
      "  - {token: publisher-token-0123456789, role: publisher, name: upstream}\n");
  daemon.Start();
  ASSERT_TRUE(daemon.Running());
  auto stub = replay::v1::InspectionService::NewStub(Channel(daemon.grpc_address()));
  auto call = [&](const std::string& token) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    replay::v1::TimelineRequest request;
    replay::v1::Timeline response;
    return stub->GetTimeline(&ctx, request, &response).error_code();
  };
  EXPECT_EQ(call(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("publisher-token-0123456789"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call("viewer-token-0123456789"), grpc::StatusCode::OK);

  httplib::Client http("127.0.0.1", daemon.http_port());
  auto status = [&](const std::string& path, const std::string& token) {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto res = http.Get(path, headers);
    return res ? res->status : -1;
  };
  EXPECT_EQ(status("/api/gaps?from=-1h", ""), 401);
  EXPECT_EQ(status("/api/gaps?from=-1h", "publisher-token-0123456789"), 403);
  EXPECT_EQ(status("/api/gaps?from=-1h", "viewer-token-0123456789"), 200);
  EXPECT_EQ(status("/api/replays", "viewer-token-0123456789"), 200);
  EXPECT_EQ(status("/api/gaps?from=yesterday", "viewer-token-0123456789"), 400);
  EXPECT_EQ(status("/api/trace?source=orders&event_id=nope", "viewer-token-0123456789"), 404);
  // The page itself holds no data and loads without a token.
  EXPECT_EQ(status("/", ""), 200);
  EXPECT_THAT(daemon.log(), ::testing::Not(HasSubstr("viewer-token-0123456789")));
}

// Parses the Prometheus text format strictly: every sample line must be
// well formed and belong to a family declared by a preceding # TYPE line.
// Returns "name{a="x",b="y"}" (labels sorted) -> value.
std::map<std::string, double> ParsePrometheus(const std::string& text) {
  static const std::regex kType(
      R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$)");
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([-+]?([0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|NaN|Inf))( -?[0-9]+)?$)");
  static const std::regex kLabel(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?)re");
  std::set<std::string> declared;
  std::map<std::string, double> out;
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (const std::string& line : lines) {
    if (line.empty()) continue;
    std::smatch m;
    if (std::regex_match(line, m, kType)) {
      EXPECT_TRUE(declared.insert(m[1]).second) << "family declared twice: " << line;
      continue;
    }
    if (std::regex_match(line, m, kHelp)) continue;
    EXPECT_NE(line[0], '#') << "unknown comment line: " << line;
    if (!std::regex_match(line, m, kSample)) {
      ADD_FAILURE() << "not a Prometheus sample line: " << line;
      continue;
    }
    std::string name = m[1];
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!declared.count(family) && absl::EndsWith(family, suffix)) {
        family = family.substr(0, family.size() - strlen(suffix));
      }
    }
    EXPECT_TRUE(declared.count(family)) << "sample before its # TYPE: " << line;
    std::map<std::string, std::string> labels;
    std::string body = m[3];
    for (std::sregex_iterator it(body.begin(), body.end(), kLabel), end; it != end; ++it) {
      labels[(*it)[1]] = (*it)[2];
    }
    std::vector<std::string> parts;
    for (const auto& [k, v] : labels) parts.push_back(absl::StrCat(k, "=\"", v, "\""));
    std::string key =
        parts.empty() ? name : absl::StrCat(name, "{", absl::StrJoin(parts, ","), "}");
    out[key] = std::stod(m[4]);
  }
  return out;
}

TEST(MetricsParser, RejectsMalformedLines) {
  EXPECT_NONFATAL_FAILURE(ParsePrometheus("# TYPE a counter\na{x=\"1\"} one\n"),
                          "not a Prometheus sample line");
  EXPECT_NONFATAL_FAILURE(ParsePrometheus("b 1\n"), "sample before its # TYPE");
}

class ScriptedRunE2E : public ::testing::Test {
 protected:
  void Publish(const std::string& source, const std::string& prefix, int first, int count,
               bool with_sequence = true) {
    auto stub = testing::IngestStub(daemon_->grpc_address());
    replay::v1::PublishResponse response;
    grpc::Status status = testing::Publish(*stub,
                                           testing::NumberedBatch({.source = source,
                                                                   .prefix = prefix,
                                                                   .first = first,
                                                                   .count = count,
                                                                   .keys = 5,
                                                                   .sequence = with_sequence}),
                                           &response);
    ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  }

  void WaitUntilSettled() {
    ASSERT_TRUE(testing::PollUntil(
        [&] {
          return db_.QueryInt(
                     "SELECT count(*) FROM events WHERE outcome IN ('pending','retrying')") == 0;
        },
        absl::Seconds(30), absl::Milliseconds(100)))
        << "events still undelivered after 30 s";
  }

  std::string Get(const std::string& path) {
    httplib::Client http("127.0.0.1", daemon_->http_port());
    auto res = http.Get(path);
    EXPECT_TRUE(res) << path;
    if (!res) return "";
    EXPECT_EQ(res->status, 200) << path << ": " << res->body;
    return res->body;
  }

  testing::ScratchDatabase db_;
  testing::DownstreamServer ds_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
};

TEST_F(ScriptedRunE2E, MetricsAgreeWithTheLogAndReplayctlShowsTheOutage) {
  daemon_ = std::make_unique<testing::DaemonProcess>(
      db_.dsn(), absl::StrCat("sinks:\n  - {name: crm, type: http, url: \"", ds_.records_url(),
                              "\"}\n", "routes:\n",
                              "  - {name: orders-to-crm, sources: [orders], sink: crm,"
                              " retry: {max_attempts: 2, base_delay: 50ms, max_delay: 100ms}}\n",
                              "  - {name: billing-to-crm, sources: [billing], sink: crm,"
                              " retry: {max_attempts: 2, base_delay: 50ms, max_delay: 100ms}}\n"));
  daemon_->Start();
  // Healthy traffic, with duplicates and a rejected event.
  Publish("orders", "o-", 1, 40);
  Publish("billing", "b-", 1, 20, /*with_sequence=*/false);
  Publish("orders", "o-", 36, 5);  // o-36..o-40 again: duplicates
  {
    auto stub = replay::v1::IngestService::NewStub(Channel(daemon_->grpc_address()));
    replay::v1::PublishRequest request;
    auto* bad = request.add_events();
    bad->set_source("orders");
    bad->set_event_id("bad-1");
    bad->set_payload("{not json");
    grpc::ClientContext ctx;
    replay::v1::PublishResponse response;
    ASSERT_TRUE(stub->Publish(&ctx, request, &response).ok());
    ASSERT_EQ(response.results(0).status(), replay::v1::EventResult::REJECTED);
  }
  WaitUntilSettled();
  // The outage: the downstream answers 503; with two attempts each, events fail.
  ds_.SetFaults({{"status", 503}});
  Publish("orders", "o-", 46, 10);  // 41..45 never sent: a sequence hole
  WaitUntilSettled();
  ds_.ClearFaults();

  ASSERT_EQ(db_.QueryInt("SELECT count(*) FROM events WHERE source = 'orders'"), 50);
  ASSERT_EQ(db_.QueryInt("SELECT count(*) FROM events WHERE outcome = 'failed'"), 10);

  std::string text = Get("/metrics");
  auto m = ParsePrometheus(text);
  EXPECT_EQ(m["replayd_ingested_events_total{result=\"accepted\",source=\"orders\"}"], 50);
  EXPECT_EQ(m["replayd_ingested_events_total{result=\"accepted\",source=\"billing\"}"], 20);
  EXPECT_EQ(m["replayd_ingested_events_total{result=\"duplicate\",source=\"orders\"}"], 5);
  EXPECT_EQ(m["replayd_ingested_events_total{result=\"rejected\",source=\"_rejected\"}"], 1);
  // Every recorded attempt is counted once, by route and outcome.
  for (const std::string route : {"orders-to-crm", "billing-to-crm"}) {
    double sum = 0;
    for (const std::string outcome : {"succeeded", "already_processed", "retrying", "failed"}) {
      int64_t in_log =
          db_.QueryInt(absl::StrCat("SELECT count(*) FROM delivery_attempts WHERE route = '", route,
                                    "' AND outcome = '", outcome, "'"));
      std::string key =
          absl::StrCat("replayd_deliveries_total{outcome=\"", outcome, "\",route=\"", route, "\"}");
      EXPECT_EQ(m.count(key) ? m[key] : 0, in_log) << key;
      sum += in_log;
    }
    EXPECT_EQ(m[absl::StrCat("replayd_delivery_duration_seconds_count{route=\"", route, "\"}")],
              sum);
    EXPECT_GT(sum, 0);
  }
  EXPECT_EQ(m["replayd_deliveries_total{outcome=\"failed\",route=\"orders-to-crm\"}"], 10);
  // Every metric the Grafana dashboard charts is served.
  {
    std::ifstream in(std::string(REPLAYD_SOURCE_DIR) + "/deploy/grafana/replayd-dashboard.json");
    json dashboard = json::parse(in);
    std::set<std::string> charted;
    static const std::regex kMetric("replayd_[a-z_]+");
    for (const auto& panel : dashboard["panels"]) {
      for (const auto& target : panel["targets"]) {
        std::string expr = target["expr"];
        for (std::sregex_iterator it(expr.begin(), expr.end(), kMetric), end; it != end; ++it) {
          charted.insert(it->str());
        }
      }
    }
    EXPECT_GE(charted.size(), 9u);
    for (std::string name : charted) {
      if (absl::EndsWith(name, "_bucket")) name = name.substr(0, name.size() - 7);
      // Per-replay gauges exist only while a replay runs.
      if (name == "replayd_replay_processed_events" || name == "replayd_replay_planned_events") {
        continue;
      }
      EXPECT_THAT(text, HasSubstr(absl::StrCat("# TYPE ", name, " "))) << name;
    }
  }
  for (const std::string outcome : {"pending", "retrying"}) {
    const std::string key = absl::StrCat("replayd_backlog_events{outcome=\"", outcome, "\"}");
    ASSERT_EQ(m.count(key), 1u) << key << " missing";
    EXPECT_EQ(m[key], 0) << key;
  }

  // replayctl shows the same run.
  const std::string server = daemon_->grpc_address();
  auto timeline = testing::RunReplayctl({"-s", server, "timeline", "--from", "-10m", "-o", "json"});
  ASSERT_EQ(timeline.exit_code, 0) << timeline.err;
  json t = json::parse(timeline.out);
  EXPECT_EQ(t["totals"]["total"], "70");
  EXPECT_EQ(t["totals"]["failed"], "10");

  auto gaps = testing::RunReplayctl({"-s", server, "gaps", "--from", "-10m", "-o", "json"});
  ASSERT_EQ(gaps.exit_code, 0) << gaps.err;
  json g = json::parse(gaps.out);
  ASSERT_EQ(g["sequence_gaps"].size(), 1u) << gaps.out;
  EXPECT_EQ(g["sequence_gaps"][0]["first_missing"], "41");
  EXPECT_EQ(g["sequence_gaps"][0]["last_missing"], "45");
  ASSERT_GE(g["windows"].size(), 1u) << gaps.out;
  int64_t failed = 0;
  for (const auto& w : g["windows"]) {
    failed += std::stoll(w["failed"].get<std::string>());
    EXPECT_THAT(w["dry_run_command"].get<std::string>(), HasSubstr("replayctl dry-run --from "));
  }
  EXPECT_EQ(failed, 10);

  auto text_gaps = testing::RunReplayctl({"-s", server, "gaps", "--from", "-10m"});
  ASSERT_EQ(text_gaps.exit_code, 0) << text_gaps.err;
  EXPECT_THAT(text_gaps.out, HasSubstr("Suggested replay windows"));
  EXPECT_THAT(text_gaps.out, HasSubstr("orders  sequence 41..45 (5)"));
  EXPECT_THAT(text_gaps.out, ::testing::Not(HasSubstr("\033[")));  // not a terminal: no colour

  auto trace = testing::RunReplayctl({"-s", server, "trace", "orders", "o-50"});
  ASSERT_EQ(trace.exit_code, 0) << trace.err;
  EXPECT_THAT(trace.out, HasSubstr("Outcome     FAILED after 2 attempt(s)"));
  EXPECT_THAT(trace.out, HasSubstr("HTTP 503"));
  auto missing = testing::RunReplayctl({"-s", server, "trace", "orders", "o-43"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("not in the log"));

  // The dashboard's JSON API answers the same.
  json api = json::parse(Get("/api/gaps?from=-10m"));
  EXPECT_EQ(api["missing"], "5");
  EXPECT_THAT(Get("/"), HasSubstr("<script src=\"/assets/dashboard.js\">"));
  EXPECT_THAT(Get("/assets/dashboard.js"), HasSubstr("renderChart"));
}

}  // namespace
}  // namespace replayd
