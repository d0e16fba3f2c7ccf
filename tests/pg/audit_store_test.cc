// The audit read on a real PostgreSQL: newest first, filtered by replay and
// by time, limited, and paged by id without gaps or repeats.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/store/pg_pool.h"
#include "server/store/pg_replay_store.h"
#include "tests/support/scratch_database.h"

namespace replayd {
namespace {

AuditQuery Query(std::string replay_id, std::optional<absl::Time> since = std::nullopt,
                 int64_t before_id = 0, int limit = 0) {
  AuditQuery q;
  q.replay_id = std::move(replay_id);
  q.since = since;
  q.before_id = before_id;
  q.limit = limit;
  return q;
}

class AuditStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Six entries, one an hour ending two hours ago: a1 start, a2 cancel,
    // b1 start, a3 takeover, b2 cancel, and a row without a replay.
    db_.Exec(R"sql(
      INSERT INTO replay_audit (at, actor, action, replay_id, reason, detail) VALUES
        (now() - interval '7 hours', 'alice', 'start', 'rp-a', 'backfill', '{"rate": 5}'),
        (now() - interval '6 hours', 'bob', 'cancel', 'rp-a', 'wrong window', '{}'),
        (now() - interval '5 hours', 'alice', 'start', 'rp-b', 'retry', '{}'),
        (now() - interval '4 hours', 'daemon-2', 'takeover', 'rp-a', 'lease expired', '{}'),
        (now() - interval '3 hours', 'carol', 'cancel', 'rp-b', 'done', '{}'),
        (now() - interval '2 hours', 'ops', 'reload', NULL, 'new sink', '{}'))sql");
  }

  // "action:replay" of each entry, in the order read.
  std::vector<std::string> Read(const AuditQuery& query) {
    auto entries = store_.ListAudit(query);
    EXPECT_TRUE(entries.ok()) << entries.status();
    std::vector<std::string> out;
    if (!entries.ok()) return out;
    for (const AuditEntry& e : *entries) out.push_back(absl::StrCat(e.action, ":", e.replay_id));
    return out;
  }

  testing::ScratchDatabase db_;
  PgPool pool_{db_.dsn(), 2};
  PgReplayStore store_{&pool_};
};

TEST_F(AuditStoreTest, ListsEveryEntryNewestFirst) {
  EXPECT_EQ(Read(AuditQuery{}),
            (std::vector<std::string>{"reload:", "cancel:rp-b", "takeover:rp-a", "start:rp-b",
                                      "cancel:rp-a", "start:rp-a"}));
}

TEST_F(AuditStoreTest, KeepsWhoWhenWhatAndWhy) {
  auto entries = store_.ListAudit(Query("rp-a", std::nullopt, 0, 1));
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 1u);
  const AuditEntry& e = (*entries)[0];
  EXPECT_EQ(e.actor, "daemon-2");
  EXPECT_EQ(e.action, "takeover");
  EXPECT_EQ(e.reason, "lease expired");
  EXPECT_EQ(e.detail_json, "{}");
  EXPECT_EQ(e.id, db_.QueryInt("SELECT id FROM replay_audit WHERE action = 'takeover'"));
  absl::Duration age = absl::Now() - e.at;
  EXPECT_GT(age, absl::Hours(4) - absl::Minutes(1));
  EXPECT_LT(age, absl::Hours(4) + absl::Minutes(1));
}

TEST_F(AuditStoreTest, FiltersByReplay) {
  EXPECT_EQ(Read(Query("rp-a")),
            (std::vector<std::string>{"takeover:rp-a", "cancel:rp-a", "start:rp-a"}));
  EXPECT_TRUE(Read(Query("rp-none")).empty());
}

TEST_F(AuditStoreTest, FiltersBySince) {
  EXPECT_EQ(Read(Query("", absl::Now() - absl::Minutes(270))),
            (std::vector<std::string>{"reload:", "cancel:rp-b", "takeover:rp-a"}));
  EXPECT_EQ(Read(Query("rp-b", absl::Now() - absl::Minutes(270))),
            (std::vector<std::string>{"cancel:rp-b"}));
  EXPECT_TRUE(Read(Query("", absl::Now())).empty());
}

TEST_F(AuditStoreTest, PagesByIdWithoutGapsOrRepeats) {
  auto first = store_.ListAudit(Query("", std::nullopt, 0, 4));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 4u);
  EXPECT_EQ(Read(Query("", std::nullopt, first->back().id, 4)),
            (std::vector<std::string>{"cancel:rp-a", "start:rp-a"}));
  EXPECT_EQ(Read(Query("rp-a", std::nullopt, first->back().id)),
            (std::vector<std::string>{"cancel:rp-a", "start:rp-a"}));
}

TEST_F(AuditStoreTest, LimitDefaultsTo100AndStopsAt1000) {
  db_.Exec(
      "INSERT INTO replay_audit (actor, action) SELECT 'bulk', 'start'"
      " FROM generate_series(1, 1100)");
  auto defaulted = store_.ListAudit(Query(""));
  ASSERT_TRUE(defaulted.ok());
  EXPECT_EQ(defaulted->size(), 100u);
  auto capped = store_.ListAudit(Query("", std::nullopt, 0, 5000));
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->size(), 1000u);
}

}  // namespace
}  // namespace replayd
