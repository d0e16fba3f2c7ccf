// The downstream's state as replayd reads it, against the real downstream
// test server: the version a delivery records (shown by replayctl trace), what
// a lookup returns of a record the downstream changed or lost, and an update
// under a version the downstream has moved on from.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/delivery/http_sink.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// An HTTP sink on the downstream server, built in the test's own process.
std::unique_ptr<HttpSink> SinkOn(const testing::DownstreamServer& ds) {
  SinkConfig config;
  config.name = "downstream";
  config.url = ds.records_url();
  config.lookup_url = ds.lookup_url();
  config.update_url = ds.lookup_url();
  auto sink = HttpSink::Create(config);
  EXPECT_TRUE(sink.ok()) << sink.status();
  return *std::move(sink);
}

StoredEvent Event(const std::string& id, const std::string& payload) {
  StoredEvent e;
  e.position = 1;
  e.event.source = "orders";
  e.event.event_id = id;
  e.event.payload = payload;
  e.ingested_at = absl::Now();
  return e;
}

TEST(DownstreamStateE2E, ADeliveryRecordsTheVersionTheDownstreamAnsweredAndTraceShowsIt) {
  testing::ScratchDatabase db;
  testing::DownstreamServer ds;
  testing::DaemonProcess d(
      db.dsn(), absl::StrCat("delivery:\n  poll_interval: 20ms\n"
                             "sinks:\n  - {name: downstream, type: http, url: ",
                             ds.records_url(), "}\nroutes:\n  - {name: orders, sources: [orders],",
                             " sink: downstream}\n"));
  d.Start();
  testing::PublishAccepted(d.grpc_address(), testing::NumberedBatch({.prefix = "v", .count = 1}));
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        return db.QueryText("SELECT outcome FROM events WHERE event_id = 'v0'") == "succeeded";
      },
      absl::Seconds(30)));
  // Changed downstream afterwards: the log keeps what the create call answered.
  ds.Edit("orders:v0", {{"n", 99}});

  auto json_trace =
      testing::RunReplayctl({"-s", d.grpc_address(), "-o", "json", "trace", "orders", "v0"});
  ASSERT_EQ(json_trace.exit_code, 0) << json_trace.err;
  const json t = json::parse(json_trace.out);
  EXPECT_EQ(t["target_version"], "1");
  ASSERT_TRUE(t.contains("target_updated_at")) << json_trace.out;
  auto text_trace = testing::RunReplayctl({"-s", d.grpc_address(), "trace", "orders", "v0"});
  ASSERT_EQ(text_trace.exit_code, 0) << text_trace.err;
  EXPECT_THAT(text_trace.out,
              HasSubstr(absl::StrCat("Downstream  version 1   updated ",
                                     t["target_updated_at"].get<std::string>().substr(0, 19))));
  EXPECT_EQ(d.Terminate(), 0);
}

TEST(DownstreamStateE2E, ALookupReturnsTheRecordsDataAndSeesItChangedOrGone) {
  testing::DownstreamServer ds;
  auto sink = SinkOn(ds);
  const StoredEvent e = Event("l1", R"({"n":1,"s":"x"})");
  const DeliveryResult created = sink->Deliver({&e, 1, ""});
  ASSERT_EQ(created.kind, DeliveryResult::Kind::kSucceeded) << created.error;
  EXPECT_EQ(created.record_version, "1");

  auto found = sink->Lookup(e);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, created.record_id);
  EXPECT_EQ((*found)->version, "1");
  EXPECT_EQ((*found)->updated_at, created.record_updated_at);
  EXPECT_EQ((*found)->data, R"({"n":1,"s":"x"})");

  ds.Edit("orders:l1", {{"n", 2}});
  auto edited = sink->Lookup(e);
  ASSERT_TRUE(edited.ok() && edited->has_value()) << edited.status();
  EXPECT_EQ((*edited)->version, "2");
  EXPECT_EQ((*edited)->data, R"({"n":2})");
  EXPECT_GT((*edited)->updated_at, (*found)->updated_at);

  ds.Drop({"orders:l1"});
  auto dropped = sink->Lookup(e);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_FALSE(dropped->has_value());
}

TEST(DownstreamStateE2E, AnUpdateAtAStaleVersionGetsThePreconditionResultAndChangesNothing) {
  testing::DownstreamServer ds;
  auto sink = SinkOn(ds);
  const StoredEvent e = Event("u1", R"({"n":1})");
  ASSERT_EQ(sink->Deliver({&e, 1, ""}).record_version, "1");
  ds.Edit("orders:u1", {{"n", 5}});  // the downstream is at version 2 now

  const StoredEvent upstream = Event("u1", R"({"n":3})");
  const DeliveryResult stale = sink->Update({&upstream, 1, ""}, "1");
  EXPECT_EQ(stale.kind, DeliveryResult::Kind::kPreconditionFailed);
  EXPECT_EQ(stale.http_status, 412);
  auto kept = sink->Lookup(e);
  ASSERT_TRUE(kept.ok() && kept->has_value()) << kept.status();
  EXPECT_EQ((*kept)->version, "2");
  EXPECT_EQ((*kept)->data, R"({"n":5})");

  const DeliveryResult fresh = sink->Update({&upstream, 1, ""}, "2");
  EXPECT_EQ(fresh.kind, DeliveryResult::Kind::kSucceeded) << fresh.error;
  EXPECT_EQ(fresh.http_status, 200);
  EXPECT_EQ(fresh.record_version, "3");
  auto upstream_wins = sink->Lookup(e);
  ASSERT_TRUE(upstream_wins.ok() && upstream_wins->has_value()) << upstream_wins.status();
  EXPECT_EQ((*upstream_wins)->data, R"({"n":3})");
}

TEST(DownstreamStateE2E, AnUpdateOfARecordTheDownstreamLostIsFinal) {
  testing::DownstreamServer ds;
  auto sink = SinkOn(ds);
  const StoredEvent e = Event("g1", R"({"n":1})");
  ASSERT_EQ(sink->Deliver({&e, 1, ""}).kind, DeliveryResult::Kind::kSucceeded);
  ds.Drop({"orders:g1"});
  const DeliveryResult gone = sink->Update({&e, 1, ""}, "1");
  EXPECT_EQ(gone.kind, DeliveryResult::Kind::kFinal);
  EXPECT_EQ(gone.http_status, 404);
}

TEST(DownstreamStateE2E, AVersionThatIsNoEntityTagIsRefusedWithoutACall) {
  testing::DownstreamServer ds;
  auto sink = SinkOn(ds);
  const StoredEvent e = Event("h1", R"({"n":1})");
  ASSERT_EQ(sink->Deliver({&e, 1, ""}).kind, DeliveryResult::Kind::kSucceeded);
  for (const char* version : {"1\r\nX-Injected: yes", "a\"b", "two words"}) {
    const DeliveryResult r = sink->Update({&e, 1, ""}, std::string(version));
    EXPECT_EQ(r.kind, DeliveryResult::Kind::kFinal) << version;
    EXPECT_EQ(r.error, "the known version cannot be sent as an entity tag in If-Match");
  }
  EXPECT_EQ(ds.Stats()["updates"], 0);
}

}  // namespace
}  // namespace replayd
