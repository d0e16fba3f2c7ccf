// What a SIGHUP does with the configuration read again: the keys that
// changed (DiffConfigs), DecideReload's verdicts, and ConfigReloader
// applying, refusing or ignoring it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "server/daemon/config_reload.h"

namespace replayd {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

SinkConfig HttpSink(const std::string& name, const std::string& url) {
  SinkConfig s;
  s.name = name;
  s.url = url;
  return s;
}

RouteConfig RouteTo(const std::string& name, const std::string& source, const std::string& sink) {
  RouteConfig r;
  r.name = name;
  r.sources = {source};
  r.sink = sink;
  return r;
}

Config Running() {
  Config c;
  c.database_url = "postgresql://localhost/replayd";
  c.sinks.push_back(HttpSink("api", "http://a/records"));
  c.routes.push_back(RouteTo("orders", "orders", "api"));
  return c;
}

// "key" or "key*" for a reloadable one, in the order DiffConfigs reports them.
std::vector<std::string> Changes(const Config& before, const Config& after) {
  std::vector<std::string> out;
  for (const ConfigChange& c : DiffConfigs(before, after)) {
    out.push_back(c.reloadable ? c.key + "*" : c.key);
  }
  return out;
}

TEST(DiffConfigs, NamesEachChangedKeyAndWhetherSighupAppliesIt) {
  const Config before = Running();
  EXPECT_THAT(Changes(before, before), IsEmpty());

  Config after = before;
  after.routes[0].retry.max_attempts = 3;
  after.sinks[0].url = "http://b/records";
  after.delivery.workers = 4;
  after.database_url = "postgresql://elsewhere/replayd";
  EXPECT_THAT(Changes(before, after),
              ElementsAre("database_url", "delivery.workers", "sinks[0].url*",
                          "routes[0].retry.max_attempts*"));

  Config more = before;
  more.routes.push_back(RouteTo("payments", "payments", "api"));
  EXPECT_THAT(Changes(before, more), ElementsAre("routes*"));
}

TEST(DecideReload, AcceptsChangedSinksAndRoutes) {
  Config next = Running();
  next.sinks.push_back(HttpSink("billing", "http://b/records"));
  next.routes.push_back(RouteTo("payments", "payments", "billing"));
  ReloadDecision d = DecideReload(Running(), next);
  EXPECT_THAT(d.problems, IsEmpty());
  EXPECT_THAT(d.changed, ElementsAre("sinks", "routes"));
}

TEST(DecideReload, RefusesEveryValidationProblem) {
  Config next = Running();
  next.sinks[0].url = "not-a-url";
  next.routes[0].sink = "nowhere";
  EXPECT_THAT(DecideReload(Running(), next).problems,
              ElementsAre("sinks[0] (api): url \"not-a-url\" is not an http(s) URL",
                          "routes[0] (orders): sink \"nowhere\" is not defined under sinks"));
}

TEST(DecideReload, RefusesARestartOnlyChangeAlongWithReloadableOnes) {
  Config next = Running();
  next.sinks[0].url = "http://b/records";
  next.grpc_listen = "0.0.0.0:7070";
  ReloadDecision d = DecideReload(Running(), next);
  EXPECT_THAT(d.changed, ElementsAre("grpc_listen", "sinks[0].url"));
  EXPECT_THAT(d.problems,
              ElementsAre("grpc_listen changed: it takes effect only when replayd restarts"));
}

TEST(DecideReload, ListsEachProblemOfAFileThatDidNotLoad) {
  ReloadDecision d = DecideReload(
      Running(), absl::InvalidArgumentError("/etc/replayd.yaml:\n  sinks[0].timeout: bad\n  "
                                            "routes: expected a list"));
  EXPECT_THAT(d.problems, ElementsAre("/etc/replayd.yaml:", "sinks[0].timeout: bad",
                                      "routes: expected a list"));
}

TEST(ConfigReloader, AppliesOnlyWhatChangedAndKeepsTheRunningOneOnRefusal) {
  std::vector<std::string> applied;
  ConfigReloader reloader(
      Running(),
      [&](const Config& next) {
        applied.push_back(next.sinks[0].url);
        return next.sinks[0].url == "http://unbuildable/records"
                   ? absl::InvalidArgumentError("cannot build sink api")
                   : absl::OkStatus();
      },
      nullptr, nullptr);
  EXPECT_EQ(reloader.Reload(Running()), "unchanged");
  Config next = Running();
  next.sinks[0].url = "http://b/records";
  EXPECT_EQ(reloader.Reload(next), "applied");
  EXPECT_EQ(reloader.Reload(next), "unchanged");
  next.log_level = "debug";
  EXPECT_EQ(reloader.Reload(next), "refused");
  Config unbuildable = Running();
  unbuildable.sinks[0].url = "http://unbuildable/records";
  EXPECT_EQ(reloader.Reload(unbuildable), "refused");
  // Compared with the applied one, not the one it started with.
  EXPECT_EQ(reloader.Reload(Running()), "applied");
  EXPECT_THAT(applied,
              ElementsAre("http://b/records", "http://unbuildable/records", "http://a/records"));
}

}  // namespace
}  // namespace replayd
