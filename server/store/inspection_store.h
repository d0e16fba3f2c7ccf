// Read-only aggregates of the event log for the on-call views and the dry
// run: counts by outcome per time bucket and source, holes in upstream
// sequence numbers, and the delivery backlog. (One event's trace is
// DeliveryStore::GetTrace.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/event.h"

namespace replayd {

struct OutcomeTally {
  int64_t pending = 0;
  int64_t retrying = 0;
  int64_t succeeded = 0;
  int64_t already_processed = 0;
  int64_t failed = 0;
  int64_t total = 0;

  OutcomeTally& operator+=(const OutcomeTally& o);
  bool operator==(const OutcomeTally&) const = default;
};

// One (bucket, source) holding events. Sequence figures cover only the
// events that carry a sequence number.
struct BucketRow {
  absl::Time start;
  std::string source;
  OutcomeTally counts;
  // Pending/retrying events ingested before the "settled" time of the query.
  int64_t settled_unfinished = 0;
  int64_t sequenced = 0;  // events with a sequence number
  std::optional<int64_t> min_sequence;
  std::optional<int64_t> max_sequence;
};

// Sequence numbers [first, last] of one source.
struct SequenceRange {
  std::string source;
  int64_t first = 0;
  int64_t last = 0;
};

// A hole in one source's sequence numbers: [first_missing, last_missing],
// the numbers between two consecutive sequence numbers of its events.
struct SequenceHole {
  std::string source;
  int64_t first_missing = 0;
  int64_t last_missing = 0;
  absl::Time after_ingested_at;   // the event just before the hole
  absl::Time before_ingested_at;  // the event just after it
};

struct SequenceHoles {
  std::vector<SequenceHole> holes;  // by source, then sequence
  int64_t missing = 0;              // numbers in all the holes, listed or not
};

struct TimelineQuery {
  absl::Time from;                   // inclusive, on ingested_at
  absl::Time to;                     // exclusive
  absl::Duration bucket;             // whole seconds; buckets aligned on the Unix epoch
  std::vector<std::string> sources;  // empty = all
  // Pending/retrying events ingested before this count as settled_unfinished.
  absl::Time settled_before = absl::InfiniteFuture();
};

// Pending and retrying events in the whole log.
struct Backlog {
  int64_t pending = 0;
  int64_t retrying = 0;
};

class InspectionStore {
 public:
  virtual ~InspectionStore() = default;

  // Rows ordered by start, then source; only (bucket, source) pairs that hold
  // events. UNAVAILABLE when the database cannot be reached.
  virtual absl::StatusOr<std::vector<BucketRow>> Timeline(const TimelineQuery& query) = 0;

  // The holes between the sequence numbers of the events ingested in
  // [from, to) inside each of `ranges`, at most `limit` of them, and how many
  // numbers all the holes hold. A hole lies between two numbers of one
  // range: ranges that split a source must overlap by one number. One
  // statement, an index range scan per range.
  virtual absl::StatusOr<SequenceHoles> FindSequenceHoles(absl::Time from, absl::Time to,
                                                          const std::vector<SequenceRange>& ranges,
                                                          int limit) = 0;

  virtual absl::StatusOr<Backlog> CountBacklog() = 0;
};

}  // namespace replayd
