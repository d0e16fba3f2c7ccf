#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "server/config/config.h"
#include "tests/support/config_files.h"

namespace replayd {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using testing::HttpSink;
using testing::LoadProblems;
using testing::WriteConfig;

bool AnyContains(const std::vector<std::string>& problems, const std::string& needle) {
  for (const auto& p : problems) {
    if (p.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(LoadConfig, ReadsFileThenEnvThenFlags) {
  std::string path = WriteConfig(R"(
database_url: postgresql://file@db/x
grpc_listen: 0.0.0.0:7000
sinks:
  - name: api
    url: http://127.0.0.1:9000/records
    lookup_url: http://127.0.0.1:9000/records/{idempotency_key}
    timeout: 2s
routes:
  - name: orders
    sources: [orders, shop]
    sink: api
    strict_order: true
    retry: {max_attempts: 3, base_delay: 100ms, max_delay: 1s}
replay:
  max_window: 2d
)");
  setenv("REPLAYD_GRPC_LISTEN", "127.0.0.1:7001", 1);
  ConfigOverrides flags;
  flags["database_url"] = "postgresql://flag@db/x";
  auto config = LoadConfig(path, flags);
  unsetenv("REPLAYD_GRPC_LISTEN");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->database_url, "postgresql://flag@db/x");
  EXPECT_EQ(config->grpc_listen, "127.0.0.1:7001");
  ASSERT_EQ(config->routes.size(), 1u);
  EXPECT_TRUE(config->routes[0].strict_order);
  EXPECT_EQ(config->routes[0].retry.max_attempts, 3);
  EXPECT_EQ(config->routes[0].retry.base_delay, absl::Milliseconds(100));
  EXPECT_EQ(config->sinks[0].timeout, absl::Seconds(2));
  EXPECT_EQ(config->replay.max_window, absl::Hours(48));
  EXPECT_TRUE(Validate(*config).empty());
}

TEST(LoadConfig, ReportsEveryFileProblem) {
  std::string message = LoadProblems(R"(
database_url: x
grpc_listn: 1
ingest: {max_batch: lots}
partitions: {retention_days: 3, bogus: 1}
)");
  EXPECT_THAT(message, HasSubstr("unknown key \"grpc_listn\""));
  EXPECT_THAT(message, HasSubstr("ingest.max_batch: expected an integer"));
  EXPECT_THAT(message, HasSubstr("partitions: unknown key \"bogus\""));
}

TEST(LoadConfig, MissingAndMalformedFiles) {
  EXPECT_EQ(LoadConfig("/nonexistent/replayd.yaml", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(LoadProblems("routes: [\n"), HasSubstr("not valid YAML"));
}

TEST(LoadConfig, RefusesKeysThatAreNotNames) {
  // YAML's complex keys put a mapping or a sequence where a name belongs.
  auto config =
      ParseConfigYaml("delivery:\n  ? {poll_interval: 1s}\n  : 1\n? [a, b]\n: 2\n", "replayd.yaml");
  ASSERT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  std::string message(config.status().message());
  EXPECT_THAT(message, HasSubstr("replayd.yaml:"));
  EXPECT_THAT(message, HasSubstr("delivery: a key must be a name, not a mapping"));
  EXPECT_THAT(message, HasSubstr("\n  a key must be a name, not a sequence"));
}

TEST(Validate, ListsEverySemanticProblem) {
  Config c;
  c.database_url = "";
  c.grpc_listen = "nope";
  c.log_format = "xml";
  c.sinks.push_back(HttpSink("api", "ftp://x"));
  SinkConfig bad_lookup = HttpSink("api2", "http://127.0.0.1:9000/r");
  bad_lookup.lookup_url = "http://127.0.0.1:9000/r/";
  c.sinks.push_back(bad_lookup);
  RouteConfig r;
  r.name = "orders";
  r.sources = {"orders"};
  r.sink = "missing";
  r.retry.max_attempts = 0;
  r.retry.base_delay = absl::Milliseconds(-5);
  c.routes.push_back(r);
  c.replay.default_rate = 500;
  auto problems = Validate(c);
  EXPECT_TRUE(AnyContains(problems, "database_url is empty"));
  EXPECT_TRUE(AnyContains(problems, "grpc_listen \"nope\" is not host:port"));
  EXPECT_TRUE(AnyContains(problems, "log_format \"xml\""));
  EXPECT_TRUE(AnyContains(problems, "url \"ftp://x\" is not an http(s) URL"));
  EXPECT_TRUE(AnyContains(problems, "must be an http(s) URL containing {idempotency_key}"));
  EXPECT_TRUE(AnyContains(problems, "sink \"missing\" is not defined under sinks"));
  EXPECT_TRUE(AnyContains(problems, "retry.max_attempts must be at least 1"));
  EXPECT_TRUE(AnyContains(problems, "retry.base_delay must be positive"));
  EXPECT_TRUE(AnyContains(problems, "replay.default_rate must not exceed"));
  EXPECT_GE(problems.size(), 9u);
}

TEST(Validate, AnUpdateUrlMustBeAnHttpUrlNamingTheIdempotencyKey) {
  Config c;
  c.database_url = "postgresql://localhost/replayd";
  SinkConfig http = HttpSink("api", "http://127.0.0.1:9000/r");
  http.update_url = "http://127.0.0.1:9000/r/";
  c.sinks.push_back(http);
  auto problems = Validate(c);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0],
            "sinks[0] (api): update_url \"http://127.0.0.1:9000/r/\" must be an http(s) URL"
            " containing {idempotency_key}");
  c.sinks[0].update_url = "http://127.0.0.1:9000/r/{idempotency_key}";
  EXPECT_TRUE(Validate(c).empty());
}

TEST(Validate, DefaultsWithADatabaseAreValid) {
  Config c;
  c.database_url = "postgresql://localhost/replayd";
  EXPECT_TRUE(Validate(c).empty());
}

}  // namespace
}  // namespace replayd
