// The timeline and gaps of a scripted log against a real PostgreSQL: a known
// outage (failed events), a known sequence hole, and old pending events; the
// rows are inserted directly with controlled ingested_at, and every bucket,
// hole and suggested window must match the script exactly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/clock.h"
#include "server/rpc/inspection.h"
#include "server/store/partitions.h"
#include "server/store/pg_delivery_store.h"
#include "server/store/pg_event_store.h"
#include "server/store/pg_inspection_store.h"
#include "server/store/pg_pool.h"
#include "server/store/pg_types.h"
#include "tests/support/scratch_database.h"
#include "tests/support/time.h"

namespace replayd {
namespace {

using ::testing::ElementsAre;

using testing::At;
using testing::ProtoTime;

const absl::Time kStart = At("2026-11-20T10:00:00Z");
const absl::Time kOutageFrom = At("2026-11-20T10:10:00Z");
const absl::Time kOutageTo = At("2026-11-20T10:15:00Z");

struct ScriptEvent {
  std::string source;
  std::string event_id;
  std::optional<int64_t> sequence;
  absl::Time ingested_at;
  std::string outcome;
};

// orders: one event every 10 s for 30 minutes, sequence 1..180, with 100..104
//         never received; failed during the outage [10:10, 10:15).
// billing: one event every 30 s, no sequence numbers; failed during the
//         outage; its two events of minute 10:20 still pending.
std::vector<ScriptEvent> Script() {
  std::vector<ScriptEvent> out;
  for (int i = 0; i < 180; ++i) {
    int64_t seq = i + 1;
    if (seq >= 100 && seq <= 104) continue;
    absl::Time t = kStart + absl::Seconds(10 * i);
    bool down = t >= kOutageFrom && t < kOutageTo;
    out.push_back({"orders", absl::StrCat("o-", seq), seq, t, down ? "failed" : "succeeded"});
  }
  for (int i = 0; i < 60; ++i) {
    absl::Time t = kStart + absl::Seconds(30 * i);
    bool down = t >= kOutageFrom && t < kOutageTo;
    bool pending = t >= At("2026-11-20T10:20:00Z") && t < At("2026-11-20T10:21:00Z");
    out.push_back({"billing", absl::StrCat("b-", i), std::nullopt, t,
                   down      ? "failed"
                   : pending ? "pending"
                             : "succeeded"});
  }
  return out;
}

class InspectionStoreTest : public ::testing::Test {
 protected:
  InspectionStoreTest()
      : pool_(db_.dsn(), 4),
        partitions_(&pool_),
        events_(&pool_, &partitions_),
        deliveries_(&pool_),
        store_(&pool_),
        clock_(At("2026-11-20T12:00:00Z")),
        inspector_(&store_, &events_, &deliveries_, &clock_) {
    EXPECT_TRUE(partitions_.EnsureDays(kStart, kStart).ok());
    std::vector<std::string> values;
    for (const ScriptEvent& e : Script()) {
      values.push_back(absl::StrCat("('", e.source, "','", e.event_id, "',",
                                    e.sequence ? absl::StrCat(*e.sequence) : "NULL", ",'",
                                    PgTime(e.ingested_at), "','", e.outcome, "','{}')"));
    }
    db_.Exec(absl::StrCat(
        "INSERT INTO events (source, event_id, sequence, ingested_at, outcome, payload) VALUES ",
        absl::StrJoin(values, ","), ";",
        "INSERT INTO event_keys (source, event_id, ingested_at) "
        "SELECT source, event_id, ingested_at FROM events;"));
  }

  testing::ScratchDatabase db_;
  PgPool pool_;
  Partitions partitions_;
  PgEventStore events_;
  PgDeliveryStore deliveries_;
  PgInspectionStore store_;
  FakeClock clock_;
  Inspector inspector_;
};

TEST_F(InspectionStoreTest, TimelineMatchesTheScriptBucketByBucket) {
  // The expected counts, from the script itself.
  using Key = std::pair<int64_t, std::string>;
  std::map<Key, std::map<std::string, int64_t>> want;
  for (const ScriptEvent& e : Script()) {
    auto& c = want[{absl::ToUnixSeconds(e.ingested_at) / 60 * 60, e.source}];
    c[e.outcome]++;
    c["total"]++;
  }
  replay::v1::TimelineRequest request;
  *request.mutable_from() = ProtoTime(kStart);
  *request.mutable_to() = ProtoTime(kStart + absl::Minutes(30));
  request.set_bucket_seconds(60);
  auto timeline = inspector_.GetTimeline(request);
  ASSERT_TRUE(timeline.ok()) << timeline.status();
  EXPECT_EQ(timeline->bucket_seconds(), 60);
  ASSERT_EQ(timeline->buckets_size(), static_cast<int>(want.size()));  // 30 minutes x 2 sources
  ASSERT_EQ(timeline->buckets_size(), 60);
  auto it = want.begin();
  for (const auto& b : timeline->buckets()) {
    SCOPED_TRACE(absl::StrCat(b.start().seconds(), " ", b.source()));
    EXPECT_EQ(b.start().seconds(), it->first.first);
    EXPECT_EQ(b.source(), it->first.second);
    EXPECT_EQ(b.counts().failed(), it->second["failed"]);
    EXPECT_EQ(b.counts().pending(), it->second["pending"]);
    EXPECT_EQ(b.counts().succeeded(), it->second["succeeded"]);
    EXPECT_EQ(b.counts().total(), it->second["total"]);
    // The hole 100..104 shows in the bucket of the first event after it (10:17).
    bool hole_bucket = b.source() == "orders" &&
                       b.start().seconds() == absl::ToUnixSeconds(At("2026-11-20T10:17:00Z"));
    EXPECT_EQ(b.missing(), hole_bucket ? 5 : 0);
    ++it;
  }
  EXPECT_EQ(timeline->totals().total(), 175 + 60);
  EXPECT_EQ(timeline->totals().failed(), 30 + 10);
  EXPECT_EQ(timeline->totals().pending(), 2);
}

TEST_F(InspectionStoreTest, GapsGiveTheHoleAndTheOutageAsWindows) {
  replay::v1::GapsRequest request;
  *request.mutable_from() = ProtoTime(kStart);
  *request.mutable_to() = ProtoTime(kStart + absl::Minutes(30));
  request.set_bucket_seconds(60);
  auto gaps = inspector_.GetGaps(request);
  ASSERT_TRUE(gaps.ok()) << gaps.status();

  ASSERT_EQ(gaps->sequence_gaps_size(), 1);
  const auto& hole = gaps->sequence_gaps(0);
  EXPECT_EQ(hole.source(), "orders");
  EXPECT_EQ(hole.first_missing(), 100);
  EXPECT_EQ(hole.last_missing(), 104);
  EXPECT_EQ(hole.after_ingested_at().seconds(), absl::ToUnixSeconds(At("2026-11-20T10:16:20Z")));
  EXPECT_EQ(hole.before_ingested_at().seconds(), absl::ToUnixSeconds(At("2026-11-20T10:17:20Z")));
  EXPECT_EQ(gaps->missing(), 5);

  ASSERT_EQ(gaps->windows_size(), 2);
  const auto& outage = gaps->windows(0);
  EXPECT_EQ(outage.from().seconds(), absl::ToUnixSeconds(kOutageFrom));
  EXPECT_EQ(outage.to().seconds(), absl::ToUnixSeconds(kOutageTo));
  EXPECT_THAT(outage.sources(), ElementsAre("billing", "orders"));
  EXPECT_EQ(outage.failed(), 40);
  EXPECT_EQ(outage.pending(), 0);
  EXPECT_EQ(outage.dry_run_command(),
            "replayctl dry-run --from 2026-11-20T10:10:00Z --to 2026-11-20T10:15:00Z"
            " --source billing --source orders");
  const auto& stale = gaps->windows(1);
  EXPECT_EQ(stale.from().seconds(), absl::ToUnixSeconds(At("2026-11-20T10:20:00Z")));
  EXPECT_EQ(stale.to().seconds(), absl::ToUnixSeconds(At("2026-11-20T10:21:00Z")));
  EXPECT_THAT(stale.sources(), ElementsAre("billing"));
  EXPECT_EQ(stale.failed(), 0);
  EXPECT_EQ(stale.pending(), 2);
  EXPECT_EQ(stale.dry_run_command(),
            "replayctl dry-run --from 2026-11-20T10:20:00Z --to 2026-11-20T10:21:00Z"
            " --source billing");
}

TEST_F(InspectionStoreTest, SourceFilterAndAutomaticBuckets) {
  replay::v1::GapsRequest request;
  *request.mutable_from() = ProtoTime(kStart);
  *request.mutable_to() = ProtoTime(kStart + absl::Minutes(30));
  request.add_sources("orders");
  auto gaps = inspector_.GetGaps(request);
  ASSERT_TRUE(gaps.ok()) << gaps.status();
  EXPECT_EQ(gaps->bucket_seconds(), 30);  // 30 minutes / 60 buckets
  ASSERT_EQ(gaps->windows_size(), 1);
  EXPECT_EQ(gaps->windows(0).from().seconds(), absl::ToUnixSeconds(kOutageFrom));
  EXPECT_EQ(gaps->windows(0).to().seconds(), absl::ToUnixSeconds(kOutageTo));
  EXPECT_THAT(gaps->windows(0).sources(), ElementsAre("orders"));
  EXPECT_EQ(gaps->windows(0).failed(), 30);
  EXPECT_EQ(gaps->sequence_gaps_size(), 1);

  request.clear_sources();
  request.add_sources("Bad Name");
  EXPECT_EQ(inspector_.GetGaps(request).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(InspectionStoreTest, PendingEventsYoungerThanAMinuteOpenNoWindow) {
  clock_.Set(At("2026-11-20T10:20:50Z"));  // billing's pending events are 20-50 s old
  replay::v1::GapsRequest request;
  *request.mutable_from() = ProtoTime(At("2026-11-20T10:16:00Z"));
  *request.mutable_to() = ProtoTime(At("2026-11-20T10:20:50Z"));
  request.set_bucket_seconds(60);
  auto gaps = inspector_.GetGaps(request);
  ASSERT_TRUE(gaps.ok()) << gaps.status();
  EXPECT_EQ(gaps->windows_size(), 0);
}

TEST_F(InspectionStoreTest, BacklogAndTrace) {
  auto backlog = store_.CountBacklog();
  ASSERT_TRUE(backlog.ok()) << backlog.status();
  EXPECT_EQ(backlog->pending, 2);
  EXPECT_EQ(backlog->retrying, 0);

  db_.Exec(
      "INSERT INTO delivery_attempts (event_position, event_ingested_at, attempt, trigger, route,"
      " started_at, duration_ms, http_status, error, outcome) SELECT position, ingested_at, 1,"
      " 'live', 'orders-to-crm', ingested_at, 12.5, 503, 'HTTP 503', 'failed' FROM events"
      " WHERE source = 'orders' AND event_id = 'o-61'");
  replay::v1::EventTraceRequest request;
  request.set_source("orders");
  request.set_event_id("o-61");  // 10:10:00, the first event of the outage
  auto trace = inspector_.GetEventTrace(request);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->event().outcome(), replay::v1::FAILED);
  EXPECT_EQ(trace->event().event().sequence(), 61);
  ASSERT_EQ(trace->attempts_size(), 1);
  EXPECT_EQ(trace->attempts(0).http_status(), 503);
  EXPECT_EQ(trace->attempts(0).route(), "orders-to-crm");

  request.set_event_id("o-100");  // never received
  EXPECT_EQ(inspector_.GetEventTrace(request).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace replayd
