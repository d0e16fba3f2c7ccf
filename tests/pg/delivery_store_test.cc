// The delivery store against a real PostgreSQL: the dispatcher's scan of the
// log, what a claim finds (claimed, busy, not due, settled, behind a strict
// route's failure), leases, TryClaim, group-committed records, and the trace.
// Per-key order is the dispatcher's (KeyQueues, tests/unit).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/store/partitions.h"
#include "server/store/pg_delivery_store.h"
#include "server/store/pg_event_store.h"
#include "server/store/pg_pool.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

NewEvent Event(const std::string& id, const std::string& key, const std::string& source = "shop") {
  NewEvent e;
  e.source = source;
  e.event_id = id;
  e.key = key;
  e.payload = R"({"n": 1})";
  return e;
}

// The next attempt at `e`, started now: "live" for its first, `retry_trigger` after.
AttemptRecord NextAttempt(const StoredEvent& e, const std::string& retry_trigger) {
  AttemptRecord a;
  a.event_position = e.position;
  a.event_ingested_at = e.ingested_at;
  a.attempt = e.attempts + 1;
  a.trigger = e.attempts > 0 ? retry_trigger : "live";
  a.route = "r";
  a.started_at = absl::Now();
  return a;
}

std::vector<std::string> Ids(const std::vector<StoredEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.event.event_id);
  return out;
}

class DeliveryStoreTest : public ::testing::Test {
 protected:
  DeliveryStoreTest()
      : pool_(db_.dsn(), 8), partitions_(&pool_), events_(&pool_, &partitions_), store_(&pool_) {
    now_ = absl::Now() - absl::Seconds(1);
    EXPECT_TRUE(partitions_.EnsureDays(now_ - absl::Hours(24), now_ + absl::Hours(24)).ok());
  }

  void Append(const std::vector<NewEvent>& events) {
    auto r = events_.Append(now_, events);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  std::vector<EventRef> Scan(int64_t after = 0, int limit = 100) {
    auto r = store_.ScanUndelivered({"shop"}, after, limit);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<EventRef> refs;
    if (r.ok()) {
      for (const UndeliveredEvent& e : *r) refs.push_back(e.ref);
    }
    return refs;
  }

  std::vector<ClaimResult> ClaimRefs(const std::vector<EventRef>& refs, const std::string& owner,
                                     std::vector<std::string> strict = {}) {
    auto r = store_.Claim(refs, owner, absl::Seconds(60), strict);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<ClaimResult>{};
  }

  // Claims every undelivered event of "shop" for `owner`: those it now holds.
  std::vector<StoredEvent> Claim(const std::string& owner, int limit = 100) {
    std::vector<StoredEvent> claimed;
    for (ClaimResult& r : ClaimRefs(Scan(0, limit), owner)) {
      if (r.state == ClaimResult::State::kClaimed) claimed.push_back(std::move(r.event));
    }
    return claimed;
  }

  EventRef Ref(const std::string& id) {
    StoredEvent e = Find(id);
    return {e.position, e.ingested_at};
  }

  StoredEvent Find(const std::string& id) { return *events_.Find("shop", id); }

  // An attempt at `e` that ended in `outcome`, and the event's update after it.
  static std::pair<AttemptRecord, OutcomeUpdate> Attempt(
      const StoredEvent& e, Outcome outcome, absl::Duration retry_delay = absl::ZeroDuration()) {
    AttemptRecord a = NextAttempt(e, "retry");
    a.duration_ms = 1.5;
    a.http_status = outcome == Outcome::kSucceeded ? 201 : 503;
    a.error = outcome == Outcome::kSucceeded ? "" : "HTTP 503";
    a.record_id = outcome == Outcome::kSucceeded ? "rec-" + e.event.event_id : "";
    a.outcome = outcome;
    OutcomeUpdate u;
    u.outcome = outcome;
    u.last_error = a.error;
    u.target_record_id = a.record_id;
    u.retry_delay = retry_delay;
    return {a, u};
  }

  // Events g1 and h1, both claimed by "dead"; g1's claim expired and was
  // taken over by "B", h1's is still dead's.
  void TakeOverG1FromADeadOwner() {
    Append({Event("g1", "g"), Event("h1", "h")});
    ASSERT_THAT(Ids(Claim("dead")), ElementsAre("g1", "h1"));
    db_.Exec(
        "UPDATE delivery_claims SET expires_at = now() - interval '1 second'"
        " WHERE position = (SELECT position FROM events WHERE event_id = 'g1')");
    ASSERT_THAT(Ids(Claim("B")), ElementsAre("g1"));
  }

  absl::StatusOr<bool> Record(const StoredEvent& e, Outcome outcome, const std::string& owner,
                              absl::Duration retry_delay = absl::ZeroDuration()) {
    const auto [a, u] = Attempt(e, outcome, retry_delay);
    return store_.RecordAttempt(a, u, owner);
  }

  // RecordAttemptAsync, its answer as a future.
  std::future<absl::StatusOr<bool>> RecordLater(const AttemptRecord& a, const OutcomeUpdate& u,
                                                const std::string& owner) {
    auto done = std::make_shared<std::promise<absl::StatusOr<bool>>>();
    store_.RecordAttemptAsync(a, u, owner, [done](absl::StatusOr<bool> r) { done->set_value(r); });
    return done->get_future();
  }

  // Keeps the record writer busy on `id`'s record for `owner` (its claim row
  // locked in `lock`) until `lock` ends, so that the records queued
  // meanwhile go out in one group. Returns once the writer waits; the
  // thread writing `id`'s record is the caller's to join.
  std::thread HoldTheWriter(pqxx::work& lock, const std::string& id, const std::string& owner) {
    lock.exec(
        "SELECT 1 FROM delivery_claims WHERE position = (SELECT position FROM events"
        " WHERE event_id = '" +
        id + "') FOR UPDATE");
    const StoredEvent e = Find(id);
    std::thread held(
        [this, e, owner] { EXPECT_TRUE(Record(e, Outcome::kSucceeded, owner).value()); });
    const std::string waits =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'";
    testing::PollUntil([&] { return db_.QueryInt(waits) != 0; }, absl::Seconds(5),
                       absl::Milliseconds(20));
    EXPECT_EQ(db_.QueryInt(waits), 1);
    return held;
  }

  testing::ScratchDatabase db_;
  PgPool pool_;
  Partitions partitions_;
  PgEventStore events_;
  PgDeliveryStore store_;
  absl::Time now_;
};

std::vector<ClaimResult::State> States(const std::vector<ClaimResult>& results) {
  std::vector<ClaimResult::State> out;
  for (const auto& r : results) out.push_back(r.state);
  return out;
}

TEST_F(DeliveryStoreTest, TheScanReadsRoutedUndeliveredEventsInLogOrderFromTheCursor) {
  Append({Event("a1", "a"), Event("b1", "b"), Event("a2", "a"), Event("x1", ""),
          Event("o1", "a", "other"), Event("a3", "a")});
  auto scanned = store_.ScanUndelivered({"shop"}, 0, 100);
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  std::vector<std::string> keys;
  for (const auto& e : *scanned) keys.push_back(e.key);
  EXPECT_THAT(keys, ElementsAre("a", "b", "a", "", "a"));
  EXPECT_EQ((*scanned)[0].ref.position, Find("a1").position);
  EXPECT_EQ((*scanned)[0].due_in, absl::ZeroDuration());
  // From the cursor on, at most `limit`.
  auto after = Scan(Find("a2").position, 1);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].position, Find("x1").position);
  // Claimed events are still undelivered: the scan still reads them.
  EXPECT_THAT(Ids(Claim("A")), ElementsAre("a1", "b1", "a2", "x1", "a3"));
  EXPECT_EQ(Scan().size(), 5u);
  // Delivered ones it does not.
  ASSERT_EQ(Record(Find("a1"), Outcome::kSucceeded, "A").value(), true);
  EXPECT_EQ(Scan().size(), 4u);
  EXPECT_EQ(db_.QueryText("SELECT outcome FROM events WHERE event_id = 'o1'"), "pending");
}

TEST_F(DeliveryStoreTest, AClaimTellsWhatItFoundAndHoldsOnlyWhatIsDue) {
  Append(
      {Event("a1", "a"), Event("a2", "a"), Event("b1", "b"), Event("b2", "b"), Event("c1", "c")});
  // Busy: another worker holds it.
  ASSERT_THAT(States(ClaimRefs({Ref("a1"), Ref("b1"), Ref("c1")}, "A")),
              ElementsAre(ClaimResult::State::kClaimed, ClaimResult::State::kClaimed,
                          ClaimResult::State::kClaimed));
  auto busy = ClaimRefs({Ref("c1"), Ref("b2")}, "B");
  EXPECT_THAT(States(busy), ElementsAre(ClaimResult::State::kBusy, ClaimResult::State::kClaimed));
  EXPECT_EQ(busy[1].event.event.event_id, "b2");
  // The owner's own claim is renewed, not refused.
  EXPECT_THAT(States(ClaimRefs({Ref("c1")}, "A")), ElementsAre(ClaimResult::State::kClaimed));
  // Not due: a retry an hour away, given back with the time left.
  ASSERT_EQ(Record(Find("a1"), Outcome::kRetrying, "A", absl::Hours(1)).value(), true);
  auto not_due = ClaimRefs({Ref("a1")}, "B");
  ASSERT_THAT(States(not_due), ElementsAre(ClaimResult::State::kNotDue));
  EXPECT_GT(not_due[0].due_in, absl::Minutes(59));
  EXPECT_LE(not_due[0].due_in, absl::Hours(1));
  // Settled: delivered by someone else since it was read.
  ASSERT_EQ(Record(Find("c1"), Outcome::kSucceeded, "A").value(), true);
  EXPECT_THAT(States(ClaimRefs({Ref("c1")}, "B")), ElementsAre(ClaimResult::State::kSettled));
  // Behind a failure: only for strict sources.
  ASSERT_EQ(Record(Find("b1"), Outcome::kFailed, "A").value(), true);
  ASSERT_TRUE(store_.Release({Find("b2").position}, "B").ok());
  auto behind = ClaimRefs({Ref("b2")}, "C", {"shop"});
  ASSERT_THAT(States(behind), ElementsAre(ClaimResult::State::kBehindFailure));
  EXPECT_EQ(behind[0].blocker.position, Find("b1").position);
  EXPECT_EQ(behind[0].blocker.ingested_at, Find("b1").ingested_at);
  // Only what was claimed and due is held: here nothing (recorded or given back).
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_claims"), 0);
  EXPECT_THAT(States(ClaimRefs({Ref("b2")}, "C")), ElementsAre(ClaimResult::State::kClaimed));
  // The blocker stays failed until a replay delivers it.
  auto failed = store_.StillFailed({Ref("b1"), Ref("a1")});
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_THAT(*failed, ElementsAre(Find("b1").position));
  auto replay =
      store_.TryClaim(Find("b1").position, Find("b1").ingested_at, "replay:1", absl::Seconds(30));
  ASSERT_TRUE(replay.ok() && replay->has_value());
  auto [a, u] = Attempt(**replay, Outcome::kSucceeded);
  a.trigger = "replay:1";
  ASSERT_EQ(store_.RecordAttempt(a, u, "replay:1").value(), true);
  failed = store_.StillFailed({Ref("b1")});
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_THAT(*failed, IsEmpty());
  // Its key goes on behind it on a strict route.
  EXPECT_THAT(States(ClaimRefs({Ref("b2")}, "C", {"shop"})),
              ElementsAre(ClaimResult::State::kClaimed));
}

TEST_F(DeliveryStoreTest, ExpiredLeasesAreReclaimedAndHeartbeatsKeepThem) {
  Append({Event("a1", "a"), Event("x1", "")});
  ASSERT_THAT(Ids(Claim("dead")), ElementsAre("a1", "x1"));
  // The heartbeat pushes the expiry out again.
  db_.Exec("UPDATE delivery_claims SET expires_at = now() + interval '1 second'");
  ASSERT_TRUE(store_.ExtendClaims("dead", absl::Seconds(60)).ok());
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_claims"
                         " WHERE expires_at > now() + interval '50 seconds'"),
            2);
  EXPECT_THAT(Claim("B"), IsEmpty());
  db_.Exec("UPDATE delivery_claims SET expires_at = now() - interval '1 second'");
  EXPECT_THAT(Ids(Claim("B")), ElementsAre("a1", "x1"));
  // The old owner's late record must not touch the row B now holds.
  EXPECT_EQ(Record(Find("a1"), Outcome::kSucceeded, "dead").value(), false);
  EXPECT_EQ(Find("a1").outcome, Outcome::kPending);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_claims WHERE owner = 'B'"), 2);
  ASSERT_TRUE(store_.ReleaseAll("B").ok());
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_claims"), 0);
}

TEST_F(DeliveryStoreTest, TheHeartbeatSweepsClaimsLongExpiredAndKeepsRecentOnes) {
  Append({Event("a1", "a"), Event("b1", "b"), Event("c1", "c")});
  ASSERT_THAT(Ids(Claim("gone")), ElementsAre("a1", "b1", "c1"));
  db_.Exec(
      "UPDATE delivery_claims SET owner = 'stalled', expires_at = now() - interval '1 minute'"
      " WHERE position = (SELECT position FROM events WHERE event_id = 'b1')");
  db_.Exec(
      "UPDATE delivery_claims SET expires_at = now() - interval '2 hours'"
      " WHERE owner = 'gone'");
  ASSERT_TRUE(store_.ExtendClaims("A", absl::Seconds(60)).ok());
  // The recently expired claim stays: its owner may still record its attempt.
  EXPECT_EQ(db_.QueryText("SELECT string_agg(owner, ',') FROM delivery_claims"), "stalled");
}

TEST_F(DeliveryStoreTest, TryClaimIsExclusiveAndNotFoundForUnknownEvents) {
  Append({Event("a1", "a")});
  StoredEvent e = Find("a1");
  auto mine = store_.TryClaim(e.position, e.ingested_at, "replay:1", absl::Seconds(30));
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_TRUE(mine->has_value());
  EXPECT_EQ((*mine)->event.event_id, "a1");
  auto again = store_.TryClaim(e.position, e.ingested_at, "replay:1", absl::Seconds(30));
  ASSERT_TRUE(again.ok() && again->has_value());
  auto theirs = store_.TryClaim(e.position, e.ingested_at, "other", absl::Seconds(30));
  ASSERT_TRUE(theirs.ok());
  EXPECT_FALSE(theirs->has_value());
  EXPECT_THAT(Claim("dispatcher"), IsEmpty());
  ASSERT_TRUE(store_.Release({e.position}, "replay:1").ok());
  EXPECT_THAT(Ids(Claim("dispatcher")), ElementsAre("a1"));
  auto missing = store_.TryClaim(e.position + 1000, e.ingested_at, "x", absl::Seconds(30));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DeliveryStoreTest, ConcurrentRecordsAreGroupCommittedAndTheTraceTellsTheStory) {
  std::vector<NewEvent> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(Event(absl::StrCat("x", i), ""));
  Append(batch);
  auto claimed = Claim("A", 200);
  ASSERT_EQ(claimed.size(), 200u);
  std::vector<std::thread> threads;
  std::atomic<int> held{0};
  for (int t = 0; t < 20; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < 200; i += 20) {
        auto r = Record(claimed[i], Outcome::kSucceeded, "A");
        if (r.ok() && *r) ++held;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(held.load(), 200);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events WHERE outcome = 'succeeded'"
                         " AND processed_at IS NOT NULL AND attempts = 1"),
            200);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_claims"), 0);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_attempts"), 200);

  // A retried event: 503 then success.
  Append({Event("t1", "t")});
  auto t1 = Claim("A");
  ASSERT_THAT(Ids(t1), ElementsAre("t1"));
  ASSERT_TRUE(Record(t1[0], Outcome::kRetrying, "A", absl::Milliseconds(1)).ok());
  absl::SleepFor(absl::Milliseconds(20));
  auto t1b = Claim("A");
  ASSERT_THAT(Ids(t1b), ElementsAre("t1"));
  ASSERT_TRUE(Record(t1b[0], Outcome::kSucceeded, "A").ok());
  auto trace = store_.GetTrace("shop", "t1");
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->event.outcome, Outcome::kSucceeded);
  EXPECT_EQ(trace->event.target_record_id, "rec-t1");
  EXPECT_EQ(trace->event.attempts, 2);
  ASSERT_EQ(trace->attempts.size(), 2u);
  EXPECT_EQ(trace->attempts[0].attempt, 1);
  EXPECT_EQ(trace->attempts[0].trigger, "live");
  EXPECT_EQ(trace->attempts[0].http_status, 503);
  EXPECT_EQ(trace->attempts[0].error, "HTTP 503");
  EXPECT_EQ(trace->attempts[0].outcome, Outcome::kRetrying);
  EXPECT_DOUBLE_EQ(trace->attempts[0].duration_ms, 1.5);
  EXPECT_EQ(trace->attempts[1].attempt, 2);
  EXPECT_EQ(trace->attempts[1].trigger, "retry");
  EXPECT_EQ(trace->attempts[1].http_status, 201);
  EXPECT_EQ(trace->attempts[1].record_id, "rec-t1");
  EXPECT_EQ(trace->attempts[1].outcome, Outcome::kSucceeded);
  EXPECT_EQ(trace->attempts[1].worker, "A");
  EXPECT_EQ(store_.GetTrace("shop", "nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DeliveryStoreTest, ADownstreamsBytesAreRecordedAsValidTextWithoutFailingTheGroup) {
  Append({Event("w1", "w")});
  auto claimed = Claim("A");
  ASSERT_THAT(Ids(claimed), ElementsAre("w1"));
  // A transport error has no status; the body snippet holds quotes, a
  // backslash, array punctuation, a NUL byte and a character cut in two.
  const std::string body =
      std::string("HTTP 500: \"q\" \\ ,{} caf\xC3\xA9 ") + std::string(1, '\0') + "end \xC3";
  auto [a, u] = Attempt(claimed[0], Outcome::kRetrying, absl::Seconds(30));
  a.http_status.reset();
  a.error = body;
  a.record_id = "id,{\"x\"}";
  u.last_error = body;
  auto held = store_.RecordAttempt(a, u, "A");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_TRUE(*held);
  const std::string stored = "HTTP 500: \"q\" \\ ,{} caf\xC3\xA9 end \xEF\xBF\xBD";
  auto trace = store_.GetTrace("shop", "w1");
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->attempts.size(), 1u);
  EXPECT_EQ(trace->attempts[0].error, stored);
  EXPECT_EQ(trace->attempts[0].record_id, "id,{\"x\"}");
  EXPECT_FALSE(trace->attempts[0].http_status.has_value());
  EXPECT_EQ(trace->event.outcome, Outcome::kRetrying);
  EXPECT_EQ(trace->event.last_error, stored);
}

TEST_F(DeliveryStoreTest, TheDownstreamsVersionAndUpdateTimeAreKeptWithTheEvent) {
  Append({Event("v1", "v"), Event("v2", "w")});
  auto claimed = Claim("A");
  ASSERT_THAT(Ids(claimed), ElementsAre("v1", "v2"));
  const absl::Time updated_at = absl::FromUnixMicros(1795309800123456);
  auto [a, u] = Attempt(claimed[0], Outcome::kSucceeded);
  u.target_version = "7";
  u.target_updated_at = updated_at;
  ASSERT_TRUE(store_.RecordAttempt(a, u, "A").value());
  auto [b, w] = Attempt(claimed[1], Outcome::kSucceeded);
  ASSERT_TRUE(store_.RecordAttempt(b, w, "A").value());
  auto versioned = store_.GetTrace("shop", "v1");
  ASSERT_TRUE(versioned.ok()) << versioned.status();
  EXPECT_EQ(versioned->event.target_version, "7");
  EXPECT_EQ(versioned->event.target_updated_at, updated_at);
  // A downstream that reports neither leaves both unset.
  auto bare = store_.GetTrace("shop", "v2");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->event.target_version, "");
  EXPECT_EQ(bare->event.target_updated_at, std::nullopt);
}

TEST_F(DeliveryStoreTest, TwoOwnersRecordsOfOneEventInOneGroupOnlyTheHoldersCounts) {
  ASSERT_NO_FATAL_FAILURE(TakeOverG1FromADeadOwner());
  // The next two records, both for g1, go out in one group.
  pqxx::connection blocker(db_.dsn());
  pqxx::work lock(blocker);
  std::thread first = HoldTheWriter(lock, "h1", "dead");
  const StoredEvent g1 = Find("g1");
  auto record = [&](const std::string& owner, int attempt, Outcome outcome) {
    auto [a, u] = Attempt(g1, outcome);
    a.attempt = attempt;
    return RecordLater(a, u, owner);
  };
  auto stale = record("dead", 1, Outcome::kFailed);
  auto holder = record("B", 2, Outcome::kSucceeded);
  lock.commit();
  first.join();
  EXPECT_EQ(stale.get().value(), false);
  EXPECT_EQ(holder.get().value(), true);
  EXPECT_EQ(Find("g1").outcome, Outcome::kSucceeded);
  EXPECT_EQ(Find("g1").last_error, "");
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_attempts WHERE event_position = " +
                         std::to_string(g1.position)),
            2);
}

TEST_F(DeliveryStoreTest, AnAttemptNumberRecordedTwiceKeepsTheFirstRowAndTheHoldersOutcome) {
  ASSERT_NO_FATAL_FAILURE(TakeOverG1FromADeadOwner());
  // Both owners read attempts = 0, so both record attempt 1: the stale one
  // first, then the holder, whose group meets the row already there.
  const StoredEvent g1 = Find("g1");
  EXPECT_EQ(Record(g1, Outcome::kFailed, "dead").value(), false);
  EXPECT_EQ(Record(g1, Outcome::kSucceeded, "B").value(), true);
  EXPECT_EQ(Find("g1").outcome, Outcome::kSucceeded);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_attempts WHERE event_position = " +
                         std::to_string(g1.position)),
            1);
  // The writer goes on with plain inserts afterwards.
  EXPECT_EQ(Record(Find("h1"), Outcome::kSucceeded, "dead").value(), true);
  EXPECT_EQ(Find("h1").outcome, Outcome::kSucceeded);
}

// Claims and record groups name each day's partition directly: a batch that
// spans midnight reaches both days, a strict key's blocker is found in
// another day's partition, a record whose day retention dropped is not held
// and does not fail the records grouped with it, and an event read before
// its day was dropped is settled.
TEST_F(DeliveryStoreTest, ClaimsAndRecordGroupsSpanningTwoDaysReachBothDaysPartitions) {
  const absl::Time yesterday = now_ - absl::Hours(24);
  ASSERT_TRUE(events_.Append(yesterday, {Event("y1", "k"), Event("y2", "")}).ok());
  Append({Event("t1", "k"), Event("t2", ""), Event("w1", "w")});
  ASSERT_THAT(Ids(Claim("A")), ElementsAre("y1", "y2", "t1", "t2", "w1"));
  // The next three records, from both days, go out in one group.
  pqxx::connection blocker(db_.dsn());
  std::optional<pqxx::work> lock(std::in_place, blocker);
  std::thread first = HoldTheWriter(*lock, "w1", "A");
  auto record = [&](const std::string& id, Outcome outcome, const std::string& owner) {
    auto [a, u] = Attempt(Find(id), outcome);
    return RecordLater(a, u, owner);
  };
  auto y1 = record("y1", Outcome::kFailed, "A");
  auto y2 = record("y2", Outcome::kSucceeded, "A");
  auto t2 = record("t2", Outcome::kSucceeded, "A");
  lock->commit();
  first.join();
  EXPECT_EQ(y1.get().value(), true);
  EXPECT_EQ(y2.get().value(), true);
  EXPECT_EQ(t2.get().value(), true);
  EXPECT_EQ(Find("y1").outcome, Outcome::kFailed);
  EXPECT_EQ(Find("y2").outcome, Outcome::kSucceeded);
  EXPECT_EQ(Find("t2").outcome, Outcome::kSucceeded);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM " + DayPartitionOf("delivery_attempts", yesterday)),
            2);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM " + DayPartitionOf("delivery_attempts", now_)), 2);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_claims"), 1);  // t1's

  // t1 waits behind yesterday's failure of its key on a strict route.
  ASSERT_TRUE(store_.Release({Find("t1").position}, "A").ok());
  auto behind = ClaimRefs({Ref("t1")}, "B", {"shop"});
  ASSERT_THAT(States(behind), ElementsAre(ClaimResult::State::kBehindFailure));
  EXPECT_EQ(behind[0].blocker.position, Find("y1").position);
  EXPECT_EQ(behind[0].blocker.ingested_at, Find("y1").ingested_at);
  // Set back by hand (not by a record), y1 stops holding t1 back once the
  // parked key's check finds it no longer failed.
  db_.Exec("UPDATE events SET outcome = 'pending' WHERE event_id = 'y1'");
  auto still = store_.StillFailed({Ref("y1")});
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_THAT(*still, IsEmpty());
  EXPECT_THAT(States(ClaimRefs({Ref("t1")}, "B", {"shop"})),
              ElementsAre(ClaimResult::State::kClaimed));

  // Retention drops a day while one of its events is being delivered and
  // after another one was read by the scan.
  const absl::Time old = now_ - absl::Hours(48);
  ASSERT_TRUE(partitions_.EnsureDays(old, old).ok());
  ASSERT_TRUE(events_.Append(old, {Event("o1", "o"), Event("o2", "p"), Event("o3", "q")}).ok());
  Append({Event("w2", "w"), Event("q2", "q")});
  const EventRef o2 = Ref("o2");
  // o3 failed: q2, of its key, waits behind it on a strict route until
  // retention drops o3's day.
  ASSERT_THAT(States(ClaimRefs({Ref("o3")}, "B")), ElementsAre(ClaimResult::State::kClaimed));
  ASSERT_EQ(Record(Find("o3"), Outcome::kFailed, "B").value(), true);
  ASSERT_THAT(States(ClaimRefs({Ref("q2")}, "B", {"shop"})),
              ElementsAre(ClaimResult::State::kBehindFailure));
  ASSERT_THAT(States(ClaimRefs({Ref("o1"), Ref("t1"), Ref("w2")}, "B")),
              ElementsAre(ClaimResult::State::kClaimed, ClaimResult::State::kClaimed,
                          ClaimResult::State::kClaimed));
  const StoredEvent o1 = Find("o1"), t1 = Find("t1");
  auto dropped = partitions_.DropExpired(now_, 1);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  ASSERT_THAT(*dropped, ElementsAre(DayPartitionOf("events", old)));
  EXPECT_THAT(States(ClaimRefs({Ref("q2")}, "B", {"shop"})),
              ElementsAre(ClaimResult::State::kClaimed));
  // o1's record has nowhere to go; t1's, in the same group, is written.
  lock.emplace(blocker);
  std::thread second = HoldTheWriter(*lock, "w2", "B");
  auto [o1_attempt, o1_update] = Attempt(o1, Outcome::kSucceeded);
  auto [t1_attempt, t1_update] = Attempt(t1, Outcome::kSucceeded);
  auto o1_record = RecordLater(o1_attempt, o1_update, "B");
  auto t1_record = RecordLater(t1_attempt, t1_update, "B");
  lock->commit();
  second.join();
  EXPECT_EQ(o1_record.get().value(), false);
  EXPECT_EQ(t1_record.get().value(), true);
  EXPECT_EQ(Find("t1").outcome, Outcome::kSucceeded);
  // o2 is settled by the claim; a replay asking for it is told it is not in the log.
  EXPECT_THAT(States(ClaimRefs({o2}, "B")), ElementsAre(ClaimResult::State::kSettled));
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_claims WHERE position = " +
                         std::to_string(o2.position)),
            0);
  EXPECT_EQ(
      store_.TryClaim(o2.position, o2.ingested_at, "replay:1", absl::Seconds(30)).status().code(),
      absl::StatusCode::kNotFound);
}

AttemptRecord TableAttempt(const StoredEvent& e) { return NextAttempt(e, "replay:r"); }

TEST_F(DeliveryStoreTest, LogTableDeliveryWritesTheRowTheAttemptAndTheOutcomeTogether) {
  Append({Event("t1", "a")});
  auto claimed = Claim("A");
  ASSERT_EQ(claimed.size(), 1u);
  const StoredEvent& e = claimed[0];
  // Without the claim nothing is written, not even the downstream row.
  auto lost =
      store_.DeliverToLogTable("downstream", "shop:t1", R"({"n": 1})", TableAttempt(e), "B");
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_FALSE(lost->held);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM downstream"), 0);

  auto first =
      store_.DeliverToLogTable("downstream", "shop:t1", R"({"n": 1})", TableAttempt(e), "A");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->held);
  EXPECT_TRUE(first->created);
  EXPECT_EQ(first->version, "1");
  const std::string id = first->record_id;
  EXPECT_EQ(db_.QueryText("SELECT record_id || '/' || (payload->>'n')"
                          " FROM downstream WHERE idempotency_key = 'shop:t1'"),
            id + "/1");
  EXPECT_EQ(db_.QueryText("SELECT outcome || '/' || target_record_id || '/' || attempts || '/' ||"
                          " (SELECT count(*) = 0 FROM delivery_claims) || '/' ||"
                          " (processed_at IS NOT NULL) FROM events WHERE event_id = 't1'"),
            "succeeded/" + id + "/1/true/true");
  // The row's version and update time are the event's target's.
  EXPECT_EQ(db_.QueryText("SELECT target_version || '/' ||"
                          " (target_updated_at = (SELECT updated_at FROM downstream))"
                          " FROM events WHERE event_id = 't1'"),
            "1/true");

  // A second delivery (a replay resending it) finds the row: already_processed,
  // the same record id, no second insert.
  auto again = store_.TryClaim(e.position, e.ingested_at, "replay:r", absl::Seconds(30));
  ASSERT_TRUE(again.ok() && again->has_value());
  auto second = store_.DeliverToLogTable("downstream", "shop:t1", R"({"n": 1})",
                                         TableAttempt(**again), "replay:r");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->held);
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->record_id, id);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM downstream"), 1);
  EXPECT_EQ(db_.QueryText("SELECT outcome || '/' || target_record_id || '/' || attempts || '/' ||"
                          " (SELECT count(*) = 0 FROM delivery_claims)"
                          " FROM events WHERE event_id = 't1'"),
            "already_processed/" + id + "/2/true");
  EXPECT_EQ(
      db_.QueryText("SELECT string_agg(attempt || ':' || trigger || ':' || outcome || ':' ||"
                    " record_id || ':' || worker, ',' ORDER BY attempt) FROM delivery_attempts"),
      "1:live:succeeded:" + id + ":A,2:replay:r:already_processed:" + id + ":replay:r");
}

TEST_F(DeliveryStoreTest, LogTableDeliveryRollsTheDownstreamRowBackWhenTheLogUpdateFails) {
  Append({Event("t2", "a")});
  auto claimed = Claim("A");
  ASSERT_EQ(claimed.size(), 1u);
  // The log refuses the outcome update after the downstream insert has run.
  db_.Exec(
      "CREATE FUNCTION refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS"
      " $$BEGIN IF NEW.outcome <> OLD.outcome THEN RAISE EXCEPTION 'refused'; END IF;"
      " RETURN NEW; END$$");
  db_.Exec(
      "CREATE TRIGGER refuse BEFORE UPDATE ON events FOR EACH ROW"
      " EXECUTE FUNCTION refuse_outcome()");
  auto r = store_.DeliverToLogTable("downstream", "shop:t2", R"({"n": 2})",
                                    TableAttempt(claimed[0]), "A");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM downstream"), 0);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_attempts"), 0);
  EXPECT_EQ(db_.QueryText("SELECT e.outcome || '/' || c.owner FROM events e"
                          " JOIN delivery_claims c USING (position) WHERE e.event_id = 't2'"),
            "pending/A");
}

TEST_F(DeliveryStoreTest, AnAttemptKeepsTheSinkAndRetryPolicyItWasMadeUnder) {
  Append({Event("s1", "s")});
  auto claimed = Claim("A");
  ASSERT_THAT(Ids(claimed), ElementsAre("s1"));
  auto [a, u] = Attempt(claimed[0], Outcome::kSucceeded);
  a.sink = "shop-v2";
  a.retry = {3, absl::Milliseconds(250), absl::Seconds(4)};
  ASSERT_TRUE(store_.RecordAttempt(a, u, "A").ok());
  auto trace = store_.GetTrace("shop", "s1");
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->attempts.size(), 1u);
  EXPECT_EQ(trace->attempts[0].sink, "shop-v2");
  EXPECT_EQ(trace->attempts[0].retry.max_attempts, 3);
  EXPECT_EQ(trace->attempts[0].retry.base_delay, absl::Milliseconds(250));
  EXPECT_EQ(trace->attempts[0].retry.max_delay, absl::Seconds(4));
}

TEST_F(DeliveryStoreTest, AnAttemptRowWithoutSinkOrPolicyReadsAsNone) {
  Append({Event("s1", "s")});
  auto claimed = Claim("A");
  ASSERT_THAT(Ids(claimed), ElementsAre("s1"));
  ASSERT_TRUE(Record(claimed[0], Outcome::kSucceeded, "A").ok());
  auto trace = store_.GetTrace("shop", "s1");
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->attempts.size(), 1u);
  EXPECT_EQ(trace->attempts[0].sink, "");
  EXPECT_TRUE(trace->attempts[0].retry.empty());
}

}  // namespace
}  // namespace replayd
