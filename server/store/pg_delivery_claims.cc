// PgDeliveryStore's claims: taking events for delivery, renewing and giving
// them back.
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/store/day_partitions.h"
#include "server/store/pg_delivery_store.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// Index-driven plans only: the CTE row estimates are guesses, and a hash join
// would scan every partition of the log.
// JIT compilation costs more than these short statements ever run.
constexpr const char* kIndexJoins =
    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL jit = off";

// Claiming takes two or three statements in one transaction.
//
// 1. kClaimSql, $1 positions, $2 their ingested_at in epoch microseconds,
// $3 owner, $4 lease in microseconds: inserts the claims in position order,
// so two claimers never deadlock (one racing for the same events waits on the
// first row it shares with the other and then finds it taken). Takes over
// expired claims and renews the owner's own. Returns the positions taken.
//
// 2. ClaimVerifySql re-reads what was taken, as of now: every competing claim
// or record on these events has committed by then (the insert waited for it
// or found its claim row gone). One statement per day partition, named
// directly (DayPartitionOf): $1 positions taken, $2 their ingested_at in
// epoch microseconds. Each row comes with whether it is still undelivered and
// how long until it is due.
//
// 3. Only for undelivered keyed events of strict sources, BlockersSql: the
// earliest failed event of each one's key before it, from
// delivery_failed_keys (migration 0008). $1 positions, $2 sources, $3 keys.
//
// Claim() gives back all but the due ones in the same transaction.
constexpr const char* kClaimName = "delivery_claim";
constexpr const char* kClaimSql = R"sql(
INSERT INTO delivery_claims AS c (position, ingested_at, owner, expires_at)
SELECT t.position, 'epoch'::timestamptz + t.us * interval '1 microsecond', $3,
       now() + $4 * interval '1 microsecond'
  FROM unnest($1::bigint[], $2::bigint[]) AS t(position, us)
 ORDER BY t.position
ON CONFLICT (position) DO UPDATE
   SET owner = excluded.owner, expires_at = excluded.expires_at
 WHERE c.owner = excluded.owner OR c.expires_at < now()
RETURNING c.position)sql";

constexpr const char* kClaimVerifyName = "delivery_claim_verify";
std::string ClaimVerifySql(const std::string& partition) {
  return absl::StrCat("SELECT ", StoredEventColumns("e"), R"sql(,
       e.outcome IN ('pending', 'retrying') AS undelivered,
       GREATEST(0, extract(epoch FROM e.next_attempt_at - now()) * 1e6)::bigint AS due_in_us
  FROM unnest($1::bigint[], $2::bigint[]) AS t(position, us)
  JOIN )sql",
                      partition, R"sql( e
    ON e.ingested_at = 'epoch'::timestamptz + t.us * interval '1 microsecond'
   AND e.position = t.position)sql");
}

constexpr const char* kBlockersName = "delivery_claim_blockers";
std::string BlockersSql() {
  return absl::StrCat("SELECT t.position, f.position, ", EpochUs("f.ingested_at"), R"sql(
  FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(position, source, key)
  JOIN LATERAL (
    SELECT p.position, p.ingested_at FROM delivery_failed_keys p
     WHERE p.source = t.source AND p.key = t.key AND p.position < t.position
     ORDER BY p.position
     LIMIT 1) f ON true)sql");
}

// $1 positions, $2 their ingested_at in epoch microseconds: those still
// failed. The others leave delivery_failed_keys in the same statement, so a
// blocker whose outcome changed outside a record (by hand in SQL) stops
// holding back its key.
constexpr const char* kStillFailedName = "delivery_still_failed";
constexpr const char* kStillFailedSql = R"sql(
WITH failed AS (
  SELECT e.position
    FROM unnest($1::bigint[], $2::bigint[]) AS t(position, us)
    JOIN events e ON e.ingested_at = 'epoch'::timestamptz + t.us * interval '1 microsecond'
                 AND e.position = t.position
   WHERE e.outcome = 'failed'
), healed AS (
  DELETE FROM delivery_failed_keys
   WHERE position = ANY($1::bigint[]) AND position NOT IN (SELECT position FROM failed)
)
SELECT position FROM failed)sql";

// $1 owner, $2 positions: also Release().
constexpr const char* kGiveBackName = "delivery_give_back";
constexpr const char* kGiveBackSql =
    "DELETE FROM delivery_claims WHERE owner = $1 AND position = ANY($2::bigint[])";

// $1 ingested_at, $2 position, $3 owner, $4 lease in microseconds. Takes the
// claim when it is free, expired, or already `owner`'s.
constexpr const char* kTryClaimName = "delivery_try_claim";
constexpr const char* kTryClaimSql = R"sql(
INSERT INTO delivery_claims AS c (position, ingested_at, owner, expires_at)
VALUES ($2, $1, $3, now() + $4 * interval '1 microsecond')
ON CONFLICT (position) DO UPDATE
   SET owner = excluded.owner, expires_at = excluded.expires_at
 WHERE c.owner = excluded.owner OR c.expires_at < now()
RETURNING 1)sql";

// Whether an event is in its day's partition: $1 ingested_at, $2 position.
constexpr const char* kExistsName = "delivery_event_exists";
std::string ExistsSql(const std::string& partition) {
  return absl::StrCat("SELECT 1 FROM ", partition, " WHERE ingested_at = $1 AND position = $2");
}

// One event from its day's partition: $1 ingested_at, $2 position.
constexpr const char* kEventName = "delivery_event";
std::string EventSql(const std::string& partition) {
  return absl::StrCat("SELECT ", StoredEventColumns("e"), " FROM ", partition,
                      " e WHERE e.ingested_at = $1 AND e.position = $2");
}

constexpr const char* kExtendName = "delivery_extend_claims";
// Claims being released right now (a record deleting them) are skipped, so
// the heartbeat never waits on a record group nor the other way round.
constexpr const char* kExtendSql = R"sql(
UPDATE delivery_claims c SET expires_at = now() + $2 * interval '1 microsecond'
  FROM (SELECT position FROM delivery_claims WHERE owner = $1
           FOR UPDATE SKIP LOCKED) mine
 WHERE c.position = mine.position)sql";

constexpr const char* kSweepName = "delivery_sweep_claims";
constexpr const char* kSweepSql = R"sql(
DELETE FROM delivery_claims
 WHERE position IN (SELECT position FROM delivery_claims
                     WHERE expires_at < now() - interval '1 hour'
                       FOR UPDATE SKIP LOCKED))sql";

constexpr const char* kReleaseAllName = "delivery_release_all";
constexpr const char* kReleaseAllSql = "DELETE FROM delivery_claims WHERE owner = $1";

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

std::pair<std::string, std::string> RefArrays(const std::vector<EventRef>& events) {
  std::vector<int64_t> positions, us;
  for (const EventRef& e : events) {
    positions.push_back(e.position);
    us.push_back(absl::ToUnixMicros(e.ingested_at));
  }
  return {PgBigintArray(positions), PgBigintArray(us)};
}

}  // namespace

absl::StatusOr<std::vector<ClaimResult>> PgDeliveryStore::Claim(
    const std::vector<EventRef>& events, const std::string& owner, absl::Duration lease_time,
    const std::vector<std::string>& strict_sources) {
  std::vector<ClaimResult> results;
  if (events.empty()) return results;
  const auto [positions, ingested_us] = RefArrays(events);
  std::unordered_map<int64_t, size_t> index;
  std::vector<std::string> partition_of(events.size());  // each event's day partition
  std::set<std::string> partitions;
  for (size_t i = 0; i < events.size(); ++i) {
    index.emplace(events[i].position, i);
    partition_of[i] = DayPartitionOf("events", events[i].ingested_at);
    partitions.insert(partition_of[i]);
  }
  const std::unordered_set<std::string> strict(strict_sources.begin(), strict_sources.end());
  auto claim = [&](PgPool::Lease& lease, pqxx::work& tx,
                   const std::unordered_set<std::string>& gone) {
    lease.Prepare(kClaimName, kClaimSql);
    lease.Prepare(kBlockersName, BlockersSql());
    for (const std::string& partition : partitions) {
      lease.Prepare(OnPartition(kClaimVerifyName, partition), ClaimVerifySql(partition));
    }
    results.assign(events.size(), ClaimResult{});
    tx.exec0(kIndexJoins);
    // Taken positions by partition, with their ingested_at.
    std::map<std::string, std::pair<std::vector<int64_t>, std::vector<int64_t>>> taken;
    for (const auto& row :
         tx.exec_prepared(kClaimName, positions, ingested_us, owner, Micros(lease_time))) {
      const size_t i = index.at(row[0].as<int64_t>());
      auto& [p, us] = taken[partition_of[i]];
      p.push_back(events[i].position);
      us.push_back(absl::ToUnixMicros(events[i].ingested_at));
    }
    if (taken.empty()) return;  // all busy
    std::unordered_set<int64_t> seen;
    std::vector<int64_t> strict_keyed;  // undelivered keyed events of strict sources
    for (const auto& [partition, refs] : taken) {
      if (gone.count(partition) > 0) continue;
      for (const auto& row :
           tx.exec_prepared(OnPartition(kClaimVerifyName, partition), PgBigintArray(refs.first),
                            PgBigintArray(refs.second))) {
        const int n = kStoredEventColumnCount;
        ClaimResult& r = results[index.at(row[0].as<int64_t>())];
        r.event = StoredEventFromRow(row);
        seen.insert(r.event.position);
        r.due_in = row[n + 1].is_null() ? absl::ZeroDuration()
                                        : absl::Microseconds(row[n + 1].as<int64_t>());
        if (!row[n].as<bool>()) {
          r.state = ClaimResult::State::kSettled;
        } else if (r.due_in > absl::ZeroDuration()) {
          r.state = ClaimResult::State::kNotDue;
        } else {
          r.state = ClaimResult::State::kClaimed;
        }
        if (r.state != ClaimResult::State::kSettled && !r.event.event.key.empty() &&
            strict.count(r.event.event.source) > 0) {
          strict_keyed.push_back(r.event.position);
        }
      }
    }
    if (!strict_keyed.empty()) {
      // Keyed events of strict sources: an earlier failed event of the key
      // parks them, due or not.
      std::vector<std::string> sources, keys;
      for (int64_t position : strict_keyed) {
        const StoredEvent& e = results[index.at(position)].event;
        sources.push_back(e.event.source);
        keys.push_back(e.event.key);
      }
      for (const auto& row : tx.exec_prepared(kBlockersName, PgBigintArray(strict_keyed),
                                              PgTextArray(sources), PgTextArray(keys))) {
        ClaimResult& r = results[index.at(row[0].as<int64_t>())];
        r.state = ClaimResult::State::kBehindFailure;
        r.blocker = {row[1].as<int64_t>(), TimeFromEpochUs(row[2]).value_or(absl::UnixEpoch())};
      }
    }
    std::vector<int64_t> given_back;
    for (const auto& [partition, refs] : taken) {
      for (int64_t position : refs.first) {
        ClaimResult& r = results[index.at(position)];
        // Taken but gone from the log (its partition dropped by retention).
        if (seen.count(position) == 0) r.state = ClaimResult::State::kSettled;
        if (r.state != ClaimResult::State::kClaimed) given_back.push_back(position);
      }
    }
    if (!given_back.empty()) {
      lease.Prepare(kGiveBackName, kGiveBackSql);
      tx.exec_prepared(kGiveBackName, owner, PgBigintArray(given_back));
    }
  };
  absl::Status status = RunOnDays(pool_, kClaimName, {partitions.begin(), partitions.end()}, claim);
  if (!status.ok()) return status;
  return results;
}

absl::StatusOr<std::vector<int64_t>> PgDeliveryStore::StillFailed(
    const std::vector<EventRef>& events) {
  std::vector<int64_t> failed;
  if (events.empty()) return failed;
  const auto [positions, ingested_us] = RefArrays(events);
  absl::Status status = pool_->Run(kStillFailedName, [&](PgPool::Lease& lease) {
    lease.Prepare(kStillFailedName, kStillFailedSql);
    failed.clear();
    pqxx::work tx(lease.conn());
    tx.exec0(kIndexJoins);
    for (const auto& row : tx.exec_prepared(kStillFailedName, positions, ingested_us)) {
      failed.push_back(row[0].as<int64_t>());
    }
    tx.commit();
  });
  if (!status.ok()) return status;
  return failed;
}

absl::StatusOr<std::optional<StoredEvent>> PgDeliveryStore::TryClaim(int64_t position,
                                                                     absl::Time ingested_at,
                                                                     const std::string& owner,
                                                                     absl::Duration lease_time) {
  std::optional<StoredEvent> claimed;
  bool exists = false;
  const std::string partition = DayPartitionOf("events", ingested_at);
  const std::string exists_name = OnPartition(kExistsName, partition);
  const std::string event_name = OnPartition(kEventName, partition);
  absl::Status status = pool_->Run(kTryClaimName, [&](PgPool::Lease& lease) {
    lease.Prepare(kTryClaimName, kTryClaimSql);
    lease.Prepare(exists_name, ExistsSql(partition));
    lease.Prepare(event_name, EventSql(partition));
    const std::string at = PgTime(ingested_at);
    pqxx::work tx(lease.conn());
    try {
      exists = !tx.exec_prepared(exists_name, at, position).empty();
    } catch (const pqxx::undefined_table&) {
      return;  // its day's partition is gone (retention), or never was
    }
    if (!exists) return;
    if (tx.exec_prepared(kTryClaimName, at, position, owner, Micros(lease_time)).empty()) return;
    // Read again under the claim: a record committed by the previous owner
    // while this claim waited for it is in the row now.
    claimed = StoredEventFromRow(tx.exec_prepared1(event_name, at, position));
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!exists) {
    return absl::NotFoundError(absl::StrCat("event at position ", position, " is not in the log"));
  }
  return claimed;
}

absl::Status PgDeliveryStore::Release(const std::vector<int64_t>& positions,
                                      const std::string& owner) {
  if (positions.empty()) return absl::OkStatus();
  return pool_->Run(kGiveBackName, [&](PgPool::Lease& lease) {
    lease.Prepare(kGiveBackName, kGiveBackSql);
    pqxx::work tx(lease.conn());
    tx.exec_prepared(kGiveBackName, owner, PgBigintArray(positions));
    tx.commit();
  });
}

absl::Status PgDeliveryStore::ExtendClaims(const std::string& owner, absl::Duration lease_time) {
  return pool_->Run(kExtendName, [&](PgPool::Lease& lease) {
    lease.Prepare(kExtendName, kExtendSql);
    lease.Prepare(kSweepName, kSweepSql);
    pqxx::work tx(lease.conn());
    tx.exec_prepared(kExtendName, owner, Micros(lease_time));
    tx.exec_prepared(kSweepName);
    tx.commit();
  });
}

absl::Status PgDeliveryStore::ReleaseAll(const std::string& owner) {
  return pool_->Run(kReleaseAllName, [&](PgPool::Lease& lease) {
    lease.Prepare(kReleaseAllName, kReleaseAllSql);
    pqxx::work tx(lease.conn());
    tx.exec_prepared(kReleaseAllName, owner);
    tx.commit();
  });
}

}  // namespace replayd
