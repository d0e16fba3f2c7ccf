// The pure decisions that keep a replay safe when the downstream fails: the
// circuit breaker's rules, the strict-order hold, and the validation of a
// request's breaker settings.
#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "server/replay/breaker.h"
#include "server/replay/limits.h"
#include "server/replay/selection.h"

namespace replayd {
namespace {

// Records each delivery (true: it failed) and returns the indexes of those
// after which the breaker tripped.
std::vector<int> Trips(ReplayBreaker& b, const std::vector<bool>& failed) {
  std::vector<int> out;
  for (size_t i = 0; i < failed.size(); ++i) {
    if (b.Record(failed[i])) out.push_back(static_cast<int>(i));
  }
  return out;
}

TEST(BreakerTrips, AfterTheConfiguredFailuresInARow) {
  BreakerSettings s{3, 0, 0};
  EXPECT_FALSE(BreakerTrips(s, {2, 0, 0}));
  auto reason = BreakerTrips(s, {3, 0, 0});
  ASSERT_TRUE(reason);
  EXPECT_EQ(*reason, "circuit breaker: 3 deliveries failed in a row; paused until resumed");
}

TEST(BreakerTrips, RatioIsJudgedOnlyOnceTheWindowIsFull) {
  BreakerSettings s{0, 0.5, 10};
  EXPECT_FALSE(BreakerTrips(s, {0, 9, 9}));
  EXPECT_FALSE(BreakerTrips(s, {0, 10, 4}));
  auto reason = BreakerTrips(s, {0, 10, 5});
  ASSERT_TRUE(reason);
  EXPECT_EQ(
      *reason,
      "circuit breaker: 5 of the last 10 deliveries failed (limit 0.5); paused until resumed");
}

TEST(BreakerTrips, ZeroTurnsARuleOff) {
  EXPECT_FALSE(BreakerTrips({0, 0.5, 10}, {1000, 10, 0}));
  EXPECT_FALSE(BreakerTrips({10, 0, 10}, {0, 10, 10}));
  EXPECT_FALSE(BreakerTrips({10, 0.5, 0}, {0, 10, 10}));
}

TEST(ReplayBreaker, ASuccessEndsTheRun) {
  ReplayBreaker b({3, 0, 0});
  EXPECT_EQ(Trips(b, {true, true, false, true, true, true}), (std::vector<int>{5}));
}

TEST(ReplayBreaker, WindowKeepsOnlyTheMostRecentOutcomes) {
  ReplayBreaker b({0, 0.5, 4});
  // At the 4th: 4 seen, 2 failed, half.
  EXPECT_EQ(Trips(b, {true, true, false, false}), (std::vector<int>{3}));
  b.Reset();
  // Four deliveries, then a failure: the window is 0 0 0 1.
  EXPECT_EQ(Trips(b, {false, false, false, false, true}), std::vector<int>{});
  EXPECT_EQ(b.tally().window_seen, 4);
  EXPECT_EQ(b.tally().window_failures, 1);
  EXPECT_TRUE(b.Record(true));  // 0 0 1 1
}

TEST(KeyOrderBlocker, StrictKeyedEventIsHeldByTheFirstFailedEventBeforeIt) {
  std::vector<KeyBlocker> failed = {{3, absl::UnixEpoch(), "e3"}, {5, absl::UnixEpoch(), "e5"}};
  auto b = KeyOrderBlocker(true, true, failed, {});
  ASSERT_TRUE(b);
  EXPECT_EQ(b->event_id, "e3");
}

TEST(KeyOrderBlocker, AFailedEventTheReplayDeliversFirstDoesNotHold) {
  std::vector<KeyBlocker> failed = {{3, absl::UnixEpoch(), "e3"}, {5, absl::UnixEpoch(), "e5"}};
  auto b = KeyOrderBlocker(true, true, failed, {3});
  ASSERT_TRUE(b);
  EXPECT_EQ(b->event_id, "e5");
  EXPECT_FALSE(KeyOrderBlocker(true, true, failed, {3, 5}));
}

TEST(KeyOrderBlocker, NonStrictOrUnkeyedEventsAreNeverHeld) {
  std::vector<KeyBlocker> failed = {{3, absl::UnixEpoch(), "e3"}};
  EXPECT_FALSE(KeyOrderBlocker(false, true, failed, {}));
  EXPECT_FALSE(KeyOrderBlocker(true, false, failed, {}));
  EXPECT_FALSE(KeyOrderBlocker(true, true, {}, {}));
}

TEST(HeldByKeyCategory, HasItsReportName) {
  EXPECT_EQ(CategoryName(ReplayCategory::kSkipHeldByKey), "held_by_key");
}

TEST(ValidateBreaker, TakesTheConfiguredDefaultsForUnsetFields) {
  ReplayLimits limits;
  ReplayRequestInput in;
  in.breaker_window = 0;
  auto b = ValidateBreaker(in, limits);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->consecutive_failures, 10);
  EXPECT_EQ(b->failure_ratio, 0.5);
  EXPECT_EQ(b->window, 0);
}

TEST(ValidateBreaker, RefusesSettingsOutsideTheLimits) {
  ReplayLimits limits;
  ReplayRequestInput in;
  in.breaker_failure_ratio = 1.5;
  auto b = ValidateBreaker(in, limits);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.status().message(), "breaker.failure_ratio 1.5 must be between 0 and 1");
  in = {};
  in.breaker_consecutive_failures = -1;
  EXPECT_EQ(ValidateBreaker(in, limits).status().message(),
            "breaker.consecutive_failures -1 must be between 0 and 10000");
  in = {};
  in.breaker_window = 10001;
  EXPECT_EQ(ValidateBreaker(in, limits).status().message(),
            "breaker.window 10001 must be between 0 and 10000");
}

}  // namespace
}  // namespace replayd
