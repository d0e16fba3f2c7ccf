// Replay jobs, their audit trail, and the reads of the event log that a
// replay and its dry run make: the window in original order (keyset pages)
// and aggregates over the window. (Upstream sequence holes are
// InspectionStore::FindSequenceHoles.)
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/model/replay_types.h"
#include "server/store/event.h"

namespace replayd {

// The log's spelling of a job's state: "pending", "running", ...
std::string_view ReplayStateName(ReplayState state);
std::optional<ReplayState> ParseReplayState(std::string_view name);
bool IsTerminal(ReplayState state);

// The log's spelling of a job's kind: "replay", "diff", "compensate".
std::string_view ReplayKindName(ReplayKind kind);
std::optional<ReplayKind> ParseReplayKind(std::string_view name);

// Whether `window` selects `e`: the window reads' predicate (ingested_at in
// [from, to), and each filter that is not empty lists the event's value),
// for an event in memory.
inline bool InWindow(const ReplayWindow& window, const StoredEvent& e) {
  auto listed = [](const std::vector<std::string>& values, const std::string& value) {
    return values.empty() || std::find(values.begin(), values.end(), value) != values.end();
  };
  return e.ingested_at >= window.from && e.ingested_at < window.to &&
         listed(window.sources, e.event.source) && listed(window.keys, e.event.key) &&
         listed(window.types, e.event.type) && listed(window.event_ids, e.event.event_id);
}

// Sequence numbers are aggregated in buckets of 2^kSequenceBucketBits so that
// the one aggregate scan also says where the holes can be.
inline constexpr int kSequenceBucketBits = 9;

// Window counts by (source, outcome, sequence bucket); a bucket's count says
// whether it is full (no hole) or must be read again for its holes.
struct WindowAggregate {
  std::string source;
  Outcome outcome = Outcome::kPending;
  std::optional<int64_t> sequence_bucket;  // sequence >> kSequenceBucketBits; nullopt = none
  int64_t count = 0;
};

// Missing upstream sequence numbers [first, last] of one source.
struct SequenceGap {
  std::string source;
  int64_t first = 0;
  int64_t last = 0;
};

// A failed event that holds back the later events of its key.
struct KeyBlocker {
  int64_t position = 0;
  absl::Time ingested_at;
  std::string event_id;
};

// One event of a saved plan: its log key and the dry run's decision, a
// ReplayCategory name ("deliver", "already_delivered", ...).
struct PlanEntry {
  int64_t position = 0;
  absl::Time ingested_at;
  std::string decision;
};

// A plan's event read back: the event as the log holds it now, and the
// decision the plan recorded.
struct PlannedEvent {
  StoredEvent event;
  std::string decision;
};

// What AggregateWindow saves, in the same read, as a plan's events: every
// event it counts, with the decision of its outcome for a source with a route
// or for one without.
struct WindowPlanSave {
  std::string plan_id;
  std::function<std::string(Outcome outcome, bool routed)> decide;
  std::function<bool(const std::string& source)> routed;
};

// A saved dry run: the request it ran (protobuf JSON, kept as sent) and how
// many of its events got each decision.
struct ReplayPlan {
  std::string id;
  std::string request_json;
  std::map<std::string, int64_t> counts;  // decision -> events
  std::string created_by;
  absl::Time created_at;
  absl::Time expires_at;

  int64_t Total() const {
    int64_t n = 0;
    for (const auto& [decision, count] : counts) n += count;
    return n;
  }
};

// The events of a plan are saved in chunks of about this many.
inline constexpr int kPlanChunkEvents = 10000;

class ReplayStore {
 public:
  virtual ~ReplayStore() = default;

  // --- jobs ---

  // Creates `job` (state pending) and audits `audit`, atomically and
  // serialized with every other CreateJob. When job.request_id names an
  // existing job, returns that job unchanged with *existed = true.
  // FAILED_PRECONDITION when the window overlaps an unfinished (pending,
  // running, paused, cancelling) job on a shared source; the message names
  // that job.
  virtual absl::StatusOr<ReplayJob> CreateJob(const ReplayJob& job, const AuditEntry& audit,
                                              bool* existed) = 0;
  // NOT_FOUND for an unknown id.
  virtual absl::StatusOr<ReplayJob> GetJob(const std::string& id) = 0;
  // Newest first; empty `states` = every state; limit <= 0 = 100.
  virtual absl::StatusOr<std::vector<ReplayJob>> ListJobs(const std::vector<ReplayState>& states,
                                                          int limit) = 0;
  // Asks a job to stop: a pending or paused job nobody holds becomes
  // cancelled at once, a running one cancelling (its owner finishes it).
  // Audited.
  // NOT_FOUND for an unknown id, FAILED_PRECONDITION when it already ended.
  virtual absl::StatusOr<ReplayJob> RequestCancel(const std::string& id,
                                                  const AuditEntry& audit) = 0;

  // Pauses a job: a pending one nobody holds at once; a running one becomes
  // paused while its owner still holds it, and the owner stops dispatching,
  // lets in-flight deliveries finish and parks it (Park). Audited.
  // NOT_FOUND for an unknown id, FAILED_PRECONDITION when it is already
  // paused, cancelling or ended.
  virtual absl::StatusOr<ReplayJob> RequestPause(const std::string& id,
                                                 const AuditEntry& audit) = 0;
  // Resumes a paused job that nobody holds (a runner claims it next), with
  // a new rate when `rate` > 0. Audited. NOT_FOUND for an unknown id,
  // FAILED_PRECONDITION when it is not paused or is still being parked.
  virtual absl::StatusOr<ReplayJob> RequestResume(const std::string& id, double rate,
                                                  const AuditEntry& audit) = 0;
  // Parks a job that `owner` holds as paused with its counts, cursor, last
  // error and the events to retry first on resume, and releases the lease;
  // audits `audit` when given. FAILED_PRECONDITION when `owner` lost the
  // lease or a cancel was asked meanwhile (the job is cancelling).
  virtual absl::Status Park(const std::string& id, const std::string& owner,
                            const ReplayCounters& counters,
                            const std::optional<ReplayCursor>& cursor,
                            const std::string& last_error, const std::vector<RetryEvent>& retry,
                            const AuditEntry* audit) = 0;

  // Takes the lease of one active job that nobody else holds (never held,
  // expired, or already `owner`'s) and is not in `exclude`; a pending job
  // becomes running. nullopt when there is none.
  virtual absl::StatusOr<std::optional<ReplayJob>> ClaimJob(
      const std::string& owner, absl::Duration lease, const std::vector<std::string>& exclude) = 0;
  // Saves progress and renews the lease; returns the job's state as stored
  // (cancelling or paused tells the runner to stop). FAILED_PRECONDITION when `owner`
  // no longer holds the lease.
  virtual absl::StatusOr<ReplayState> Checkpoint(const std::string& id, const std::string& owner,
                                                 const ReplayCounters& counters,
                                                 const std::optional<ReplayCursor>& cursor,
                                                 double current_rate, absl::Duration lease) = 0;
  // Ends the job in `state` with its final counts and releases the lease;
  // audits `audit`. FAILED_PRECONDITION when `owner` lost the lease.
  virtual absl::Status Finish(const std::string& id, const std::string& owner, ReplayState state,
                              const ReplayCounters& counters,
                              const std::optional<ReplayCursor>& cursor,
                              const std::string& last_error, const AuditEntry& audit) = 0;
  // Gives the lease up without ending the job (graceful shutdown).
  virtual absl::Status ReleaseLease(const std::string& id, const std::string& owner) = 0;

  virtual absl::Status Audit(const AuditEntry& entry) = 0;
  // The entries `query` selects, newest first (by id), at most query.PageSize().
  virtual absl::StatusOr<std::vector<AuditEntry>> ListAudit(const AuditQuery& query) = 0;

  // --- the event log, as a replay reads it ---

  // The failed events of (source, key) with a position before
  // `before_position`, lowest first, at most `limit`: what holds back the
  // key's later events on a strict route.
  virtual absl::StatusOr<std::vector<KeyBlocker>> FailedBefore(const std::string& source,
                                                               const std::string& key,
                                                               int64_t before_position,
                                                               int limit) = 0;

  // Up to `limit` events of the window after `after` (nullopt = from the
  // start), in (ingested_at, position) order.
  virtual absl::StatusOr<std::vector<StoredEvent>> ReadWindowPage(
      const ReplayWindow& window, const std::optional<ReplayCursor>& after, int limit) = 0;
  // The first `limit` events of the window whose outcome is in `outcomes`.
  virtual absl::StatusOr<std::vector<StoredEvent>> FirstEventsWithOutcome(
      const ReplayWindow& window, const std::vector<Outcome>& outcomes, int limit) = 0;
  // The window's events counted by (source, outcome, sequence bucket), all
  // from one snapshot. A key may come in several rows: their counts add up.
  // With `save`, the same read saves every event it counts as plan
  // save->plan_id's, in chunks of about kPlanChunkEvents; INVALID_ARGUMENT
  // when save->decide names an unknown decision.
  virtual absl::StatusOr<std::vector<WindowAggregate>> AggregateWindow(
      const ReplayWindow& window, const WindowPlanSave* save) = 0;
  absl::StatusOr<std::vector<WindowAggregate>> AggregateWindow(const ReplayWindow& window) {
    return AggregateWindow(window, nullptr);
  }

  // --- saved plans (a plan's events are written first, then the plan) ---

  // Saves the next chunk of a plan's events: `entries` in window order, all
  // after those of every earlier chunk. INVALID_ARGUMENT for an unknown
  // decision name.
  virtual absl::Status AddPlanEvents(const std::string& plan_id, int64_t chunk,
                                     const std::vector<PlanEntry>& entries) = 0;
  // Makes the plan, whose events were added, visible, audits `audit`, and
  // drops the events of expired plans. ALREADY_EXISTS for a taken id.
  virtual absl::Status CreatePlan(const ReplayPlan& plan, const AuditEntry& audit) = 0;
  // Drops the events added for a plan that will not be created.
  virtual absl::Status DropPlanEvents(const std::string& plan_id) = 0;
  // NOT_FOUND for an unknown id; an expired plan is returned as it is.
  virtual absl::StatusOr<ReplayPlan> GetPlan(const std::string& id) = 0;
  // Up to `limit` events of the plan after `after` (nullopt = from the
  // start), in (ingested_at, position) order, as the log holds them now;
  // events the log no longer holds (retention) are left out. Fewer than
  // `limit` only at the end.
  virtual absl::StatusOr<std::vector<PlannedEvent>> ReadPlanPage(
      const std::string& plan_id, const std::optional<ReplayCursor>& after, int limit) = 0;
};

}  // namespace replayd
