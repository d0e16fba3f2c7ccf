// The dispatcher and the deliverer against in-memory fakes (FakeDeliveryStore,
// FakeSink) and a FakeClock: per-key order, concurrency, retries, strict
// routes, others' claims, stopping, and the hand-off from one event's record
// to its key's next event. Nothing here waits for a retry or a lease in real
// time: the tests move the FakeClock.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/common/clock.h"
#include "server/delivery/deliverer.h"
#include "server/delivery/dispatcher.h"
#include "tests/support/fake_delivery_store.h"
#include "tests/support/fake_sink.h"

namespace replayd {
namespace {

using testing::FakeDeliveryStore;
using testing::FakeSink;

constexpr char kSource[] = "orders";
constexpr char kOwner[] = "dispatcher-under-test";

// Long enough for the dispatcher to start what it would wrongly start (it
// polls the fake clock every millisecond), short enough for a unit test.
void LetItRun() { std::this_thread::sleep_for(std::chrono::milliseconds(50)); }

// Polls `done` in real time for up to five seconds.
bool Eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

RetryPolicy Retries(int max_attempts, absl::Duration delay) {
  RetryPolicy p;
  p.max_attempts = max_attempts;
  p.base_delay = delay;
  p.max_delay = delay;
  return p;
}

std::vector<int64_t> Positions(const std::vector<FakeSink::Call>& calls) {
  std::vector<int64_t> out;
  for (const FakeSink::Call& c : calls) out.push_back(c.position);
  return out;
}

// Which events were called, whatever the order across keys.
std::vector<int64_t> SortedPositions(const std::vector<FakeSink::Call>& calls) {
  std::vector<int64_t> out = Positions(calls);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int64_t> PositionsOfKey(const std::vector<FakeSink::Call>& calls,
                                    const std::string& key) {
  std::vector<int64_t> out;
  for (const FakeSink::Call& c : calls) {
    if (c.key == key) out.push_back(c.position);
  }
  return out;
}

class DispatcherTest : public ::testing::Test {
 protected:
  void Start(int workers, bool strict = false, RetryPolicy retry = Retries(5, absl::Seconds(10))) {
    Route route{"orders-route", sink_->name(), strict, retry, sink_};
    std::map<std::string, Route> routes{{kSource, route}};
    deliverer_ = std::make_unique<Deliverer>(&store_, std::move(routes), nullptr, &clock_);
    DispatcherOptions options;
    options.workers = workers;
    options.claim_batch = 16;
    options.poll_interval = absl::Milliseconds(50);
    options.claim_lease = absl::Seconds(60);
    options.owner = kOwner;
    options.clock = &clock_;
    dispatcher_ = std::make_unique<Dispatcher>(&store_, deliverer_.get(), options);
    dispatcher_->Start();
  }

  // Starts `workers` with the sink's gate closed and checks that exactly
  // `in_flight` calls reach it, even given time for more; then opens it.
  void ExpectInFlightAtGate(int workers, int in_flight) {
    sink_->CloseGate();
    Start(workers);
    ASSERT_TRUE(sink_->WaitForInFlight(in_flight));
    LetItRun();
    EXPECT_EQ(sink_->in_flight(), in_flight);
    sink_->OpenGate();
  }

  void TearDown() override {
    sink_->OpenGate();
    store_.ResumeRecords();
    if (dispatcher_) dispatcher_->Stop();
  }

  int64_t Append(const std::string& id, const std::string& key) {
    return store_.Append(kSource, id, key).position;
  }
  std::string Key(int64_t position) { return IdempotencyKey(store_.Event(position)); }

  // Appends an event of key "k" that the sink fails for good; its position.
  int64_t AppendFailing() {
    const int64_t position = Append("failing", "k");
    sink_->Script(Key(position), {FakeSink::Final()});
    return position;
  }

  // Moves the clock a step at a time until `done`: for waits whose start the
  // test cannot see (e.g. a pause counted from when the dispatcher took note
  // of a failure).
  bool AdvanceUntil(const std::function<bool()>& done, absl::Duration step) {
    return Eventually([&] {
      if (done()) return true;
      clock_.Advance(step);
      return false;
    });
  }

  FakeClock clock_;
  FakeDeliveryStore store_{&clock_};
  std::shared_ptr<FakeSink> sink_ = std::make_shared<FakeSink>();
  std::unique_ptr<Deliverer> deliverer_;
  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_F(DispatcherTest, DeliversEachKeysEventsInLogOrder) {
  std::map<std::string, std::vector<int64_t>> by_key;
  for (int i = 0; i < 8; ++i) {
    for (const std::string key : {"a", "b", "c"}) {
      by_key[key].push_back(Append(key + std::to_string(i), key));
    }
  }
  Start(/*workers=*/8);
  ASSERT_TRUE(sink_->WaitForDeliveries(24));
  ASSERT_TRUE(store_.WaitForOutcome(by_key["c"].back(), Outcome::kSucceeded));
  const auto calls = sink_->deliveries();
  ASSERT_EQ(calls.size(), 24u);
  for (const auto& [key, positions] : by_key) {
    EXPECT_EQ(PositionsOfKey(calls, key), positions) << key;
  }
}

TEST_F(DispatcherTest, NeverCallsTwoEventsOfOneKeyAtOnce) {
  for (int i = 0; i < 3; ++i) {
    Append("a" + std::to_string(i), "a");
    Append("b" + std::to_string(i), "b");
  }
  // Eight workers free, but each key's first call holds back its later events.
  ExpectInFlightAtGate(/*workers=*/8, /*in_flight=*/2);
  ASSERT_TRUE(sink_->WaitForDeliveries(6));
  EXPECT_EQ(sink_->max_in_flight_per_key(), 1);
}

TEST_F(DispatcherTest, RunsDifferentKeysConcurrentlyUpToWorkers) {
  std::vector<int64_t> positions;
  for (int i = 0; i < 6; ++i) {
    positions.push_back(Append("e" + std::to_string(i), "k" + std::to_string(i)));
  }
  ExpectInFlightAtGate(/*workers=*/4, /*in_flight=*/4);
  ASSERT_TRUE(sink_->WaitForDeliveries(6));
  for (int64_t p : positions) EXPECT_TRUE(store_.WaitForOutcome(p, Outcome::kSucceeded)) << p;
  EXPECT_EQ(sink_->max_in_flight(), 4);
}

TEST_F(DispatcherTest, RetryHoldsBackItsKeysLaterEventsUntilDue) {
  const int64_t first = Append("first", "k");
  const int64_t second = Append("second", "k");
  const int64_t other = Append("other", "j");
  sink_->Script(Key(first), {FakeSink::Retryable(), FakeSink::Succeeded()});
  // Backoff 10s with jitter: the retry is due 5 to 10 seconds later.
  Start(/*workers=*/4, /*strict=*/false, Retries(5, absl::Seconds(10)));
  ASSERT_TRUE(store_.WaitForOutcome(first, Outcome::kRetrying));
  ASSERT_TRUE(store_.WaitForOutcome(other, Outcome::kSucceeded));
  LetItRun();
  EXPECT_EQ(SortedPositions(sink_->deliveries()), (std::vector<int64_t>{first, other}));

  clock_.Advance(absl::Seconds(4));
  LetItRun();
  EXPECT_EQ(sink_->deliveries().size(), 2u);
  EXPECT_EQ(store_.Event(second).outcome, Outcome::kPending);

  clock_.Advance(absl::Seconds(7));
  ASSERT_TRUE(store_.WaitForOutcome(second, Outcome::kSucceeded));
  EXPECT_EQ(PositionsOfKey(sink_->deliveries(), "k"), (std::vector<int64_t>{first, first, second}));
  EXPECT_EQ(store_.Event(first).attempts, 2);
}

TEST_F(DispatcherTest, StrictRouteParksAKeyBehindAFailedEvent) {
  const int64_t failing = AppendFailing();
  const int64_t behind = Append("behind", "k");
  const int64_t other = Append("other", "j");
  Start(/*workers=*/4, /*strict=*/true);
  ASSERT_TRUE(store_.WaitForOutcome(failing, Outcome::kFailed));
  ASSERT_TRUE(store_.WaitForOutcome(other, Outcome::kSucceeded));
  clock_.Advance(absl::Seconds(30));
  LetItRun();
  EXPECT_EQ(SortedPositions(sink_->deliveries()), (std::vector<int64_t>{failing, other}));
  EXPECT_EQ(store_.Event(behind).outcome, Outcome::kPending);
  // Its claim, taken with the key's run, is given back on a later poll.
  EXPECT_TRUE(AdvanceUntil([&] { return !store_.ClaimOwner(behind).has_value(); },
                           absl::Milliseconds(100)));
}

TEST_F(DispatcherTest, StrictRouteUnparksOnceTheBlockerIsDelivered) {
  const int64_t failing = AppendFailing();
  const int64_t behind = Append("behind", "k");
  Start(/*workers=*/4, /*strict=*/true);
  ASSERT_TRUE(store_.WaitForOutcome(failing, Outcome::kFailed));
  store_.SetOutcome(failing, Outcome::kSucceeded);  // a replay delivered it
  // Parked keys are checked once a second.
  ASSERT_TRUE(AdvanceUntil([&] { return store_.Event(behind).outcome == Outcome::kSucceeded; },
                           absl::Seconds(1)));
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{failing, behind}));
}

TEST_F(DispatcherTest, NonStrictRouteGoesOnPastAFailedEvent) {
  const int64_t failing = AppendFailing();
  const int64_t next = Append("next", "k");
  Start(/*workers=*/4, /*strict=*/false);
  ASSERT_TRUE(store_.WaitForOutcome(next, Outcome::kSucceeded));
  EXPECT_EQ(store_.Event(failing).outcome, Outcome::kFailed);
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{failing, next}));
}

TEST_F(DispatcherTest, KeyWaitsWhileAnotherOwnerHoldsItsEvent) {
  const int64_t held = Append("held", "k");
  const int64_t after = Append("after", "k");
  const int64_t other = Append("other", "j");
  store_.HoldClaim(held, "replay-worker", absl::Seconds(30));
  Start(/*workers=*/4);
  ASSERT_TRUE(store_.WaitForOutcome(other, Outcome::kSucceeded));
  clock_.Advance(absl::Seconds(10));
  LetItRun();
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{other}));
  EXPECT_EQ(store_.ClaimOwner(held), "replay-worker");

  // The other owner's lease runs out: the key goes on, in order.
  clock_.Advance(absl::Seconds(21));
  ASSERT_TRUE(store_.WaitForOutcome(after, Outcome::kSucceeded));
  EXPECT_EQ(PositionsOfKey(sink_->deliveries(), "k"), (std::vector<int64_t>{held, after}));
  EXPECT_EQ(store_.Attempts(held).at(0).worker, kOwner);
}

TEST_F(DispatcherTest, StopLetsTheCallInFlightFinishAndReleasesEveryClaim) {
  const int64_t first = Append("first", "k");
  const int64_t second = Append("second", "k");
  const int64_t third = Append("third", "k");
  sink_->CloseGate();
  Start(/*workers=*/1);
  ASSERT_TRUE(sink_->WaitForInFlight(1));
  EXPECT_EQ(store_.ClaimOwner(first), kOwner);
  EXPECT_GT(store_.ClaimCount(kOwner), 0);

  std::thread stopper([&] { dispatcher_->Stop(); });
  LetItRun();
  sink_->OpenGate();
  stopper.join();
  EXPECT_EQ(store_.Event(first).outcome, Outcome::kSucceeded);
  EXPECT_EQ(store_.Event(second).outcome, Outcome::kPending);
  EXPECT_EQ(store_.Event(third).outcome, Outcome::kPending);
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{first}));
  EXPECT_EQ(store_.ClaimCount(), 0);
  EXPECT_EQ(store_.release_all_calls(), 1);
}

TEST_F(DispatcherTest, HeartbeatKeepsTheClaimOfALongCall) {
  const int64_t slow = Append("slow", "k");
  sink_->CloseGate();
  Start(/*workers=*/1);
  ASSERT_TRUE(sink_->WaitForInFlight(1));
  // A minute and a half with a 60 s lease: the heartbeat (every 15 s) renews it.
  for (int i = 0; i < 9; ++i) {
    clock_.Advance(absl::Seconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto taken = store_.TryClaim(slow, absl::Time(), "replay-worker", absl::Seconds(60));
  ASSERT_TRUE(taken.ok());
  EXPECT_FALSE(taken->has_value());
  EXPECT_EQ(store_.ClaimOwner(slow), kOwner);
  sink_->OpenGate();
  ASSERT_TRUE(store_.WaitForOutcome(slow, Outcome::kSucceeded));
}

TEST(HeartbeatIntervalTest, IsAQuarterOfTheLease) {
  EXPECT_EQ(HeartbeatInterval(absl::Seconds(4)), absl::Seconds(1));
  EXPECT_EQ(HeartbeatInterval(absl::Seconds(60)), absl::Seconds(15));
}

TEST_F(DispatcherTest, KeysNextEventWaitsForThePreviousRecordToCommit) {
  const int64_t first = Append("first", "k");
  const int64_t second = Append("second", "k");
  store_.PauseRecords();
  Start(/*workers=*/4);
  ASSERT_TRUE(Eventually([&] { return store_.PendingRecords() >= 1; }));
  LetItRun();
  // The call answered but its record has not committed: the next event of
  // the key must not overtake it.
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{first}));
  EXPECT_EQ(store_.PendingRecords(), 1);
  store_.ResumeRecords();
  ASSERT_TRUE(store_.WaitForOutcome(second, Outcome::kSucceeded));
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{first, second}));
}

TEST_F(DispatcherTest, UnrecordedAttemptIsDeliveredAgainBeforeTheKeysNextEvent) {
  const int64_t first = Append("first", "k");
  const int64_t second = Append("second", "k");
  store_.SetRecordError(absl::UnavailableError("database down"));
  Start(/*workers=*/4);
  ASSERT_TRUE(Eventually([&] { return store_.failed_records() == 1; }));
  LetItRun();
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{first}));
  store_.SetRecordError(absl::OkStatus());
  // Tried again after the pause for unrecorded attempts (20 poll intervals).
  ASSERT_TRUE(AdvanceUntil([&] { return store_.Event(second).outcome == Outcome::kSucceeded; },
                           absl::Seconds(1)));
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{first, first, second}));
}

// --- The deliverer alone ---

class DelivererTest : public ::testing::Test {
 protected:
  Deliverer Make(RetryPolicy retry) {
    Route route{"orders-route", sink_->name(), false, retry, sink_};
    return Deliverer(&store_, {{kSource, route}}, nullptr, &clock_);
  }
  // Claims the event as the replay runner does and delivers it once.
  absl::StatusOr<DeliveryReport> DeliverOnce(Deliverer& deliverer, int64_t position) {
    auto claimed = store_.TryClaim(position, absl::Time(), kOwner, absl::Seconds(60));
    EXPECT_TRUE(claimed.ok() && claimed->has_value());
    DeliveryContext ctx;
    ctx.trigger = "live";
    ctx.claim_owner = kOwner;
    return deliverer.DeliverOne(**claimed, ctx);
  }

  FakeClock clock_;
  FakeDeliveryStore store_{&clock_};
  std::shared_ptr<FakeSink> sink_ = std::make_shared<FakeSink>();
};

TEST_F(DelivererTest, FailedLookupIsARetryableAttemptWithoutACreateCall) {
  sink_->EnableLookup(absl::UnavailableError("lookup failed: connection refused"));
  Deliverer deliverer = Make(Retries(3, absl::Seconds(1)));
  const int64_t e = store_.Append(kSource, "e1", "k").position;
  auto report = DeliverOnce(deliverer, e);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->outcome, Outcome::kRetrying);
  EXPECT_EQ(report->attempt, 1);
  EXPECT_EQ(report->http_status, std::nullopt);
  EXPECT_EQ(report->error, "lookup failed: connection refused");
  EXPECT_EQ(sink_->lookup_count(), 1);
  EXPECT_TRUE(sink_->deliveries().empty());
  EXPECT_EQ(store_.Event(e).attempts, 1);
}

TEST_F(DelivererTest, FailedLookupsUseUpMaxAttempts) {
  sink_->EnableLookup(absl::UnavailableError("lookup failed: timeout"));
  Deliverer deliverer = Make(Retries(3, absl::Seconds(1)));
  const int64_t e = store_.Append(kSource, "e1", "k").position;
  std::vector<Outcome> outcomes;
  for (int i = 0; i < 3; ++i) {
    auto report = DeliverOnce(deliverer, e);
    ASSERT_TRUE(report.ok()) << report.status();
    outcomes.push_back(report->outcome);
    clock_.Advance(absl::Seconds(2));
  }
  EXPECT_EQ(outcomes,
            (std::vector<Outcome>{Outcome::kRetrying, Outcome::kRetrying, Outcome::kFailed}));
  EXPECT_EQ(store_.Event(e).last_error, "lookup failed: timeout (gave up after 3 attempts)");
  EXPECT_EQ(store_.Attempts(e).size(), 3u);
  EXPECT_TRUE(sink_->deliveries().empty());
}

TEST_F(DelivererTest, LookupThatFindsTheRecordSkipsTheCreateCall) {
  sink_->EnableLookup(DownstreamRecord{.id = "rec-9", .version = "v3"});
  Deliverer deliverer = Make(Retries(3, absl::Seconds(1)));
  const int64_t e = store_.Append(kSource, "e1", "k").position;
  auto report = DeliverOnce(deliverer, e);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->action, CheckDecision::Action::kSkipFoundDownstream);
  EXPECT_EQ(report->outcome, Outcome::kAlreadyProcessed);
  EXPECT_EQ(store_.Event(e).target_record_id, "rec-9");
  EXPECT_EQ(store_.Event(e).target_version, "v3");
  EXPECT_TRUE(sink_->deliveries().empty());
}

TEST_F(DelivererTest, TimesTheAttemptWithItsClock) {
  Deliverer deliverer = Make(Retries(3, absl::Seconds(1)));
  const int64_t e = store_.Append(kSource, "e1", "k").position;
  const absl::Time now = clock_.Now();
  ASSERT_TRUE(DeliverOnce(deliverer, e).ok());
  ASSERT_EQ(store_.Attempts(e).size(), 1u);
  EXPECT_EQ(store_.Attempts(e)[0].started_at, now);
  EXPECT_EQ(store_.Attempts(e)[0].duration_ms, 0.0);
}

}  // namespace
}  // namespace replayd
