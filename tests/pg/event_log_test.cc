// The event log against a real PostgreSQL: global uniqueness across daily
// partitions, partitions ahead and on demand, retention, mixed batches, and
// concurrent migration.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "server/common/clock.h"
#include "server/ingest/ingester.h"
#include "server/store/migrator.h"
#include "server/store/partitions.h"
#include "server/store/pg_event_store.h"
#include "server/store/pg_pool.h"
#include "tests/support/scratch_database.h"
#include "tests/support/time.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using testing::At;

NewEvent Event(const std::string& id, const std::string& payload = R"({"n": 1})") {
  NewEvent e;
  e.source = "orders";
  e.event_id = id;
  e.payload = payload;
  return e;
}

class EventLogTest : public ::testing::Test {
 protected:
  EventLogTest() : pool_(db_.dsn(), 4), partitions_(&pool_), store_(&pool_, &partitions_) {}

  testing::ScratchDatabase db_;
  PgPool pool_;
  Partitions partitions_;
  PgEventStore store_;
};

TEST_F(EventLogTest, EventIdStoredYesterdayIsDuplicateToday) {
  absl::Time yesterday = At("2026-11-21T23:59:59Z");
  absl::Time today = At("2026-11-22T00:00:01Z");
  ASSERT_TRUE(partitions_.EnsureDays(yesterday, today).ok());

  auto first = store_.Append(yesterday, {Event("e-1")});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(*first, ElementsAre(true));
  auto second = store_.Append(today, {Event("e-1"), Event("e-2")});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(*second, ElementsAre(false, true));

  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events WHERE event_id = 'e-1'"), 1);
  EXPECT_EQ(db_.QueryText("SELECT tableoid::regclass::text FROM events WHERE event_id = 'e-1'"),
            "events_p20261121");
  EXPECT_EQ(db_.QueryText("SELECT tableoid::regclass::text FROM events WHERE event_id = 'e-2'"),
            "events_p20261122");
  auto found = store_.Find("orders", "e-1");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->ingested_at, yesterday);
  EXPECT_EQ(found->outcome, Outcome::kPending);
  EXPECT_EQ(store_.Find("orders", "nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EventLogTest, PartitionsAheadAndOnDemand) {
  absl::Time now = At("2026-11-22T10:00:00Z");
  ASSERT_TRUE(partitions_.EnsureDays(now, now + absl::Hours(24 * 3)).ok());
  auto days = partitions_.ListDays();
  ASSERT_TRUE(days.ok());
  EXPECT_THAT(*days, ElementsAre("20261122", "20261123", "20261124", "20261125"));
  // Idempotent, and safe from two callers at once.
  std::thread other([&] { EXPECT_TRUE(partitions_.EnsureDays(now, now + absl::Hours(96)).ok()); });
  EXPECT_TRUE(partitions_.EnsureDays(now, now + absl::Hours(96)).ok());
  other.join();
  EXPECT_EQ(partitions_.ListDays()->size(), 5u);

  // A day with no partition yet is created on demand by the write.
  auto stored = store_.Append(At("2026-12-30T12:00:00Z"), {Event("far")});
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_THAT(*stored, ElementsAre(true));
  EXPECT_EQ(partitions_.ListDays()->back(), "20261230");
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_attempts_p20261230"), 0);
}

TEST_F(EventLogTest, RetentionDropsOnlyExpiredPartitions) {
  absl::Time now = At("2026-11-22T10:00:00Z");
  ASSERT_TRUE(partitions_.EnsureDays(now - absl::Hours(24 * 10), now).ok());
  ASSERT_TRUE(store_.Append(now - absl::Hours(24 * 10), {Event("old-1"), Event("old-2")}).ok());
  // Day 2026-11-15 straddles the 7-day boundary: kept.
  ASSERT_TRUE(store_.Append(At("2026-11-15T00:00:00Z"), {Event("boundary")}).ok());
  ASSERT_TRUE(store_.Append(now - absl::Hours(24 * 2), {Event("recent")}).ok());

  auto dropped = partitions_.DropExpired(now, 7);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_THAT(*dropped, ElementsAre("events_p20261112", "events_p20261113", "events_p20261114"));
  auto days = partitions_.ListDays();
  EXPECT_EQ(days->front(), "20261115");
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events"), 2);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM event_keys"), 2);
  EXPECT_EQ(
      db_.QueryInt("SELECT count(*) FROM pg_class WHERE relname = 'delivery_attempts_p20261114'"),
      0);
  // retention_days 0 keeps everything.
  EXPECT_TRUE(partitions_.DropExpired(now + absl::Hours(24 * 365), 0)->empty());
}

TEST_F(EventLogTest, BatchOfNineGoodAndOneBadStoresTheNine) {
  FakeClock clock(absl::Now());
  ASSERT_TRUE(partitions_.EnsureDays(clock.Now(), clock.Now()).ok());
  Ingester ingester(&store_, &clock, {});
  std::vector<NewEvent> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(Event("mixed-" + std::to_string(i)));
  batch[6].payload = "{\"broken\": ";
  auto results = ingester.Ingest(batch);
  ASSERT_TRUE(results.ok()) << results.status();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ((*results)[i].status,
              i == 6 ? IngestResult::Status::kRejected : IngestResult::Status::kAccepted)
        << i;
  }
  EXPECT_THAT((*results)[6].reason, HasSubstr("payload is not valid JSON"));
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events"), 9);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events WHERE event_id = 'mixed-6'"), 0);
  // Positions follow the request order.
  EXPECT_EQ(db_.QueryText("SELECT string_agg(event_id, ',' ORDER BY position) FROM events"),
            "mixed-0,mixed-1,mixed-2,mixed-3,mixed-4,mixed-5,mixed-7,mixed-8,mixed-9");
}

TEST_F(EventLogTest, InvalidJsonPayloadRefusesTheBatchAndStoresNothing) {
  absl::Time now = absl::Now();
  ASSERT_TRUE(partitions_.EnsureDays(now, now).ok());
  // Fast path: jsonb input refuses the COPY (SQLSTATE 22P02).
  auto fast = store_.Append(now, {Event("ok-1"), Event("bad-1", "{\"broken\": ")});
  EXPECT_EQ(fast.status().code(), absl::StatusCode::kInvalidArgument) << fast.status();
  EXPECT_THAT(std::string(fast.status().message()),
              HasSubstr("invalid input syntax for type json"));
  // Conflict-safe path (a known key sends the batch there): refused too.
  ASSERT_TRUE(store_.Append(now, {Event("known")}).ok());
  auto safe = store_.Append(now, {Event("known"), Event("ok-2"), Event("bad-2", "nope")});
  EXPECT_EQ(safe.status().code(), absl::StatusCode::kInvalidArgument) << safe.status();
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events"), 1);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM event_keys"), 1);
}

TEST_F(EventLogTest, IngesterRejectsOnlyTheBadPayloadsOfARefusedBatch) {
  FakeClock clock(absl::Now());
  ASSERT_TRUE(partitions_.EnsureDays(clock.Now(), clock.Now()).ok());
  Ingester ingester(&store_, &clock, {});
  ASSERT_TRUE(store_.Append(clock.Now(), {Event("stored-before")}).ok());
  std::vector<NewEvent> batch = {Event("r-0"),
                                 Event("stored-before"),
                                 Event("r-2", "[1, 2"),
                                 Event("r-3", R"({"n": 1e400})"),
                                 Event("r-4", "{\"a\": tru}"),
                                 Event("r-5")};
  auto results = ingester.Ingest(batch);
  ASSERT_TRUE(results.ok()) << results.status();
  using S = IngestResult::Status;
  std::vector<S> statuses;
  for (const auto& r : *results) statuses.push_back(r.status);
  EXPECT_THAT(statuses, ElementsAre(S::kAccepted, S::kDuplicate, S::kRejected, S::kAccepted,
                                    S::kRejected, S::kAccepted));
  EXPECT_EQ((*results)[2].reason, "payload is not valid JSON");
  EXPECT_EQ((*results)[4].reason, "payload is not valid JSON");
  EXPECT_EQ(db_.QueryText("SELECT string_agg(event_id, ',' ORDER BY event_id) FROM events"),
            "r-0,r-3,r-5,stored-before");
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM event_keys"), 4);
  // jsonb keeps the number beyond double range exactly.
  EXPECT_EQ(db_.QueryText("SELECT payload->>'n' FROM events WHERE event_id = 'r-3'"),
            "1" + std::string(400, '0'));
}

TEST_F(EventLogTest, StoresEveryFieldExactly) {
  absl::Time now = At("2026-11-22T10:00:00.123456Z");
  ASSERT_TRUE(partitions_.EnsureDays(now, now).ok());
  NewEvent e = Event("full", R"({"text": "tab\there \\ back", "n": [1, 2]})");
  e.sequence = 42;
  e.key = "order-7";
  e.type = "order.created";
  e.occurred_at = At("2026-11-22T09:59:00.5Z");
  ASSERT_TRUE(store_.Append(now, {e}).ok());
  auto found = store_.Find("orders", "full");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->event.sequence, 42);
  EXPECT_EQ(found->event.key, "order-7");
  EXPECT_EQ(found->event.type, "order.created");
  EXPECT_EQ(found->event.occurred_at, e.occurred_at);
  EXPECT_EQ(found->ingested_at, now);
  EXPECT_EQ(found->next_attempt_at, now);
  EXPECT_EQ(found->event.payload, R"({"n": [1, 2], "text": "tab\there \\ back"})");
}

TEST_F(EventLogTest, BatchLargerThanOneCopyPieceKeepsEveryByte) {
  absl::Time now = absl::Now();
  ASSERT_TRUE(partitions_.EnsureDays(now, now).ok());
  // About 200 KiB of COPY data, sent in several pieces, with bytes that COPY
  // escapes (backslash, tab, newline, carriage return) in text and as JSON
  // whitespace.
  std::vector<NewEvent> batch;
  for (int i = 0; i < 500; ++i) {
    NewEvent e = Event(absl::StrCat("big\\", i),
                       absl::StrCat("{\"t\":\t\"a\\tb\\\\c\\nd\",\r\n \"i\": ", i, ", \"pad\": \"",
                                    std::string(300, 'x'), "\"}"));
    e.key = "k\\1";
    batch.push_back(std::move(e));
  }
  auto stored = store_.Append(now, batch);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events WHERE payload->>'t' = E'a\\tb\\\\c\\nd'"
                         " AND event_id = 'big\\' || (payload->>'i') AND key = 'k\\1'"),
            500);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM event_keys WHERE event_id LIKE 'big\\\\%'"), 500);
}

TEST_F(EventLogTest, ConcurrentWritersOfTheSameKeysStoreEachOnce) {
  absl::Time now = absl::Now();
  ASSERT_TRUE(partitions_.EnsureDays(now, now).ok());
  std::vector<NewEvent> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(Event("race-" + std::to_string(i)));
  constexpr int kWriters = 4;
  std::vector<absl::StatusOr<std::vector<bool>>> results(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] { results[w] = store_.Append(now, batch); });
  }
  for (auto& t : writers) t.join();
  for (size_t i = 0; i < batch.size(); ++i) {
    int stored = 0;
    for (const auto& r : results) {
      ASSERT_TRUE(r.ok()) << r.status();
      stored += (*r)[i] ? 1 : 0;
    }
    EXPECT_EQ(stored, 1) << batch[i].event_id;
  }
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM events"), 200);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM event_keys"), 200);
}

TEST(Migrator, TwoDaemonsMigratingTogetherBothSucceed) {
  testing::ScratchDatabase db;  // already migrated once: start from scratch below
  db.Exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
  absl::StatusOr<std::vector<std::string>> a, b;
  std::thread t1([&] { a = Migrate(db.dsn()); });
  std::thread t2([&] { b = Migrate(db.dsn()); });
  t1.join();
  t2.join();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->size() + b->size(), BuiltInMigrations().size());
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM schema_migrations"),
            static_cast<int64_t>(BuiltInMigrations().size()));
  EXPECT_TRUE(CheckMigrated(db.dsn()).ok());
  db.Exec("DELETE FROM schema_migrations WHERE version = 1");
  EXPECT_EQ(CheckMigrated(db.dsn()).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(Migrator, SchemaProbeKeepsOneConnectionAndOutlivesItsBackend) {
  testing::ScratchDatabase db;
  ASSERT_TRUE(Migrate(db.dsn()).ok());
  const std::string dsn = db.dsn() + (db.dsn().find('?') == std::string::npos ? "?" : "&") +
                          "application_name=schema_probe";
  const std::string backends =
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'schema_probe'";
  SchemaProbe probe(dsn);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(probe.Check().ok());
  EXPECT_EQ(db.QueryInt(backends), 1);
  const int64_t first =
      db.QueryInt("SELECT pid FROM pg_stat_activity WHERE application_name = 'schema_probe'");
  db.QueryInt(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
      " WHERE application_name = 'schema_probe'");
  // The dead connection is not the database's state: the check opens a new one.
  EXPECT_TRUE(probe.Check().ok());
  EXPECT_EQ(db.QueryInt(backends), 1);
  EXPECT_NE(db.QueryInt("SELECT pid FROM pg_stat_activity WHERE application_name = 'schema_probe'"),
            first);
}

// The pool closes a connection that has served longer than its max age when
// it comes back, with what was prepared on it, and opens a fresh one.
TEST(PgPool, ConnectionsPastTheirAgeAreClosedAndReplaced) {
  testing::ScratchDatabase db;
  auto backend = [](PgPool& pool) {
    int64_t pid = 0;
    EXPECT_TRUE(pool.Run("pid",
                         [&](PgPool::Lease& lease) {
                           lease.Prepare("pid", "SELECT pg_backend_pid()");
                           pqxx::nontransaction tx(lease.conn());
                           pid = tx.exec_prepared1("pid")[0].as<int64_t>();
                         })
                    .ok());
    return pid;
  };
  PgPool lasting(db.dsn(), 1);
  const int64_t first = backend(lasting);
  EXPECT_EQ(backend(lasting), first);
  PgPool aging(db.dsn(), 1, std::chrono::seconds(1));
  const int64_t old = backend(aging);
  EXPECT_EQ(backend(aging), old);            // still young
  absl::SleepFor(absl::Milliseconds(1300));  // past 1 s and its jitter (at most 0.25 s)
  const int64_t retired = backend(aging);    // served past its age: closed after this
  EXPECT_EQ(retired, old);
  const int64_t fresh = backend(aging);
  EXPECT_NE(fresh, old);
  // Its backend exits (the statement prepared there went with it).
  const std::string alive =
      "SELECT count(*) FROM pg_stat_activity WHERE pid = " + std::to_string(old);
  testing::PollUntil([&] { return db.QueryInt(alive) == 0; }, absl::Seconds(2),
                     absl::Milliseconds(20));
  EXPECT_EQ(db.QueryInt(alive), 0);
}

}  // namespace
}  // namespace replayd
