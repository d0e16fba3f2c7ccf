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

// Which due events the dispatcher may claim.
struct ClaimDueRequest {
  std::string owner;                        // unique per daemon process
  absl::Duration lease = absl::Seconds(60);
  int limit = 256;                          // at most this many events claimed
  std::vector<std::string> sources;         // routed sources; others stay pending
  std::vector<std::string> strict_sources;  // a failed event parks its key's later events
};

// The new state of an event after one attempt (or a check that found it
// downstream), written with the attempt in one transaction.
struct OutcomeUpdate {
  Outcome outcome = Outcome::kPending;
  std::string last_error;            // empty = clear it
  std::string target_record_id;      // empty = keep the current one
  // For kRetrying: when the next attempt is due, counted from the database's now().
  absl::Duration retry_delay = absl::ZeroDuration();
};

// What DeliverToLogTable did.
struct LogTableDelivery {
  bool held = false;     // false: `owner` no longer held the claim; nothing was written
  bool created = false;  // false: the key's row was there already (already_processed)
  std::string record_id;
};

// One event with every attempt, oldest first.
struct EventTrace {
  StoredEvent event;
  std::vector<AttemptRecord> attempts;
};

class DeliveryStore {
 public:
  virtual ~DeliveryStore() = default;

  // Claims due events (pending or retrying with next_attempt_at <= now) of
  // `sources` for `owner`, earliest due first, under the per-key rules:
  // an event with a key is claimed only when every earlier undelivered event
  // of its (source, key) is claimed in the same call (so a key's events form
  // one ordered chain held by one owner, and never two of a key run at once);
  // a retrying event not yet due, or an event claimed by anyone, blocks the
  // later events of its key; for `strict_sources` a failed event does too.
  // Events without a key are claimed freely. Returns the claimed rows in
  // position order. UNAVAILABLE when the database cannot be reached.
  virtual absl::StatusOr<std::vector<StoredEvent>> ClaimDue(const ClaimDueRequest& request) = 0;

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
  virtual absl::Status Release(const std::vector<int64_t>& positions,
                               const std::string& owner) = 0;

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

  // The PostgreSQL table sink when its table is in the log's own database
  // (SPEC §4): in ONE transaction, and only while `owner` holds the event's
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
