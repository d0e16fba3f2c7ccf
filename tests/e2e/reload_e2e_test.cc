// SIGHUP through a real replayd and real downstream test servers: a reload
// that adds a sink and a route delivers the newly routed source's pending
// events; a broken configuration, or one that changes a restart-only key, is
// refused with its problems logged and counted while the running one keeps
// delivering; reloads during heavy live delivery lose and duplicate nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kDelivery =
    "delivery:\n  poll_interval: 20ms\n  claim_lease: 3s\n  workers: 16\n";

std::string Sink(const std::string& name, const std::string& url) {
  return absl::StrCat("  - name: ", name, "\n    type: http\n    url: ", url,
                      "\n    timeout: 2s\n    connect_timeout: 1s\n");
}

std::string Route(const std::string& name, const std::string& sources, const std::string& sink,
                  int max_attempts = 5) {
  return absl::StrCat("  - name: ", name, "\n    sources: ", sources, "\n    sink: ", sink,
                      "\n    retry: {max_attempts: ", max_attempts,
                      ", base_delay: 50ms, max_delay: 500ms}\n");
}

class ReloadE2E : public ::testing::Test {
 protected:
  void Publish(const std::string& source, const std::string& prefix, int first, int count) {
    testing::PublishAccepted(
        daemon_->grpc_address(),
        testing::NumberedBatch(
            {.source = source, .prefix = prefix, .first = first, .count = count, .keys = 20}),
        {.timeout = absl::Seconds(30), .batch = 500});
  }

  int64_t Count(const std::string& where) {
    return db_.QueryInt(absl::StrCat("SELECT count(*) FROM events WHERE ", where));
  }

  double Reloads(const std::string& result) {
    return testing::MetricValue(
        daemon_->http_port(),
        absl::StrCat("replayd_config_reloads_total{result=\"", result, "\"}"));
  }

  // Create requests per idempotency key ("payments:p3") at one downstream.
  static std::map<std::string, int> Creates(testing::DownstreamServer& ds) {
    std::map<std::string, int> out;
    for (const json& r : ds.Requests()) ++out[r["idempotency_key"].get<std::string>()];
    return out;
  }

  testing::ScratchDatabase db_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
};

TEST_F(ReloadE2E, AddedSinkAndRouteDeliverTheSourcesPendingEvents) {
  testing::DownstreamServer orders_ds("non-idempotent"), payments_ds("non-idempotent");
  daemon_ = std::make_unique<testing::DaemonProcess>(
      db_.dsn(), absl::StrCat(kDelivery, "sinks:\n", Sink("orders_api", orders_ds.records_url()),
                              "routes:\n", Route("orders", "[orders]", "orders_api")));
  daemon_->Start();
  Publish("orders", "o", 0, 20);
  Publish("payments", "p", 0, 30);
  ASSERT_TRUE(
      testing::PollUntil([&] { return Count("outcome = 'succeeded'") == 20; }, absl::Seconds(30)));
  // No route: the payments wait.
  EXPECT_EQ(Count("source = 'payments' AND outcome = 'pending'"), 30);

  daemon_->Reload(absl::StrCat(kDelivery, "sinks:\n", Sink("orders_api", orders_ds.records_url()),
                               Sink("payments_api", payments_ds.records_url()), "routes:\n",
                               Route("orders", "[orders]", "orders_api"),
                               Route("payments", "[payments]", "payments_api")));
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Count("source = 'payments' AND outcome = 'succeeded'") == 30; },
      absl::Seconds(30)))
      << Count("source = 'payments' AND outcome = 'succeeded'") << " payments delivered\n"
      << daemon_->log();
  // New deliveries of both routes go where the reloaded configuration says.
  Publish("payments", "p", 30, 10);
  Publish("orders", "o", 20, 5);
  ASSERT_TRUE(
      testing::PollUntil([&] { return Count("outcome = 'succeeded'") == 65; }, absl::Seconds(30)));

  std::map<std::string, int> payments = Creates(payments_ds);
  EXPECT_EQ(payments.size(), 40u);
  for (const auto& [key, n] : payments) {
    EXPECT_EQ(key.rfind("payments:", 0), 0u) << key;
    EXPECT_EQ(n, 1) << key;
  }
  std::map<std::string, int> orders = Creates(orders_ds);
  EXPECT_EQ(orders.size(), 25u);
  for (const auto& [key, n] : orders) {
    EXPECT_EQ(key.rfind("orders:", 0), 0u) << key;
    EXPECT_EQ(n, 1) << key;
  }
  EXPECT_EQ(Reloads("applied"), 1);
  EXPECT_EQ(Reloads("refused"), 0);
  EXPECT_EQ(db_.QueryText("SELECT actor || ' ' || action || ' ' || reason || ' ' ||"
                          " (detail->'changed')::text FROM replay_audit"),
            "sighup config_reload applied [\"sinks\", \"routes\"]");
  EXPECT_THAT(daemon_->log(), HasSubstr("configuration reloaded: 2 routes, 2 sinks"));
  EXPECT_EQ(daemon_->Terminate(), 0);
}

TEST_F(ReloadE2E, BrokenConfigIsRefusedWithEveryProblemAndTheOldOneKeepsDelivering) {
  testing::DownstreamServer ds("non-idempotent");
  const std::string good = absl::StrCat(kDelivery, "sinks:\n", Sink("api", ds.records_url()),
                                        "routes:\n", Route("orders", "[orders]", "api"));
  daemon_ = std::make_unique<testing::DaemonProcess>(db_.dsn(), good);
  daemon_->Start();
  Publish("orders", "a", 0, 10);
  ASSERT_TRUE(
      testing::PollUntil([&] { return Count("outcome = 'succeeded'") == 10; }, absl::Seconds(30)));

  // Two problems: a URL that is not one, and a route to a sink that does not exist.
  daemon_->Reload(absl::StrCat(kDelivery, "sinks:\n", Sink("api", "not-a-url"), "routes:\n",
                               Route("orders", "[orders]", "nowhere")));
  ASSERT_TRUE(testing::PollUntil([&] { return Reloads("refused") == 1; }, absl::Seconds(10)))
      << daemon_->log();
  const std::string log = daemon_->log();
  EXPECT_THAT(log, HasSubstr("configuration reload refused (2 problems)"));
  EXPECT_THAT(log, HasSubstr("sinks[0] (api): url \"not-a-url\" is not an http(s) URL"));
  EXPECT_THAT(log, HasSubstr("routes[0] (orders): sink \"nowhere\" is not defined under sinks"));

  Publish("orders", "b", 0, 10);
  ASSERT_TRUE(
      testing::PollUntil([&] { return Count("outcome = 'succeeded'") == 20; }, absl::Seconds(30)))
      << Count("outcome = 'succeeded'") << " delivered\n"
      << daemon_->log();
  std::map<std::string, int> creates = Creates(ds);
  EXPECT_EQ(creates.size(), 20u);
  for (const auto& [key, n] : creates) EXPECT_EQ(n, 1) << key;
  EXPECT_EQ(Reloads("applied"), 0);
  EXPECT_EQ(db_.QueryText("SELECT reason || ' ' || jsonb_array_length(detail->'problems')"
                          " FROM replay_audit WHERE actor = 'sighup'"),
            "refused 2");
  EXPECT_EQ(daemon_->Terminate(), 0);
}

TEST_F(ReloadE2E, ChangingARestartOnlyKeyIsRefusedAsAWhole) {
  testing::DownstreamServer first("non-idempotent"), second("non-idempotent");
  daemon_ = std::make_unique<testing::DaemonProcess>(
      db_.dsn(), absl::StrCat(kDelivery, "sinks:\n", Sink("api", first.records_url()), "routes:\n",
                              Route("orders", "[orders]", "api")));
  daemon_->Start();
  // A valid sink change together with a restart-only one: neither is applied.
  daemon_->Reload(absl::StrCat(
      "delivery:\n  poll_interval: 20ms\n  claim_lease: 3s\n  workers: 4\n", "sinks:\n",
      Sink("api", second.records_url()), "routes:\n", Route("orders", "[orders]", "api")));
  ASSERT_TRUE(testing::PollUntil([&] { return Reloads("refused") == 1; }, absl::Seconds(10)))
      << daemon_->log();
  EXPECT_THAT(daemon_->log(),
              HasSubstr("delivery.workers changed: it takes effect only when replayd restarts"));
  Publish("orders", "a", 0, 10);
  ASSERT_TRUE(
      testing::PollUntil([&] { return Count("outcome = 'succeeded'") == 10; }, absl::Seconds(30)));
  EXPECT_EQ(Creates(first).size(), 10u);
  EXPECT_EQ(Creates(second).size(), 0u);
  EXPECT_EQ(daemon_->Terminate(), 0);
}

TEST_F(ReloadE2E, ReloadsDuringLiveDeliveryLoseAndDuplicateNothing) {
  testing::DownstreamServer ds("non-idempotent");
  // Calls in flight at every reload.
  ds.SetFaults({{"latency_ms", 20}});
  auto yaml = [&](int max_attempts) {
    return absl::StrCat(kDelivery, "sinks:\n", Sink("api", ds.records_url()), "routes:\n",
                        Route("orders", "[orders]", "api", max_attempts));
  };
  daemon_ = std::make_unique<testing::DaemonProcess>(db_.dsn(), yaml(5));
  daemon_->Start();
  constexpr int kBatches = 10;
  constexpr int kPerBatch = 300;
  for (int b = 0; b < kBatches; ++b) {
    Publish("orders", "e", b * kPerBatch, kPerBatch);
    // Each reload changes the retry policy, so each is applied.
    daemon_->Reload(yaml(6 + b));
    ASSERT_TRUE(testing::PollUntil([&] { return Reloads("applied") == b + 1; }, absl::Seconds(30)))
        << daemon_->log();
  }
  constexpr int kTotal = kBatches * kPerBatch;
  ASSERT_TRUE(testing::PollUntil([&] { return Count("outcome = 'succeeded'") == kTotal; },
                                 absl::Seconds(120)))
      << Count("outcome = 'succeeded'") << " delivered";
  std::map<std::string, int> creates = Creates(ds);
  EXPECT_EQ(creates.size(), static_cast<size_t>(kTotal));
  int duplicates = 0;
  for (const auto& [key, n] : creates) duplicates += n > 1;
  EXPECT_EQ(duplicates, 0);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_attempts"), kTotal);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replay_audit WHERE actor = 'sighup'"), kBatches);
  EXPECT_EQ(daemon_->Terminate(), 0);
}

}  // namespace
}  // namespace replayd
