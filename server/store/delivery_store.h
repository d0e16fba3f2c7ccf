// The event log as delivery and replay see it: claiming events so that no two
// workers (threads, daemons, a replay beside live traffic) deliver one event
// at once, recording attempts and outcomes, and reading one event's trace.
//
// Claims live in their own table (delivery_claims, one row per event being
// delivered), so that claiming never writes the event row: a claim is held
// until it is released or recorded, or until its lease expires (a crashed
// daemon's claims become claimable again). All lease and due-time arithmetic
// uses the database's clock, so several daemons agree on it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/event.h"

namespace replayd {

// One event by its place in the log: position names it, ingested_at finds its
// partition.
struct EventRef {
  int64_t position = 0;
  absl::Time ingested_at;
};

// An undelivered (pending or retrying) event as the dispatcher's scan of the
// log sees it: enough to queue it behind its key's earlier events and to
// claim it.
struct UndeliveredEvent {
  EventRef ref;
  std::string source;
  std::string key;  // empty: no key
  // How long until it is due by the database's clock; zero: due now.
  absl::Duration due_in = absl::ZeroDuration();
};

// What claiming one event found. Only kClaimed leaves a claim held: the
// others were given back in the same transaction.
struct ClaimResult {
  enum class State {
    kClaimed,        // held by the owner and due: deliver `event`
    kBusy,           // another worker holds an unexpired claim on it
    kNotDue,         // a retry due in `due_in`
    kSettled,        // no longer pending or retrying (delivered or failed by someone else)
    kBehindFailure,  // a strict source's key with an earlier failed event, `blocker`
  };
  State state = State::kBusy;
  StoredEvent event;  // the row as of the claim (all but kBusy)
  absl::Duration due_in = absl::ZeroDuration();
  EventRef blocker;
};

// The new state of an event after one attempt (or a check that found it
// downstream), written with the attempt in one transaction.
struct OutcomeUpdate {
  Outcome outcome = Outcome::kPending;
  std::string last_error;        // empty = clear it
  std::string target_record_id;  // empty = keep the current one
  // What the downstream reported of its record: empty or nullopt = keep.
  std::string target_version;
  std::optional<absl::Time> target_updated_at;
  // For kRetrying: when the next attempt is due, counted from the database's now().
  absl::Duration retry_delay = absl::ZeroDuration();
};

// What DeliverToLogTable did.
struct LogTableDelivery {
  bool held = false;     // false: `owner` no longer held the claim; nothing was written
  bool created = false;  // false: the key's row was there already (already_processed)
  std::string record_id;
  std::string version;  // the row's
  absl::Time updated_at;
};

// One event with every attempt, oldest first.
struct EventTrace {
  StoredEvent event;
  std::vector<AttemptRecord> attempts;
};

class DeliveryStore {
 public:
  virtual ~DeliveryStore() = default;

  // Undelivered (pending or retrying) events of `sources` with a position
  // after `after_position`, in position order, at most `limit`: the
  // dispatcher's scan of the log. Reads only; claims nothing.
  virtual absl::StatusOr<std::vector<UndeliveredEvent>> ScanUndelivered(
      const std::vector<std::string>& sources, int64_t after_position, int limit) = 0;

  // Claims `events` for `owner` (those nobody else holds, or whose claim
  // expired; `owner`'s own claims are renewed) in position order, then reads
  // them again as of now: an event still undelivered and due stays claimed
  // (kClaimed); one delivered or failed meanwhile, a retry not yet due, and
  // an event of a `strict_sources` key with an earlier failed event are given
  // back. One result per event, in the order of `events`. Per-key order is
  // the caller's to keep (the dispatcher's key queues).
  virtual absl::StatusOr<std::vector<ClaimResult>> Claim(
      const std::vector<EventRef>& events, const std::string& owner, absl::Duration lease,
      const std::vector<std::string>& strict_sources) = 0;

  // Which of `events` are failed now (a strict key's blocker that a replay
  // has not delivered yet). Those that are not no longer hold back their keys
  // on strict routes, however they stopped being failed.
  virtual absl::StatusOr<std::vector<int64_t>> StillFailed(const std::vector<EventRef>& events) = 0;

  // Claims one event for `owner` whatever its outcome (the replay runner).
  // Returns the fresh row when claimed (also when `owner` already held it),
  // nullopt when someone else holds an unexpired claim. NOT_FOUND when the
  // event is not in the log.
  virtual absl::StatusOr<std::optional<StoredEvent>> TryClaim(int64_t position,
                                                              absl::Time ingested_at,
                                                              const std::string& owner,
                                                              absl::Duration lease) = 0;

  // Drops `owner`'s claims on the events at `positions` (those it does not
  // hold are left alone), in one statement.
  virtual absl::Status Release(const std::vector<int64_t>& positions, const std::string& owner) = 0;

  // Pushes the expiry of every claim `owner` holds to now + lease (the
  // dispatcher's heartbeat; claims being released are skipped). Also deletes
  // claims of any owner that expired over an hour ago: their owners are gone
  // (an expired claim blocks nobody; this only keeps the table small).
  virtual absl::Status ExtendClaims(const std::string& owner, absl::Duration lease) = 0;

  // Drops every claim `owner` holds (graceful stop).
  virtual absl::Status ReleaseAll(const std::string& owner) = 0;

  // In one transaction: inserts `attempt` into delivery_attempts, sets the
  // event's outcome, attempts = attempt.attempt, last_error, target record,
  // next_attempt_at (kRetrying) or processed_at (final outcomes), and releases
  // `owner`'s claim. Returns false when `owner` no longer held the claim (its
  // lease expired and another worker took the event): the attempt is still
  // recorded but the event row is left alone. Concurrent callers are
  // group-committed: many workers' records share one transaction.
  virtual absl::StatusOr<bool> RecordAttempt(const AttemptRecord& attempt,
                                             const OutcomeUpdate& update,
                                             const std::string& owner) = 0;

  // RecordAttempt without waiting: `done` is called exactly once, from
  // another thread, with what RecordAttempt would have returned.
  using RecordDone = std::function<void(absl::StatusOr<bool>)>;
  virtual void RecordAttemptAsync(const AttemptRecord& attempt, const OutcomeUpdate& update,
                                  const std::string& owner, RecordDone done) = 0;

  // The PostgreSQL table sink when its table is in the log's own database:
  // in ONE transaction, and only while `owner` holds the event's
  // claim, looks `idempotency_key` up in `table` and inserts the row
  // (`payload_json`) when absent, inserts `attempt` (its outcome and record id
  // filled in: succeeded with the new row's id, or already_processed with the
  // existing row's), sets the event's outcome and target record, clears
  // last_error, and releases the claim. The downstream row and the log's
  // record commit together or not at all. `table` is a validated
  // [schema.]name, created when missing. UNAVAILABLE when the database
  // cannot be reached; other errors (e.g. INVALID_ARGUMENT for a payload
  // that is not JSON) leave nothing written.
  virtual absl::StatusOr<LogTableDelivery> DeliverToLogTable(const std::string& table,
                                                             const std::string& idempotency_key,
                                                             const std::string& payload_json,
                                                             const AttemptRecord& attempt,
                                                             const std::string& owner) = 0;

  // One event with all its attempts, oldest first. NOT_FOUND when the event
  // is not in the log.
  virtual absl::StatusOr<EventTrace> GetTrace(const std::string& source,
                                              const std::string& event_id) = 0;
};

}  // namespace replayd
