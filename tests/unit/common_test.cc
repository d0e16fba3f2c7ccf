#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/common/auth.h"
#include "server/common/backoff.h"
#include "server/common/client_errors.h"
#include "server/common/clock.h"
#include "server/common/logging.h"
#include "server/common/time_format.h"

namespace replayd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1'790'000'000);

TEST(ParseTimeArg, Rfc3339AndRelative) {
  auto t = ParseTimeArg("2026-11-22T03:00:00Z", kNow);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(FormatRfc3339(*t), "2026-11-22T03:00:00Z");
  EXPECT_EQ(*ParseTimeArg("2026-11-22T04:00:00+01:00", kNow), *t);
  EXPECT_EQ(*ParseTimeArg("now", kNow), kNow);
  EXPECT_EQ(*ParseTimeArg("-6h", kNow), kNow - absl::Hours(6));
  EXPECT_EQ(*ParseTimeArg("-90m", kNow), kNow - absl::Minutes(90));
  EXPECT_EQ(*ParseTimeArg("-2d", kNow), kNow - absl::Hours(48));
  EXPECT_EQ(*ParseTimeArg("+1h30m", kNow), kNow + absl::Minutes(90));
  EXPECT_EQ(ParseTimeArg("yesterday", kNow).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTimeArg("-6x", kNow).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTimeArg("2026-13-01T00:00:00Z", kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseDurationArg, UnitsAndErrors) {
  EXPECT_EQ(*ParseDurationArg("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDurationArg("7d"), absl::Hours(168));
  EXPECT_EQ(*ParseDurationArg("168h"), absl::Hours(168));
  EXPECT_FALSE(ParseDurationArg("").ok());
  EXPECT_FALSE(ParseDurationArg("-5s").ok());
  EXPECT_FALSE(ParseDurationArg("five").ok());
}

TEST(StartOfUtcDay, Truncates) {
  absl::Time t = *ParseTimeArg("2026-11-22T23:59:59Z", kNow);
  EXPECT_EQ(FormatRfc3339(StartOfUtcDay(t)), "2026-11-22T00:00:00Z");
}

TEST(RedactDsn, HidesPasswords) {
  EXPECT_EQ(RedactDsn("postgresql://app:s3cret@db:5432/replay"),
            "postgresql://app:***@db:5432/replay");
  EXPECT_EQ(RedactDsn("postgresql://app@db/replay?password=s3cret&sslmode=require"),
            "postgresql://app@db/replay?password=***&sslmode=require");
  EXPECT_THAT(RedactDsn("host=db user=app password=s3cret dbname=x"), Not(HasSubstr("s3cret")));
  EXPECT_EQ(RedactDsn("postgresql://postgres@127.0.0.1:5432/postgres"),
            "postgresql://postgres@127.0.0.1:5432/postgres");
}

TEST(Authenticator, RolesAndTokens) {
  Authenticator auth({{"publisher-token-0123456789", Role::kPublisher, "upstream"},
                      {"viewer-token-0123456789ab", Role::kViewer, "dashboard"},
                      {"operator-token-0123456789", Role::kOperator, "alice"}});
  EXPECT_EQ(auth.Authorize("", Role::kViewer).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authorize("Bearer nope", Role::kViewer).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto viewer = auth.Authorize("Bearer viewer-token-0123456789ab", Role::kViewer);
  ASSERT_TRUE(viewer.ok());
  EXPECT_EQ(viewer->name, "dashboard");
  auto denied = auth.Authorize("Bearer viewer-token-0123456789ab", Role::kOperator);
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(denied.status().message()), Not(HasSubstr("viewer-token")));
  EXPECT_TRUE(auth.Authorize("Bearer operator-token-0123456789", Role::kViewer).ok());
  EXPECT_EQ(auth.Authorize("Bearer operator-token-0123456789", Role::kPublisher).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(auth.Authorize("Bearer publisher-token-0123456789", Role::kPublisher).ok());
  Authenticator off({});
  EXPECT_TRUE(off.Authorize("", Role::kOperator).ok());
}

TEST(FakeClock, SleepReturnsOnlyOnceTheClockIsAdvancedPastItsDeadline) {
  FakeClock clock(kNow);
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepFor(absl::Seconds(5));
    woke = true;
  });
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(woke);
  clock.Advance(absl::Seconds(4));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(woke);
  clock.Advance(absl::Seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke);
}

TEST(FakeClock, AutoAdvanceMovesTheClockToTheSleepsDeadline) {
  FakeClock clock(kNow);
  clock.set_auto_advance(true);
  clock.SleepFor(absl::Hours(3));
  EXPECT_EQ(clock.Now(), kNow + absl::Hours(3));
}

TEST(FakeClock, WaitReturnsWhenTheDeadlinePassesWithoutANotify) {
  FakeClock clock(kNow);
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock lock(mu);
  std::thread advancer([&] {
    absl::SleepFor(absl::Milliseconds(10));
    clock.Advance(absl::Minutes(1));
  });
  absl::Time deadline = kNow + absl::Seconds(30);
  while (clock.Now() < deadline) clock.WaitUntil(cv, lock, deadline);
  advancer.join();
  EXPECT_GE(clock.Now(), deadline);
}

TEST(Backoff, DelayDoublesFromInitialUpToMax) {
  BackoffOptions options{.initial = absl::Milliseconds(250), .max = absl::Seconds(5)};
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 8; ++i) delays.push_back(BackoffDelay(i, options));
  EXPECT_THAT(delays, ::testing::ElementsAre(absl::Milliseconds(250), absl::Milliseconds(500),
                                             absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                             absl::Seconds(5), absl::Seconds(5), absl::Seconds(5)));
}

TEST(Backoff, RetriesWhileUnavailableOnTheBackoffScheduleUntilItAnswers) {
  FakeClock clock;
  clock.set_auto_advance(true);
  const absl::Time start = clock.Now();
  std::vector<absl::Duration> attempts_at, waits;
  int calls = 0;
  absl::Status s = RetryWhileUnavailable(
      [&] {
        attempts_at.push_back(clock.Now() - start);
        return ++calls < 5 ? absl::UnavailableError("down") : absl::OkStatus();
      },
      {.initial = absl::Seconds(1),
       .max = absl::Seconds(4),
       .total = absl::Minutes(1),
       .clock = &clock},
      [&](const absl::Status&, absl::Duration wait) { waits.push_back(wait); });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_THAT(attempts_at,
              ::testing::ElementsAre(absl::ZeroDuration(), absl::Seconds(1), absl::Seconds(3),
                                     absl::Seconds(7), absl::Seconds(11)));
  EXPECT_THAT(waits, ::testing::ElementsAre(absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                            absl::Seconds(4)));
}

TEST(Backoff, GivesUpWithTheLastStatusWhenTheTotalRunsOut) {
  FakeClock clock;
  clock.set_auto_advance(true);
  const absl::Time start = clock.Now();
  int calls = 0;
  absl::Status s = RetryWhileUnavailable(
      [&] {
        ++calls;
        return absl::UnavailableError("still down");
      },
      {.initial = absl::Seconds(1),
       .max = absl::Seconds(4),
       .total = absl::Seconds(10),
       .clock = &clock});
  EXPECT_EQ(s, absl::UnavailableError("still down"));
  // Attempts at 0, 1, 3, 7 and 10 s (the last wait cut to the total).
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(clock.Now() - start, absl::Seconds(10));
}

TEST(Backoff, DoesNotRetryOtherErrors) {
  FakeClock clock;
  clock.set_auto_advance(true);
  int calls = 0;
  absl::Status s = RetryWhileUnavailable(
      [&] {
        ++calls;
        return absl::FailedPreconditionError("bad schema");
      },
      {.clock = &clock});
  EXPECT_TRUE(absl::IsFailedPrecondition(s));
  EXPECT_EQ(calls, 1);
}

TEST(ClientMessage, HidesDetailsOfUnavailableAndInternalErrors) {
  const std::string address = "connection to server at 127.0.0.1, port 5432 failed";
  for (const absl::Status& s : {absl::UnavailableError(address), absl::InternalError(address)}) {
    EXPECT_THAT(ClientMessage(s, "test"), Not(HasSubstr("127.0.0.1"))) << s;
    EXPECT_THAT(ClientMessage(s, "test"), HasSubstr("log"));
  }
  EXPECT_EQ(ClientMessage(absl::InvalidArgumentError("from: bad time"), "test"), "from: bad time");
}

}  // namespace
}  // namespace replayd
