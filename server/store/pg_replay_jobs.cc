// PgReplayStore's jobs: creation, leases, checkpoints, cancel, finish and
// the audit trail (tables replays and replay_audit).
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "server/common/names.h"
#include "server/store/pg_replay_jobs.h"
#include "server/store/pg_replay_rows.h"
#include "server/store/pg_replay_store.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// pg_advisory_xact_lock key serialising job creation (overlap check, request ids).
constexpr int64_t kCreateJobLockKey = 0x7265706c61793031;

// Jobs a runner runs; a paused job waits for a resume.
constexpr const char* kActiveStates = "('pending', 'running', 'cancelling')";
// Jobs that hold their window: a start overlapping one is refused.
constexpr const char* kUnfinishedStates = "('pending', 'running', 'paused', 'cancelling')";

constexpr const char* kCheckpointName = "replay_checkpoint";

constexpr const char* kCheckpointSql = R"sql(
UPDATE replays
   SET total = $3, processed = $4, delivered = $5, skipped = $6, failed = $7,
       cursor_ingested_at = $8::timestamptz, cursor_position = $9, current_rate = $10,
       lease_until = now() + make_interval(secs => $11), held_by_key = $12, updated_at = now(),
       changed_since_plan = $13
 WHERE id = $1 AND owner = $2
RETURNING state)sql";

// A cursor as the parameters of its two columns, both NULL without one.
std::pair<std::optional<std::string>, std::optional<int64_t>> CursorParams(
    const std::optional<ReplayCursor>& cursor) {
  if (!cursor) return {std::nullopt, std::nullopt};
  return {PgTime(cursor->ingested_at), cursor->position};
}

std::string SelectJob(const std::string& where) {
  return absl::StrCat("SELECT ", JobColumns(), " FROM replays WHERE ", where);
}

// A job's row as a request to change its state sees it, locked until the change commits.
struct LockedJob {
  std::string state;
  bool held = false;  // a runner holds a live lease on it
};

// Locks job `id`, lets `change` write its transition, then records `audit` and
// returns the job as it now stands. `change` returns why it refuses, or "" once
// it has written the change. NOT_FOUND for an unknown id, FAILED_PRECONDITION
// with the refusal, UNAVAILABLE when the database is.
absl::StatusOr<ReplayJob> ChangeJobState(
    PgPool& pool, std::string_view name, const std::string& id, const AuditEntry& audit,
    const std::function<std::string(pqxx::work&, const LockedJob&)>& change) {
  std::optional<ReplayJob> out;
  std::string refused;
  absl::Status status = pool.Run(name, [&](PgPool::Lease& lease) {
    out.reset();
    refused.clear();
    pqxx::work tx(lease.conn());
    auto rows = tx.exec_params(
        "SELECT state, owner IS NOT NULL AND lease_until > now() FROM replays"
        " WHERE id = $1 FOR UPDATE",
        id);
    if (rows.empty()) return;
    refused = change(tx, LockedJob{rows[0][0].as<std::string>(), rows[0][1].as<bool>()});
    if (!refused.empty()) return;
    InsertAudit(tx, audit);
    out = JobFromRow(tx.exec_params(SelectJob("id = $1"), id)[0]);
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!refused.empty()) return absl::FailedPreconditionError(refused);
  if (!out) return absl::NotFoundError(absl::StrCat("no replay with id \"", id, "\""));
  return *out;
}

// Runs the owner's `update` of job `id`, which returns the rows it changed, and
// records `audit` (when given) in the same transaction. FAILED_PRECONDITION
// with `lost` when the update matched no row, UNAVAILABLE when the database is.
absl::Status UpdateAsOwner(PgPool& pool, std::string_view name, const std::string& id,
                           const AuditEntry* audit, const char* lost,
                           const std::function<pqxx::result(pqxx::work&)>& update) {
  bool matched = false;
  absl::Status status = pool.Run(name, [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    matched = !update(tx).empty();
    if (!matched) return;
    if (audit != nullptr) InsertAudit(tx, *audit);
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!matched) return absl::FailedPreconditionError(absl::StrCat("replay ", id, ": ", lost));
  return absl::OkStatus();
}

}  // namespace

namespace {

constexpr NamedValue<ReplayState> kReplayStateNames[] = {
    {ReplayState::kPending, "pending"},     {ReplayState::kRunning, "running"},
    {ReplayState::kPaused, "paused"},       {ReplayState::kCancelling, "cancelling"},
    {ReplayState::kCancelled, "cancelled"}, {ReplayState::kCompleted, "completed"},
    {ReplayState::kFailed, "failed"}};

constexpr NamedValue<ReplayKind> kReplayKindNames[] = {{ReplayKind::kReplay, "replay"},
                                                       {ReplayKind::kDiff, "diff"},
                                                       {ReplayKind::kCompensate, "compensate"}};

}  // namespace

std::string_view ReplayStateName(ReplayState state) { return NameIn(kReplayStateNames, state); }

std::optional<ReplayState> ParseReplayState(std::string_view name) {
  return ParseIn(kReplayStateNames, name);
}

std::string_view ReplayKindName(ReplayKind kind) { return NameIn(kReplayKindNames, kind); }

std::optional<ReplayKind> ParseReplayKind(std::string_view name) {
  return ParseIn(kReplayKindNames, name);
}

bool IsTerminal(ReplayState state) {
  return state == ReplayState::kCancelled || state == ReplayState::kCompleted ||
         state == ReplayState::kFailed;
}

absl::StatusOr<ReplayJob> CreateJobIn(PgPool& pool, std::string_view name, const ReplayJob& job,
                                      const AuditEntry& audit, bool* existed,
                                      const JobCreationSteps& steps) {
  std::optional<ReplayJob> out;
  std::string conflict;
  absl::Status refused;
  absl::Status status = pool.Run(name, [&](PgPool::Lease& lease) {
    out.reset();
    conflict.clear();
    refused = absl::OkStatus();
    *existed = false;
    pqxx::work tx(lease.conn());
    tx.exec(absl::StrCat("SELECT pg_advisory_xact_lock(", kCreateJobLockKey, ")"));
    if (!job.request_id.empty()) {
      auto rows = tx.exec_params(SelectJob("request_id = $1"), job.request_id);
      if (!rows.empty()) {
        out = JobFromRow(rows[0]);
        *existed = true;
        tx.commit();
        return;
      }
    }
    if (steps.check) {
      refused = steps.check(tx);
      if (!refused.ok()) return;
    }
    const ReplaySpec& s = job.spec;
    std::string sources = PgTextArray(s.window.sources);
    auto overlap = tx.exec_params(
        absl::StrCat("SELECT id, window_from, window_to, array_to_string(sources, ',')"
                     "  FROM replays WHERE state IN ",
                     kUnfinishedStates,
                     "   AND window_from < $2::timestamptz AND window_to > $1::timestamptz"
                     "   AND (cardinality(sources) = 0 OR cardinality($3::text[]) = 0"
                     "        OR sources && $3::text[])"
                     " ORDER BY created_at LIMIT 1"),
        PgTime(s.window.from), PgTime(s.window.to), sources);
    if (!overlap.empty()) {
      const auto& r = overlap[0];
      std::string their_sources = r[3].as<std::string>();
      conflict = absl::StrCat("the window overlaps replay ", r[0].as<std::string>(), " [",
                              r[1].as<std::string>(), ", ", r[2].as<std::string>(), ") on ",
                              their_sources.empty() ? "every source" : "sources " + their_sources,
                              ", which is still unfinished: wait for it or cancel it");
      return;
    }
    auto rows = tx.exec_params(
        absl::StrCat(
            "INSERT INTO replays (id, request_id, state, window_from, window_to, sources,"
            " outcomes, include_succeeded, verify_downstream, rate, burst, allow_high_rate,"
            " reason, created_by, total, breaker_consecutive_failures, breaker_failure_ratio,"
            " breaker_window, plan_id, keys, types, event_ids, sink, retry_max_attempts,"
            " retry_base_us, retry_cap_us, kind)"
            " VALUES ($1, NULLIF($2, ''), 'pending', $3::timestamptz, $4::timestamptz,"
            " $5::text[], $6::text[], $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
            " NULLIF($18, ''), $19::text[], $20::text[], $21::text[], $22, $23, $24, $25, $26)"
            " RETURNING ",
            JobColumns()),
        job.id, job.request_id, PgTime(s.window.from), PgTime(s.window.to), sources,
        OutcomeArray(s.outcomes), s.include_succeeded, s.verify_downstream, s.rate, s.burst,
        s.allow_high_rate, s.reason, job.created_by, job.counters.total,
        s.breaker.consecutive_failures, s.breaker.failure_ratio, s.breaker.window, s.plan_id,
        PgTextArray(s.window.keys), PgTextArray(s.window.types), PgTextArray(s.window.event_ids),
        s.sink, s.retry.max_attempts, MicrosOrNull(s.retry.base_delay),
        MicrosOrNull(s.retry.max_delay), std::string(ReplayKindName(s.kind)));
    out = JobFromRow(rows[0]);
    if (steps.then) steps.then(tx, *out);
    InsertAudit(tx, audit);
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!refused.ok()) return refused;
  if (!conflict.empty()) return absl::FailedPreconditionError(conflict);
  return *out;
}

absl::StatusOr<ReplayJob> PgReplayStore::CreateJob(const ReplayJob& job, const AuditEntry& audit,
                                                   bool* existed) {
  return CreateJobIn(*pool_, "replay_create_job", job, audit, existed);
}

absl::StatusOr<ReplayJob> PgReplayStore::GetJob(const std::string& id) {
  std::optional<ReplayJob> out;
  absl::Status status = pool_->Run("replay_get_job", [&](PgPool::Lease& lease) {
    pqxx::read_transaction tx(lease.conn());
    auto rows = tx.exec_params(SelectJob("id = $1"), id);
    if (!rows.empty()) out = JobFromRow(rows[0]);
  });
  if (!status.ok()) return status;
  if (!out) return absl::NotFoundError(absl::StrCat("no replay with id \"", id, "\""));
  return *out;
}

absl::StatusOr<std::vector<ReplayJob>> PgReplayStore::ListJobs(
    const std::vector<ReplayState>& states, int limit) {
  std::vector<std::string> names;
  for (ReplayState s : states) names.emplace_back(ReplayStateName(s));
  std::vector<ReplayJob> out;
  absl::Status status = pool_->Run("replay_list_jobs", [&](PgPool::Lease& lease) {
    pqxx::read_transaction tx(lease.conn());
    auto rows = tx.exec_params(SelectJob("(cardinality($1::text[]) = 0 OR state = ANY($1::text[]))"
                                         " ORDER BY created_at DESC, id LIMIT $2"),
                               PgTextArray(names), limit <= 0 ? 100 : limit);
    for (const auto& r : rows) out.push_back(JobFromRow(r));
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<ReplayJob> PgReplayStore::RequestCancel(const std::string& id,
                                                       const AuditEntry& audit) {
  return ChangeJobState(
      *pool_, "replay_request_cancel", id, audit,
      [&](pqxx::work& tx, const LockedJob& job) -> std::string {
        auto parsed = ParseReplayState(job.state);
        if (parsed && IsTerminal(*parsed)) {
          return absl::StrCat("replay ", id, " already ended (", job.state, "): nothing to cancel");
        }
        if ((job.state == "pending" || job.state == "paused") && !job.held) {
          tx.exec_params(
              "UPDATE replays SET state = 'cancelled', finished_at = now(), updated_at = now(),"
              " cancel_reason = $2, owner = NULL, lease_until = NULL WHERE id = $1",
              id, audit.reason);
        } else if (job.state != "cancelling") {
          tx.exec_params(
              "UPDATE replays SET state = 'cancelling', cancel_reason = $2, updated_at = now()"
              " WHERE id = $1",
              id, audit.reason);
        }
        return "";
      });
}

absl::StatusOr<ReplayJob> PgReplayStore::RequestPause(const std::string& id,
                                                      const AuditEntry& audit) {
  return ChangeJobState(
      *pool_, "replay_request_pause", id, audit,
      [&](pqxx::work& tx, const LockedJob& job) -> std::string {
        if (job.state != "pending" && job.state != "running") {
          return absl::StrCat("replay ", id, " is ", job.state,
                              job.state == "paused"
                                  ? ": it is already paused"
                                  : ": only a pending or running replay can be paused");
        }
        // A pending job nobody holds is parked at once; otherwise its owner
        // parks it (Park) once its in-flight deliveries are done.
        tx.exec_params(
            "UPDATE replays SET state = 'paused', updated_at = now(), current_rate = 0"
            " WHERE id = $1",
            id);
        return "";
      });
}

absl::StatusOr<ReplayJob> PgReplayStore::RequestResume(const std::string& id, double rate,
                                                       const AuditEntry& audit) {
  return ChangeJobState(
      *pool_, "replay_request_resume", id, audit,
      [&](pqxx::work& tx, const LockedJob& job) -> std::string {
        if (job.state != "paused") {
          return absl::StrCat("replay ", id, " is ", job.state,
                              ": only a paused replay can be resumed");
        }
        if (job.held) {
          return absl::StrCat("replay ", id,
                              " is still pausing (deliveries in flight): try again in a moment");
        }
        // Running with nobody holding it: the next runner to look claims it.
        tx.exec_params(
            "UPDATE replays SET state = 'running', owner = NULL, lease_until = NULL,"
            " rate = CASE WHEN $2 > 0 THEN $2 ELSE rate END, updated_at = now()"
            " WHERE id = $1",
            id, rate);
        return "";
      });
}

absl::Status PgReplayStore::Park(const std::string& id, const std::string& owner,
                                 const ReplayCounters& c, const std::optional<ReplayCursor>& cursor,
                                 const std::string& last_error,
                                 const std::vector<RetryEvent>& retry, const AuditEntry* audit) {
  return UpdateAsOwner(
      *pool_, "replay_park", id, audit, "lease lost or cancel asked while pausing",
      [&](pqxx::work& tx) {
        const auto [cursor_time, cursor_position] = CursorParams(cursor);
        return tx.exec_params(
            "UPDATE replays SET state = 'paused', total = $3, processed = $4, delivered = $5,"
            " skipped = $6, failed = $7, cursor_ingested_at = $8::timestamptz,"
            " cursor_position = $9, last_error = $10, held_by_key = $11,"
            " retry_events = $12::jsonb, current_rate = 0, updated_at = now(), owner = NULL,"
            " lease_until = NULL, changed_since_plan = $13"
            " WHERE id = $1 AND owner = $2 AND state IN ('running', 'paused') RETURNING id",
            id, owner, c.total, c.processed, c.delivered, c.skipped, c.failed, cursor_time,
            cursor_position, last_error, c.held_by_key, RetryEventsJson(retry),
            c.changed_since_plan);
      });
}

absl::StatusOr<std::optional<ReplayJob>> PgReplayStore::ClaimJob(
    const std::string& owner, absl::Duration lease, const std::vector<std::string>& exclude) {
  std::optional<ReplayJob> out;
  absl::Status status = pool_->Run("replay_claim_job", [&](PgPool::Lease& l) {
    out.reset();
    pqxx::work tx(l.conn());
    auto rows = tx.exec_params(
        absl::StrCat("SELECT id, state, coalesce(owner, '') FROM replays WHERE state IN ",
                     kActiveStates,
                     "   AND (owner IS NULL OR owner = $1 OR lease_until < now())"
                     "   AND NOT (id = ANY($2::text[]))"
                     " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED"),
        owner, PgTextArray(exclude));
    if (rows.empty()) return;
    std::string id = rows[0][0].as<std::string>();
    std::string state = rows[0][1].as<std::string>();
    std::string previous = rows[0][2].as<std::string>();
    auto job = tx.exec_params(
        absl::StrCat("UPDATE replays SET owner = $2,"
                     " lease_until = now() + make_interval(secs => $3),"
                     " state = CASE WHEN state = 'pending' THEN 'running' ELSE state END,"
                     " started_at = coalesce(started_at, now()), updated_at = now()"
                     " WHERE id = $1 RETURNING ",
                     JobColumns()),
        id, owner, absl::ToDoubleSeconds(lease));
    out = JobFromRow(job[0]);
    if (state != "pending") {
      bool takeover = !previous.empty() && previous != owner;
      AuditEntry a{owner,
                   takeover ? "takeover" : "resume",
                   id,
                   takeover ? absl::StrCat("the lease of ", previous, " expired") : "",
                   previous.empty() ? "{}" : nlohmann::json{{"previous_owner", previous}}.dump(),
                   absl::Now()};
      InsertAudit(tx, a);
    }
    tx.commit();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<ReplayState> PgReplayStore::Checkpoint(const std::string& id,
                                                      const std::string& owner,
                                                      const ReplayCounters& c,
                                                      const std::optional<ReplayCursor>& cursor,
                                                      double current_rate, absl::Duration lease) {
  std::optional<ReplayState> state;
  absl::Status status = pool_->Run(kCheckpointName, [&](PgPool::Lease& l) {
    l.Prepare(kCheckpointName, kCheckpointSql);
    pqxx::work tx(l.conn());
    const auto [cursor_time, cursor_position] = CursorParams(cursor);
    auto rows = tx.exec_prepared(kCheckpointName, id, owner, c.total, c.processed, c.delivered,
                                 c.skipped, c.failed, cursor_time, cursor_position, current_rate,
                                 absl::ToDoubleSeconds(lease), c.held_by_key, c.changed_since_plan);
    tx.commit();
    state.reset();
    if (!rows.empty()) state = ParseReplayState(rows[0][0].as<std::string>());
  });
  if (!status.ok()) return status;
  if (!state) {
    return absl::FailedPreconditionError(
        absl::StrCat("replay ", id, ": lease lost to another daemon"));
  }
  return *state;
}

absl::Status PgReplayStore::Finish(const std::string& id, const std::string& owner,
                                   ReplayState state, const ReplayCounters& c,
                                   const std::optional<ReplayCursor>& cursor,
                                   const std::string& last_error, const AuditEntry& audit) {
  return UpdateAsOwner(
      *pool_, "replay_finish", id, &audit, "lease lost to another daemon", [&](pqxx::work& tx) {
        const auto [cursor_time, cursor_position] = CursorParams(cursor);
        return tx.exec_params(
            "UPDATE replays SET state = $3, total = $4, processed = $5, delivered = $6,"
            " skipped = $7, failed = $8, cursor_ingested_at = $9::timestamptz,"
            " cursor_position = $10, last_error = $11, current_rate = 0, finished_at = now(),"
            " updated_at = now(), owner = NULL, lease_until = NULL, held_by_key = $12,"
            " retry_events = '[]', changed_since_plan = $13"
            " WHERE id = $1 AND owner = $2 RETURNING id",
            id, owner, std::string(ReplayStateName(state)), c.total, c.processed, c.delivered,
            c.skipped, c.failed, cursor_time, cursor_position, last_error, c.held_by_key,
            c.changed_since_plan);
      });
}

absl::Status PgReplayStore::ReleaseLease(const std::string& id, const std::string& owner) {
  return pool_->Run("replay_release_lease", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    tx.exec_params(
        "UPDATE replays SET owner = NULL, lease_until = NULL, current_rate = 0,"
        " updated_at = now() WHERE id = $1 AND owner = $2",
        id, owner);
    tx.commit();
  });
}

absl::Status PgReplayStore::Audit(const AuditEntry& entry) {
  return pool_->Run("replay_audit", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    InsertAudit(tx, entry);
    tx.commit();
  });
}

}  // namespace replayd
