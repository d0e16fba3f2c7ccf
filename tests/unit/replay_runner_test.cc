// The replay runner's logic against in-memory fakes (no Postgres, no HTTP):
// a job's counts and final state, per-key exclusion and order, cancel, and
// pacing in simulated time.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server/common/clock.h"
#include "server/delivery/deliverer.h"
#include "server/replay/job_run.h"
#include "server/replay/limits.h"
#include "server/replay/runner.h"
#include "tests/support/fake_delivery_store.h"
#include "tests/support/fake_replay_store.h"
#include "tests/support/fake_sink.h"

namespace replayd {

// Lets a failed EXPECT_EQ on counters show them.
void PrintTo(const ReplayCounters& c, std::ostream* os) {
  *os << "{total " << c.total << ", processed " << c.processed << ", delivered " << c.delivered
      << ", skipped " << c.skipped << ", failed " << c.failed << ", held_by_key " << c.held_by_key
      << "}";
}

namespace {

using testing::FakeDeliveryStore;
using testing::FakeReplayStore;
using testing::FakeSink;

constexpr char kJobId[] = "r-1";
constexpr char kSource[] = "orders";

// Sums the waits a replay reports, by limiter, and notes when the last one
// ends (on `clock`).
class RecordingObserver final : public ReplayObserver {
 public:
  explicit RecordingObserver(const Clock* clock) : clock_(clock) {}

  void OnRateLimitWait(const std::string& limiter, absl::Duration wait) override {
    std::lock_guard lock(mu_);
    waits_[limiter] += wait;
    last_wait_ends_ = clock_->Now() + wait;
  }
  void OnReplayed(const std::string& result) override {
    std::lock_guard lock(mu_);
    ++results_[result];
  }
  absl::Duration Waited(const std::string& limiter) {
    std::lock_guard lock(mu_);
    return waits_[limiter];
  }
  int Results(const std::string& result) {
    std::lock_guard lock(mu_);
    return results_[result];
  }
  absl::Time LastWaitEnds() {
    std::lock_guard lock(mu_);
    return last_wait_ends_;
  }

 private:
  const Clock* clock_;
  std::mutex mu_;
  absl::Time last_wait_ends_;
  std::map<std::string, absl::Duration> waits_;
  std::map<std::string, int> results_;
};

class ReplayRunnerTest : public ::testing::Test {
 protected:
  ReplayRunnerTest() {
    SinkConfig sink;
    sink.name = "downstream";
    sink.replay_rate_budget = 1e6;
    config_.sinks.push_back(sink);
    routes_[kSource] = Route{"orders-route", "downstream", false, RetryPolicy{}, sink_};
    deliverer_ = std::make_unique<Deliverer>(&delivery_store_, routes_, nullptr, &clock_);
    lookup_ = [this](const std::string& source) { return deliverer_->RouteFor(source); };
    options_.instance = "test-runner";
    options_.clock = &clock_;
    options_.observer = &observer_;
  }

  // Appends `n` events of kSource, the i-th with key keys[i % keys.size()]
  // (no key when `keys` is empty); returns their positions.
  std::vector<int64_t> Append(int n, const std::vector<std::string>& keys = {},
                              const std::string& source = kSource) {
    std::vector<int64_t> positions;
    for (int i = 0; i < n; ++i) {
      std::string key = keys.empty() ? "" : keys[i % keys.size()];
      positions.push_back(
          delivery_store_.Append(source, absl::StrCat(source, "-", next_id_++), key).position);
      clock_.Advance(absl::Milliseconds(1));  // distinct ingested_at, like a real log
    }
    return positions;
  }

  // Makes the job over every event appended so far, as claimed by
  // options_.instance, with the window copied into the replay store.
  ReplayJob MakeJob(double rate, int burst = 0) {
    std::vector<StoredEvent> events;
    for (int64_t p = 1; p < next_position(); ++p) events.push_back(delivery_store_.Event(p));
    replay_store_.AddEvents(events);
    ReplayJob job;
    job.id = kJobId;
    job.state = ReplayState::kRunning;
    job.spec.window = {clock_.Now() - absl::Hours(1), clock_.Now() + absl::Hours(1), {}};
    job.spec.outcomes = {Outcome::kPending, Outcome::kRetrying, Outcome::kFailed};
    job.spec.rate = rate;
    job.spec.burst = burst;
    job.counters.total = static_cast<int64_t>(events.size());
    job.owner = options_.instance;
    replay_store_.AddJob(job);
    return job;
  }

  // The job over every event appended so far, run one delivery at a time
  // into a sink that holds each delivery until its gate opens.
  ReplayJob GatedJob() {
    clock_.set_auto_advance(true);
    options_.max_in_flight = 1;
    ReplayJob job = MakeJob(/*rate=*/1000);
    sink_->CloseGate();
    return job;
  }

  // Runs a job over 20 new events, one delivery at a time, against a downstream
  // answering 503 to all, with a breaker that trips after 3 failures in a row.
  // Returns the events' positions.
  std::vector<int64_t> RunUntilTheBreakerPauses() {
    clock_.set_auto_advance(true);
    options_.max_in_flight = 1;
    std::vector<int64_t> p = Append(20);
    sink_->SetDefault(FakeSink::Retryable(503));
    ReplayJob job = MakeJob(/*rate=*/1000);
    job.spec.breaker = {3, 0, 0};
    replay_store_.AddJob(job);
    RunJob(job);
    return p;
  }

  int64_t next_position() const { return next_id_; }

  // Saves plan `id` of these events, each "deliver" unless in `skipped`
  // (then "outcome_not_selected").
  void SavePlan(const std::string& id, const std::vector<int64_t>& positions,
                const std::set<int64_t>& skipped = {}) {
    std::vector<PlanEntry> entries;
    for (int64_t p : positions) {
      entries.push_back({p, delivery_store_.Event(p).ingested_at,
                         skipped.count(p) ? "outcome_not_selected" : "deliver"});
    }
    ASSERT_TRUE(replay_store_.AddPlanEvents(id, 0, entries).ok());
  }
  // Runs `job` as a replay of plan `id` of `total` events; expects it to
  // complete with these counts and returns it as it ended.
  ReplayJob RunPlanJob(ReplayJob job, const std::string& id, int64_t total, int64_t delivered,
                       int64_t changed) {
    job.spec.plan_id = id;
    job.counters.total = total;
    replay_store_.AddJob(job);
    RunJob(job);
    ReplayJob done = replay_store_.Job(kJobId);
    EXPECT_EQ(done.state, ReplayState::kCompleted);
    EXPECT_EQ(done.counters.processed, total);
    EXPECT_EQ(done.counters.delivered, delivered);
    EXPECT_EQ(done.counters.skipped, total - delivered);
    EXPECT_EQ(done.counters.changed_since_plan, changed);
    return done;
  }

  JobRunEnv Env(ReplayRunner* runner) {
    return JobRunEnv{
        &replay_store_,   &delivery_store_,
        deliverer_.get(), &lookup_,
        &options_,        [runner](const std::string& sink) { return runner->SinkBucket(sink); },
        &shutdown_};
  }
  // A runner that is never started: the sink buckets' owner.
  std::unique_ptr<ReplayRunner> BucketOwner() {
    return std::make_unique<ReplayRunner>(&replay_store_, &delivery_store_, deliverer_.get(),
                                          lookup_, &config_, options_);
  }

  // Runs the job to its end on this thread.
  void RunJob(ReplayJob job) {
    auto owner = BucketOwner();
    JobRun run(Env(owner.get()), std::move(job), &cancel_);
    run.Run();
  }

  FakeClock clock_;
  FakeDeliveryStore delivery_store_{&clock_};
  std::shared_ptr<FakeSink> sink_ = std::make_shared<FakeSink>("downstream");
  std::map<std::string, Route> routes_;
  std::unique_ptr<Deliverer> deliverer_;
  RouteLookup lookup_;
  FakeReplayStore replay_store_;
  Config config_;
  RecordingObserver observer_{&clock_};
  ReplayRunnerOptions options_;
  std::atomic<bool> shutdown_{false};
  std::atomic<bool> cancel_{false};
  int64_t next_id_ = 1;  // positions and event ids both count from 1
};

// Real-time bound for waits on other threads.
bool WaitUntilTrue(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time until = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST_F(ReplayRunnerTest, JobWithAnUndeliverableEventEndsFailedWithExactCounts) {
  clock_.set_auto_advance(true);
  std::vector<int64_t> p = Append(10);
  std::vector<int64_t> unrouted = Append(2, {}, "payments");  // no route: skipped
  delivery_store_.SetOutcome(p[3], Outcome::kSucceeded);      // delivered already: skipped
  sink_->Script(absl::StrCat(kSource, ":", kSource, "-", p[5]), {FakeSink::Final(422)});
  RunJob(MakeJob(/*rate=*/1000));

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kFailed);
  EXPECT_EQ(done.counters, (ReplayCounters{.total = 12, .processed = 12, .delivered = 8,
                                            .skipped = 3, .failed = 1}));
  EXPECT_EQ(done.last_error, "orders/orders-6: HTTP 422");
  ASSERT_TRUE(done.cursor.has_value());
  EXPECT_EQ(done.cursor->position, unrouted.back());
  EXPECT_TRUE(done.owner.empty());
  EXPECT_EQ(sink_->deliveries().size(), 9u);
  for (const FakeSink::Call& call : sink_->deliveries()) EXPECT_EQ(call.replay_id, kJobId);
  EXPECT_EQ(delivery_store_.Event(p[0]).outcome, Outcome::kSucceeded);
  EXPECT_EQ(delivery_store_.Event(p[5]).outcome, Outcome::kFailed);
  EXPECT_EQ(delivery_store_.ClaimCount(), 0);

  std::vector<AuditEntry> audit = replay_store_.AuditTrail();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "failed");
  EXPECT_EQ(audit[0].actor, "test-runner");
  EXPECT_EQ(audit[0].detail_json,
            R"({"total":12,"processed":12,"delivered":8,"skipped":3,"failed":1,"held_by_key":0})");
  EXPECT_EQ(observer_.Results("delivered"), 8);
  EXPECT_EQ(observer_.Results("skipped"), 3);
  EXPECT_EQ(observer_.Results("failed"), 1);
}

TEST_F(ReplayRunnerTest, EmptyWindowCompletesWithNothingDone) {
  clock_.set_auto_advance(true);
  RunJob(MakeJob(/*rate=*/100));
  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters.processed, 0);
  EXPECT_FALSE(done.cursor.has_value());
  EXPECT_TRUE(sink_->deliveries().empty());
}

TEST_F(ReplayRunnerTest, ResumesAfterTheCheckpointedCursor) {
  clock_.set_auto_advance(true);
  std::vector<int64_t> p = Append(6);
  ReplayJob job = MakeJob(/*rate=*/1000);
  job.cursor = ReplayCursor{delivery_store_.Event(p[2]).ingested_at, p[2]};
  job.counters.processed = 3;
  job.counters.delivered = 3;
  RunJob(job);

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.counters, (ReplayCounters{.total = 6, .processed = 6, .delivered = 6}));
  std::vector<int64_t> delivered;
  for (const FakeSink::Call& call : sink_->deliveries()) delivered.push_back(call.position);
  // Events without a key go in parallel: which ones, not in what order.
  std::sort(delivered.begin(), delivered.end());
  EXPECT_EQ(delivered, (std::vector<int64_t>{p[3], p[4], p[5]}));
}

TEST_F(ReplayRunnerTest, OneKeyIsNeverInFlightTwiceAndGoesInWindowOrder) {
  clock_.set_auto_advance(true);
  options_.max_in_flight = 8;
  Append(24, {"a", "b", "c"});
  ReplayJob job = MakeJob(/*rate=*/1e6, /*burst=*/1000000);
  sink_->CloseGate();
  std::thread runner([&] { RunJob(job); });
  // One event of each key reaches the sink; the fourth (key a again) waits.
  EXPECT_TRUE(sink_->WaitForInFlight(3));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(sink_->in_flight(), 3);
  sink_->OpenGate();
  runner.join();

  EXPECT_EQ(replay_store_.Job(kJobId).counters.delivered, 24);
  EXPECT_EQ(sink_->max_in_flight_per_key(), 1);
  std::map<std::string, std::vector<int64_t>> by_key;
  for (const FakeSink::Call& call : sink_->deliveries()) by_key[call.key].push_back(call.position);
  ASSERT_EQ(by_key.size(), 3u);
  for (const auto& [key, positions] : by_key) {
    EXPECT_EQ(positions.size(), 8u) << key;
    EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end())) << key;
  }
}

TEST_F(ReplayRunnerTest, OneKeysEventsFollowEachOtherWithoutPolling) {
  // On the real clock: the next event of a key goes as soon as the one
  // before it completes, not at the next poll of the dispatcher.
  options_.clock = &SystemClock::Get();
  constexpr int kEvents = 50;
  Append(kEvents, {"only"});
  ReplayJob job = MakeJob(/*rate=*/1e6, /*burst=*/1000000);
  const absl::Time start = absl::Now();
  RunJob(job);
  const absl::Duration took = absl::Now() - start;

  EXPECT_EQ(replay_store_.Job(kJobId).counters.delivered, kEvents);
  EXPECT_EQ(sink_->max_in_flight_per_key(), 1);
  // Polling every 10 ms would take at least 490 ms.
  EXPECT_LT(took, absl::Milliseconds(250));
}

TEST_F(ReplayRunnerTest, CancelLetsTheInFlightDeliveryFinishAndDispatchesNoMore) {
  std::vector<int64_t> p = Append(10);
  ReplayJob job = GatedJob();
  std::thread runner([&] { RunJob(job); });
  EXPECT_TRUE(sink_->WaitForInFlight(1));
  cancel_ = true;
  sink_->OpenGate();
  runner.join();

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kCancelled);
  EXPECT_EQ(done.counters.processed, 1);
  EXPECT_EQ(done.counters.delivered, 1);
  ASSERT_TRUE(done.cursor.has_value());
  EXPECT_EQ(done.cursor->position, p[0]);
  ASSERT_EQ(sink_->deliveries().size(), 1u);
  EXPECT_EQ(sink_->deliveries()[0].position, p[0]);
  EXPECT_EQ(delivery_store_.Event(p[1]).outcome, Outcome::kPending);
  EXPECT_EQ(delivery_store_.ClaimCount(), 0);
  ASSERT_EQ(replay_store_.AuditTrail().size(), 1u);
  EXPECT_EQ(replay_store_.AuditTrail()[0].action, "cancelled");
}

TEST_F(ReplayRunnerTest, ReplayRatePacesDispatchInSimulatedTime) {
  clock_.set_auto_advance(true);
  constexpr int kEvents = 50;
  constexpr double kRate = 10;
  Append(kEvents);
  ReplayJob job = MakeJob(kRate, MinBurst(kRate));
  const absl::Time start = clock_.Now();
  RunJob(job);

  EXPECT_EQ(replay_store_.Job(kJobId).counters.delivered, kEvents);
  // The bucket starts with one token: the first event goes at once, each
  // other one 1/R after the one before, so the last one goes (N-1)/R after
  // the start. (The drain after it is not measured: with auto_advance every
  // poll of the in-flight count moves the fake clock on.)
  const absl::Duration paced = absl::Seconds((kEvents - 1) / kRate);
  EXPECT_LE(absl::AbsDuration(observer_.Waited("replay") - paced), absl::Milliseconds(1));
  EXPECT_LE(absl::AbsDuration((observer_.LastWaitEnds() - start) - paced), absl::Milliseconds(1));
  EXPECT_EQ(observer_.Waited("sink:downstream"), absl::ZeroDuration());
  EXPECT_GE(clock_.Now() - start, paced);
}

TEST_F(ReplayRunnerTest, SinkBudgetPacesAReplayAskingForMore) {
  clock_.set_auto_advance(true);
  config_.sinks[0].replay_rate_budget = 20;
  constexpr int kEvents = 41;
  Append(kEvents);
  ReplayJob job = MakeJob(/*rate=*/1000, /*burst=*/1000);
  const absl::Time start = clock_.Now();
  RunJob(job);

  EXPECT_EQ(replay_store_.Job(kJobId).counters.delivered, kEvents);
  // The sink's bucket also starts with one token: 40 more at 20/s.
  const absl::Duration paced = absl::Seconds(2);
  EXPECT_LE(absl::AbsDuration(observer_.Waited("sink:downstream") - paced), absl::Milliseconds(1));
  EXPECT_GE(clock_.Now() - start, paced);
}

TEST_F(ReplayRunnerTest, RunnerClaimsAJobAndCancelStopsIt) {
  // A clock that stands still: the only event the job may send is the one
  // its bucket starts with, so dispatch is held until the cancel lands.
  std::vector<int64_t> p = Append(5);
  ReplayJob job = MakeJob(/*rate=*/1);
  job.owner.clear();
  job.state = ReplayState::kPending;
  replay_store_.AddJob(job);
  sink_->CloseGate();
  ReplayRunner runner(&replay_store_, &delivery_store_, deliverer_.get(), lookup_, &config_,
                      options_);
  runner.Start();
  runner.Wake();
  EXPECT_TRUE(sink_->WaitForInFlight(1));
  EXPECT_EQ(replay_store_.Job(kJobId).owner, "test-runner");
  runner.Cancel(kJobId);
  sink_->OpenGate();
  ASSERT_TRUE(WaitUntilTrue([&] { return IsTerminal(replay_store_.Job(kJobId).state); }));
  runner.Stop();

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kCancelled);
  EXPECT_EQ(done.counters.delivered, 1);
  EXPECT_EQ(sink_->deliveries().size(), 1u);
  EXPECT_EQ(sink_->deliveries()[0].position, p[0]);
}

TEST_F(ReplayRunnerTest, StopPausesTheJobAndReleasesItsLease) {
  std::vector<int64_t> p = Append(5);
  ReplayJob job = MakeJob(/*rate=*/1);
  job.owner.clear();
  replay_store_.AddJob(job);
  ReplayRunner runner(&replay_store_, &delivery_store_, deliverer_.get(), lookup_, &config_,
                      options_);
  runner.Start();
  runner.Wake();
  ASSERT_TRUE(sink_->WaitForDeliveries(1));
  runner.Stop();

  ReplayJob paused = replay_store_.Job(kJobId);
  EXPECT_EQ(paused.state, ReplayState::kRunning);
  EXPECT_TRUE(paused.owner.empty());
  EXPECT_EQ(paused.counters.processed, 1);
  ASSERT_TRUE(paused.cursor.has_value());
  EXPECT_EQ(paused.cursor->position, p[0]);
  EXPECT_TRUE(replay_store_.AuditTrail().empty());
}

TEST_F(ReplayRunnerTest, JobWhoseEventsAllSucceedCompletes) {
  clock_.set_auto_advance(true);
  Append(4);
  RunJob(MakeJob(/*rate=*/1000));
  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters.delivered, 4);
  ASSERT_EQ(replay_store_.AuditTrail().size(), 1u);
  EXPECT_EQ(replay_store_.AuditTrail()[0].action, "completed");
}

TEST_F(ReplayRunnerTest, BreakerPausesAfterConsecutiveFailuresAndKeepsTheBurstToRetry) {
  std::vector<int64_t> p = RunUntilTheBreakerPauses();

  ReplayJob paused = replay_store_.Job(kJobId);
  EXPECT_EQ(paused.state, ReplayState::kPaused);
  EXPECT_TRUE(paused.owner.empty());
  EXPECT_EQ(sink_->deliveries().size(), 3u);
  // The burst is to be retried, not counted failed.
  EXPECT_EQ(paused.counters.processed, 0);
  EXPECT_EQ(paused.counters.failed, 0);
  ASSERT_EQ(paused.retry.size(), 3u);
  EXPECT_EQ(paused.retry[0].position, p[0]);
  EXPECT_EQ(paused.retry[2].position, p[2]);
  EXPECT_EQ(paused.last_error,
            "circuit breaker: 3 deliveries failed in a row; paused until resumed");
  std::vector<AuditEntry> audit = replay_store_.AuditTrail();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "paused");
  EXPECT_EQ(audit[0].reason, paused.last_error);
}

TEST_F(ReplayRunnerTest, ResumeAfterTheBreakerRetriesTheBurstFirstAndDeliversEveryEventOnce) {
  std::vector<int64_t> p = RunUntilTheBreakerPauses();
  ASSERT_EQ(replay_store_.Job(kJobId).state, ReplayState::kPaused);

  sink_->SetDefault(FakeSink::Succeeded());
  ASSERT_TRUE(
      replay_store_
          .RequestResume(kJobId, 0, AuditEntry{"op", "resume", kJobId, "ok", "{}", absl::Now()})
          .ok());
  auto claimed = replay_store_.ClaimJob(options_.instance, absl::Seconds(10), {});
  ASSERT_TRUE(claimed.ok() && claimed->has_value());
  const size_t failed_calls = sink_->deliveries().size();
  RunJob(**claimed);

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters, (ReplayCounters{.total = 20, .processed = 20, .delivered = 20}));
  EXPECT_TRUE(done.retry.empty());
  std::vector<FakeSink::Call> calls = sink_->deliveries();
  ASSERT_EQ(calls.size(), failed_calls + 20);
  // The burst goes first, in log order; then the window from its cursor.
  EXPECT_EQ(calls[failed_calls].position, p[0]);
  EXPECT_EQ(calls[failed_calls + 1].position, p[1]);
  EXPECT_EQ(calls[failed_calls + 2].position, p[2]);
  std::map<int64_t, int> succeeded;
  for (size_t i = failed_calls; i < calls.size(); ++i) ++succeeded[calls[i].position];
  EXPECT_EQ(succeeded.size(), 20u);
  for (const auto& [position, n] : succeeded) EXPECT_EQ(n, 1) << position;
}

TEST_F(ReplayRunnerTest, BreakerOffLetsEveryEventFailAndTheJobEndsFailed) {
  clock_.set_auto_advance(true);
  Append(30);
  sink_->SetDefault(FakeSink::Retryable(503));
  RunJob(MakeJob(/*rate=*/1000));  // MakeJob's breaker is off
  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kFailed);
  EXPECT_EQ(done.counters, (ReplayCounters{.total = 30, .processed = 30, .failed = 30}));
  EXPECT_EQ(done.last_error.rfind("orders/orders-", 0), 0u) << done.last_error;
}

TEST_F(ReplayRunnerTest, PauseFlagParksTheJobWithItsCursorAndSendsNothingMore) {
  std::vector<int64_t> p = Append(10);
  ReplayJob job = GatedJob();
  auto owner = BucketOwner();
  std::atomic<bool> pause{false};
  std::thread t([&] {
    JobRun run(Env(owner.get()), job, &cancel_, &pause);
    run.Run();
  });
  ASSERT_TRUE(sink_->WaitForInFlight(1));
  ASSERT_TRUE(replay_store_
                  .RequestPause(kJobId, AuditEntry{"op", "pause", kJobId, "why", "{}", absl::Now()})
                  .ok());
  pause = true;
  sink_->OpenGate();
  t.join();

  ReplayJob paused = replay_store_.Job(kJobId);
  EXPECT_EQ(paused.state, ReplayState::kPaused);
  EXPECT_TRUE(paused.owner.empty());
  EXPECT_EQ(sink_->deliveries().size(), 1u);
  EXPECT_EQ(paused.counters.delivered, 1);
  ASSERT_TRUE(paused.cursor.has_value());
  EXPECT_LE(paused.cursor->position, p[1]);
}

TEST_F(ReplayRunnerTest, StrictKeyIsHeldBehindItsFailedEventAndCountedHeldByKey) {
  clock_.set_auto_advance(true);
  routes_[kSource].strict_order = true;
  deliverer_ = std::make_unique<Deliverer>(&delivery_store_, routes_, nullptr, &clock_);
  std::vector<int64_t> p = Append(3, {"K", "K", "L"});
  delivery_store_.SetOutcome(p[0], Outcome::kFailed);
  replay_store_.SetFailed(delivery_store_.Event(p[0]), true);
  sink_->Script(absl::StrCat(kSource, ":", kSource, "-", p[0]), {FakeSink::Final(422)});
  RunJob(MakeJob(/*rate=*/1000));

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kFailed);
  EXPECT_EQ(done.counters, (ReplayCounters{.total = 3, .processed = 3, .delivered = 1,
                                            .skipped = 1, .failed = 1, .held_by_key = 1}));
  std::vector<int64_t> sent;
  for (const FakeSink::Call& call : sink_->deliveries()) sent.push_back(call.position);
  std::sort(sent.begin(), sent.end());
  EXPECT_EQ(sent, (std::vector<int64_t>{p[0], p[2]}));
}

TEST_F(ReplayRunnerTest, NonStrictKeyIsNotHeldBehindItsFailedEvent) {
  clock_.set_auto_advance(true);
  std::vector<int64_t> p = Append(2, {"K"});
  replay_store_.SetFailed(delivery_store_.Event(p[0]), true);
  sink_->Script(absl::StrCat(kSource, ":", kSource, "-", p[0]), {FakeSink::Final(422)});
  RunJob(MakeJob(/*rate=*/1000));
  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.counters.held_by_key, 0);
  EXPECT_EQ(done.counters.delivered, 1);
  EXPECT_EQ(sink_->deliveries().size(), 2u);
}

// A plan of the first five events: four to deliver, one the dry run skipped.
// Three more events land in the window after it; one of the four is
// delivered meanwhile.
TEST_F(ReplayRunnerTest, PlanJobReplaysExactlyThePlansEvents) {
  clock_.set_auto_advance(true);
  options_.page_size = 2;  // the plan is read across pages
  std::vector<int64_t> planned = Append(5);
  SavePlan("pl-1", planned, {planned[3]});
  std::vector<int64_t> later = Append(3);
  ReplayJob job = MakeJob(/*rate=*/1000);
  // A live retry delivered it after the page was read: the claim finds it so.
  delivery_store_.SetOutcome(planned[1], Outcome::kSucceeded);
  ReplayJob done = RunPlanJob(job, "pl-1", 5, /*delivered=*/3, /*changed=*/1);

  ASSERT_TRUE(done.cursor.has_value());
  EXPECT_EQ(done.cursor->position, planned[4]);
  std::set<int64_t> sent;
  for (const FakeSink::Call& call : sink_->deliveries()) sent.insert(call.position);
  EXPECT_EQ(sent, (std::set<int64_t>{planned[0], planned[2], planned[4]}));
  EXPECT_EQ(sink_->deliveries().size(), 3u);
  EXPECT_EQ(delivery_store_.Event(planned[3]).outcome, Outcome::kPending);
  for (int64_t p : later) EXPECT_EQ(delivery_store_.Event(p).outcome, Outcome::kPending);
  std::vector<AuditEntry> audit = replay_store_.AuditTrail();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].detail_json,
            R"({"total":5,"processed":5,"delivered":3,"skipped":2,"failed":0,"held_by_key":0,)"
            R"("changed_since_plan":1})");
}

// The plan's page already shows the event delivered: skipped before any
// claim, and counted as changed.
TEST_F(ReplayRunnerTest, PlanEventReadDeliveredIsSkippedAsChanged) {
  clock_.set_auto_advance(true);
  std::vector<int64_t> planned = Append(2);
  ReplayJob job = MakeJob(/*rate=*/1000);
  SavePlan("pl-2", planned);
  replay_store_.SetOutcome(planned[0], Outcome::kSucceeded);  // the page shows it delivered
  RunPlanJob(job, "pl-2", 2, /*delivered=*/1, /*changed=*/1);

  ASSERT_EQ(sink_->deliveries().size(), 1u);
  EXPECT_EQ(sink_->deliveries()[0].position, planned[1]);
}

// A second sink, known to the deliverer but named by no route.
std::shared_ptr<FakeSink> AddUnroutedSink(std::unique_ptr<Deliverer>& deliverer,
                                          FakeDeliveryStore* store,
                                          const std::map<std::string, Route>& routes,
                                          const Clock* clock) {
  auto second = std::make_shared<FakeSink>("second");
  deliverer = std::make_unique<Deliverer>(store, routes, SinkTable{{"second", second}}, nullptr,
                                          clock);
  return second;
}

TEST_F(ReplayRunnerTest, SinkOverrideSendsOnlyToTheNamedSinkAndRecordsItsPolicy) {
  clock_.set_auto_advance(true);
  std::shared_ptr<FakeSink> second = AddUnroutedSink(deliverer_, &delivery_store_, routes_, &clock_);
  std::vector<int64_t> p = Append(3);
  ReplayJob job = MakeJob(/*rate=*/1000);
  job.spec.sink = "second";
  job.spec.retry.max_attempts = 4;
  job.spec.retry.base_delay = absl::Milliseconds(5);
  replay_store_.AddJob(job);
  RunJob(job);

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters.delivered, 3);
  EXPECT_TRUE(sink_->calls().empty());
  EXPECT_EQ(second->deliveries().size(), 3u);
  std::vector<AttemptRecord> attempts = delivery_store_.Attempts(p[0]);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].route, "orders-route");
  EXPECT_EQ(attempts[0].sink, "second");
  EXPECT_EQ(attempts[0].retry.max_attempts, 4);
  EXPECT_EQ(attempts[0].retry.base_delay, absl::Milliseconds(5));
  EXPECT_EQ(attempts[0].retry.max_delay, RetryPolicy{}.max_delay);  // the route's
}

TEST_F(ReplayRunnerTest, OwnRetryPolicyRetriesAnEventUntilItIsDelivered) {
  clock_.set_auto_advance(true);
  std::vector<int64_t> p = Append(2);
  sink_->Script(absl::StrCat(kSource, ":", kSource, "-", p[1]),
                {FakeSink::Retryable(), FakeSink::Retryable(), FakeSink::Succeeded()});
  ReplayJob job = MakeJob(/*rate=*/1000);
  job.spec.retry = {3, absl::Milliseconds(10), absl::Milliseconds(20)};
  replay_store_.AddJob(job);
  RunJob(job);

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters.delivered, 2);
  EXPECT_EQ(done.counters.failed, 0);
  std::vector<AttemptRecord> attempts = delivery_store_.Attempts(p[1]);
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_EQ(attempts[0].outcome, Outcome::kRetrying);
  EXPECT_EQ(attempts[2].outcome, Outcome::kSucceeded);
  for (const AttemptRecord& a : attempts) {
    EXPECT_EQ(a.sink, "downstream");
    EXPECT_EQ(a.retry.max_attempts, 3);
    EXPECT_EQ(a.retry.max_delay, absl::Milliseconds(20));
  }
  EXPECT_EQ(delivery_store_.ClaimCount(), 0);
}

TEST_F(ReplayRunnerTest, OwnRetryPolicyThatRunsOutLeavesTheEventFailedNotRetrying) {
  clock_.set_auto_advance(true);
  std::vector<int64_t> p = Append(1);
  sink_->Script(absl::StrCat(kSource, ":", kSource, "-", p[0]), {FakeSink::Retryable()});
  ReplayJob job = MakeJob(/*rate=*/1000);
  job.spec.retry.max_attempts = 2;
  replay_store_.AddJob(job);
  RunJob(job);

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kFailed);
  EXPECT_EQ(done.counters.failed, 1);
  EXPECT_EQ(sink_->deliveries().size(), 2u);
  EXPECT_EQ(delivery_store_.Event(p[0]).outcome, Outcome::kFailed);
}

TEST_F(ReplayRunnerTest, KeyFilterDeliversOnlyThoseKeys) {
  clock_.set_auto_advance(true);
  Append(9, {"a", "b", "c"});
  ReplayJob job = MakeJob(/*rate=*/1000);
  job.spec.window.keys = {"a", "c"};
  replay_store_.AddJob(job);
  RunJob(job);

  ReplayJob done = replay_store_.Job(kJobId);
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters.delivered, 6);
  std::vector<std::string> keys;
  for (const FakeSink::Call& call : sink_->deliveries()) keys.push_back(call.key);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "a", "a", "c", "c", "c"}));
}

}  // namespace
}  // namespace replayd
