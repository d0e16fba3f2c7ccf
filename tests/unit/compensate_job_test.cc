// Diff and compensate jobs against in-memory fakes (no Postgres, no HTTP):
// the entries a diff saves and its counts, a diff resumed after a pause, and
// what an apply does for each action, with the exact sink calls, the results
// and the counts, including events that changed since the diff.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/common/clock.h"
#include "server/delivery/deliverer.h"
#include "server/replay/job_run.h"
#include "server/replay/runner.h"
#include "tests/support/fake_compensation_store.h"
#include "tests/support/fake_delivery_store.h"
#include "tests/support/fake_replay_store.h"
#include "tests/support/fake_sink.h"

namespace replayd {
namespace {

using testing::FakeCompensationStore;
using testing::FakeDeliveryStore;
using testing::FakeReplayStore;
using testing::FakeSink;

constexpr char kSource[] = "orders";
constexpr char kDiffId[] = "df-1";
constexpr char kApplyId[] = "cp-1";

// Calls `then` once `after` events were compared (and on each after that).
class AfterChecked final : public ReplayObserver {
 public:
  AfterChecked(int after, std::function<void()> then) : after_(after), then_(std::move(then)) {}
  void OnRateLimitWait(const std::string&, absl::Duration) override {}
  void OnReplayed(const std::string& result) override {
    if (result == "checked" && ++checked_ >= after_) then_();
  }

 private:
  const int after_;
  const std::function<void()> then_;
  std::atomic<int> checked_{0};
};

// One event of each diff class, and one whose source has no route.
struct Window {
  int64_t in_sync, missing, unrecorded, diverged, undelivered, unrouted;
};

class CompensateJobTest : public ::testing::Test {
 protected:
  CompensateJobTest() {
    // The sink's replay budget is the default rate: the clock jumps over its waits.
    deliverer_ = std::make_unique<Deliverer>(
        &delivery_store_,
        RouteTable{{kSource, Route{"orders-route", "downstream", false, RetryPolicy{}, sink_}}},
        nullptr, &clock_);
    lookup_ = [this](const std::string& source) { return deliverer_->RouteFor(source); };
    options_.instance = "test-runner";
    options_.clock = &clock_;
    options_.max_in_flight = 1;  // one event at a time: the sink's calls in log order
    clock_.set_auto_advance(true);
    sink_->EnableLookup();
  }

  // Appends an event with `outcome`; a delivered one has the record
  // rec-<position> at version "1" recorded.
  int64_t Append(Outcome outcome, const std::string& source = kSource) {
    const int64_t p =
        delivery_store_.Append(source, absl::StrCat(source, "-", ++last_id_)).position;
    delivery_store_.SetOutcome(p, outcome);
    if (outcome == Outcome::kSucceeded) delivery_store_.SetRecorded(p, RecordId(p), "1");
    clock_.Advance(absl::Milliseconds(1));
    return p;
  }
  static std::string RecordId(int64_t p) { return absl::StrCat("rec-", p); }
  std::string IdempotencyKeyOf(int64_t p) { return IdempotencyKey(delivery_store_.Event(p)); }
  // The downstream's lookup finds rec-<p> at `version` (by default it finds nothing).
  void Holds(int64_t p, const std::string& version) {
    sink_->ScriptLookup(IdempotencyKeyOf(p), DownstreamRecord{RecordId(p), version});
  }

  Window EachClass() {
    Window w;
    w.in_sync = Append(Outcome::kSucceeded);
    Holds(w.in_sync, "1");
    w.missing = Append(Outcome::kSucceeded);
    w.unrecorded = Append(Outcome::kFailed);
    Holds(w.unrecorded, "1");
    w.diverged = Append(Outcome::kSucceeded);
    Holds(w.diverged, "2");
    w.undelivered = Append(Outcome::kFailed);
    w.unrouted = Append(Outcome::kFailed, "payments");
    return w;
  }

  // A job of `kind` over every event appended so far, claimed by this runner.
  ReplayJob Job(ReplayKind kind, const std::string& id) {
    ReplayJob job;
    job.id = id;
    job.state = ReplayState::kRunning;
    job.spec.kind = kind;
    job.spec.window = {clock_.Now() - absl::Hours(1), clock_.Now() + absl::Hours(1), {}};
    job.spec.rate = 1000;
    if (kind == ReplayKind::kCompensate) job.spec.plan_id = kDiffId;
    job.counters.total = last_id_;
    job.owner = options_.instance;
    return job;
  }

  // Runs `job` to its end (or its pause) on this thread; returns it as stored then.
  ReplayJob Run(const ReplayJob& job, const std::atomic<bool>* pause = nullptr) {
    replay_store_.AddJob(job);
    ReplayRunner owner(&replay_store_, &delivery_store_, deliverer_.get(), lookup_, &config_,
                       options_);
    JobRunEnv env{
        &replay_store_,   &delivery_store_,
        deliverer_.get(), &lookup_,
        &options_,        [&owner](const std::string& sink) { return owner.SinkBucket(sink); },
        &shutdown_,       &compensations_};
    JobRun run(env, job, &cancel_, pause);
    run.Run();
    return replay_store_.Job(job.id);
  }

  // The window a diff reads: every event appended so far, as it is now.
  void CopyLogToWindow() {
    std::vector<StoredEvent> events;
    for (int64_t p = 1; p <= last_id_; ++p) events.push_back(delivery_store_.Event(p));
    replay_store_.AddEvents(events);
  }

  // Runs the diff of every event appended so far; its plan is then ready.
  ReplayJob RunDiff() {
    CopyLogToWindow();
    ReplayJob done = Run(Job(ReplayKind::kDiff, kDiffId));
    compensations_.SetState(kDiffId, CompensationState::kReady);
    return done;
  }

  ReplayJob RunApply() { return Run(Job(ReplayKind::kCompensate, kApplyId)); }

  void SetAction(DiffClass c, CompensationAction a) {
    ASSERT_TRUE(compensations_.SetActions(kDiffId, {c, {}, a}, {}).ok());
  }

  std::vector<int64_t> Positions(const std::vector<FakeSink::Call>& calls) {
    std::vector<int64_t> out;
    for (const FakeSink::Call& c : calls) out.push_back(c.position);
    return out;
  }

  CompensationEntry EntryAt(int64_t p) {
    for (const CompensationEntry& e : compensations_.Entries(kDiffId)) {
      if (e.position == p) return e;
    }
    ADD_FAILURE() << "no entry at " << p;
    return {};
  }
  CompensationResult ResultAt(int64_t p) { return compensations_.Result(kDiffId, p); }

  FakeClock clock_;
  FakeDeliveryStore delivery_store_{&clock_};
  FakeCompensationStore compensations_{
      [this](int64_t p) -> std::optional<StoredEvent> { return delivery_store_.Event(p); }};
  std::shared_ptr<FakeSink> sink_ = std::make_shared<FakeSink>("downstream");
  std::unique_ptr<Deliverer> deliverer_;
  RouteLookup lookup_;
  FakeReplayStore replay_store_;
  Config config_;
  ReplayRunnerOptions options_;
  std::atomic<bool> shutdown_{false};
  std::atomic<bool> cancel_{false};
  int64_t last_id_ = 0;  // positions and event ids both count from 1
};

TEST_F(CompensateJobTest, DiffSavesEachRoutedEventsClassAndDefaultAction) {
  Window w = EachClass();
  RunDiff();
  std::map<int64_t, std::pair<DiffClass, CompensationAction>> found;
  for (const CompensationEntry& e : compensations_.Entries(kDiffId)) {
    found[e.position] = {e.diff_class, e.action};
  }
  EXPECT_EQ(found, (std::map<int64_t, std::pair<DiffClass, CompensationAction>>{
                       {w.in_sync, {DiffClass::kInSync, CompensationAction::kNone}},
                       {w.missing, {DiffClass::kMissingDownstream, CompensationAction::kCreate}},
                       {w.unrecorded, {DiffClass::kUnrecorded, CompensationAction::kRecord}},
                       {w.diverged, {DiffClass::kDiverged, CompensationAction::kKeep}},
                       {w.undelivered, {DiffClass::kUndelivered, CompensationAction::kCreate}},
                   }));
}

TEST_F(CompensateJobTest, DiffEntryKeepsTheRecordSeenAndWhyItDiverged) {
  Window w = EachClass();
  RunDiff();
  CompensationEntry diverged = EntryAt(w.diverged);
  EXPECT_EQ(diverged.source, kSource);
  EXPECT_EQ(diverged.event_id, absl::StrCat(kSource, "-", w.diverged));
  EXPECT_EQ(diverged.log_outcome, Outcome::kSucceeded);
  EXPECT_EQ(diverged.downstream.id, RecordId(w.diverged));
  EXPECT_EQ(diverged.downstream.version, "2");
  EXPECT_EQ(diverged.detail, "version 2, recorded 1");
}

TEST_F(CompensateJobTest, DiffCompletesWithTheUnroutedEventSkipped) {
  EachClass();
  ReplayJob done = RunDiff();
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters, (ReplayCounters{.total = 6, .processed = 6, .skipped = 1}));
  EXPECT_EQ(replay_store_.AuditTrail().back().detail_json,
            R"({"total":6,"processed":6,"skipped":1,"failed":0})");
}

TEST_F(CompensateJobTest, DiffOnlyLooksUp) {
  EachClass();
  RunDiff();
  EXPECT_EQ(sink_->lookup_count(), 5);
  EXPECT_TRUE(sink_->deliveries().empty());
  EXPECT_EQ(delivery_store_.Attempts().size(), 0u);
  EXPECT_EQ(delivery_store_.claim_calls(), 0);  // a diff never claims an event
}

TEST_F(CompensateJobTest, DiffWithALookupThatKeepsFailingEndsFailed) {
  const int64_t ok = Append(Outcome::kSucceeded);
  const int64_t down = Append(Outcome::kSucceeded);
  sink_->ScriptLookup(IdempotencyKeyOf(down), absl::UnavailableError("HTTP 503"));
  ReplayJob done = RunDiff();
  EXPECT_EQ(done.state, ReplayState::kFailed);
  EXPECT_EQ(done.counters, (ReplayCounters{.total = 2, .processed = 2, .failed = 1}));
  EXPECT_EQ(done.last_error,
            absl::StrCat(kSource, "/", kSource, "-", down, ": lookup failed: HTTP 503"));
  std::vector<int64_t> looked = Positions(sink_->calls());
  EXPECT_EQ(looked, (std::vector<int64_t>{ok, down, down, down}));  // three tries
  ASSERT_EQ(compensations_.Entries(kDiffId).size(), 1u);
  EXPECT_EQ(compensations_.Entries(kDiffId)[0].position, ok);
}

TEST_F(CompensateJobTest, DiffResumedAfterAPauseSavesEachEntryOnce) {
  for (int i = 0; i < 12; ++i) Append(i % 2 == 0 ? Outcome::kSucceeded : Outcome::kFailed);
  std::atomic<bool> pause{false};
  AfterChecked pauser(5, [&] { pause = true; });
  options_.observer = &pauser;
  options_.checkpoint_interval = absl::ZeroDuration();
  CopyLogToWindow();
  ReplayJob paused = Run(Job(ReplayKind::kDiff, kDiffId), &pause);
  ASSERT_EQ(paused.state, ReplayState::kPaused);
  ASSERT_LT(paused.counters.processed, 12);
  ASSERT_TRUE(paused.cursor.has_value());
  options_.observer = nullptr;
  paused.state = ReplayState::kRunning;
  paused.owner = options_.instance;
  ReplayJob done = Run(paused);

  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters.processed, 12);
  ASSERT_EQ(compensations_.Entries(kDiffId).size(), 12u);
  for (int64_t p = 1; p <= 12; ++p) EXPECT_EQ(compensations_.Saves(kDiffId, p), 1) << p;
  EXPECT_EQ(sink_->lookup_count(), 12);
}

TEST_F(CompensateJobTest, DiffPausedByItsBreakerComparesTheFailedLookupsOnResume) {
  for (int i = 0; i < 6; ++i) Append(Outcome::kSucceeded);
  for (int64_t p : {2, 3, 4}) {
    sink_->ScriptLookup(IdempotencyKeyOf(p), absl::UnavailableError("HTTP 503"));
  }
  CopyLogToWindow();
  ReplayJob job = Job(ReplayKind::kDiff, kDiffId);
  job.spec.breaker = {3, 0, 0};
  ReplayJob paused = Run(job);
  ASSERT_EQ(paused.state, ReplayState::kPaused);
  std::vector<int64_t> retry;
  for (const RetryEvent& r : paused.retry) retry.push_back(r.position);
  EXPECT_EQ(retry, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(paused.counters.failed, 0);

  for (int64_t p : {2, 3, 4}) Holds(p, "1");
  paused.state = ReplayState::kRunning;
  paused.owner = options_.instance;
  ReplayJob done = Run(paused);
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters, (ReplayCounters{.total = 6, .processed = 6}));
  for (int64_t p = 1; p <= 6; ++p) EXPECT_EQ(compensations_.Saves(kDiffId, p), 1) << p;
  EXPECT_EQ(EntryAt(3).diff_class, DiffClass::kInSync);
  EXPECT_EQ(EntryAt(5).diff_class, DiffClass::kMissingDownstream);
}

TEST_F(CompensateJobTest, DiffThatLosesItsLeaseSavedEveryEntryUpToItsCursor) {
  for (int i = 0; i < 12; ++i) Append(Outcome::kSucceeded);
  options_.checkpoint_interval = absl::ZeroDuration();
  // Another daemon takes the job over: this one stops without a final write.
  AfterChecked thief(6, [&] { replay_store_.StealLease(kDiffId, "other-daemon"); });
  options_.observer = &thief;
  RunDiff();
  const std::optional<ReplayCursor> cursor = replay_store_.Job(kDiffId).cursor;
  ASSERT_TRUE(cursor.has_value());
  ASSERT_GE(cursor->position, 5);
  for (int64_t p = 1; p <= cursor->position; ++p) {
    EXPECT_EQ(compensations_.Saves(kDiffId, p), 1) << p;
  }
}

TEST_F(CompensateJobTest, ApplyCreatesTheMissingAndTheUndeliveredOnceEach) {
  Window w = EachClass();
  RunDiff();
  RunApply();
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{w.missing, w.undelivered}));
  EXPECT_EQ(ResultAt(w.missing), CompensationResult::kDone);
  EXPECT_EQ(ResultAt(w.undelivered), CompensationResult::kDone);
  EXPECT_EQ(delivery_store_.Event(w.undelivered).outcome, Outcome::kSucceeded);
  for (int64_t p : {w.missing, w.undelivered}) {
    ASSERT_EQ(delivery_store_.Attempts(p).size(), 1u);
    EXPECT_EQ(delivery_store_.Attempts(p)[0].trigger, "compensate:df-1");
    EXPECT_EQ(delivery_store_.Attempts(p)[0].outcome, Outcome::kSucceeded);
  }
  EXPECT_EQ(sink_->deliveries()[0].replay_id, kApplyId);
}

TEST_F(CompensateJobTest, ApplyRecordsTheUnrecordedWithNoCreateCall) {
  Window w = EachClass();
  RunDiff();
  RunApply();
  for (const FakeSink::Call& c : sink_->deliveries()) EXPECT_NE(c.position, w.unrecorded);
  const StoredEvent e = delivery_store_.Event(w.unrecorded);
  EXPECT_EQ(e.outcome, Outcome::kAlreadyProcessed);
  EXPECT_EQ(e.target_record_id, RecordId(w.unrecorded));
  EXPECT_EQ(ResultAt(w.unrecorded), CompensationResult::kDone);
}

TEST_F(CompensateJobTest, ApplyLeavesKeepAndNoneUntouched) {
  Window w = EachClass();
  RunDiff();
  const int lookups_before = sink_->lookup_count();
  RunApply();
  EXPECT_EQ(ResultAt(w.diverged), CompensationResult::kLeft);
  EXPECT_EQ(ResultAt(w.in_sync), CompensationResult::kLeft);
  EXPECT_TRUE(sink_->updates().empty());
  EXPECT_TRUE(delivery_store_.Attempts(w.diverged).empty());
  EXPECT_TRUE(delivery_store_.Attempts(w.in_sync).empty());
  // Create (re-check, check-then-act for the undelivered), record (the
  // re-check alone: what it found is recorded): nothing for keep and none.
  EXPECT_EQ(sink_->lookup_count() - lookups_before, 1 + 2 + 1);
}

TEST_F(CompensateJobTest, ApplyCountsDoneAsDeliveredAndLeftAsSkipped) {
  EachClass();
  RunDiff();
  ReplayJob done = RunApply();
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(done.counters,
            (ReplayCounters{.total = 6, .processed = 5, .delivered = 3, .skipped = 2}));
  EXPECT_EQ(replay_store_.AuditTrail().back().detail_json,
            R"({"total":6,"processed":5,"delivered":3,"skipped":2,"failed":0,)"
            R"("changed_since_diff":0})");
}

TEST_F(CompensateJobTest, ApplyOverwritesThroughTheUpdatePathAtTheVersionSeen) {
  Window w = EachClass();
  RunDiff();
  SetAction(DiffClass::kDiverged, CompensationAction::kOverwrite);
  DeliveryResult updated = FakeSink::Succeeded(RecordId(w.diverged));
  updated.record_version = "3";
  sink_->EnableUpdate(updated);
  ReplayJob done = RunApply();
  ASSERT_EQ(sink_->updates().size(), 1u);
  EXPECT_EQ(sink_->updates()[0].position, w.diverged);
  EXPECT_EQ(sink_->updates()[0].known_version, "2");
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{w.missing, w.undelivered}));
  EXPECT_EQ(delivery_store_.Event(w.diverged).target_version, "3");
  EXPECT_EQ(ResultAt(w.diverged), CompensationResult::kDone);
  EXPECT_EQ(done.counters.delivered, 4);
}

TEST_F(CompensateJobTest, ApplyLeavesWhatChangedSinceTheDiff) {
  Window w = EachClass();
  RunDiff();
  SetAction(DiffClass::kDiverged, CompensationAction::kOverwrite);
  sink_->EnableUpdate(FakeSink::Succeeded());
  delivery_store_.SetOutcome(w.undelivered, Outcome::kSucceeded);  // a live retry delivered it
  delivery_store_.SetOutcome(w.unrecorded, Outcome::kSucceeded);
  Holds(w.diverged, "5");  // edited again downstream
  ReplayJob done = RunApply();
  EXPECT_EQ(Positions(sink_->deliveries()), (std::vector<int64_t>{w.missing}));
  EXPECT_TRUE(sink_->updates().empty());
  for (int64_t p : {w.undelivered, w.unrecorded, w.diverged}) {
    EXPECT_EQ(ResultAt(p), CompensationResult::kChangedSinceDiff) << p;
    EXPECT_TRUE(delivery_store_.Attempts(p).empty()) << p;
  }
  EXPECT_EQ(done.state, ReplayState::kCompleted);
  EXPECT_EQ(
      done.counters,
      (ReplayCounters{
          .total = 6, .processed = 5, .delivered = 1, .skipped = 4, .changed_since_plan = 3}));
}

TEST_F(CompensateJobTest, ApplyCountsARefusedPreconditionAsChanged) {
  Window w = EachClass();
  RunDiff();
  SetAction(DiffClass::kDiverged, CompensationAction::kOverwrite);
  DeliveryResult refused;
  refused.kind = DeliveryResult::Kind::kPreconditionFailed;
  refused.http_status = 412;
  refused.error = "version changed";
  refused.record_version = "6";
  sink_->EnableUpdate(refused);
  ReplayJob done = RunApply();
  EXPECT_EQ(sink_->updates().size(), 1u);
  EXPECT_EQ(ResultAt(w.diverged), CompensationResult::kChangedSinceDiff);
  EXPECT_EQ(done.counters.changed_since_plan, 1);
  EXPECT_EQ(done.counters.failed, 0);
  ASSERT_EQ(delivery_store_.Attempts(w.diverged).size(), 1u);
  EXPECT_EQ(delivery_store_.Attempts(w.diverged)[0].outcome, Outcome::kFailed);
  // The log still says delivered, with the record it had.
  const StoredEvent e = delivery_store_.Event(w.diverged);
  EXPECT_EQ(e.outcome, Outcome::kSucceeded);
  EXPECT_EQ(e.target_version, "1");
}

TEST_F(CompensateJobTest, ApplyFailsAnOverwriteTheDownstreamRejects) {
  Window w = EachClass();
  RunDiff();
  SetAction(DiffClass::kDiverged, CompensationAction::kOverwrite);
  sink_->EnableUpdate(FakeSink::Final(422));
  ReplayJob done = RunApply();
  EXPECT_EQ(ResultAt(w.diverged), CompensationResult::kFailed);
  EXPECT_EQ(done.state, ReplayState::kFailed);
  EXPECT_EQ(done.counters.failed, 1);
  EXPECT_EQ(delivery_store_.Event(w.diverged).outcome, Outcome::kSucceeded);
}

TEST_F(CompensateJobTest, ApplyResumedFindsItsOwnEarlierCreateDone) {
  const int64_t p = Append(Outcome::kFailed);
  RunDiff();
  // An earlier run of this apply created it and recorded that, then died
  // before saving the entry's result.
  delivery_store_.HoldClaim(p, "dead-daemon", absl::Seconds(10));
  AttemptRecord attempt;
  attempt.event_position = p;
  attempt.attempt = 1;
  attempt.trigger = "compensate:df-1";
  attempt.outcome = Outcome::kSucceeded;
  OutcomeUpdate update;
  update.outcome = Outcome::kSucceeded;
  update.target_record_id = RecordId(p);
  ASSERT_TRUE(delivery_store_.RecordAttempt(attempt, update, "dead-daemon").ok());
  Holds(p, "1");
  ReplayJob done = RunApply();
  EXPECT_TRUE(sink_->deliveries().empty());
  EXPECT_EQ(ResultAt(p), CompensationResult::kDone);
  EXPECT_EQ(done.counters.delivered, 1);
  EXPECT_EQ(done.counters.changed_since_plan, 0);
}

}  // namespace
}  // namespace replayd
