// Pure delivery decisions: backoff, classification, outcomes, check-then-act,
// the dispatcher's per-key queues and the envelope.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/delivery/check_then_act.h"
#include "server/delivery/http_sink.h"
#include "server/delivery/key_queues.h"
#include "server/delivery/retry_policy.h"

namespace replayd {
namespace {

RetryPolicy Policy(int max_attempts, int base_ms, int cap_ms) {
  RetryPolicy p;
  p.max_attempts = max_attempts;
  p.base_delay = absl::Milliseconds(base_ms);
  p.max_delay = absl::Milliseconds(cap_ms);
  return p;
}

TEST(BackoffDelay, DoublesFromBaseUpToCapWithEqualJitter) {
  RetryPolicy p = Policy(10, 100, 1000);
  // jitter 1 = the full exponential delay; jitter 0 = half of it.
  EXPECT_EQ(BackoffDelay(p, 1, 1.0), absl::Milliseconds(100));
  EXPECT_EQ(BackoffDelay(p, 2, 1.0), absl::Milliseconds(200));
  EXPECT_EQ(BackoffDelay(p, 3, 1.0), absl::Milliseconds(400));
  EXPECT_EQ(BackoffDelay(p, 4, 1.0), absl::Milliseconds(800));
  EXPECT_EQ(BackoffDelay(p, 5, 1.0), absl::Milliseconds(1000));
  EXPECT_EQ(BackoffDelay(p, 60, 1.0), absl::Milliseconds(1000));
  EXPECT_EQ(BackoffDelay(p, 1, 0.0), absl::Milliseconds(50));
  EXPECT_EQ(BackoffDelay(p, 3, 0.5), absl::Milliseconds(300));
}

TEST(BackoffDelay, NeverShrinksFromOneAttemptToTheNextWhateverTheJitter) {
  RetryPolicy p = Policy(20, 50, 5000);
  for (int attempt = 1; attempt < 15; ++attempt) {
    EXPECT_LE(BackoffDelay(p, attempt, 0.999), BackoffDelay(p, attempt + 1, 0.0)) << attempt;
  }
}

TEST(ClassifyHttpStatus, FollowsTheSinkContract) {
  using K = DeliveryResult::Kind;
  EXPECT_EQ(ClassifyHttpStatus(200), K::kSucceeded);
  EXPECT_EQ(ClassifyHttpStatus(201), K::kSucceeded);
  EXPECT_EQ(ClassifyHttpStatus(204), K::kSucceeded);
  EXPECT_EQ(ClassifyHttpStatus(409), K::kAlreadyProcessed);
  EXPECT_EQ(ClassifyHttpStatus(408), K::kRetryable);
  EXPECT_EQ(ClassifyHttpStatus(429), K::kRetryable);
  EXPECT_EQ(ClassifyHttpStatus(500), K::kRetryable);
  EXPECT_EQ(ClassifyHttpStatus(503), K::kRetryable);
  EXPECT_EQ(ClassifyHttpStatus(599), K::kRetryable);
  EXPECT_EQ(ClassifyHttpStatus(400), K::kFinal);
  EXPECT_EQ(ClassifyHttpStatus(401), K::kFinal);
  EXPECT_EQ(ClassifyHttpStatus(404), K::kFinal);
  EXPECT_EQ(ClassifyHttpStatus(422), K::kFinal);
  EXPECT_EQ(ClassifyHttpStatus(301), K::kFinal);
}

TEST(ParseRetryAfter, SecondsAndHttpDates) {
  absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(ParseRetryAfter("7", now), absl::Seconds(7));
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("-3", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("soon", now), std::nullopt);
  // 1700000000 is Tue, 14 Nov 2023 22:13:20 GMT.
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:13:50 GMT", now), absl::Seconds(30));
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:00:00 GMT", now), absl::ZeroDuration());
}

DeliveryResult Result(DeliveryResult::Kind kind, std::string error = "",
                      std::string record_id = "") {
  DeliveryResult r;
  r.kind = kind;
  r.error = std::move(error);
  r.record_id = std::move(record_id);
  return r;
}

TEST(DecideOutcome, SuccessAndConflictAreFinalWithTheRecordId) {
  RetryPolicy p = Policy(3, 100, 1000);
  OutcomeUpdate u = DecideOutcome(Result(DeliveryResult::Kind::kSucceeded, "", "r1"), 1, p, 0.5);
  EXPECT_EQ(u.outcome, Outcome::kSucceeded);
  EXPECT_EQ(u.target_record_id, "r1");
  EXPECT_EQ(u.last_error, "");
  u = DecideOutcome(Result(DeliveryResult::Kind::kAlreadyProcessed, "", "r2"), 2, p, 0.5);
  EXPECT_EQ(u.outcome, Outcome::kAlreadyProcessed);
  EXPECT_EQ(u.target_record_id, "r2");
  EXPECT_EQ(u.target_version, "");
  EXPECT_EQ(u.target_updated_at, std::nullopt);
}

TEST(DecideOutcome, KeepsTheVersionAndUpdateTimeTheDownstreamAnswered) {
  DeliveryResult r = Result(DeliveryResult::Kind::kSucceeded, "", "r1");
  r.record_version = "v2";
  r.record_updated_at = absl::FromUnixSeconds(1795309800);
  OutcomeUpdate u = DecideOutcome(r, 1, Policy(3, 100, 1000), 0.5);
  EXPECT_EQ(u.target_version, "v2");
  EXPECT_EQ(u.target_updated_at, absl::FromUnixSeconds(1795309800));
}

TEST(DecideOutcome, RetryableRetriesUntilMaxAttemptsThenFails) {
  RetryPolicy p = Policy(3, 100, 1000);
  auto r = Result(DeliveryResult::Kind::kRetryable, "HTTP 503");
  OutcomeUpdate u1 = DecideOutcome(r, 1, p, 1.0);
  EXPECT_EQ(u1.outcome, Outcome::kRetrying);
  EXPECT_EQ(u1.retry_delay, absl::Milliseconds(100));
  EXPECT_EQ(u1.last_error, "HTTP 503");
  OutcomeUpdate u2 = DecideOutcome(r, 2, p, 1.0);
  EXPECT_EQ(u2.outcome, Outcome::kRetrying);
  EXPECT_EQ(u2.retry_delay, absl::Milliseconds(200));
  OutcomeUpdate u3 = DecideOutcome(r, 3, p, 1.0);
  EXPECT_EQ(u3.outcome, Outcome::kFailed);
  EXPECT_EQ(u3.last_error, "HTTP 503 (gave up after 3 attempts)");
}

TEST(DecideOutcome, RetryAfterLengthensButNeverShortensTheBackoff) {
  RetryPolicy p = Policy(5, 100, 1000);
  auto r = Result(DeliveryResult::Kind::kRetryable, "HTTP 429");
  r.retry_after = absl::Seconds(3);
  EXPECT_EQ(DecideOutcome(r, 1, p, 1.0).retry_delay, absl::Seconds(3));
  r.retry_after = absl::Milliseconds(1);
  EXPECT_EQ(DecideOutcome(r, 1, p, 1.0).retry_delay, absl::Milliseconds(100));
}

TEST(DecideOutcome, AnUpdatesPreconditionFailureFailsAtOnce) {
  OutcomeUpdate u = DecideOutcome(Result(DeliveryResult::Kind::kPreconditionFailed, "HTTP 412"),
                                  1, Policy(3, 100, 1000), 0.5);
  EXPECT_EQ(u.outcome, Outcome::kFailed);
  EXPECT_EQ(u.last_error, "HTTP 412");
}

TEST(DecideOutcome, FinalErrorFailsAtOnce) {
  OutcomeUpdate u =
      DecideOutcome(Result(DeliveryResult::Kind::kFinal, "HTTP 422"), 1, Policy(8, 100, 1000), 0);
  EXPECT_EQ(u.outcome, Outcome::kFailed);
  EXPECT_EQ(u.last_error, "HTTP 422");
}

StoredEvent Event(Outcome outcome, std::string record_id = "") {
  StoredEvent e;
  e.event.source = "shop";
  e.event.event_id = "e1";
  e.outcome = outcome;
  e.target_record_id = std::move(record_id);
  return e;
}

TEST(CheckThenAct, LogSaysDeliveredSkipsUnlessResend) {
  CheckFacts facts;
  auto d = DecideCheckThenAct(Event(Outcome::kSucceeded, "r9"), facts);
  EXPECT_EQ(d.action, CheckDecision::Action::kSkipAlreadyDelivered);
  EXPECT_EQ(d.record_id, "r9");
  EXPECT_EQ(DecideCheckThenAct(Event(Outcome::kAlreadyProcessed), facts).action,
            CheckDecision::Action::kSkipAlreadyDelivered);
  facts.resend_delivered = true;
  EXPECT_EQ(DecideCheckThenAct(Event(Outcome::kSucceeded), facts).action,
            CheckDecision::Action::kDeliver);
}

TEST(CheckThenAct, DownstreamRecordFoundSkipsTheCreatePath) {
  CheckFacts facts;
  facts.downstream_record = std::optional<DownstreamRecord>(DownstreamRecord{.id = "rec-7"});
  for (Outcome o : {Outcome::kPending, Outcome::kRetrying, Outcome::kFailed}) {
    auto d = DecideCheckThenAct(Event(o), facts);
    EXPECT_EQ(d.action, CheckDecision::Action::kSkipFoundDownstream);
    EXPECT_EQ(d.record_id, "rec-7");
  }
}

TEST(CheckThenAct, NoRecordOrNoLookupDelivers) {
  CheckFacts none;
  EXPECT_EQ(DecideCheckThenAct(Event(Outcome::kPending), none).action,
            CheckDecision::Action::kDeliver);
  CheckFacts absent;
  absent.downstream_record = std::optional<DownstreamRecord>();
  EXPECT_EQ(DecideCheckThenAct(Event(Outcome::kRetrying), absent).action,
            CheckDecision::Action::kDeliver);
  EXPECT_EQ(ActionName(CheckDecision::Action::kSkipFoundDownstream), "found_downstream");
}

// KeyQueues: the dispatcher's per-key order. Source "shop" is strict,
// "other" is not.
const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

UndeliveredEvent Undelivered(int64_t position, std::string key,
                             absl::Duration due_in = absl::ZeroDuration(),
                             std::string source = "shop") {
  UndeliveredEvent e;
  e.ref = {position, kT0};
  e.source = std::move(source);
  e.key = std::move(key);
  e.due_in = due_in;
  return e;
}

std::vector<int64_t> PositionsOf(const std::vector<EventRef>& refs) {
  std::vector<int64_t> out;
  for (const EventRef& r : refs) out.push_back(r.position);
  return out;
}

ClaimResult Found(const EventRef& ref, ClaimResult::State state,
                  Outcome outcome = Outcome::kPending) {
  ClaimResult c;
  c.state = state;
  c.event.position = ref.position;
  c.event.ingested_at = ref.ingested_at;
  c.event.outcome = outcome;
  c.due_in = absl::Seconds(10);
  c.blocker = {99, kT0};
  return c;
}

// Claims whatever the queues want at `now`; each claim finds `states[position]`
// (claimed when absent). Returns the positions given back.
std::vector<int64_t> ClaimWith(KeyQueues& q, absl::Time now,
                               std::map<int64_t, ClaimResult::State> states = {},
                               Outcome outcome = Outcome::kPending) {
  std::vector<EventRef> refs = q.ToClaim(now, 100);
  std::vector<ClaimResult> results;
  for (const EventRef& r : refs) {
    auto it = states.find(r.position);
    results.push_back(
        Found(r, it == states.end() ? ClaimResult::State::kClaimed : it->second, outcome));
  }
  return q.Claimed(refs, results, now, absl::Seconds(1));
}

std::vector<int64_t> StartAll(KeyQueues& q) {
  std::vector<int64_t> started;
  while (auto e = q.NextToStart()) started.push_back(e->position);
  std::sort(started.begin(), started.end());
  return started;
}

KeyQueues::Ending Ended(Outcome outcome, bool recorded = true) { return {recorded, outcome}; }

std::vector<int64_t> Finish(KeyQueues& q, int64_t position, KeyQueues::Ending ending,
                            absl::Time now = kT0) {
  return q.Finished({position, kT0}, ending, now, absl::Seconds(5));
}

using Positions = std::vector<int64_t>;

TEST(KeyQueues, OneEventOfAKeyAtATimeInLogOrderAndKeysSideBySide) {
  KeyQueues q({"shop"});
  for (auto [p, k] : std::vector<std::pair<int64_t, std::string>>{
           {1, "a"}, {2, "b"}, {3, "a"}, {4, ""}, {5, ""}, {6, "a"}}) {
    EXPECT_TRUE(q.Add(Undelivered(p, k), kT0));
  }
  EXPECT_FALSE(q.Add(Undelivered(3, "a"), kT0));  // held already
  EXPECT_EQ(q.size(), 6u);
  EXPECT_EQ(PositionsOf(q.ToClaim(kT0, 100)), (Positions{1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(ClaimWith(q, kT0).empty());
  EXPECT_TRUE(q.ToClaim(kT0, 100).empty());
  // a's later events wait; b and the keyless events go at once.
  EXPECT_EQ(StartAll(q), (Positions{1, 2, 4, 5}));
  EXPECT_TRUE(Finish(q, 1, Ended(Outcome::kSucceeded)).empty());
  EXPECT_EQ(StartAll(q), (Positions{3}));
  Finish(q, 3, Ended(Outcome::kAlreadyProcessed));
  EXPECT_EQ(StartAll(q), (Positions{6}));
  for (int64_t p : {2, 4, 5, 6}) Finish(q, p, Ended(Outcome::kSucceeded));
  EXPECT_EQ(q.size(), 0u);
}

TEST(KeyQueues, ARetryHoldsItsKeyBackAndLetsGoOfTheLaterClaimsMeanwhile) {
  KeyQueues q({"shop"});
  q.Add(Undelivered(1, "a"), kT0);
  q.Add(Undelivered(2, "a"), kT0);
  q.Add(Undelivered(3, "b", absl::Seconds(30)), kT0);  // read as a retry not yet due
  EXPECT_EQ(PositionsOf(q.ToClaim(kT0, 100)), (Positions{1, 2}));
  ClaimWith(q, kT0);
  ASSERT_EQ(StartAll(q), (Positions{1}));
  // 2's claim is given back while 1 waits: a replay may want it.
  EXPECT_EQ(Finish(q, 1, Ended(Outcome::kRetrying)), (Positions{2}));
  EXPECT_TRUE(StartAll(q).empty());
  // Claimed again at once: the claim says when it is due.
  EXPECT_EQ(PositionsOf(q.ToClaim(kT0, 100)), (Positions{1, 2}));
  EXPECT_EQ(ClaimWith(q, kT0, {{1, ClaimResult::State::kNotDue}}), (Positions{2}));
  EXPECT_TRUE(q.ToClaim(kT0 + absl::Seconds(9), 100).empty());
  EXPECT_EQ(PositionsOf(q.ToClaim(kT0 + absl::Seconds(11), 100)), (Positions{1, 2}));
  EXPECT_TRUE(ClaimWith(q, kT0 + absl::Seconds(31)).empty());
  EXPECT_EQ(StartAll(q), (Positions{1, 3}));
  Finish(q, 1, Ended(Outcome::kSucceeded));
  EXPECT_EQ(StartAll(q), (Positions{2}));
}

TEST(KeyQueues, ClaimsWholeRunsOfTheOldestKeysAndCountsWhatItHolds) {
  KeyQueues q({"shop"});
  for (int64_t p : {1, 3, 5}) q.Add(Undelivered(p, "a"), kT0);
  for (int64_t p : {2, 4, 6}) q.Add(Undelivered(p, "b"), kT0);
  // The oldest key's whole run, not the first event of every key.
  EXPECT_EQ(PositionsOf(q.ToClaim(kT0, 3)), (Positions{1, 3, 5}));
  std::vector<EventRef> refs = q.ToClaim(kT0, 3);
  q.Claimed(
      refs,
      {Found(refs[0], ClaimResult::State::kClaimed), Found(refs[1], ClaimResult::State::kClaimed),
       Found(refs[2], ClaimResult::State::kClaimed)},
      kT0, absl::Seconds(1));
  EXPECT_EQ(q.holding(), 3u);
  EXPECT_EQ(PositionsOf(q.ToClaim(kT0, 3)), (Positions{2, 4, 6}));
  // Another daemon reading the same log asks for a's run too, finds it busy,
  // and takes b's.
  KeyQueues other({"shop"});
  for (int64_t p : {1, 2, 3, 4, 5, 6}) other.Add(Undelivered(p, p % 2 ? "a" : "b"), kT0);
  refs = other.ToClaim(kT0, 3);
  ASSERT_EQ(PositionsOf(refs), (Positions{1, 3, 5}));
  EXPECT_TRUE(other
                  .Claimed(refs,
                           {Found(refs[0], ClaimResult::State::kBusy),
                            Found(refs[1], ClaimResult::State::kBusy),
                            Found(refs[2], ClaimResult::State::kBusy)},
                           kT0, absl::Seconds(1))
                  .empty());
  EXPECT_EQ(PositionsOf(other.ToClaim(kT0, 3)), (Positions{2, 4, 6}));
  EXPECT_EQ(other.holding(), 0u);
  ASSERT_EQ(StartAll(q), (Positions{1}));
  EXPECT_EQ(q.holding(), 3u);  // one running, two claimed
  Finish(q, 1, Ended(Outcome::kSucceeded));
  EXPECT_EQ(q.holding(), 2u);
}

TEST(KeyQueues, AnAttemptNotRecordedKeepsTheEventFirstAndTriesItAgainLater) {
  KeyQueues q({"shop"});
  q.Add(Undelivered(1, "a"), kT0);
  q.Add(Undelivered(2, "a"), kT0);
  ClaimWith(q, kT0);
  ASSERT_EQ(StartAll(q), (Positions{1}));
  EXPECT_EQ(Finish(q, 1, Ended(Outcome::kSucceeded, /*recorded=*/false)), (Positions{2}));
  EXPECT_TRUE(StartAll(q).empty());  // 2 must not overtake it
  EXPECT_TRUE(q.ToClaim(kT0 + absl::Seconds(4), 100).empty());
  EXPECT_EQ(PositionsOf(q.ToClaim(kT0 + absl::Seconds(6), 100)), (Positions{1, 2}));
  ClaimWith(q, kT0 + absl::Seconds(6));
  EXPECT_EQ(StartAll(q), (Positions{1}));
}

TEST(KeyQueues, AStrictFailureParksItsKeyLetsGoOfItsEventsAndUnparksForAReplay) {
  KeyQueues q({"shop"});
  for (int64_t p : {1, 2, 3}) q.Add(Undelivered(p, "a"), kT0);
  q.Add(Undelivered(4, "b", absl::ZeroDuration(), "other"), kT0);
  q.Add(Undelivered(5, "b", absl::ZeroDuration(), "other"), kT0);
  ClaimWith(q, kT0);
  ASSERT_EQ(StartAll(q), (Positions{1, 4}));
  // The parked key's events are let go, claims and all.
  EXPECT_EQ(Finish(q, 1, Ended(Outcome::kFailed)), (Positions{3, 2}));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_FALSE(q.Add(Undelivered(2, "a"), kT0));  // read again while parked: not held
  // Not strict: a failure does not stop the key.
  EXPECT_TRUE(Finish(q, 4, Ended(Outcome::kFailed)).empty());
  EXPECT_EQ(StartAll(q), (Positions{5}));
  EXPECT_TRUE(q.ToClaim(kT0, 100).empty());
  ASSERT_EQ(q.Blockers().size(), 1u);
  EXPECT_EQ(q.Blockers()[0].position, 1);
  EXPECT_TRUE(q.Unpark({1}).empty());  // still failed
  EXPECT_FALSE(q.Add(Undelivered(2, "a"), kT0));
  // A replay delivered it: read the log again from the blocker on.
  EXPECT_EQ(q.Unpark({}), (Positions{1}));
  EXPECT_TRUE(q.Blockers().empty());
  EXPECT_TRUE(q.Add(Undelivered(2, "a"), kT0));
  EXPECT_TRUE(q.Add(Undelivered(3, "a"), kT0));
  ClaimWith(q, kT0);
  EXPECT_EQ(StartAll(q), (Positions{2}));
}

TEST(KeyQueues, ClaimFindingsBusySettledAndBehindAFailure) {
  KeyQueues q({"shop"});
  q.Add(Undelivered(1, "a"), kT0);
  q.Add(Undelivered(2, "a"), kT0);
  // Another worker holds the first: the key waits, and holds nothing meanwhile.
  EXPECT_EQ(ClaimWith(q, kT0, {{1, ClaimResult::State::kBusy}}), (Positions{2}));
  EXPECT_TRUE(q.ToClaim(kT0 + absl::Milliseconds(500), 100).empty());
  // Delivered by someone else meanwhile: dropped.
  ClaimWith(q, kT0 + absl::Seconds(2),
            {{1, ClaimResult::State::kSettled}, {2, ClaimResult::State::kSettled}});
  EXPECT_EQ(q.size(), 0u);
  // Found behind an earlier failed event: parked behind it.
  q.Add(Undelivered(3, "c"), kT0);
  ClaimWith(q, kT0, {{3, ClaimResult::State::kBehindFailure}});
  ASSERT_EQ(q.Blockers().size(), 1u);
  EXPECT_EQ(q.Blockers()[0].position, 99);
  EXPECT_EQ(q.size(), 0u);
  EXPECT_TRUE(StartAll(q).empty());
}

TEST(KeyQueues, AFailureByAnotherWorkerParksAStrictKeyToo) {
  KeyQueues q({"shop"});
  q.Add(Undelivered(1, "a"), kT0);
  q.Add(Undelivered(2, "a"), kT0);
  q.Add(Undelivered(3, "b", absl::ZeroDuration(), "other"), kT0);
  q.Add(Undelivered(4, "b", absl::ZeroDuration(), "other"), kT0);
  // 1 and 3 failed elsewhere (a replay, another daemon) since they were read.
  EXPECT_EQ(
      ClaimWith(q, kT0, {{1, ClaimResult::State::kSettled}, {3, ClaimResult::State::kSettled}},
                Outcome::kFailed),
      (Positions{2}));
  ASSERT_EQ(q.Blockers().size(), 1u);
  EXPECT_EQ(q.Blockers()[0].position, 1);
  EXPECT_EQ(StartAll(q), (Positions{4}));
}

TEST(KeyQueues, ALateCommitGoesBeforeItsKeysLaterEventsButNotBeforeTheOneRunning) {
  KeyQueues q({"shop"});
  q.Add(Undelivered(5, "a"), kT0);
  ClaimWith(q, kT0);
  ASSERT_EQ(StartAll(q), (Positions{5}));
  q.Add(Undelivered(8, "a"), kT0);
  q.Add(Undelivered(3, "a"), kT0);  // committed after 5 was read
  q.Add(Undelivered(7, "a"), kT0);
  ClaimWith(q, kT0);
  Finish(q, 5, Ended(Outcome::kSucceeded));
  std::vector<int64_t> order;
  while (auto e = q.NextToStart()) {
    order.push_back(e->position);
    Finish(q, e->position, Ended(Outcome::kSucceeded));
  }
  EXPECT_EQ(order, (Positions{3, 7, 8}));
}

TEST(KeyQueues, AnEventSettledElsewhereIsClaimedAgainAtOnceInsteadOfAtItsOldDueTime) {
  KeyQueues q({"shop"});
  for (int64_t p : {1, 2}) q.Add(Undelivered(p, "a", absl::ZeroDuration(), "other"), kT0);
  q.Add(Undelivered(3, "b", absl::ZeroDuration(), "other"), kT0);
  q.Add(Undelivered(4, "s"), kT0);  // strict
  q.Add(Undelivered(5, "s"), kT0);
  // 1 and 4 wait on retries due in 10 s; 3 is being delivered.
  ClaimWith(q, kT0, {{1, ClaimResult::State::kNotDue}, {4, ClaimResult::State::kNotDue}});
  ASSERT_EQ(StartAll(q), (Positions{3}));
  const absl::Time t1 = kT0 + absl::Seconds(1);
  EXPECT_TRUE(q.ToClaim(t1, 100).empty());
  // A replay delivered 1 and failed 4, and 3's record committed: the log's
  // undelivered events are 2 and 5. A read that covers nothing, or starts
  // after 4, says nothing about them.
  const std::vector<UndeliveredEvent> log = {Undelivered(2, "a", absl::ZeroDuration(), "other"),
                                             Undelivered(5, "s")};
  EXPECT_EQ(q.ClaimAgainIfGone({}, 0, 0), 0);
  EXPECT_EQ(q.ClaimAgainIfGone(log, 4, std::numeric_limits<int64_t>::max()), 0);
  EXPECT_EQ(q.ClaimAgainIfGone(log, 0, std::numeric_limits<int64_t>::max()), 2);
  EXPECT_EQ(q.ClaimAgainIfGone(log, 0, std::numeric_limits<int64_t>::max()), 0);  // once
  EXPECT_EQ(PositionsOf(q.ToClaim(t1, 100)), (Positions{1, 2, 4, 5}));
  // The claims find them settled: key a goes on; the strict key parks behind
  // the failure.
  ClaimWith(q, t1, {{1, ClaimResult::State::kSettled}, {4, ClaimResult::State::kSettled}},
            Outcome::kFailed);
  EXPECT_EQ(StartAll(q), (Positions{2}));
  EXPECT_EQ(PositionsOf(q.Blockers()), (Positions{4}));
}

TEST(EnvelopeJson, CarriesEveryFieldAndThePayloadAsJson) {
  StoredEvent e;
  e.event.source = "shop";
  e.event.event_id = "o-\"1\"";
  e.event.sequence = 42;
  e.event.key = "cust-1";
  e.event.payload = R"({"amount": 10})";
  e.ingested_at = absl::FromUnixMicros(1700000000123456);
  auto j = nlohmann::json::parse(EnvelopeJson(e));
  EXPECT_EQ(j["source"], "shop");
  EXPECT_EQ(j["event_id"], "o-\"1\"");
  EXPECT_EQ(j["sequence"], 42);
  EXPECT_EQ(j["key"], "cust-1");
  EXPECT_TRUE(j["type"].is_null());
  EXPECT_TRUE(j["occurred_at"].is_null());
  EXPECT_EQ(j["ingested_at"], "2023-11-14T22:13:20.123456Z");
  EXPECT_EQ(j["payload"]["amount"], 10);
}

TEST(RecordIdFromBody, StringOrNumberId) {
  EXPECT_EQ(RecordIdFromBody(R"({"id":"r-1"})"), "r-1");
  EXPECT_EQ(RecordIdFromBody(R"({"id":17})"), "17");
  EXPECT_EQ(RecordIdFromBody(R"({"other":1})"), "");
  EXPECT_EQ(RecordIdFromBody("not json"), "");
  EXPECT_EQ(RecordIdFromBody(""), "");
}


// A lookup's 200: the record its body (or its headers) describe.
TEST(DownstreamRecordFromAnswer, ReadsEveryFieldOfAFullBody) {
  auto r = DownstreamRecordFromAnswer(
      R"({"id":"rec-4","version":"7","updated_at":"2026-11-22T01:10:00.5Z","data":{"n":1}})", {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, "rec-4");
  EXPECT_EQ(r->version, "7");
  EXPECT_EQ(r->updated_at, absl::FromUnixMillis(1795309800500));
  EXPECT_EQ(r->data, R"({"n":1})");
}

TEST(DownstreamRecordFromAnswer, AnIdAloneIsARecordWithoutVersionTimeOrData) {
  auto r = DownstreamRecordFromAnswer(R"({"id":17,"version":3})", {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, "17");
  EXPECT_EQ(r->version, "3");
  auto bare = DownstreamRecordFromAnswer(R"({"id":"r-1","version":null})", {});
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->id, "r-1");
  EXPECT_EQ(bare->version, std::nullopt);
  EXPECT_EQ(bare->updated_at, std::nullopt);
  EXPECT_EQ(bare->data, std::nullopt);
}

TEST(DownstreamRecordFromAnswer, HeadersGiveTheIdAndStandInForAMissingVersionAndTime) {
  RecordHeaders h{"hdr-1", "\"v9\"", "Sun, 22 Nov 2026 01:10:00 GMT"};
  auto empty = DownstreamRecordFromAnswer("", h);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->id, "hdr-1");
  EXPECT_EQ(empty->version, "v9");
  EXPECT_EQ(empty->updated_at, absl::FromUnixSeconds(1795309800));
  // A body that is not JSON beside the header is ignored: the header says it all.
  auto text = DownstreamRecordFromAnswer("found", h);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->id, "hdr-1");
  // The header's id wins; the body's version wins over the ETag.
  auto both = DownstreamRecordFromAnswer(R"({"id":"body-1","version":"2"})", h);
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->id, "hdr-1");
  EXPECT_EQ(both->version, "2");
  // A weak ETag is no version; with neither body nor header the record still exists.
  auto weak = DownstreamRecordFromAnswer("", {"", "W/\"v9\"", ""});
  ASSERT_TRUE(weak.ok()) << weak.status();
  EXPECT_EQ(weak->id, "(unknown)");
  EXPECT_EQ(weak->version, std::nullopt);
}

TEST(DownstreamRecordFromAnswer, AMalformedBodyIsUnavailable) {
  for (const char* body :
       {"not json", "[1,2]", R"({"id":{}})", R"({"id":"r","version":1.5})",
        R"({"id":"r","version":[]})", R"({"id":"r","updated_at":"yesterday"})",
        R"({"id":"r","updated_at":5})", R"({"id":"r","data":[1]})", R"({"id":"r","data":"x"})",
        R"({"id":"r")"}) {
    auto r = DownstreamRecordFromAnswer(body, {});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << body;
  }
}

TEST(DownstreamRecordFromAnswer, AHugeOrDeepBodyIsUnavailableNotACrash) {
  const std::string huge =
      absl::StrCat(R"({"id":"r","data":{"s":")", std::string(kMaxAnswerBody, 'x'), "\"}}");
  EXPECT_EQ(DownstreamRecordFromAnswer(huge, {}).status().code(), absl::StatusCode::kUnavailable);
  const std::string deep = absl::StrCat(R"({"id":"r","data":{"a":)", std::string(200000, '['),
                                        std::string(200000, ']'), "}}");
  EXPECT_EQ(DownstreamRecordFromAnswer(deep, {}).status().code(), absl::StatusCode::kUnavailable);
  // Brackets inside strings are not nesting.
  const std::string quoted =
      absl::StrCat(R"({"id":"r","data":{"a":")", std::string(1000, '['), "\"}}");
  auto r = DownstreamRecordFromAnswer(quoted, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data->size(), 1008u);
}

}  // namespace
}  // namespace replayd
