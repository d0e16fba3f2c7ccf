// The replay's pure decisions: request enforcement (filters, sink and retry
// policy included), the per-event decision shared by the dry run and the
// live replay, the window predicate in memory, the token bucket's
// arithmetic, and replayctl's renderers and ids file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/replayctl/replay_commands.h"
#include "server/delivery/retry_policy.h"
#include "server/replay/dry_run.h"
#include "server/replay/limits.h"
#include "server/replay/selection.h"
#include "server/replay/token_bucket.h"
#include "server/store/replay_store.h"

namespace replayd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

ReplayRequestInput Valid() {
  ReplayRequestInput in;
  in.from = kNow - absl::Hours(6);
  in.to = kNow - absl::Hours(1);
  return in;
}

void ExpectInvalid(const ReplayRequestInput& in, const std::string& text,
                   const ReplayLimits& limits = {}) {
  auto spec = ValidateReplayRequest(in, limits, kNow);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr(text));
}

TEST(ValidateReplayRequest, BoundsAreMandatory) {
  ReplayRequestInput in = Valid();
  in.from.reset();
  ExpectInvalid(in, "from is required");
  in = Valid();
  in.to.reset();
  ExpectInvalid(in, "to is required");
  in.from.reset();
  ExpectInvalid(in, "explicit time bounds");
}

TEST(ValidateReplayRequest, WindowShape) {
  ReplayRequestInput in = Valid();
  std::swap(*in.from, *in.to);
  ExpectInvalid(in, "inverted");
  in = Valid();
  in.to = in.from;
  ExpectInvalid(in, "empty");
  in = Valid();
  in.to = kNow + absl::Minutes(1);
  ExpectInvalid(in, "in the future");
  in.to = kNow + kFutureTolerance;  // client clock skew is tolerated
  EXPECT_TRUE(ValidateReplayRequest(in, {}, kNow).ok());
  in = Valid();
  in.from = *in.to - absl::Hours(24 * 7) - absl::Seconds(1);
  ExpectInvalid(in, "exceeds replay.max_window 7d");
  in.from = *in.to - absl::Hours(24 * 7);
  EXPECT_TRUE(ValidateReplayRequest(in, {}, kNow).ok());
  ReplayLimits narrow;
  narrow.max_window = absl::Hours(2);
  ExpectInvalid(Valid(), "replay.max_window 2h", narrow);
}

TEST(ValidateReplayRequest, Rates) {
  ReplayRequestInput in = Valid();
  auto spec = ValidateReplayRequest(in, {}, kNow);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->rate, 50);
  EXPECT_EQ(spec->burst, 50);
  in.rate = 200;  // at the threshold: no opt-in needed
  EXPECT_TRUE(ValidateReplayRequest(in, {}, kNow).ok());
  in.rate = 201;
  ExpectInvalid(in, "above replay.high_rate_threshold 200/s");
  in.allow_high_rate = true;
  EXPECT_TRUE(ValidateReplayRequest(in, {}, kNow).ok());
  in.rate = 2001;
  ExpectInvalid(in, "hard cap replay.max_rate 2000/s");
  in.rate = -3;
  ExpectInvalid(in, "must be positive");
  in.rate = 10;
  in.burst = -1;
  ExpectInvalid(in, "burst");
  in.burst = 1;
  ExpectInvalid(in, "burst 1 is below what rate 10/s sends in 100 ms: use at least 2");
  in.burst = 7;
  EXPECT_EQ(ValidateReplayRequest(in, {}, kNow)->burst, 7);
  in.burst = 0;
  in.rate = 1;
  EXPECT_EQ(ValidateReplayRequest(in, {}, kNow)->burst, 2);
}

TEST(ValidateReplayRequest, SourcesAndOutcomes) {
  ReplayRequestInput in = Valid();
  in.sources = {"b", "a", "b"};
  auto spec = ValidateReplayRequest(in, {}, kNow);
  ASSERT_TRUE(spec.ok());
  EXPECT_THAT(spec->window.sources, ElementsAre("a", "b"));
  EXPECT_THAT(spec->outcomes, ElementsAre(Outcome::kPending, Outcome::kRetrying, Outcome::kFailed));
  in.include_succeeded = true;
  EXPECT_THAT(ValidateReplayRequest(in, {}, kNow)->outcomes,
              ElementsAre(Outcome::kPending, Outcome::kRetrying, Outcome::kSucceeded,
                          Outcome::kAlreadyProcessed, Outcome::kFailed));
  in.sources = {"Bad Source"};
  ExpectInvalid(in, "does not match");
}

StoredEvent EventWith(Outcome o) {
  StoredEvent e;
  e.event.source = "orders";
  e.event.event_id = "e1";
  e.outcome = o;
  e.target_record_id = "rec-1";
  return e;
}

ReplaySpec Spec(bool include_succeeded = false, bool verify = false,
                std::vector<Outcome> outcomes = {}) {
  ReplaySpec s;
  s.outcomes = SelectedOutcomes(outcomes, include_succeeded);
  s.include_succeeded = include_succeeded;
  s.verify_downstream = verify;
  return s;
}

TEST(Classify, DefaultSelectionDeliversUndeliveredAndSkipsDelivered) {
  for (Outcome o : {Outcome::kFailed, Outcome::kPending, Outcome::kRetrying}) {
    EXPECT_EQ(Classify(EventWith(o), Spec(), true, std::nullopt), ReplayCategory::kDeliver);
  }
  for (Outcome o : {Outcome::kSucceeded, Outcome::kAlreadyProcessed}) {
    EXPECT_EQ(Classify(EventWith(o), Spec(), true, std::nullopt),
              ReplayCategory::kSkipAlreadyDelivered);
  }
}

TEST(Classify, OutcomeFilterRouteAndResend) {
  ReplaySpec only_failed = Spec(false, false, {Outcome::kFailed});
  EXPECT_EQ(Classify(EventWith(Outcome::kPending), only_failed, true, std::nullopt),
            ReplayCategory::kSkipOutcomeNotSelected);
  EXPECT_EQ(Classify(EventWith(Outcome::kFailed), only_failed, true, std::nullopt),
            ReplayCategory::kDeliver);
  EXPECT_EQ(Classify(EventWith(Outcome::kFailed), Spec(), false, std::nullopt),
            ReplayCategory::kSkipNoRoute);
  EXPECT_EQ(Classify(EventWith(Outcome::kSucceeded), Spec(true), true, std::nullopt),
            ReplayCategory::kDeliver);
}

TEST(Classify, VerifyDownstreamUsesTheLookupOnlyWhenItMatters) {
  ReplaySpec verify = Spec(false, true);
  StoredEvent failed = EventWith(Outcome::kFailed);
  EXPECT_TRUE(NeedsLookup(failed, verify, true));
  EXPECT_FALSE(NeedsLookup(failed, Spec(), true));
  EXPECT_FALSE(NeedsLookup(EventWith(Outcome::kSucceeded), verify, true));
  EXPECT_FALSE(NeedsLookup(failed, verify, false));
  const std::optional<DownstreamRecord> found = DownstreamRecord{.id = "rec-9"};
  EXPECT_EQ(Classify(failed, verify, true, found), ReplayCategory::kSkipFoundDownstream);
  EXPECT_EQ(Classify(failed, verify, true, std::optional<DownstreamRecord>()),
            ReplayCategory::kDeliver);
  // Without verify_downstream an answer is ignored: the decision is the log's.
  EXPECT_EQ(Classify(failed, Spec(), true, found), ReplayCategory::kDeliver);
}

TEST(TokenBucket, StartsWithOneTokenAndPacesAtTheRate) {
  absl::Time t = kNow;
  TokenBucket bucket(100, 10, t);
  EXPECT_EQ(bucket.TryTake(t), absl::ZeroDuration());
  EXPECT_EQ(bucket.TryTake(t), absl::Milliseconds(10));
  EXPECT_EQ(bucket.WaitFor(t + absl::Milliseconds(4)), absl::Milliseconds(6));
  EXPECT_EQ(bucket.TryTake(t + absl::Milliseconds(10)), absl::ZeroDuration());
  // 1000 more takes at exactly the advertised waits take 10 s: the rate is exact.
  absl::Time now = t + absl::Milliseconds(10);
  for (int i = 0; i < 1000; ++i) {
    absl::Duration wait = bucket.TryTake(now);
    if (wait > absl::ZeroDuration()) {
      now += wait;
      ASSERT_EQ(bucket.TryTake(now), absl::ZeroDuration());
    }
  }
  EXPECT_EQ(now - (t + absl::Milliseconds(10)), absl::Seconds(10));
}

TEST(TokenBucket, CapacityKeepsEvery100msWithinTheBurst) {
  EXPECT_DOUBLE_EQ(BucketCapacity(100, 20), 10);
  EXPECT_DOUBLE_EQ(BucketCapacity(1000, 200), 100);
  EXPECT_DOUBLE_EQ(BucketCapacity(100, 11), 1);
  // After a long stall: the saved tokens plus 100 ms of refill, taken as fast
  // as they come, never exceed the burst.
  TokenBucket bucket(100, BucketCapacity(100, 20), kNow);
  absl::Time start = kNow + absl::Seconds(60);
  int sent = 0;
  for (absl::Time t = start; t < start + absl::Milliseconds(100); t += absl::Microseconds(100)) {
    while (bucket.TryTake(t) == absl::ZeroDuration()) ++sent;
  }
  EXPECT_LE(sent, 20);
  EXPECT_GE(sent, 19);
}

TEST(TokenBucket, BurstCapsCatchUpAfterAStall) {
  TokenBucket bucket(100, 10, kNow);
  absl::Time later = kNow + absl::Seconds(60);
  int immediate = 0;
  while (bucket.TryTake(later) == absl::ZeroDuration()) ++immediate;
  EXPECT_EQ(immediate, 10);
}

TEST(ReplayctlRender, ProgressBarAndDryRun) {
  replay::v1::ReplayProgress p;
  p.set_total(200);
  p.set_processed(50);
  p.set_delivered(40);
  p.set_skipped(10);
  p.set_state(replay::v1::REPLAY_RUNNING);
  std::string bar = replayctl::RenderProgressBar(p, 20);
  EXPECT_THAT(bar, HasSubstr("[#####---------------]"));
  EXPECT_THAT(bar, HasSubstr(" 25% 50/200 delivered 40 skipped 10 failed 0"));
  EXPECT_THAT(bar, HasSubstr("running"));

  replay::v1::DryRunReport d;
  d.set_total(12);
  d.set_would_deliver(7);
  d.set_would_skip(5);
  auto* s = d.add_skipped_by_reason();
  s->set_reason("already_delivered");
  s->set_count(5);
  d.set_missing(3);
  auto* r = d.add_missing_ranges();
  r->set_source("orders");
  r->set_first(10);
  r->set_last(12);
  d.add_warnings("nothing special");
  std::string text = replayctl::RenderDryRun(d);
  EXPECT_THAT(text, HasSubstr("would deliver     7"));
  EXPECT_THAT(text, HasSubstr("would skip        5 (already_delivered 5)"));
  EXPECT_THAT(text, HasSubstr("missing upstream  3 (orders 10-12)"));
  EXPECT_THAT(text, HasSubstr("warning: nothing special"));
}

}  // namespace
}  // namespace replayd

namespace replayd {
namespace {

TEST(PlanGapScan, RunsOfBucketsThatAreNotFull) {
  const int64_t size = int64_t{1} << kSequenceBucketBits;
  std::map<int64_t, int64_t> buckets;
  buckets[0] = size - 96;  // the source's first bucket, partial
  buckets[1] = size;       // full
  buckets[2] = size - 6;   // holes inside
  buckets[5] = size;       // full; buckets 3 and 4 are empty (all missing)
  buckets[6] = 100;        // the last, partial
  auto scan = PlanGapScan("s", buckets);
  ASSERT_EQ(scan.size(), 3u);
  EXPECT_EQ(scan[0].first, -1);
  EXPECT_EQ(scan[0].last, size);
  EXPECT_EQ(scan[1].first, 2 * size - 1);  // bucket 2 through the empty 3 and 4
  EXPECT_EQ(scan[1].last, 5 * size);
  EXPECT_EQ(scan[2].first, 6 * size - 1);
  EXPECT_EQ(scan[2].last, 7 * size);
  EXPECT_TRUE(PlanGapScan("s", {}).empty());
  EXPECT_TRUE(PlanGapScan("s", {{3, size}, {4, size}}).empty());
  // More rows than numbers: duplicates, read like a bucket with holes.
  auto duplicates = PlanGapScan("s", {{3, size}, {4, size + 1}, {5, size}});
  ASSERT_EQ(duplicates.size(), 1u);
  EXPECT_EQ(duplicates[0].first, 4 * size - 1);
  EXPECT_EQ(duplicates[0].last, 5 * size);
}

// ---- filters, sink and retry policy of a replay ----

std::string InvalidMessage(const ReplayRequestInput& in) {
  auto spec = ValidateReplayRequest(in, {}, kNow);
  if (spec.ok()) return "(accepted)";
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

std::vector<std::string> Ids(size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(absl::StrCat("ev-", i));
  return out;
}

TEST(ReplayFilters, ListsAreSortedAndDeduplicatedIntoTheWindow) {
  ReplayRequestInput in = Valid();
  in.keys = {"k2", "k1", "k2"};
  in.types = {"order.created"};
  in.event_ids = {"b", "a"};
  auto spec = ValidateReplayRequest(in, {}, kNow);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->window.keys, ElementsAre("k1", "k2"));
  EXPECT_THAT(spec->window.types, ElementsAre("order.created"));
  EXPECT_THAT(spec->window.event_ids, ElementsAre("a", "b"));
  EXPECT_TRUE(spec->window.Filtered());
  EXPECT_FALSE(ValidateReplayRequest(Valid(), {}, kNow)->window.Filtered());
}

TEST(ReplayFilters, TenThousandEventIdsAreTheLimit) {
  ReplayRequestInput in = Valid();
  in.event_ids = Ids(kMaxFilterValues);
  EXPECT_TRUE(ValidateReplayRequest(in, {}, kNow).ok());
  in.event_ids = Ids(kMaxFilterValues + 1);
  EXPECT_EQ(InvalidMessage(in), "event_ids lists 10001 values, over the limit of 10000: split the replay");
}

TEST(ReplayFilters, EmptyStringsAreRejectedNamingTheField) {
  ReplayRequestInput in = Valid();
  in.keys = {"k1", ""};
  EXPECT_EQ(InvalidMessage(in), "keys[1] is empty");
  in = Valid();
  in.types = {""};
  EXPECT_EQ(InvalidMessage(in), "types[0] is empty");
  in = Valid();
  in.event_ids = {"a", "b", ""};
  EXPECT_EQ(InvalidMessage(in), "event_ids[2] is empty");
}

TEST(ReplayFilters, OverlongOrControlCharacterValuesAreRejected) {
  ReplayRequestInput in = Valid();
  in.keys = {std::string(kMaxFilterValueBytes + 1, 'k')};
  EXPECT_EQ(InvalidMessage(in), "keys[0] is 257 bytes, over the limit of 256");
  in.keys = {std::string(kMaxFilterValueBytes, 'k')};
  EXPECT_TRUE(ValidateReplayRequest(in, {}, kNow).ok());
  in.keys = {"a\nb"};
  EXPECT_EQ(InvalidMessage(in), "keys[0] contains control characters");
}

TEST(ReplayFilters, TimeBoundsStayMandatoryWithAnIdList) {
  ReplayRequestInput in = Valid();
  in.event_ids = {"a"};
  in.from.reset();
  EXPECT_THAT(InvalidMessage(in), HasSubstr("from is required"));
}

TEST(ReplayRetry, OverrideIsKeptInTheSpec) {
  ReplayRequestInput in = Valid();
  in.sink = "billing-v2";
  in.retry = {3, absl::Milliseconds(100), absl::Seconds(2)};
  auto spec = ValidateReplayRequest(in, {}, kNow);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->sink, "billing-v2");
  EXPECT_EQ(spec->retry.max_attempts, 3);
  EXPECT_EQ(spec->retry.base_delay, absl::Milliseconds(100));
  EXPECT_EQ(spec->retry.max_delay, absl::Seconds(2));
}

TEST(ReplayRetry, BadValuesAreRejectedNamingTheField) {
  ReplayRequestInput in = Valid();
  in.retry.max_attempts = 0;
  EXPECT_EQ(InvalidMessage(in), "retry.max_attempts 0 must be between 1 and 100");
  in.retry.max_attempts = 101;
  EXPECT_EQ(InvalidMessage(in), "retry.max_attempts 101 must be between 1 and 100");
  in = Valid();
  in.retry.base_delay = absl::ZeroDuration();
  EXPECT_EQ(InvalidMessage(in), "retry.base 0 must be between 1ms and 1h");
  in = Valid();
  in.retry.max_delay = absl::Hours(2);
  EXPECT_EQ(InvalidMessage(in), "retry.cap 2h must be between 1ms and 1h");
  in = Valid();
  in.retry.base_delay = absl::Seconds(2);
  in.retry.max_delay = absl::Seconds(1);
  EXPECT_EQ(InvalidMessage(in), "retry.cap 1s is below retry.base 2s");
}

TEST(ReplaySink, UnknownNameListsTheConfiguredSinks) {
  EXPECT_TRUE(ValidateReplaySink("", {}).ok());
  EXPECT_TRUE(ValidateReplaySink("b", {"a", "b"}).ok());
  absl::Status s = ValidateReplaySink("nope", {"orders-v2", "billing"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "sink \"nope\" is not configured; the configured sinks are: billing, orders-v2");
}

TEST(RetryOverride, ReplacesOnlyTheFieldsItSetsAndKeepsTheCapAboveTheBase) {
  const RetryPolicy route{8, absl::Milliseconds(500), absl::Minutes(5)};
  RetryPolicy p = WithOverride(route, {});
  EXPECT_EQ(p.max_attempts, 8);
  EXPECT_EQ(p.base_delay, absl::Milliseconds(500));
  EXPECT_EQ(p.max_delay, absl::Minutes(5));
  p = WithOverride(route, {2, std::nullopt, absl::Seconds(1)});
  EXPECT_EQ(p.max_attempts, 2);
  EXPECT_EQ(p.base_delay, absl::Milliseconds(500));
  EXPECT_EQ(p.max_delay, absl::Seconds(1));
  p = WithOverride(route, {std::nullopt, absl::Minutes(10), std::nullopt});
  EXPECT_EQ(p.max_delay, absl::Minutes(10));  // raised to the base
}

StoredEvent Event(std::string source, std::string id, std::string key, std::string type) {
  StoredEvent e;
  e.ingested_at = kNow - absl::Hours(2);
  e.event.source = std::move(source);
  e.event.event_id = std::move(id);
  e.event.key = std::move(key);
  e.event.type = std::move(type);
  return e;
}

TEST(InWindow, EveryGivenListMustMatchAndAnyValueOfAListDoes) {
  ReplayWindow w{kNow - absl::Hours(3), kNow - absl::Hours(1), {}, {}, {}, {}};
  const StoredEvent e = Event("orders", "ev-1", "k1", "created");
  EXPECT_TRUE(InWindow(w, e));
  w.keys = {"k0", "k1"};
  EXPECT_TRUE(InWindow(w, e));
  w.types = {"deleted"};
  EXPECT_FALSE(InWindow(w, e));  // AND between lists
  w.types = {"created", "deleted"};
  EXPECT_TRUE(InWindow(w, e));  // OR within a list
  w.event_ids = {"ev-2"};
  EXPECT_FALSE(InWindow(w, e));
  w.event_ids.clear();
  w.sources = {"billing"};
  EXPECT_FALSE(InWindow(w, e));
}

TEST(InWindow, AKeyFilterLeavesOutEventsWithoutAKey) {
  ReplayWindow w{kNow - absl::Hours(3), kNow - absl::Hours(1), {}, {"k1"}, {}, {}};
  EXPECT_FALSE(InWindow(w, Event("orders", "ev-1", "", "")));
}

TEST(InWindow, TheWindowIsHalfOpen) {
  StoredEvent e = Event("orders", "ev-1", "", "");
  ReplayWindow w{e.ingested_at, e.ingested_at + absl::Seconds(1), {}, {}, {}, {}};
  EXPECT_TRUE(InWindow(w, e));
  w = {e.ingested_at - absl::Seconds(1), e.ingested_at, {}, {}, {}, {}};
  EXPECT_FALSE(InWindow(w, e));
}

TEST(EventIdsFile, OneIdPerLineWithoutBlanksAndComments) {
  EXPECT_THAT(replayctl::ParseEventIdsFile("# failed at 02:10\nev-1\n\n  ev-2  \r\n#ev-3\nev-4"),
              ElementsAre("ev-1", "ev-2", "ev-4"));
  EXPECT_TRUE(replayctl::ParseEventIdsFile("\n# nothing\n").empty());
}

}  // namespace
}  // namespace replayd
