// Delivery through real replayd processes to the real downstream test server:
// exactly once and in key order with two daemons, outage and retries,
// commit-then-timeout with the lookup, strict per-key mode, a key waiting on a
// retry that another worker settles, kill -9 during heavy delivery, a sink's
// cap on calls at once, and bad delivery configuration.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "replay/v1/ingest.grpc.pb.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

// Publishes through gRPC in calls of at most 500 events; every event must be ACCEPTED.
void Publish(const std::string& address, const replay::v1::PublishRequest& events) {
  testing::PublishAccepted(address, events, {.timeout = absl::Seconds(30), .batch = 500});
}

// `n` events of "orders" with ids `prefix`0.. and keys k0..k<keys - 1> in turn.
replay::v1::PublishRequest Events(const std::string& prefix, int n, int keys) {
  return testing::NumberedBatch({.prefix = prefix, .count = n, .keys = keys});
}

std::string Yaml(const testing::DownstreamServer& ds, bool lookup, const std::string& retry,
                 bool strict = false, const std::string& sources = "[orders]",
                 int max_in_flight = 0) {
  return absl::StrCat(
      "delivery:\n  poll_interval: 20ms\n  claim_lease: 3s\n  workers: 16\n",
      "sinks:\n  - name: downstream\n    type: http\n    url: ", ds.records_url(), "\n",
      lookup ? absl::StrCat("    lookup_url: ", ds.lookup_url(), "\n") : "",
      "    timeout: 2s\n    connect_timeout: 1s\n",
      max_in_flight > 0 ? absl::StrCat("    max_in_flight: ", max_in_flight, "\n") : "",
      "routes:\n  - name: orders\n    sources: ", sources, "\n    sink: downstream\n",
      "    strict_order: ", strict ? "true" : "false", "\n    retry: ", retry, "\n");
}

// One daemon delivering to its own downstream server (in `mode`) from its own
// scratch database, configured by Yaml(ds, yaml_args...); not started.
struct Deployment {
  template <typename... YamlArgs>
  explicit Deployment(const std::string& mode, const YamlArgs&... yaml_args)
      : ds(mode), d(db.dsn(), Yaml(ds, yaml_args...)) {}

  testing::ScratchDatabase db;
  testing::DownstreamServer ds;
  testing::DaemonProcess d;
};

// "orders:<id>" -> number of create requests; and the per-key arrival order.
struct Seen {
  std::map<std::string, int> creates;
  // Event ids of the create calls that made a record, in arrival order.
  std::map<std::string, std::vector<std::string>> order_by_key;
  int total = 0;
};

Seen Collect(testing::DownstreamServer& ds) {
  Seen seen;
  for (const json& r : ds.Requests()) {
    ++seen.total;
    std::string ik = r["idempotency_key"].get<std::string>();
    ++seen.creates[ik];
    std::string id = ik.substr(ik.find(':') + 1);
    int status = r["status"].is_number() ? r["status"].get<int>() : 0;
    bool created = (status >= 200 && status < 300) || r["dropped"] == true;
    if (created && r["key"].is_string()) seen.order_by_key[r["key"].get<std::string>()].push_back(id);
  }
  return seen;
}

std::map<std::string, std::vector<std::string>> LogOrderByKey(const testing::ScratchDatabase& db) {
  std::map<std::string, std::vector<std::string>> out;
  std::string rows = db.QueryText(
      "SELECT string_agg(key || '=' || ids, ';') FROM (SELECT key, string_agg(event_id, ','"
      " ORDER BY position) AS ids FROM events WHERE key IS NOT NULL GROUP BY key) t");
  for (absl::string_view row : absl::StrSplit(rows, ';', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(row, absl::MaxSplits('=', 1));
    out[kv.first] = absl::StrSplit(kv.second, ',');
  }
  return out;
}

// The log lines at warning level and above, for failure messages.
std::string Warnings(const std::string& log) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "warn") || absl::StrContains(line, "error") ||
        absl::StrContains(line, "critical") || absl::StrContains(line, "starting")) {
      absl::StrAppend(&out, line, "\n");
    }
  }
  return out.size() > 6000 ? out.substr(out.size() - 6000) : out;
}

int64_t Count(const testing::ScratchDatabase& db, const std::string& where) {
  return db.QueryInt(absl::StrCat("SELECT count(*) FROM events WHERE ", where));
}

// Starts the daemon, has the downstream answer with `faults`, publishes `events`
// and waits (30 s at most) until exactly `n` events match `where`.
void StartWithFaults(Deployment& deployment, const json& faults,
                     const replay::v1::PublishRequest& events, const std::string& where, int n) {
  auto& [db, ds, d] = deployment;
  d.Start();
  ds.SetFaults(faults);
  Publish(d.grpc_address(), events);
  ASSERT_TRUE(testing::PollUntil([&] { return Count(db, where) == n; }, absl::Seconds(30)))
      << db.QueryText("SELECT string_agg(outcome || ' ' || coalesce(last_error, ''), '\n')"
                      " FROM events")
      << "\n" << ds.Requests().dump() << "\n" << d.log();
}

TEST(DeliveryE2E, TwoDaemonsDeliverTenThousandEventsExactlyOnceInKeyOrder) {
  testing::ScratchDatabase db;
  testing::DownstreamServer ds("non-idempotent");
  std::string yaml = Yaml(ds, false, "{max_attempts: 5, base_delay: 50ms, max_delay: 500ms}");
  testing::DaemonProcess a(db.dsn(), yaml), b(db.dsn(), yaml);
  a.Start();
  b.Start();
  // Alternate batches between the daemons, as behind a load balancer.
  for (int start = 0; start < 10000; start += 500) {
    Publish(((start / 500) % 2 == 0 ? a : b).grpc_address(),
            testing::NumberedBatch({.prefix = "e", .first = start, .count = 500, .keys = 100}));
  }
  ASSERT_TRUE(testing::PollUntil([&] { return Count(db, "outcome = 'succeeded'") == 10000; },
                      absl::Seconds(180)))
      << Count(db, "outcome = 'succeeded'") << " succeeded";
  Seen seen = Collect(ds);
  EXPECT_EQ(seen.total, 10000);
  EXPECT_EQ(seen.creates.size(), 10000u);
  int duplicates = 0;
  for (const auto& [ik, n] : seen.creates) duplicates += n > 1;
  EXPECT_EQ(duplicates, 0);
  auto log_order = LogOrderByKey(db);
  ASSERT_EQ(log_order.size(), 100u);
  for (const auto& [key, ids] : log_order) {
    EXPECT_EQ(seen.order_by_key[key], ids) << "key " << key << " out of ingest order";
  }
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM delivery_attempts"), 10000);
  // Both daemons took part.
  EXPECT_EQ(db.QueryInt("SELECT count(DISTINCT worker) FROM delivery_attempts"), 2)
      << db.QueryText("SELECT string_agg(worker || '=' || n, ' ') FROM"
                      " (SELECT worker, count(*) n FROM delivery_attempts GROUP BY 1) t");
  EXPECT_EQ(a.Terminate(), 0);
  EXPECT_EQ(b.Terminate(), 0);
}

TEST(DeliveryE2E, OutageRetriesWithGrowingDelaysThenFailsAndNewEventsFlowAgain) {
  Deployment deployment("idempotent", false,
                        "{max_attempts: 4, base_delay: 100ms, max_delay: 2s}");
  auto& [db, ds, d] = deployment;
  ASSERT_NO_FATAL_FAILURE(StartWithFaults(deployment, {{"status", 503}}, Events("down", 5, 5),
                                          "outcome = 'failed'", 5));
  // Every attempt recorded: 4 per event, 503 each, the delays between them growing.
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM delivery_attempts WHERE http_status = 503"), 20);
  EXPECT_EQ(db.QueryText("SELECT string_agg(a.outcome, ',' ORDER BY attempt) FROM delivery_attempts a"
                         " JOIN events e ON e.position = a.event_position WHERE e.event_id = 'down0'"),
            "retrying,retrying,retrying,failed");
  EXPECT_EQ(db.QueryText("SELECT string_agg(trigger, ',' ORDER BY attempt) FROM delivery_attempts a"
                         " JOIN events e ON e.position = a.event_position WHERE e.event_id = 'down0'"),
            "live,retry,retry,retry");
  for (int i = 0; i < 5; ++i) {
    std::string gaps = db.QueryText(absl::StrCat(
        "SELECT string_agg(gap::text, ',' ORDER BY attempt) FROM (SELECT attempt,"
        " (extract(epoch FROM started_at - lag(started_at) OVER (ORDER BY attempt)) * 1000)::int"
        " AS gap FROM delivery_attempts a JOIN events e ON e.position = a.event_position"
        " WHERE e.event_id = 'down", i, "') t WHERE gap IS NOT NULL"));
    std::vector<int> g;
    for (absl::string_view s : absl::StrSplit(gaps, ',')) g.push_back(std::stoi(std::string(s)));
    ASSERT_EQ(g.size(), 3u) << gaps;
    // Backoff after attempt n lies in [100ms * 2^(n-2), 100ms * 2^(n-1)] (n=1: from 50ms).
    EXPECT_GE(g[0], 50) << gaps;
    EXPECT_GE(g[1], 100) << gaps;
    EXPECT_GE(g[2], 200) << gaps;
    EXPECT_LT(g[0], g[2]) << gaps;
  }
  EXPECT_THAT(db.QueryText("SELECT last_error FROM events WHERE event_id = 'down0'"),
              HasSubstr("gave up after 4 attempts"));

  ds.ClearFaults();
  Publish(d.grpc_address(), Events("up", 5, 5));
  ASSERT_TRUE(testing::PollUntil([&] { return Count(db, "outcome = 'succeeded'") == 5; },
                      absl::Seconds(30)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(Count(db, "outcome = 'failed' AND event_id LIKE 'down%'"), 5);
  EXPECT_EQ(Count(db, "outcome = 'succeeded' AND event_id LIKE 'up%'"), 5);
  EXPECT_EQ(d.Terminate(), 0);
}

TEST(DeliveryE2E, CommitThenTimeoutIsFoundByTheLookupAndNotSentAgain) {
  Deployment deployment("non-idempotent", true,
                        "{max_attempts: 5, base_delay: 50ms, max_delay: 1s}");
  auto& [db, ds, d] = deployment;
  ASSERT_NO_FATAL_FAILURE(StartWithFaults(deployment, {{"commit_then_drop", true}, {"count", 1}},
                                          testing::KeyedBatch("orders", {{"ctt-1", "k"}}),
                                          "outcome = 'already_processed'", 1));
  Seen seen = Collect(ds);
  EXPECT_EQ(seen.total, 1);
  EXPECT_EQ(seen.creates["orders:ctt-1"], 1);
  json requests = ds.Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_TRUE(requests[0]["dropped"].get<bool>());
  std::string downstream_id = requests[0]["record_id"].get<std::string>();
  EXPECT_EQ(db.QueryText("SELECT target_record_id FROM events WHERE event_id = 'ctt-1'"),
            downstream_id);
  EXPECT_EQ(db.QueryText("SELECT string_agg(outcome || '/' || coalesce(http_status::text, '-')"
                         " || '/' || coalesce(record_id, '-'), ',' ORDER BY attempt)"
                         " FROM delivery_attempts"),
            absl::StrCat("retrying/-/-,already_processed/-/", downstream_id));
  EXPECT_THAT(db.QueryText("SELECT error FROM delivery_attempts WHERE attempt = 1"),
              HasSubstr("connection closed with no response"));
  EXPECT_EQ(d.Terminate(), 0);
}

constexpr const char* kQuickRetries = "{max_attempts: 2, base_delay: 50ms, max_delay: 100ms}";

// Starts the daemon (of a strict route) and fails `event_id` of `key` with a
// 422: the key is parked behind it.
void StartWithKeyParked(Deployment& deployment, const std::string& event_id,
                        const std::string& key) {
  StartWithFaults(deployment, {{"status", 422}, {"count", 1}},
                  testing::KeyedBatch("orders", {{event_id, key}}), "outcome = 'failed'", 1);
}

TEST(DeliveryE2E, StrictModeParksAKeyBehindItsFailedEventWhileOtherKeysFlow) {
  Deployment deployment("idempotent", false, kQuickRetries, true);
  auto& [db, ds, d] = deployment;
  ASSERT_NO_FATAL_FAILURE(StartWithKeyParked(deployment, "a1", "A"));
  Publish(d.grpc_address(),
          testing::KeyedBatch("orders", {{"a2", "A"}, {"b1", "B"}, {"a3", "A"}, {"b2", "B"}}));
  ASSERT_TRUE(testing::PollUntil([&] { return Count(db, "outcome = 'succeeded'") == 2; },
                      absl::Seconds(30)));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(Count(db, "event_id IN ('b1', 'b2') AND outcome = 'succeeded'"), 2);
  EXPECT_EQ(Count(db, "event_id IN ('a2', 'a3') AND outcome = 'pending' AND attempts = 0"), 2);
  Seen seen = Collect(ds);
  EXPECT_EQ(seen.creates.count("orders:a2"), 0u);
  EXPECT_EQ(seen.creates.count("orders:a3"), 0u);
  EXPECT_EQ(seen.order_by_key["B"], (std::vector<std::string>{"b1", "b2"}));

  // The failed event delivered again (what a replay does: the same row back to
  // pending) unparks its key, in order.
  db.Exec("UPDATE events SET outcome = 'pending', next_attempt_at = now() WHERE event_id = 'a1'");
  ASSERT_TRUE(testing::PollUntil([&] { return Count(db, "outcome = 'succeeded'") == 5; },
                      absl::Seconds(30)));
  EXPECT_EQ(Collect(ds).order_by_key["A"], (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(d.Terminate(), 0);
}

TEST(DeliveryE2E, AKeyWaitingOnARetryGoesOnOnceAnotherWorkerDeliversItsEvent) {
  Deployment deployment("idempotent", false,
                        "{max_attempts: 5, base_delay: 30s, max_delay: 30s}");
  auto& [db, ds, d] = deployment;
  ASSERT_NO_FATAL_FAILURE(StartWithFaults(deployment, {{"status", 503}, {"count", 1}},
                                          testing::KeyedBatch("orders", {{"a1", "A"}}),
                                          "event_id = 'a1' AND outcome = 'retrying'", 1));
  Publish(d.grpc_address(), testing::KeyedBatch("orders", {{"a2", "A"}}));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_EQ(Count(db, "event_id = 'a2' AND outcome = 'pending' AND attempts = 0"), 1)
      << "a2 overtook a1, which waits on its retry";
  // What a replay's record does when it delivers a1: the daemon's queue for
  // key A still waits on a1's retry, due in 30 s.
  db.Exec("UPDATE events SET outcome = 'succeeded', attempts = 2, processed_at = now()"
          " WHERE event_id = 'a1'");
  const auto marked = std::chrono::steady_clock::now();
  ASSERT_TRUE(testing::PollUntil([&] { return Count(db, "event_id = 'a2' AND outcome = 'succeeded'") == 1; },
                      absl::Seconds(30)));
  EXPECT_LT(std::chrono::steady_clock::now() - marked, std::chrono::seconds(10))
      << "a2 waited out a1's old due time";
  EXPECT_EQ(Collect(ds).creates["orders:a1"], 1) << "a1 was sent again";
  EXPECT_EQ(d.Terminate(), 0);
}

TEST(DeliveryE2E, ALateCommitIsFoundBeyondAParkedKeysBacklog) {
  Deployment deployment("idempotent", false, kQuickRetries, true);
  auto& [db, ds, d] = deployment;
  ASSERT_NO_FATAL_FAILURE(StartWithKeyParked(deployment, "a0", "A"));
  // More events behind the parked key than one read of the rescan takes
  // (claim_batch, 256 by default).
  std::vector<std::pair<std::string, std::string>> backlog;
  for (int i = 1; i <= 600; ++i) backlog.emplace_back(absl::StrCat("a", i), "A");
  Publish(d.grpc_address(), testing::KeyedBatch("orders", backlog));
  // An ingest that took its position before b1's and commits after the
  // dispatcher has read past it.
  const int64_t late = db.QueryInt("SELECT nextval('events_position_seq')");
  Publish(d.grpc_address(), testing::KeyedBatch("orders", {{"b1", "B"}}));
  ASSERT_TRUE(testing::PollUntil([&] { return Count(db, "event_id = 'b1' AND outcome = 'succeeded'") == 1; },
                      absl::Seconds(30)));
  db.Exec(absl::StrCat(
      "INSERT INTO event_keys (source, event_id, ingested_at) VALUES ('orders', 'c1', now());",
      "INSERT INTO events (position, source, event_id, key, ingested_at, next_attempt_at, payload)",
      " VALUES (", late, ", 'orders', 'c1', 'C', now(), now(), '{}')"));
  EXPECT_TRUE(testing::PollUntil([&] { return Count(db, "event_id = 'c1' AND outcome = 'succeeded'") == 1; },
                      absl::Seconds(30)))
      << Warnings(d.log());
  EXPECT_EQ(Count(db, "key = 'A' AND outcome = 'pending'"), 600);
  EXPECT_EQ(d.Terminate(), 0);
}

// kill -9 during heavy delivery, then restart: nothing lost. Returns the
// number of duplicate create calls the non-idempotent downstream saw.
int KillDuringDelivery(bool lookup) {
  Deployment deployment("non-idempotent", lookup,
                        "{max_attempts: 10, base_delay: 50ms, max_delay: 1s}");
  auto& [db, ds, d] = deployment;
  ds.SetFaults({{"latency_ms", 2}});
  d.Start();
  const int n = 3000;
  Publish(d.grpc_address(), Events("kill", n, 50));
  EXPECT_TRUE(testing::PollUntil([&] { return Count(db, "outcome <> 'pending'") >= 600; },
                      absl::Seconds(60)));
  d.KillHard();
  int64_t claimed_at_kill = db.QueryInt("SELECT count(*) FROM delivery_claims");
  EXPECT_LT(Count(db, "outcome IN ('succeeded', 'already_processed')"), n)
      << "every event was delivered before the kill: it interrupted nothing";
  d.Restart();
  EXPECT_TRUE(testing::PollUntil(
      [&] { return Count(db, "outcome IN ('succeeded', 'already_processed')") == n; },
      absl::Seconds(120)))
      << db.QueryText("SELECT string_agg(outcome || '=' || n, ' ') FROM (SELECT outcome || '/'"
                      " || (c.owner IS NOT NULL) AS outcome, count(*) n FROM events e"
                      " LEFT JOIN delivery_claims c USING (position) GROUP BY 1) t")
      << "\n" << db.QueryText("SELECT string_agg(DISTINCT coalesce(last_error, ''), ' | ') FROM events")
      << "\n" << Warnings(d.log());
  Seen seen = Collect(ds);
  EXPECT_EQ(seen.creates.size(), static_cast<size_t>(n)) << "events lost";
  int duplicates = seen.total - static_cast<int>(seen.creates.size());
  std::printf("[ kill -9 ] lookup=%s: %d events claimed at the kill, %d create calls for %d events,"
              " %d duplicates, %lld already_processed\n",
              lookup ? "on" : "off", static_cast<int>(claimed_at_kill), seen.total, n, duplicates,
              static_cast<long long>(Count(db, "outcome = 'already_processed'")));
  EXPECT_EQ(d.Terminate(), 0);
  return duplicates;
}

TEST(DeliveryE2E, KillDashNineLosesNothingAndReportsDuplicatesWithoutLookup) {
  int duplicates = KillDuringDelivery(false);
  ::testing::Test::RecordProperty("duplicates_without_lookup", duplicates);
}

TEST(DeliveryE2E, KillDashNineWithTheLookupMakesNoDuplicate) {
  EXPECT_EQ(KillDuringDelivery(true), 0);
}

TEST(DeliveryE2E, SinkMaxInFlightCapsConcurrentCalls) {
  // 16 workers, but at most 2 calls to this sink at once.
  Deployment deployment("idempotent", false,
                        "{max_attempts: 3, base_delay: 50ms, max_delay: 500ms}", false,
                        "[orders]", /*max_in_flight=*/2);
  auto& [db, ds, d] = deployment;
  // 16 keys: all may go at once. The last pair starts 2.1 s after the first,
  // past the 2 s call timeout: the timeout must count from the send, not
  // from the wait for a free slot.
  ASSERT_NO_FATAL_FAILURE(StartWithFaults(deployment, {{"latency_ms", 300}},
                                          Events("cap", 16, 16), "outcome = 'succeeded'", 16));
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM delivery_attempts"), 16) << "a call timed out waiting";
  std::vector<int64_t> arrivals = ds.ArrivalTimes();
  ASSERT_EQ(arrivals.size(), 16u);
  // Each call takes 300 ms: a third call can only start once one of two ended.
  for (size_t i = 2; i < arrivals.size(); ++i) {
    EXPECT_GE(arrivals[i] - arrivals[i - 2], 250'000) << "calls " << i - 2 << " and " << i;
  }
  EXPECT_EQ(d.Terminate(), 0);
}

TEST(DeliveryE2E, PostgresTableSinkInsertsOncePerIdempotencyKey) {
  testing::ScratchDatabase db;
  // The downstream table already holds one event's row, as if an earlier
  // delivery had committed it.
  db.Exec("CREATE TABLE downstream_records (idempotency_key text PRIMARY KEY,"
          " record_id text NOT NULL DEFAULT gen_random_uuid()::text, payload jsonb NOT NULL,"
          " created_at timestamptz NOT NULL DEFAULT now())");
  db.Exec("INSERT INTO downstream_records (idempotency_key, record_id, payload)"
          " VALUES ('orders:pg7', 'pre-existing', '{}')");
  testing::DaemonProcess d(
      db.dsn(),
      "delivery:\n  poll_interval: 20ms\n"
      "sinks:\n  - {name: table, type: postgres, table: downstream_records}\n"
      "routes:\n  - {name: orders, sources: [orders], sink: table,"
      " retry: {max_attempts: 3, base_delay: 50ms, max_delay: 200ms}}\n");
  d.Start();
  Publish(d.grpc_address(), Events("pg", 200, 10));
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Count(db, "outcome IN ('succeeded', 'already_processed')") == 200; },
      absl::Seconds(60)))
      << Warnings(d.log());
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM downstream_records"), 200);
  // The same database: row, attempt and outcome committed together, one attempt each.
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM delivery_attempts"), 200);
  EXPECT_EQ(Count(db, "outcome = 'already_processed'"), 1);
  EXPECT_EQ(db.QueryText("SELECT outcome || '/' || target_record_id FROM events WHERE event_id = 'pg7'"),
            "already_processed/pre-existing");
  // Every other event's record id is the downstream row's.
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM events e JOIN downstream_records r"
                        " ON r.idempotency_key = 'orders:' || e.event_id"
                        " WHERE e.target_record_id = r.record_id"),
            200);
  EXPECT_EQ(db.QueryText("SELECT payload->>'event_id' FROM downstream_records"
                         " WHERE idempotency_key = 'orders:pg3'"),
            "pg3");
  EXPECT_EQ(d.Terminate(), 0);
}

TEST(DeliveryE2E, BadDeliveryConfigIsRefusedAtStartUpWithEveryProblem) {
  testing::TempDir dir;
  std::string path = dir.File("bad.yaml");
  {
    std::ofstream out(path);
    out << "database_url: postgresql://localhost/none\n"
           "sinks:\n"
           "  - {name: s1, type: http, url: 'not a url'}\n"
           "  - {name: s2, type: http, url: 'http://127.0.0.1:1/x', lookup_url: 'http://h/nokey'}\n"
           "routes:\n"
           "  - {name: r1, sources: [a], sink: nowhere}\n"
           "  - {name: r2, sources: [b], sink: s2, retry: {max_attempts: 0, max_delay: 0s}}\n"
           "  - {name: r3, sources: [c], sink: s2, retry: {base_delay: 0s}}\n";
  }
  for (const char* command : {"check-config", "run"}) {
    auto r = testing::RunReplayd({command, "--config", path});
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("url \"not a url\" is not an http(s) URL"));
    EXPECT_THAT(r.err, HasSubstr("lookup_url \"http://h/nokey\" must be an http(s) URL containing"));
    EXPECT_THAT(r.err, HasSubstr("routes[0] (r1): sink \"nowhere\" is not defined under sinks"));
    EXPECT_THAT(r.err, HasSubstr("routes[1] (r2): retry.max_attempts must be at least 1 (got 0)"));
    EXPECT_THAT(r.err, HasSubstr("routes[1] (r2): retry.max_delay must be at least retry.base_delay"));
    EXPECT_THAT(r.err, HasSubstr("routes[2] (r3): retry.base_delay must be positive"));
  }
  // A negative duration is refused while reading the file.
  {
    std::ofstream out(path);
    out << "database_url: postgresql://localhost/none\n"
           "sinks: [{name: s, type: http, url: 'http://127.0.0.1:1/x'}]\n"
           "routes: [{name: r, sources: [a], sink: s, retry: {base_delay: -1s}}]\n";
  }
  auto r = testing::RunReplayd({"check-config", "--config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("routes[0].retry.base_delay: negative duration \"-1s\""));
}

}  // namespace
}  // namespace replayd
