// The PostgreSQL table sink against a real PostgreSQL: what its lookup reads
// back of a row, a table made before rows had versions, and updates under a
// known version.
#include <gtest/gtest.h>

#include <optional>

#include "nlohmann/json.hpp"
#include "server/delivery/pg_table_sink.h"
#include "tests/support/scratch_database.h"

namespace replayd {
namespace {

StoredEvent Event(const std::string& id, const std::string& payload = R"({"n": 1})") {
  StoredEvent e;
  e.position = 1;
  e.event.source = "shop";
  e.event.event_id = id;
  e.event.payload = payload;
  e.ingested_at = absl::FromUnixSeconds(1795309800);
  return e;
}

class TableSinkTest : public ::testing::Test {
 protected:
  // A sink writing to `table` in the scratch database, named as a downstream
  // database of its own: Deliver and Lookup do the work.
  std::unique_ptr<PgTableSink> Sink(const std::string& table = "downstream") {
    SinkConfig config;
    config.name = "table";
    config.type = SinkConfig::Type::kPostgres;
    config.table = table;
    config.database_url = db_.dsn();
    config.max_in_flight = 2;
    auto sink = PgTableSink::Create(config, "");
    EXPECT_TRUE(sink.ok()) << sink.status();
    return *std::move(sink);
  }

  DeliveryResult Deliver(PgTableSink& sink, const StoredEvent& e) {
    return sink.Deliver({&e, 1, ""});
  }

  testing::ScratchDatabase db_;
};

TEST_F(TableSinkTest, LookupReadsTheRowsIdVersionUpdateTimeAndPayload) {
  auto sink = Sink();
  const absl::Time before = absl::Now() - absl::Seconds(5);
  const DeliveryResult created = Deliver(*sink, Event("e1", R"({"n": 7})"));
  ASSERT_EQ(created.kind, DeliveryResult::Kind::kSucceeded) << created.error;
  auto found = sink->Lookup(Event("e1"));
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  const DownstreamRecord& r = **found;
  EXPECT_EQ(r.id, created.record_id);
  EXPECT_EQ(r.version, "1");
  ASSERT_TRUE(r.updated_at.has_value());
  EXPECT_GT(*r.updated_at, before);
  EXPECT_LT(*r.updated_at, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.data.has_value());
  const auto data = nlohmann::json::parse(*r.data);
  EXPECT_EQ(data["event_id"], "e1");
  EXPECT_EQ(data["payload"]["n"], 7);
}

TEST_F(TableSinkTest, LookupOfAKeyWithoutARowFindsNothing) {
  auto sink = Sink();
  auto found = sink->Lookup(Event("absent"));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
}

TEST_F(TableSinkTest, ATableWithoutVersionsGetsThemAndItsRowsReadVersionOne) {
  db_.Exec(
      "CREATE TABLE old_downstream (idempotency_key text PRIMARY KEY,"
      " record_id text NOT NULL DEFAULT gen_random_uuid()::text, payload jsonb NOT NULL,"
      " created_at timestamptz NOT NULL DEFAULT now())");
  db_.Exec(
      "INSERT INTO old_downstream (idempotency_key, record_id, payload)"
      " VALUES ('shop:old', 'pre-existing', '{\"n\": 0}')");
  auto sink = Sink("old_downstream");
  auto found = sink->Lookup(Event("old"));
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, "pre-existing");
  EXPECT_EQ((*found)->version, "1");
  EXPECT_TRUE((*found)->updated_at.has_value());
  EXPECT_EQ((*found)->data, R"({"n": 0})");
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM information_schema.columns"
                         " WHERE table_name = 'old_downstream'"
                         " AND column_name IN ('version', 'updated_at')"),
            2);
  // A second sink on the upgraded table reads it as it is.
  EXPECT_EQ(Deliver(*Sink("old_downstream"), Event("old")).kind,
            DeliveryResult::Kind::kAlreadyProcessed);
}

TEST_F(TableSinkTest, AnUpdateAtTheKnownVersionOverwritesThePayloadAndBumpsTheVersion) {
  auto sink = Sink();
  const DeliveryResult created = Deliver(*sink, Event("u1", R"({"n": 1})"));
  ASSERT_EQ(created.record_version, "1");
  const StoredEvent changed = Event("u1", R"({"n": 2})");
  const DeliveryResult updated = sink->Update({&changed, 1, ""}, "1");
  EXPECT_EQ(updated.kind, DeliveryResult::Kind::kSucceeded) << updated.error;
  EXPECT_EQ(updated.record_id, created.record_id);
  EXPECT_EQ(updated.record_version, "2");
  EXPECT_EQ(db_.QueryText("SELECT version || '/' || (payload->'payload'->>'n') FROM downstream"),
            "2/2");
  // Without a known version it overwrites whatever the version.
  EXPECT_EQ(sink->Update({&changed, 1, ""}, std::nullopt).record_version, "3");
}

TEST_F(TableSinkTest, AnUpdateAtAStaleVersionIsAPreconditionFailureAndChangesNothing) {
  auto sink = Sink();
  ASSERT_EQ(Deliver(*sink, Event("u2", R"({"n": 1})")).kind, DeliveryResult::Kind::kSucceeded);
  // Someone changed the row downstream.
  db_.Exec("UPDATE downstream SET version = 5, payload = '{\"edited\": true}'");
  const StoredEvent changed = Event("u2", R"({"n": 2})");
  const DeliveryResult stale = sink->Update({&changed, 1, ""}, "1");
  EXPECT_EQ(stale.kind, DeliveryResult::Kind::kPreconditionFailed);
  EXPECT_EQ(stale.record_version, "5");
  EXPECT_EQ(stale.error, "the row is at version 5, not 1");
  EXPECT_EQ(db_.QueryText("SELECT version || '/' || payload::text FROM downstream"),
            "5/{\"edited\": true}");
}

TEST_F(TableSinkTest, AnUpdateOfAKeyWithoutARowIsFinal) {
  auto sink = Sink();
  const StoredEvent e = Event("none");
  const DeliveryResult r = sink->Update({&e, 1, ""}, "1");
  EXPECT_EQ(r.kind, DeliveryResult::Kind::kFinal);
  EXPECT_EQ(r.error, "no row with this idempotency key");
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM downstream"), 0);
}

}  // namespace
}  // namespace replayd
