// Pure delivery decisions: backoff, classification, outcomes, check-then-act,
// chain grouping and the envelope.
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "server/delivery/check_then_act.h"
#include "server/delivery/dispatcher.h"
#include "server/delivery/http_sink.h"
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

TEST(ClassifyHttpStatus, FollowsSpec) {
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
  facts.downstream_record = std::optional<std::string>("rec-7");
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
  absent.downstream_record = std::optional<std::string>();
  EXPECT_EQ(DecideCheckThenAct(Event(Outcome::kRetrying), absent).action,
            CheckDecision::Action::kDeliver);
  EXPECT_EQ(ActionName(CheckDecision::Action::kSkipFoundDownstream), "found_downstream");
}

StoredEvent At(int64_t position, std::string key, std::string source = "shop") {
  StoredEvent e;
  e.position = position;
  e.event.source = std::move(source);
  e.event.key = std::move(key);
  return e;
}

std::vector<std::vector<int64_t>> Positions(const std::vector<std::vector<StoredEvent>>& chains) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& c : chains) {
    out.emplace_back();
    for (const auto& e : c) out.back().push_back(e.position);
  }
  return out;
}

TEST(GroupIntoChains, OneOrderedChainPerKeyAndKeylessEventsAlone) {
  auto chains = GroupIntoChains(
      {At(5, "a"), At(1, "a"), At(2, "b"), At(3, ""), At(4, ""), At(6, "b"), At(7, "a", "other")});
  EXPECT_EQ(Positions(chains),
            (std::vector<std::vector<int64_t>>{{1, 5}, {2, 6}, {3}, {4}, {7}}));
}

TEST(ContinueChain, StopsAtRetriesAndAtFailuresOnStrictRoutes) {
  EXPECT_TRUE(ContinueChain(Outcome::kSucceeded, false));
  EXPECT_TRUE(ContinueChain(Outcome::kAlreadyProcessed, true));
  EXPECT_FALSE(ContinueChain(Outcome::kRetrying, false));
  EXPECT_TRUE(ContinueChain(Outcome::kFailed, false));
  EXPECT_FALSE(ContinueChain(Outcome::kFailed, true));
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

}  // namespace
}  // namespace replayd
