// The pure decisions behind the timeline and gaps: bucket sizing, missing
// counts per bucket, suggested windows and their dry-run command, request
// defaults; and replayctl's renderers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "client/replayctl/inspect_commands.h"
#include "server/inspection/decisions.h"
#include "server/inspection/inspector.h"

namespace replayd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1795000000 / 60 * 60);  // minute-aligned

BucketRow Row(int minute, const std::string& source, OutcomeTally counts,
              int64_t settled_unfinished = -1, std::optional<int64_t> min_seq = std::nullopt,
              std::optional<int64_t> max_seq = std::nullopt, int64_t sequenced = 0) {
  BucketRow r;
  r.start = kT0 + absl::Minutes(minute);
  r.source = source;
  r.counts = counts;
  r.counts.total = counts.pending + counts.retrying + counts.succeeded + counts.already_processed +
                   counts.failed;
  r.settled_unfinished =
      settled_unfinished >= 0 ? settled_unfinished : counts.pending + counts.retrying;
  r.min_sequence = min_seq;
  r.max_sequence = max_seq;
  r.sequenced = sequenced;
  return r;
}

OutcomeTally Ok(int n) { return {.succeeded = n}; }
OutcomeTally Failed(int n, int ok = 0) { return {.succeeded = ok, .failed = n}; }
OutcomeTally Pending(int n) { return {.pending = n}; }

TEST(PickBucket, GivesAtMostSixtyRoundBuckets) {
  EXPECT_EQ(PickBucket(absl::Hours(1)), absl::Minutes(1));
  EXPECT_EQ(PickBucket(absl::Minutes(10)), absl::Seconds(10));
  EXPECT_EQ(PickBucket(absl::Hours(24)), absl::Minutes(30));
  EXPECT_EQ(PickBucket(absl::Hours(6)), absl::Minutes(10));
  EXPECT_EQ(PickBucket(absl::Seconds(30)), absl::Seconds(1));
  EXPECT_EQ(PickBucket(absl::Hours(24 * 7)), absl::Hours(3));
  EXPECT_EQ(PickBucket(absl::Hours(24 * 365)), absl::Hours(24 * 7));
}

TEST(ResolveWindow, DefaultsToTheLastHourEndingNow) {
  auto w = ResolveWindow(std::nullopt, std::nullopt, 0, kT0);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->to, kT0);
  EXPECT_EQ(w->from, kT0 - absl::Hours(1));
  EXPECT_EQ(w->bucket, absl::Minutes(1));
}

TEST(ResolveWindow, RejectsInvertedWindowsAndTooManyBuckets) {
  absl::Time from = kT0;
  absl::Time to = kT0;
  EXPECT_EQ(ResolveWindow(from, to, 0, kT0).status().code(), absl::StatusCode::kInvalidArgument);
  to = kT0 + absl::Hours(24);
  EXPECT_EQ(ResolveWindow(from, to, 1, kT0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveWindow(from, to, -5, kT0).status().code(), absl::StatusCode::kInvalidArgument);
  auto ok = ResolveWindow(from, to, 60, kT0);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->bucket, absl::Minutes(1));
}

TEST(MissingPerRow, CountsHolesInsideAndBetweenBucketsPerSource) {
  std::vector<BucketRow> rows = {
      Row(0, "a", Ok(3), -1, 1, 3, 3),    // 1,2,3
      Row(0, "b", Ok(2), -1, 10, 13, 2),  // 10..13 with 2 events: 2 missing inside
      Row(1, "a", Ok(2), -1, 6, 7, 2),    // 4,5 missing between
      Row(2, "a", Ok(1)),                 // no sequence numbers
      Row(3, "b", Ok(1), -1, 14, 14, 1),  // right after 13
  };
  EXPECT_THAT(MissingPerRow(rows), ElementsAre(0, 2, 2, 0, 0));
}

TEST(SuggestWindows, MergesRunsOfFailedBucketsAndSkipsEmptyOnes) {
  std::vector<BucketRow> rows = {
      Row(0, "a", Ok(5)),
      Row(1, "a", Failed(3, 1)),
      Row(1, "b", Ok(4)),
      // minute 2 holds no events at all: the run continues
      Row(3, "b", Failed(2)),
      Row(4, "a", Ok(5)),
      Row(5, "a", Pending(2)),
  };
  auto windows = SuggestWindows(rows, absl::Minutes(1), kT0, kT0 + absl::Minutes(10));
  ASSERT_EQ(windows.size(), 2u);
  EXPECT_EQ(windows[0].from, kT0 + absl::Minutes(1));
  EXPECT_EQ(windows[0].to, kT0 + absl::Minutes(4));
  EXPECT_THAT(windows[0].sources, ElementsAre("a", "b"));
  EXPECT_EQ(windows[0].failed, 5);
  EXPECT_EQ(windows[0].pending, 0);
  EXPECT_EQ(windows[1].from, kT0 + absl::Minutes(5));
  EXPECT_EQ(windows[1].to, kT0 + absl::Minutes(6));
  EXPECT_THAT(windows[1].sources, ElementsAre("a"));
  EXPECT_EQ(windows[1].pending, 2);
}

TEST(SuggestWindows, FreshPendingEventsAreNotAGap) {
  std::vector<BucketRow> rows = {Row(0, "a", Pending(7), /*settled_unfinished=*/0)};
  EXPECT_THAT(SuggestWindows(rows, absl::Minutes(1), kT0, kT0 + absl::Hours(1)), IsEmpty());
}

TEST(SuggestWindows, ClampsToTheRequestAndNow) {
  std::vector<BucketRow> rows = {Row(0, "a", Failed(1)), Row(1, "a", Failed(1))};
  auto windows =
      SuggestWindows(rows, absl::Minutes(1), kT0 + absl::Seconds(20), kT0 + absl::Seconds(90));
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ(windows[0].from, kT0 + absl::Seconds(20));
  EXPECT_EQ(windows[0].to, kT0 + absl::Seconds(90));
}

TEST(DryRunCommand, NamesTheWindowAndEverySource) {
  EXPECT_EQ(DryRunCommand(absl::FromUnixSeconds(1795000020), absl::FromUnixSeconds(1795000920),
                          {"billing", "orders"}),
            "replayctl dry-run --from 2026-11-18T11:07:00Z --to 2026-11-18T11:22:00Z"
            " --source billing --source orders");
}

// Answers from fixed rows and holes, and records what it was asked.
class FakeInspectionStore : public InspectionStore {
 public:
  std::vector<BucketRow> rows;
  std::vector<SequenceHole> holes;
  std::vector<TimelineQuery> queries;

  absl::StatusOr<std::vector<BucketRow>> Timeline(const TimelineQuery& query) override {
    queries.push_back(query);
    return rows;
  }
  absl::StatusOr<SequenceHoles> FindSequenceHoles(absl::Time, absl::Time,
                                                  const std::vector<SequenceRange>&, int) override {
    SequenceHoles out{holes, 0};
    for (const SequenceHole& h : holes) out.missing += h.last_missing - h.first_missing + 1;
    return out;
  }
  absl::StatusOr<Backlog> CountBacklog() override { return Backlog{}; }
};

TEST(Inspection, GapsSumTheHolesAndSuggestWindowsUpToNow) {
  FakeInspectionStore store;
  store.rows = {Row(0, "a", Failed(2)), Row(1, "a", Failed(1))};
  store.holes = {{"a", 10, 12, kT0, kT0 + absl::Seconds(5)}, {"b", 4, 4, kT0, kT0}};
  FakeClock clock(kT0 + absl::Seconds(90));
  Inspection inspection(&store, nullptr, nullptr, &clock);
  WindowQuery query;
  query.from = kT0;
  query.bucket_seconds = 60;
  query.sources = {"b", "a", "b"};
  auto gaps = inspection.Gaps(query);
  ASSERT_TRUE(gaps.ok()) << gaps.status();
  EXPECT_EQ(gaps->window.to, kT0 + absl::Seconds(90));
  EXPECT_EQ(gaps->missing, 4);
  ASSERT_EQ(gaps->windows.size(), 1u);
  EXPECT_EQ(gaps->windows[0].window.to, kT0 + absl::Seconds(90));
  EXPECT_EQ(gaps->windows[0].dry_run_command, DryRunCommand(kT0, kT0 + absl::Seconds(90), {"a"}));
  ASSERT_EQ(store.queries.size(), 1u);
  EXPECT_THAT(store.queries[0].sources, ElementsAre("a", "b"));
  EXPECT_EQ(store.queries[0].settled_before, kT0 + absl::Seconds(30));
}

TEST(Inspection, TimelineTotalsTheBucketsAndRejectsBadSources) {
  FakeInspectionStore store;
  store.rows = {Row(0, "a", Failed(2, 3)), Row(1, "a", Ok(4))};
  FakeClock clock(kT0 + absl::Minutes(2));
  Inspection inspection(&store, nullptr, nullptr, &clock);
  auto timeline = inspection.Timeline({});
  ASSERT_TRUE(timeline.ok()) << timeline.status();
  EXPECT_EQ(timeline->window.from, kT0 + absl::Minutes(2) - absl::Hours(1));
  ASSERT_EQ(timeline->buckets.size(), 2u);
  EXPECT_EQ(timeline->totals.succeeded, 7);
  EXPECT_EQ(timeline->totals.failed, 2);
  EXPECT_EQ(timeline->totals.total, 9);
  WindowQuery bad_source;
  bad_source.sources = {"Orders"};
  EXPECT_EQ(inspection.Timeline(bad_source).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(inspection.Trace("", "e-1").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RenderTimeline, ShowsFailedAndPendingAndColoursOnlyWhenAsked) {
  replay::v1::Timeline t;
  t.set_bucket_seconds(60);
  t.mutable_from()->set_seconds(absl::ToUnixSeconds(kT0));
  t.mutable_to()->set_seconds(absl::ToUnixSeconds(kT0) + 180);
  auto* b = t.add_buckets();
  b->mutable_start()->set_seconds(absl::ToUnixSeconds(kT0) + 60);
  b->set_source("a");
  b->mutable_counts()->set_succeeded(6);
  b->mutable_counts()->set_failed(4);
  b->mutable_counts()->set_total(10);
  b->set_missing(2);
  std::string plain = replayctl::RenderTimeline(t, false, 10);
  EXPECT_THAT(plain, HasSubstr("|######XXXX"));
  EXPECT_THAT(plain, HasSubstr("failed 4"));
  EXPECT_THAT(plain, HasSubstr("? missing 2"));
  EXPECT_THAT(plain, Not(HasSubstr("\033[")));
  EXPECT_THAT(replayctl::RenderTimeline(t, true, 10), HasSubstr("\033[31m"));
}

}  // namespace
}  // namespace replayd
