#include "server/store/pg_record_writer.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/common/time_format.h"
#include "server/store/day_partitions.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// Index paths only, joins as the planner likes: see RecordSql.
constexpr const char* kIndexScans = "SET LOCAL enable_seqscan = off";

// A group of records in one statement, in one round trip (besides the
// transaction's own), under kIndexScans only. The plan Postgres caches for it
// is made while delivery_claims is small, and a hash join over a seq scan of
// it would then read every dead claim row the table gathers until the next
// vacuum (in the deliver bench it was the cached plan, scanning up to 50,000
// dead rows per group). With seq scans off, the plan (EXPLAIN ANALYZE, custom
// and generic) walks `s` in array order through nested loops on the primary
// keys of delivery_claims and events, which keeps the lock order below; a
// deadlock from another plan would be retried by WriteGroup. Not under the
// claims' kIndexJoins: Postgres used 40-50 us more per event in the deliver bench
// with hash joins off too (bench/README.md).
//
// $1..$21 are the group's columns as arrays, in position order (rows are
// locked in that global order: two daemons' groups cannot deadlock). Times
// are epoch microseconds; empty text, and 0 for http_status, the retry
// policy and target_updated_us, stand for NULL.
// The statement writes one day's partitions of events and delivery_attempts,
// named directly (DayPartitionOf); a group that spans two days is two
// statements in one transaction.
//
// `released` deletes the claims the group's owners still hold; only those
// records update their events: an event whose claim expired and was taken
// over is left to its new owner (its attempt is still inserted), even when the
// new owner's record is in the same group. Returns the released (position,
// owner) pairs. A keyed event that fails joins delivery_failed_keys (what
// strict routes park behind, migration 0008) and leaves it with any other
// outcome: a replay that delivers it, or leaves it to be retried. Only a
// later attempt can follow a failure, so first attempts, most of live
// delivery, do not look.
//
// The attempts go in with a plain INSERT: Postgres's speculative insertion
// for ON CONFLICT cost about 8% of the statement (bench/README.md). Two
// records of one attempt number can meet only when a claim expired while its
// owner was still delivering (both read the same attempt count); that
// group's unique violation makes WriteGroup write it again with
// kRecordKeepFirstName, which keeps the attempt row already there.
constexpr const char* kRecordName = "delivery_record";
constexpr const char* kRecordKeepFirstName = "delivery_record_keep_first";
std::string RecordSql(bool keep_first, absl::Time day) {
  return absl::StrCat(R"sql(
WITH s AS (
  SELECT t.position, 'epoch'::timestamptz + t.ingested_us * interval '1 microsecond' AS ingested_at,
         t.attempt, t.trigger, t.route,
         'epoch'::timestamptz + t.started_us * interval '1 microsecond' AS started_at,
         t.duration_us / 1000.0 AS duration_ms, NULLIF(t.http_status, 0) AS http_status,
         NULLIF(t.error, '') AS error, t.outcome, NULLIF(t.record_id, '') AS record_id,
         NULLIF(t.last_error, '') AS last_error, NULLIF(t.target_record_id, '') AS target_record_id,
         t.retry_delay_us, t.owner, t.sink, NULLIF(t.retry_max_attempts, 0) AS retry_max_attempts,
         NULLIF(t.retry_base_us, 0) AS retry_base_us, NULLIF(t.retry_cap_us, 0) AS retry_cap_us,
         NULLIF(t.target_version, '') AS target_version,
         'epoch'::timestamptz + NULLIF(t.target_updated_us, 0) * interval '1 microsecond'
           AS target_updated_at
    FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::text[], $6::bigint[],
                $7::bigint[], $8::int[], $9::text[], $10::text[], $11::text[], $12::text[],
                $13::text[], $14::bigint[], $15::text[], $16::text[], $17::int[], $18::bigint[],
                $19::bigint[], $20::text[], $21::bigint[])
      AS t(position, ingested_us, attempt, trigger, route, started_us, duration_us, http_status,
           error, outcome, record_id, last_error, target_record_id, retry_delay_us, owner, sink,
           retry_max_attempts, retry_base_us, retry_cap_us, target_version, target_updated_us)
), released AS (
  DELETE FROM delivery_claims c USING s
   WHERE c.position = s.position AND c.owner = s.owner
  RETURNING c.position, c.owner
), updated AS (
  UPDATE )sql",
                      DayPartitionOf("events", day), R"sql( e
     SET outcome = s.outcome,
         attempts = GREATEST(e.attempts, s.attempt),
         last_error = s.last_error,
         target_record_id = COALESCE(s.target_record_id, e.target_record_id),
         target_version = COALESCE(s.target_version, e.target_version),
         target_updated_at = COALESCE(s.target_updated_at, e.target_updated_at),
         next_attempt_at = CASE WHEN s.outcome = 'retrying'
                                THEN now() + s.retry_delay_us * interval '1 microsecond'
                                WHEN s.outcome = 'pending' THEN e.next_attempt_at END,
         processed_at = CASE WHEN s.outcome IN ('succeeded', 'already_processed', 'failed')
                             THEN now() END
    FROM s JOIN released r ON r.position = s.position AND r.owner = s.owner
   WHERE e.ingested_at = s.ingested_at AND e.position = s.position
  RETURNING e.position, e.ingested_at, e.source, e.key, s.outcome, s.attempt
), failed_keys AS (
  INSERT INTO delivery_failed_keys (position, ingested_at, source, key)
  SELECT position, ingested_at, source, key FROM updated
   WHERE outcome = 'failed' AND key IS NOT NULL
  ON CONFLICT (position) DO NOTHING
), replayed_keys AS (
  DELETE FROM delivery_failed_keys f USING updated u
   WHERE f.position = u.position AND u.outcome <> 'failed' AND u.key IS NOT NULL
     AND u.attempt > 1
), inserted AS (
  INSERT INTO )sql",
                      DayPartitionOf("delivery_attempts", day), R"sql(
              (event_position, event_ingested_at, attempt, trigger, route, started_at,
               duration_ms, http_status, error, outcome, record_id, worker, sink,
               retry_max_attempts, retry_base_us, retry_cap_us)
  SELECT position, ingested_at, attempt, trigger, route, started_at, duration_ms, http_status,
         error, outcome, record_id, owner, sink, retry_max_attempts, retry_base_us, retry_cap_us
    FROM s
)sql",
                      keep_first ? "  ON CONFLICT DO NOTHING\n" : "", R"sql()
SELECT position, owner FROM released)sql");
}

// RecordSql's parameters: the group's columns as array literals.
struct RecordArrays {
  std::vector<int64_t> position, ingested_us, attempt, started_us, duration_us, http_status,
      retry_delay_us, retry_max_attempts, retry_base_us, retry_cap_us, target_updated_us;
  std::vector<std::string> trigger, route, error, outcome, record_id, last_error, target_record_id,
      owner, sink, target_version;

  void Add(const AttemptRecord& a, const OutcomeUpdate& u, const std::string& by) {
    position.push_back(a.event_position);
    ingested_us.push_back(absl::ToUnixMicros(a.event_ingested_at));
    attempt.push_back(a.attempt);
    trigger.push_back(a.trigger);
    route.push_back(a.route);
    started_us.push_back(absl::ToUnixMicros(a.started_at));
    duration_us.push_back(std::llround(a.duration_ms * 1000));
    http_status.push_back(a.http_status.value_or(0));
    // The downstream's words (an answer's body, a record id header) may be
    // cut mid-character or hold NUL bytes: one such text must not fail
    // every record of the group.
    error.push_back(PgText(a.error));
    outcome.push_back(std::string(OutcomeName(u.outcome)));
    record_id.push_back(PgText(a.record_id));
    last_error.push_back(PgText(u.last_error));
    target_record_id.push_back(PgText(u.target_record_id));
    retry_delay_us.push_back(absl::ToInt64Microseconds(u.retry_delay));
    owner.push_back(by);
    sink.push_back(a.sink);
    retry_max_attempts.push_back(a.retry.max_attempts.value_or(0));
    retry_base_us.push_back(absl::ToInt64Microseconds(
        a.retry.base_delay.value_or(absl::ZeroDuration())));
    retry_cap_us.push_back(absl::ToInt64Microseconds(
        a.retry.max_delay.value_or(absl::ZeroDuration())));
    target_version.push_back(PgText(u.target_version));
    target_updated_us.push_back(u.target_updated_at ? absl::ToUnixMicros(*u.target_updated_at) : 0);
  }
};

}  // namespace

struct PgRecordWriter::PendingRecord {
  AttemptRecord attempt;
  OutcomeUpdate update;
  std::string owner;
  DeliveryStore::RecordDone done;
};

PgRecordWriter::PgRecordWriter(PgPool* pool, Options options) : pool_(pool), options_(options) {
  writer_ = std::thread([this] { WriterLoop(); });
}

PgRecordWriter::~PgRecordWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void PgRecordWriter::Submit(const AttemptRecord& attempt, const OutcomeUpdate& update,
                            const std::string& owner, DeliveryStore::RecordDone done) {
  auto record = std::make_shared<PendingRecord>();
  record->attempt = attempt;
  record->update = update;
  record->owner = owner;
  record->done = std::move(done);
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(record));
      record = nullptr;
    }
  }
  if (record != nullptr) {
    record->done(absl::UnavailableError("delivery store is stopping"));
    return;
  }
  cv_.notify_one();
}

void PgRecordWriter::WriterLoop() {
  std::vector<std::shared_ptr<PendingRecord>> group;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && static_cast<int>(group.size()) < options_.max_group) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // Rows locked in one global order: two daemons' groups cannot deadlock.
    std::sort(group.begin(), group.end(), [](const auto& a, const auto& b) {
      return a->attempt.event_position < b->attempt.event_position;
    });
    WriteGroup(group);
    group.clear();
  }
}

void PgRecordWriter::WriteGroup(std::vector<std::shared_ptr<PendingRecord>>& group) {
  absl::StatusOr<std::set<std::pair<int64_t, std::string>>> held;
  // A deadlock or a dropped connection rolls the whole group back: write it
  // again a few times before its callers see the error.
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (attempt > 0) options_.clock->SleepFor(absl::Milliseconds(25 << attempt));
    held = WriteGroupOnce(group, /*keep_first=*/false);
    // An attempt recorded twice (see RecordSql): keep the first, write the rest.
    if (absl::IsAlreadyExists(held.status())) held = WriteGroupOnce(group, /*keep_first=*/true);
    if (held.ok()) break;
    Logger("store")->warn("writing {} delivery records failed (try {} of 4): {}", group.size(),
                          attempt + 1, held.status());
  }
  for (auto& r : group) {
    if (!held.ok()) {
      r->done(held.status());
    } else {
      r->done(held->count({r->attempt.event_position, r->owner}) > 0);
    }
  }
}

absl::StatusOr<std::set<std::pair<int64_t, std::string>>> PgRecordWriter::WriteGroupOnce(
    const std::vector<std::shared_ptr<PendingRecord>>& group, bool keep_first) {
  // Runs of consecutive records of one UTC day, one statement each, in the
  // group's position order: rows are locked in position order across the
  // whole group, as a claim locks them (an event's day and its position need
  // not agree: ingest batches take their time from the clock, positions
  // from a sequence).
  std::vector<std::pair<absl::Time, RecordArrays>> runs;
  std::vector<std::string> partitions;
  for (const auto& r : group) {
    const absl::Time day = StartOfUtcDay(r->attempt.event_ingested_at);
    if (runs.empty() || runs.back().first != day) {
      runs.emplace_back(day, RecordArrays{});
      partitions.push_back(DayPartitionOf("events", day));
      partitions.push_back(DayPartitionOf("delivery_attempts", day));
    }
    runs.back().second.Add(r->attempt, r->update, r->owner);
  }
  const char* base = keep_first ? kRecordKeepFirstName : kRecordName;
  std::set<std::pair<int64_t, std::string>> held;
  // A day retention dropped while its events were being delivered is left
  // out: its records are not held, and the rest of the group is written.
  auto write = [&](PgPool::Lease& lease, pqxx::work& tx,
                   const std::unordered_set<std::string>& gone) {
    held.clear();
    tx.exec0(kIndexScans);
    for (const auto& [day, c] : runs) {
      const std::string events = DayPartitionOf("events", day);
      if (gone.count(events) > 0 || gone.count(DayPartitionOf("delivery_attempts", day)) > 0) {
        continue;
      }
      const std::string name = OnPartition(base, events);
      lease.Prepare(name, RecordSql(keep_first, day));
      const pqxx::result released = tx.exec_prepared(
          name, PgBigintArray(c.position), PgBigintArray(c.ingested_us), PgBigintArray(c.attempt),
          PgTextArray(c.trigger), PgTextArray(c.route), PgBigintArray(c.started_us),
          PgBigintArray(c.duration_us), PgBigintArray(c.http_status), PgTextArray(c.error),
          PgTextArray(c.outcome), PgTextArray(c.record_id), PgTextArray(c.last_error),
          PgTextArray(c.target_record_id), PgBigintArray(c.retry_delay_us), PgTextArray(c.owner),
          PgTextArray(c.sink), PgBigintArray(c.retry_max_attempts), PgBigintArray(c.retry_base_us),
          PgBigintArray(c.retry_cap_us), PgTextArray(c.target_version),
          PgBigintArray(c.target_updated_us));
      for (const auto& row : released) {
        held.emplace(row[0].as<int64_t>(), row[1].as<std::string>());
      }
    }
  };
  absl::Status status = RunOnDays(pool_, base, partitions, write);
  if (!status.ok()) return status;
  return held;
}

}  // namespace replayd
