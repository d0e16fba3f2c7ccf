// Replay on a real PostgreSQL: the dry run's counts, gaps, samples and
// warnings (aggregate path and streaming path agree: one decision), keyset
// pages in window order, the job lease passing on when its owner stops
// renewing it, and filters (keys, types, event ids) in every window read.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/common/clock.h"
#include "server/common/time_format.h"
#include "server/replay/dry_run.h"
#include "server/replay/limits.h"
#include "server/store/partitions.h"
#include "server/store/pg_inspection_store.h"
#include "server/store/pg_pool.h"
#include "server/store/pg_replay_store.h"
#include "server/store/pg_types.h"
#include "tests/support/pg_replay_fixture.h"
#include "tests/support/scratch_database.h"

namespace replayd {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

// The dry run's missing ranges as (first, last) pairs, in order.
std::vector<std::pair<int64_t, int64_t>> Ranges(const std::vector<SequenceGap>& gaps) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const SequenceGap& g : gaps) out.emplace_back(g.first, g.last);
  return out;
}

// A downstream whose lookup knows some event ids; its create path must never be called.
class LookupOnlySink final : public Sink {
 public:
  explicit LookupOnlySink(std::set<std::string> known) : known_(std::move(known)) {}
  const std::string& name() const override { return name_; }
  DeliveryResult Deliver(const DeliveryRequest&) override {
    ++deliveries;
    return {};
  }
  bool HasLookup() const override { return true; }
  LookupResult Lookup(const StoredEvent& e) override {
    ++lookups;
    if (known_.count(e.event.event_id)) {
      return std::optional<DownstreamRecord>(DownstreamRecord{.id = "rec-" + e.event.event_id});
    }
    return std::optional<DownstreamRecord>();
  }
  std::atomic<int> deliveries{0};
  std::atomic<int> lookups{0};

 private:
  std::string name_ = "down";
  std::set<std::string> known_;
};

class ReplayStoreTest : public testing::PgReplayFixture {
 protected:
  void SetUp() override {
    ASSERT_TRUE(partitions_.EnsureDays(base_ - absl::Hours(24), base_ + absl::Hours(24)).ok());
    // orders: sequences 1..35 without 10, 11, 12 and 20; i%3 == 0 succeeded,
    // 1 failed, 2 pending. ghost: 3 failed events of a source without a route.
    db_.Exec(absl::StrCat(
        "INSERT INTO events (source, event_id, sequence, ingested_at, outcome, payload)"
        " SELECT 'orders', 'e' || i, i, '",
        PgTime(base_),
        "'::timestamptz + i * interval '1 second',"
        " CASE i % 3 WHEN 0 THEN 'succeeded' WHEN 1 THEN 'failed' ELSE 'pending' END, '{}'"
        " FROM generate_series(1, 35) i WHERE i NOT IN (10, 11, 12, 20)"));
    db_.Exec(
        absl::StrCat("INSERT INTO events (source, event_id, ingested_at, outcome, payload)"
                     " SELECT 'ghost', 'g' || i, '",
                     PgTime(base_),
                     "'::timestamptz + i * interval '1 second',"
                     " 'failed', '{}' FROM generate_series(1, 3) i"));
    // Outside the window: never counted.
    db_.Exec(
        absl::StrCat("INSERT INTO events (source, event_id, sequence, ingested_at, outcome,"
                     " payload) VALUES ('orders', 'late', 99, '",
                     PgTime(base_ + absl::Hours(2)), "', 'failed', '{}')"));
    route_.name = "orders";
    route_.sink_name = "down";
    route_.sink = sink_;
    SinkConfig sink;
    sink.name = "down";
    sink.replay_rate_budget = 30;
    config_.sinks.push_back(sink);
  }

  // A job of "tester" over Spec(false).
  ReplayJob TesterJob(const std::string& id) {
    ReplayJob job;
    job.id = id;
    job.spec = Spec(false);
    job.created_by = "tester";
    return job;
  }

  // Creates `job` as started by "tester"; it must be new.
  void CreateNewJob(const ReplayJob& job) {
    bool existed = true;
    ASSERT_TRUE(store_
                    .CreateJob(job, AuditEntry{"tester", "start", job.id, "why", "{}", absl::Now()},
                               &existed)
                    .ok());
    EXPECT_FALSE(existed);
  }

  std::shared_ptr<LookupOnlySink> sink_ =
      std::make_shared<LookupOnlySink>(std::set<std::string>{"e4", "e5", "e6"});
};

TEST_F(ReplayStoreTest, DryRunCountsGapsSamplesAndWarnings) {
  auto result = Runner().Run(Spec(false));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total, 34);
  EXPECT_EQ(result->would_deliver, 21);
  EXPECT_EQ(result->would_skip, 13);
  EXPECT_EQ(result->skipped_by_reason["already_delivered"], 10);
  EXPECT_EQ(result->skipped_by_reason["no_route"], 3);
  EXPECT_EQ(result->missing, 4);
  EXPECT_EQ(Ranges(result->missing_ranges),
            (std::vector<std::pair<int64_t, int64_t>>{{10, 12}, {20, 20}}));
  EXPECT_EQ(result->effective_rate, 30);  // capped by the sink's replay budget
  EXPECT_DOUBLE_EQ(result->estimated_seconds, 21.0 / 30);
  std::vector<std::string> deliver_samples;
  for (const auto& s : result->samples) {
    if (s.category == ReplayCategory::kDeliver) deliver_samples.push_back(s.event_id);
  }
  EXPECT_THAT(deliver_samples, ::testing::ElementsAre("e1", "e2", "e4", "e5", "e7"));
  EXPECT_EQ(result->samples.size(), 5u + 5u + 3u);
  EXPECT_THAT(result->warnings, Contains(HasSubstr("source ghost has no route")));
  EXPECT_THAT(result->warnings, Contains(HasSubstr("4 events are missing upstream")));
  EXPECT_EQ(sink_->lookups, 0);
  EXPECT_EQ(sink_->deliveries, 0);
}

// Holes next to the window's first and last number, across the edges of
// the sequence buckets, and a whole empty bucket; numbers of the same source
// outside the window are neither counted nor holes.
TEST_F(ReplayStoreTest, HolesAtBucketAndWindowEdges) {
  const int64_t b = int64_t{1} << kSequenceBucketBits;
  const std::string holes =
      absl::StrCat("g = ", b - 4, " OR g IN (", b - 1, ", ", b, ", ", 2 * b - 1, ", ", 2 * b, ", ",
                   4 * b + 2, ") OR g BETWEEN ", 3 * b - 1, " AND ", 4 * b - 1);
  auto insert = [&](int64_t first, int64_t last, absl::Time at, const std::string& where) {
    db_.Exec(absl::StrCat(
        "INSERT INTO events (source, event_id, sequence, ingested_at, outcome, payload)"
        " SELECT 'edges', 'x' || g, g, '",
        PgTime(at),
        "'::timestamptz + g * interval '1 ms',"
        " 'failed', '{}' FROM generate_series(",
        first, ", ", last, ") g WHERE ", where));
  };
  insert(0, b - 6, base_ - absl::Hours(2), "true");  // before the window
  insert(b - 5, 4 * b + 3, base_ + absl::Minutes(10), absl::StrCat("NOT (", holes, ")"));
  insert(4 * b + 4, 4 * b + 10, base_ + absl::Hours(2), "true");  // after it

  auto result = Runner().Run(Spec(false));
  ASSERT_TRUE(result.ok()) << result.status();
  std::vector<std::pair<int64_t, int64_t>> edges;
  for (const auto& g : result->missing_ranges) {
    if (g.source == "edges") edges.emplace_back(g.first, g.last);
  }
  EXPECT_THAT(edges, ::testing::ElementsAre(
                         std::pair(b - 4, b - 4), std::pair(b - 1, b), std::pair(2 * b - 1, 2 * b),
                         std::pair(3 * b - 1, 4 * b - 1), std::pair(4 * b + 2, 4 * b + 2)));
  EXPECT_EQ(result->missing, 4 + (1 + 2 + 2 + (b + 1) + 1));  // orders' 4 and these
}

// A number logged twice is no hole, and does not make its bucket look full:
// bucket 0 holds a duplicate and two holes, bucket 1 a duplicate only.
TEST_F(ReplayStoreTest, DuplicateSequenceNumbers) {
  const int64_t b = int64_t{1} << kSequenceBucketBits;
  db_.Exec(absl::StrCat(
      "INSERT INTO events (source, event_id, sequence, ingested_at, outcome, payload)"
      " SELECT 'dups', 'd' || n, g, '",
      PgTime(base_ + absl::Minutes(5)),
      "'::timestamptz + n * interval '1 ms', 'failed', '{}'"
      " FROM (SELECT g, row_number() OVER () AS n FROM (SELECT generate_series(0, ",
      2 * b - 1, ") UNION ALL VALUES (5), (", b + 3, ")) AS s(g) WHERE g NOT IN (7, 8)) AS t"));
  auto result = Runner().Run(Spec(false));
  ASSERT_TRUE(result.ok()) << result.status();
  std::vector<std::pair<int64_t, int64_t>> dups;
  for (const auto& g : result->missing_ranges) {
    if (g.source == "dups") dups.emplace_back(g.first, g.last);
  }
  EXPECT_THAT(dups, ::testing::ElementsAre(std::pair<int64_t, int64_t>(7, 8)));
  EXPECT_EQ(result->missing, 4 + 2);
  EXPECT_EQ(result->total, 34 + 2 * b);
}

// A whole day is aggregated in slices of its partition's blocks, a window
// starting a second later in slices of time: both count every event once,
// and the dry run finds the day's holes.
TEST_F(ReplayStoreTest, WholeDayInBlockSlicesCountsEveryEventOnce) {
  const absl::Time day = StartOfUtcDay(base_ - absl::Hours(24));
  const int64_t n = 40000;  // some 400 blocks: split by blocks
  db_.Exec(
      absl::StrCat("INSERT INTO events (source, event_id, sequence, ingested_at, outcome, payload)"
                   " SELECT 'bulk', 'b' || i, i, '",
                   PgTime(day), "'::timestamptz + i * interval '", 86400000 / (n + 1),
                   " ms', CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, '{}'"
                   " FROM generate_series(1, ",
                   n, ") i WHERE i NOT IN (700, 701, 15000)"));
  std::map<int64_t, int64_t> expected_buckets;
  for (int64_t i = 1; i <= n; ++i) {
    if (i != 700 && i != 701 && i != 15000) ++expected_buckets[i >> kSequenceBucketBits];
  }
  for (absl::Time from : {day, day + absl::Seconds(1)}) {
    auto rows = store_.AggregateWindow(ReplayWindow{from, day + absl::Hours(24), {}});
    ASSERT_TRUE(rows.ok()) << rows.status();
    std::map<Outcome, int64_t> by_outcome;
    std::map<int64_t, int64_t> buckets;
    for (const WindowAggregate& a : *rows) {
      EXPECT_EQ(a.source, "bulk");
      by_outcome[a.outcome] += a.count;
      if (a.sequence_bucket) buckets[*a.sequence_bucket] += a.count;
    }
    EXPECT_EQ(by_outcome[Outcome::kFailed], n / 10 - 2);
    EXPECT_EQ(by_outcome[Outcome::kSucceeded], n - n / 10 - 1);
    EXPECT_EQ(buckets, expected_buckets);
  }
  ReplayRequestInput in;
  in.from = day;
  in.to = day + absl::Hours(24);
  auto spec = ValidateReplayRequest(in, config_.replay, base_ + absl::Hours(3));
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto result = Runner().Run(*spec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total, n - 3);
  EXPECT_EQ(result->missing, 3);
  EXPECT_EQ(Ranges(result->missing_ranges),
            (std::vector<std::pair<int64_t, int64_t>>{{700, 701}, {15000, 15000}}));
}

TEST_F(ReplayStoreTest, StreamingPathDecidesLikeTheAggregatePath) {
  auto aggregate = Runner().Run(Spec(false));
  sink_ = std::make_shared<LookupOnlySink>(std::set<std::string>{});
  route_.sink = sink_;
  auto streamed = Runner().Run(Spec(true));
  ASSERT_TRUE(aggregate.ok() && streamed.ok());
  EXPECT_EQ(streamed->would_deliver, aggregate->would_deliver);
  EXPECT_EQ(streamed->skipped_by_reason, aggregate->skipped_by_reason);
  EXPECT_EQ(sink_->lookups, 21);
  EXPECT_EQ(sink_->deliveries, 0);
}

TEST_F(ReplayStoreTest, VerifyDownstreamSkipsWhatTheLookupFinds) {
  auto result = Runner().Run(Spec(true));
  ASSERT_TRUE(result.ok());
  // e4 (failed) and e5 (pending) are found; e6 is already succeeded in the log.
  EXPECT_EQ(result->would_deliver, 19);
  EXPECT_EQ(result->skipped_by_reason["found_downstream"], 2);
  EXPECT_EQ(sink_->deliveries, 0);
}

TEST_F(ReplayStoreTest, WindowPagesAreInOriginalOrder) {
  // Two events share one ingested_at: position breaks the tie.
  db_.Exec(
      absl::StrCat("INSERT INTO events (source, event_id, ingested_at, outcome, payload)"
                   " VALUES ('orders', 'tie-a', '",
                   PgTime(base_ + absl::Seconds(5)), "', 'failed', '{}'), ('orders', 'tie-b', '",
                   PgTime(base_ + absl::Seconds(5)), "', 'failed', '{}')"));
  ReplayWindow window{base_, base_ + absl::Hours(1), {"orders"}};
  // Page size 6 ends the first page on tie-a: the cursor then sits between
  // two rows of one ingested_at, and only the position finds tie-b.
  for (int page_size : {6, 7}) {
    std::vector<std::string> ids;
    std::optional<ReplayCursor> cursor;
    while (true) {
      auto page = store_.ReadWindowPage(window, cursor, page_size);
      ASSERT_TRUE(page.ok());
      if (page->empty()) break;
      for (const auto& e : *page) ids.push_back(e.event.event_id);
      cursor = ReplayCursor{page->back().ingested_at, page->back().position};
    }
    ASSERT_EQ(ids.size(), 33u) << "page size " << page_size;
    EXPECT_EQ(ids[0], "e1");
    EXPECT_EQ(ids[4], "e5");
    EXPECT_EQ(ids[5], "tie-a");
    EXPECT_EQ(ids[6], "tie-b") << "page size " << page_size;
    EXPECT_EQ(ids.back(), "e35");
  }
}

TEST_F(ReplayStoreTest, LeasePassesOnWhenTheOwnerStopsRenewing) {
  ReplayJob job = TesterJob("rp-lease");
  ASSERT_NO_FATAL_FAILURE(CreateNewJob(job));
  auto a = store_.ClaimJob("daemon-a", absl::Seconds(1), {});
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->state, ReplayState::kRunning);
  auto b = store_.ClaimJob("daemon-b", absl::Seconds(1), {});
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->has_value());
  ReplayCounters counters{34, 5, 4, 1, 0};
  ASSERT_TRUE(store_
                  .Checkpoint(job.id, "daemon-a", counters,
                              ReplayCursor{base_ + absl::Seconds(5), 5}, 3.5, absl::Seconds(1))
                  .ok());
  absl::SleepFor(absl::Milliseconds(1200));
  b = store_.ClaimJob("daemon-b", absl::Seconds(10), {});
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->counters.processed, 5);
  ASSERT_TRUE((*b)->cursor.has_value());
  EXPECT_EQ((*b)->cursor->position, 5);
  auto lost = store_.Checkpoint(job.id, "daemon-a", counters, std::nullopt, 0, absl::Seconds(1));
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kFailedPrecondition);
  AuditQuery of_job;
  of_job.replay_id = job.id;
  auto audit = store_.ListAudit(of_job);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].action, "takeover");
  EXPECT_EQ((*audit)[0].actor, "daemon-b");
  EXPECT_EQ((*audit)[0].reason, "the lease of daemon-a expired");
  EXPECT_EQ((*audit)[0].detail_json, R"({"previous_owner": "daemon-a"})");
  EXPECT_EQ((*audit)[1].action, "start");
  ASSERT_TRUE(store_
                  .Finish(job.id, "daemon-b", ReplayState::kCompleted, counters, std::nullopt, "",
                          AuditEntry{"daemon-b", "completed", job.id, "", "{}", absl::Now()})
                  .ok());
  EXPECT_EQ(store_.RequestCancel(job.id, AuditEntry{"x", "cancel", job.id, "", "{}", absl::Now()})
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ReplayStoreTest, PausedJobKeepsItsWindowRetryListAndCountsUntilResumed) {
  ReplayJob job = TesterJob("rp-pause");
  job.spec.breaker = {7, 0.25, 40};
  ASSERT_NO_FATAL_FAILURE(CreateNewJob(job));
  auto claimed = store_.ClaimJob("daemon-a", absl::Seconds(10), {});
  ASSERT_TRUE(claimed.ok() && claimed->has_value());
  EXPECT_EQ((*claimed)->spec.breaker.consecutive_failures, 7);
  EXPECT_EQ((*claimed)->spec.breaker.failure_ratio, 0.25);
  EXPECT_EQ((*claimed)->spec.breaker.window, 40);

  // Asked while daemon-a runs it: paused, still held until daemon-a parks it.
  auto asked =
      store_.RequestPause(job.id, AuditEntry{"op", "pause", job.id, "deploy", "{}", absl::Now()});
  ASSERT_TRUE(asked.ok());
  EXPECT_EQ(asked->state, ReplayState::kPaused);
  EXPECT_EQ(asked->owner, "daemon-a");
  EXPECT_EQ(
      store_.RequestResume(job.id, 0, AuditEntry{"op", "resume", job.id, "r", "{}", absl::Now()})
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
  auto state = store_.Checkpoint(job.id, "daemon-a", ReplayCounters{34, 3, 3, 0, 0}, std::nullopt,
                                 1, absl::Seconds(10));
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(*state, ReplayState::kPaused);
  std::vector<RetryEvent> retry = {{11, base_ + absl::Seconds(11), "orders", "k1"},
                                   {12, base_ + absl::Seconds(12), "orders", ""}};
  ASSERT_TRUE(store_
                  .Park(job.id, "daemon-a", ReplayCounters{34, 5, 4, 1, 0, 1},
                        ReplayCursor{base_ + absl::Seconds(12), 12}, "circuit breaker", retry,
                        nullptr)
                  .ok());

  // Nobody claims it, and an overlapping start is refused.
  auto none = store_.ClaimJob("daemon-b", absl::Seconds(10), {});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ReplayJob overlapping = job;
  overlapping.id = "rp-overlap";
  bool existed = false;
  EXPECT_EQ(
      store_
          .CreateJob(overlapping,
                     AuditEntry{"tester", "start", overlapping.id, "", "{}", absl::Now()}, &existed)
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      store_.RequestPause(job.id, AuditEntry{"op", "pause", job.id, "again", "{}", absl::Now()})
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);

  auto resumed =
      store_.RequestResume(job.id, 25, AuditEntry{"op", "resume", job.id, "ok", "{}", absl::Now()});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->state, ReplayState::kRunning);
  EXPECT_EQ(resumed->spec.rate, 25);
  EXPECT_EQ(resumed->counters.held_by_key, 1);
  EXPECT_EQ(resumed->last_error, "circuit breaker");
  ASSERT_EQ(resumed->retry.size(), 2u);
  EXPECT_EQ(resumed->retry[0].position, 11);
  EXPECT_EQ(resumed->retry[0].ingested_at, base_ + absl::Seconds(11));
  EXPECT_EQ(resumed->retry[0].key, "k1");
  EXPECT_EQ(resumed->retry[1].source, "orders");
  auto b = store_.ClaimJob("daemon-b", absl::Seconds(10), {});
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->cursor->position, 12);
  EXPECT_EQ((*b)->counters.processed, 5);
  ASSERT_TRUE(store_
                  .Finish(job.id, "daemon-b", ReplayState::kFailed,
                          ReplayCounters{34, 34, 33, 0, 1}, std::nullopt, "x: HTTP 422",
                          AuditEntry{"daemon-b", "failed", job.id, "", "{}", absl::Now()})
                  .ok());
  auto ended = store_.GetJob(job.id);
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->state, ReplayState::kFailed);
  EXPECT_TRUE(ended->retry.empty());
  auto failed = store_.ListJobs({ReplayState::kFailed}, 10);
  ASSERT_TRUE(failed.ok());
  ASSERT_EQ(failed->size(), 1u);
  AuditQuery of_job;
  of_job.replay_id = job.id;
  auto audit = store_.ListAudit(of_job);
  ASSERT_TRUE(audit.ok());
  std::vector<std::string> actions;
  for (const AuditEntry& a : *audit) actions.push_back(a.action);
  // Newest first.
  EXPECT_EQ(actions, (std::vector<std::string>{"failed", "resume", "resume", "pause", "start"}));
}

// ---- filters within the window ----

// The fixture's log, and orders f1..f60 one a second (key k<i % 3>, type
// t<i % 2>, failed) and billing b1..b3 (key k0, type t0, failed). The
// fixture's own events have neither key nor type: no filter selects them.
class ReplayFiltersStoreTest : public ReplayStoreTest {
 protected:
  static constexpr int kKeyed = 60;

  void SetUp() override {
    ReplayStoreTest::SetUp();
    db_.Exec(absl::StrCat(
        "INSERT INTO events (source, event_id, key, type, ingested_at, outcome, payload)"
        " SELECT 'orders', 'f' || i, 'k' || (i % 3), 't' || (i % 2), '",
        PgTime(base_), "'::timestamptz + i * interval '1 second', 'failed', '{}'"
        " FROM generate_series(1, ", kKeyed, ") i"));
    db_.Exec(absl::StrCat(
        "INSERT INTO events (source, event_id, key, type, ingested_at, outcome, payload)"
        " SELECT 'billing', 'b' || i, 'k0', 't0', '",
        PgTime(base_), "'::timestamptz + i * interval '1 second', 'failed', '{}'"
        " FROM generate_series(1, 3) i"));
  }

  ReplayWindow Window() const { return {base_, base_ + absl::Hours(1), {"orders"}}; }

  // The ids f<i>, i in 1..kKeyed, that `keep` selects, in window order.
  template <typename Keep>
  static std::vector<std::string> Keyed(Keep keep) {
    std::vector<std::string> ids;
    for (int i = 1; i <= kKeyed; ++i) {
      if (keep(i)) ids.push_back(absl::StrCat("f", i));
    }
    return ids;
  }

  // The event ids of every page of `w`, pages of 7.
  std::vector<std::string> PagedIds(const ReplayWindow& w) {
    std::vector<std::string> ids;
    std::optional<ReplayCursor> after;
    for (;;) {
      auto page = store_.ReadWindowPage(w, after, 7);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok() || page->empty()) return ids;
      for (const StoredEvent& e : *page) ids.push_back(e.event.event_id);
      after = ReplayCursor{page->back().ingested_at, page->back().position};
    }
  }

  int64_t AggregateTotal(const ReplayWindow& w) {
    auto aggregates = store_.AggregateWindow(w);
    EXPECT_TRUE(aggregates.ok()) << aggregates.status();
    int64_t total = 0;
    for (const WindowAggregate& a : *aggregates) total += a.count;
    return total;
  }

  // Creates `job` and reads it back as a runner claims it.
  ReplayJob CreateAndClaim(ReplayJob job) {
    job.created_by = "tester";
    bool existed = true;
    EXPECT_TRUE(store_
                    .CreateJob(job, AuditEntry{"tester", "start", job.id, "", "{}", absl::Now()},
                               &existed)
                    .ok());
    auto claimed = store_.ClaimJob("daemon-a", absl::Seconds(10), {});
    EXPECT_TRUE(claimed.ok() && claimed->has_value());
    return claimed.ok() && claimed->has_value() ? **claimed : ReplayJob{};
  }
};

TEST_F(ReplayFiltersStoreTest, PagesReadOnlyTheKeysAskedForInWindowOrder) {
  ReplayWindow w = Window();
  w.keys = {"k0", "k2"};
  EXPECT_EQ(PagedIds(w), Keyed([](int i) { return i % 3 != 1; }));
}

TEST_F(ReplayFiltersStoreTest, KeysAndTypesCombineWithAnd) {
  ReplayWindow w = Window();
  w.keys = {"k1"};
  w.types = {"t0"};
  EXPECT_EQ(PagedIds(w), Keyed([](int i) { return i % 3 == 1 && i % 2 == 0; }));
}

TEST_F(ReplayFiltersStoreTest, AnEventIdListSelectsExactlyThoseIds) {
  ReplayWindow w = Window();
  w.event_ids = Keyed([](int i) { return i % 4 == 0; });
  w.event_ids.push_back("e7");  // the fixture's, without a key: an id list needs none
  w.event_ids.push_back("not-in-the-log");
  std::vector<std::string> expected = Keyed([](int i) { return i % 4 == 0; });
  expected.insert(expected.begin() + 1, "e7");  // f4 at +4 s, e7 at +7 s, f8 at +8 s
  EXPECT_EQ(PagedIds(w), expected);
}

TEST_F(ReplayFiltersStoreTest, FiltersApplyToEverySourceOfTheWindow) {
  ReplayWindow w = Window();
  w.sources.clear();
  w.keys = {"k0"};
  w.types = {"t0"};
  std::vector<std::string> expected = Keyed([](int i) { return i % 6 == 0; });
  for (const char* b : {"b1", "b2", "b3"}) expected.push_back(b);
  EXPECT_THAT(PagedIds(w), ::testing::UnorderedElementsAreArray(expected));
}

TEST_F(ReplayFiltersStoreTest, FirstEventsWithOutcomeKeepsTheFilters) {
  ReplayWindow w = Window();
  w.types = {"t1"};
  auto first = store_.FirstEventsWithOutcome(w, {Outcome::kFailed}, 3);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 3u);
  EXPECT_EQ((*first)[0].event.event_id, "f1");
  EXPECT_EQ((*first)[2].event.event_id, "f5");
}

TEST_F(ReplayFiltersStoreTest, TheAggregateCountsOnlyTheFilteredEvents) {
  ReplayWindow w = Window();
  w.keys = {"k2"};
  EXPECT_EQ(AggregateTotal(w), kKeyed / 3);
  w.event_ids = {"f2", "f5", "f7"};  // f7 has key k1
  EXPECT_EQ(AggregateTotal(w), 2);
}

TEST_F(ReplayFiltersStoreTest, TheDryRunCountsTheFilteredEventsAndNoMissingOnes) {
  ReplayRequestInput in;
  in.from = base_;
  in.to = base_ + absl::Hours(1);
  in.sources = {"orders"};
  in.keys = {"k0"};
  auto spec = ValidateReplayRequest(in, config_.replay, base_ + absl::Hours(3));
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto report = Runner().Run(*spec);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->total, kKeyed / 3);
  EXPECT_EQ(report->would_deliver, kKeyed / 3);
  // The fixture's orders have sequence holes; with a filter none is counted.
  EXPECT_EQ(report->missing, 0);
  EXPECT_THAT(report->warnings, Contains(HasSubstr("missing events are not counted")));
}

TEST_F(ReplayFiltersStoreTest, TheDryRunRefusesASinkThatIsNotConfigured) {
  ReplaySpec spec = Spec(false);
  spec.sink = "down-v2";
  auto report = Runner().Run(spec);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(report.status().message(),
            "sink \"down-v2\" is not configured; the configured sinks are: down");
}

TEST_F(ReplayFiltersStoreTest, AJobKeepsItsFiltersSinkAndRetryPolicy) {
  ReplayJob job;
  job.id = "rp-filters";
  job.spec = Spec(false);
  job.spec.window.keys = {"k0", "k1"};
  job.spec.window.types = {"t1"};
  job.spec.window.event_ids = {"f1", "f3"};
  job.spec.sink = "down-v2";
  job.spec.retry = {5, absl::Milliseconds(200), std::nullopt};
  const ReplaySpec s = CreateAndClaim(job).spec;
  EXPECT_EQ(s.window.keys, (std::vector<std::string>{"k0", "k1"}));
  EXPECT_EQ(s.window.types, (std::vector<std::string>{"t1"}));
  EXPECT_EQ(s.window.event_ids, (std::vector<std::string>{"f1", "f3"}));
  EXPECT_EQ(s.sink, "down-v2");
  EXPECT_EQ(s.retry.max_attempts, 5);
  EXPECT_EQ(s.retry.base_delay, absl::Milliseconds(200));
  EXPECT_FALSE(s.retry.max_delay.has_value());
}

TEST_F(ReplayFiltersStoreTest, AJobWithoutFiltersReadsBackWithoutThem) {
  ReplayJob job;
  job.id = "rp-plain";
  job.spec = Spec(false);
  const ReplaySpec s = CreateAndClaim(job).spec;
  EXPECT_FALSE(s.window.Filtered());
  EXPECT_EQ(s.sink, "");
  EXPECT_TRUE(s.retry.empty());
}

}  // namespace
}  // namespace replayd
