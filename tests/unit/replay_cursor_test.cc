// WindowCursor: the checkpointed cursor of a replay never passes an event
// that is not done, whatever order deliveries finish in.
#include <gtest/gtest.h>

#include <optional>
#include <tuple>

#include "server/replay/window_cursor.h"

namespace replayd {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// The i-th event of a window: ingested i ms after kT0, at position 100 + i.
ReplayCursor At(int i) { return {kT0 + absl::Milliseconds(i), 100 + i}; }

// The index At() was made from, or -1 for no cursor.
int Index(const std::optional<ReplayCursor>& c) {
  if (!c.has_value()) return -1;
  EXPECT_EQ(c->ingested_at, kT0 + absl::Milliseconds(c->position - 100));
  return static_cast<int>(c->position - 100);
}

// The cursor's Index, then how many events it has in flight and holds.
using State = std::tuple<int, size_t, size_t>;
State StateOf(const WindowCursor& c) { return {Index(c.Cursor()), c.InFlight(), c.Held()}; }

// Marks the i-th event done (the test fails unless it was in flight) and
// returns the state that leaves.
State AfterDone(WindowCursor& c, int i) {
  EXPECT_TRUE(c.Done(At(i))) << "event " << i << " was not in flight";
  return StateOf(c);
}

TEST(WindowCursor, EmptyJobKeepsItsStart) {
  WindowCursor fresh(std::nullopt);
  EXPECT_EQ(StateOf(fresh), State(-1, 0, 0));
  EXPECT_TRUE(fresh.HasRoom());

  WindowCursor resumed(At(7));
  EXPECT_EQ(Index(resumed.Cursor()), 7);
}

TEST(WindowCursor, InOrderCompletionMovesTheCursorEachTime) {
  WindowCursor cursor(std::nullopt);
  for (int i = 0; i < 3; ++i) cursor.Dispatched(At(i));
  EXPECT_EQ(cursor.InFlight(), 3u);
  EXPECT_EQ(Index(cursor.Cursor()), -1);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(cursor.Done(At(i)));
    EXPECT_EQ(Index(cursor.Cursor()), i);
  }
  EXPECT_EQ(StateOf(cursor), State(2, 0, 0));
}

TEST(WindowCursor, OutOfOrderCompletionWaitsForTheEarliestUnfinished) {
  WindowCursor cursor(At(9));
  for (int i = 10; i < 14; ++i) cursor.Dispatched(At(i));
  ASSERT_TRUE(cursor.Done(At(13)));
  // 10 is still in flight: the cursor stays where the job resumed.
  EXPECT_EQ(AfterDone(cursor, 11), State(9, 2, 4));
  // 10 and 11 are done, 12 is not.
  EXPECT_EQ(AfterDone(cursor, 10), State(11, 1, 2));
  EXPECT_EQ(AfterDone(cursor, 12), State(13, 0, 0));
}

TEST(WindowCursor, SkippedEventsMoveTheCursorOnlyWhenNothingBeforeThemIsOpen) {
  WindowCursor cursor(std::nullopt);
  cursor.Skipped(At(0));
  EXPECT_EQ(Index(cursor.Cursor()), 0);

  cursor.Dispatched(At(1));
  cursor.Skipped(At(2));
  cursor.Skipped(At(3));
  // Done as they are, 2 and 3 wait behind 1.
  EXPECT_EQ(StateOf(cursor), State(0, 1, 3));

  EXPECT_EQ(AfterDone(cursor, 1), State(3, 0, 0));
}

TEST(WindowCursor, DoneOfAnUnknownOrFinishedEventChangesNothing) {
  WindowCursor cursor(std::nullopt);
  cursor.Dispatched(At(0));
  cursor.Dispatched(At(1));
  EXPECT_FALSE(cursor.Done(At(5)));                     // never dispatched
  EXPECT_FALSE(cursor.Done({At(0).ingested_at, 999}));  // same time, other event
  ASSERT_TRUE(cursor.Done(At(1)));
  EXPECT_FALSE(cursor.Done(At(1)));  // done already
  EXPECT_EQ(cursor.InFlight(), 1u);
  EXPECT_EQ(Index(cursor.Cursor()), -1);
}

TEST(WindowCursor, EventsAtOneInstantAreOrderedByPosition) {
  WindowCursor cursor(std::nullopt);
  const ReplayCursor a{kT0, 5}, b{kT0, 6}, c{kT0, 7};
  cursor.Dispatched(a);
  cursor.Dispatched(b);
  cursor.Dispatched(c);
  ASSERT_TRUE(cursor.Done(b));
  ASSERT_TRUE(cursor.Done(a));
  ASSERT_TRUE(cursor.Cursor().has_value());
  EXPECT_EQ(cursor.Cursor()->position, 6);
}

TEST(WindowCursor, WindowIsBoundedByTheEventsHeldBehindTheCursor) {
  WindowCursor cursor(std::nullopt, /*max_window=*/3);
  cursor.Dispatched(At(0));
  cursor.Dispatched(At(1));
  EXPECT_TRUE(cursor.HasRoom());
  cursor.Dispatched(At(2));
  EXPECT_FALSE(cursor.HasRoom());
  // Done events behind a slow one still count against the bound.
  ASSERT_TRUE(cursor.Done(At(2)));
  ASSERT_TRUE(cursor.Done(At(1)));
  EXPECT_FALSE(cursor.HasRoom());
  ASSERT_TRUE(cursor.Done(At(0)));
  EXPECT_TRUE(cursor.HasRoom());
  EXPECT_EQ(Index(cursor.Cursor()), 2);
}

TEST(WindowCursor, DefaultBoundIsTheOrderWindow) {
  WindowCursor cursor(std::nullopt);
  for (size_t i = 0; i < kMaxOrderWindow; ++i) {
    ASSERT_TRUE(cursor.HasRoom()) << i;
    cursor.Dispatched(At(static_cast<int>(i)));
  }
  EXPECT_FALSE(cursor.HasRoom());
  EXPECT_EQ(cursor.InFlight(), kMaxOrderWindow);
}

}  // namespace
}  // namespace replayd
