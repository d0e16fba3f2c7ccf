// The replay domain's plain types, shared by replay/ (what a job does) and
// store/ (how it is kept): the window, the cursor, a job's state, counters
// and spec, and its audit entries. No I/O here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/model/outcome.h"
#include "server/model/retry.h"

namespace replayd {

// The rows a replay looks at: [from, to) on ingested_at, of these sources,
// keys, types and event ids. An empty list selects every value; an event must
// match every list that is not empty (AND between lists, OR within one).
struct ReplayWindow {
  absl::Time from;
  absl::Time to;
  std::vector<std::string> sources;
  std::vector<std::string> keys = {};
  std::vector<std::string> types = {};
  std::vector<std::string> event_ids = {};

  // Whether keys, types or event ids narrow the window: its upstream
  // sequence numbers then have gaps that are not missing events.
  bool Filtered() const { return !keys.empty() || !types.empty() || !event_ids.empty(); }
};

// A position in window order: (ingested_at, position) of the last event done.
struct ReplayCursor {
  absl::Time ingested_at;
  int64_t position = 0;
};

// A paused job keeps its cursor and its hold on the window; nobody runs it
// until it is resumed.
enum class ReplayState {
  kPending,
  kRunning,
  kPaused,
  kCancelling,
  kCancelled,
  kCompleted,
  kFailed
};

struct ReplayCounters {
  int64_t total = 0;
  int64_t processed = 0;
  int64_t delivered = 0;
  int64_t skipped = 0;
  int64_t failed = 0;
  // Of `skipped`: events of a strict key held behind an earlier undelivered
  // event of that key.
  int64_t held_by_key = 0;
  // Of `skipped`, in a replay of a saved plan: events the plan would deliver
  // whose state changed since (a live retry delivered one, say).
  int64_t changed_since_plan = 0;

  friend bool operator==(const ReplayCounters&, const ReplayCounters&) = default;
};

// When a replay pauses itself: after `consecutive_failures` failed
// deliveries in a row, or when at least `failure_ratio` of its last `window`
// outcomes failed (judged only once `window` outcomes are seen). 0 turns a
// rule off.
struct BreakerSettings {
  int consecutive_failures = 0;
  double failure_ratio = 0;
  int window = 0;
};

// An event to deliver again first when a paused job resumes: one that failed
// in the burst that tripped the breaker.
struct RetryEvent {
  int64_t position = 0;
  absl::Time ingested_at;
  std::string source;
  std::string key;
};

// What a durable job does with its events: redeliver them (a replay),
// compare each with the downstream's record and propose changes (a diff,
// whose id is its compensation plan's), or apply a compensation plan (the
// plan's id is the job's plan_id). All three share the job machinery: lease,
// checkpoints, rate limit, breaker, pause, resume and cancel.
enum class ReplayKind { kReplay, kDiff, kCompensate };

// What a job was asked to do, after server-side defaults were applied.
struct ReplaySpec {
  ReplayKind kind = ReplayKind::kReplay;
  ReplayWindow window;
  std::vector<Outcome> outcomes;  // never empty once defaults are applied
  bool include_succeeded = false;
  bool verify_downstream = false;
  double rate = 0;
  int burst = 0;
  bool allow_high_rate = false;
  std::string reason;
  BreakerSettings breaker;
  // The saved plan whose events the job replays (a compensation plan for
  // kCompensate); empty = the window's.
  std::string plan_id;
  // Where and how this replay delivers instead of its routes: a configured
  // sink's name (empty = each route's sink) and its own retry policy.
  std::string sink = {};
  RetrySettings retry = {};
};

struct ReplayJob {
  std::string id;
  std::string request_id;  // empty = none
  ReplayState state = ReplayState::kPending;
  ReplaySpec spec;
  std::string created_by;
  absl::Time created_at;
  std::optional<absl::Time> started_at;
  std::optional<absl::Time> finished_at;
  ReplayCounters counters;
  double current_rate = 0;
  std::optional<ReplayCursor> cursor;
  std::string last_error;
  std::string owner;  // empty = nobody holds the lease
  std::optional<absl::Time> lease_until;
  std::string cancel_reason;
  std::vector<RetryEvent> retry;
};

struct AuditEntry {
  std::string actor;
  std::string action;
  std::string replay_id;
  std::string reason;
  std::string detail_json = "{}";
  absl::Time at;   // filled in on read
  int64_t id = 0;  // filled in on read: ascending in insertion order
};

// Which audit entries to read, newest first.
struct AuditQuery {
  std::string replay_id;            // empty: every entry
  std::optional<absl::Time> since;  // only entries at or after this time
  int64_t before_id = 0;            // > 0: only entries older than this id (the next page)
  int limit = 0;                    // see PageSize

  static constexpr int kDefaultLimit = 100;
  static constexpr int kMaxLimit = 1000;
  // The entries a page holds at most: limit within 1..kMaxLimit, kDefaultLimit if unset.
  int PageSize() const { return limit <= 0 ? kDefaultLimit : std::min(limit, kMaxLimit); }
};

}  // namespace replayd
