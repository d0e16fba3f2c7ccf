// The dry run: the live replay's selection and decisions over a window,
// without a single write downstream (it may ask the sink's read-only lookup
// when verify_downstream). When the decision depends on the outcome alone
// (no lookup, no strict route), the counts come from one SQL aggregate over
// the window; with verify_downstream or a strict route the window is streamed
// in keyset pages (memory flat in the window's size, but for the failed
// events of strict keys it would deliver), and on a strict route each event
// goes through the live replay's KeyOrderBlocker: held_by_key names the
// blocking event in its sample.
//
// A dry run may also save what it selected as a plan: every event of the
// window with its decision, written as it streams or, in the aggregate case,
// inside the database by the aggregate's own read
// (ReplayStore::AggregateWindow with a WindowPlanSave).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/clock.h"
#include "server/config/config.h"
#include "server/delivery/deliverer.h"
#include "server/replay/selection.h"
#include "server/store/inspection_store.h"
#include "server/store/partitions.h"
#include "server/store/replay_store.h"

namespace replayd {

// The route of a source, or nullptr when it has none; the pointer keeps the
// route table it came from alive while a delivery uses it.
using RouteLookup = std::function<std::shared_ptr<const Route>(const std::string& source)>;

// The route a replay of `spec` delivers `source`'s events by: `routes`'
// when the spec names neither a sink nor a retry policy, else the current
// route with those in place (nullptr when the sink is no longer configured).
// The dry run and the live replay both take it.
std::shared_ptr<const Route> ReplayRoute(const RouteLookup& routes, const Deliverer* deliverer,
                                         const ReplaySpec& spec, const std::string& source);

struct ReplaySample {
  ReplayCategory category = ReplayCategory::kDeliver;
  std::string source;
  std::string event_id;
  absl::Time ingested_at;
  Outcome outcome = Outcome::kPending;
  std::string detail;
};

struct DryRunResult {
  int64_t total = 0;  // every event of the window (and sources)
  int64_t would_deliver = 0;
  int64_t would_skip = 0;
  std::map<std::string, int64_t> skipped_by_reason;  // CategoryName -> count
  int64_t missing = 0;
  std::vector<SequenceGap> missing_ranges;
  std::vector<ReplaySample> samples;  // the first kSamplesPerCategory of each category
  double effective_rate = 0;
  double estimated_seconds = 0;
  std::vector<std::string> warnings;
  // Set when the selection was saved as a plan.
  std::string plan_id;
  absl::Time plan_expires_at;
};

// The sequence ranges of one source that must be read to find its holes,
// from the row count of each bucket of 2^kSequenceBucketBits numbers (keyed
// by bucket number): every run of consecutive buckets, between the first and
// the last, that is not full (empty ones included), widened by one number on
// each side so that the neighbouring full buckets' edge values bound the
// holes. A full bucket has no hole; one with more rows than numbers has
// duplicates and is read too. Pure. Assumes sequence numbers are unique per
// source (a duplicate and a hole in the same bucket could look full).
std::vector<SequenceRange> PlanGapScan(const std::string& source,
                                       const std::map<int64_t, int64_t>& bucket_counts);

inline constexpr int kSamplesPerCategory = 5;
inline constexpr int kMaxMissingRanges = 100;

class DryRunner {
 public:
  // Every pointer outlives this. `deliverer` (may be null: then a replay
  // may name only the configured sinks, and only in a run without routes of
  // its own) knows the sinks a replay may name instead of its routes'.
  DryRunner(ReplayStore* store, InspectionStore* holes, Partitions* partitions, RouteLookup routes,
            const Config* config, const Clock* clock, const Deliverer* deliverer = nullptr)
      : store_(store),
        holes_(holes),
        partitions_(partitions),
        routes_(std::move(routes)),
        config_(config),
        clock_(clock),
        deliverer_(deliverer) {}

  // INVALID_ARGUMENT when the spec names a sink that is not configured (the
  // message lists those that are); UNAVAILABLE when the database cannot be
  // reached. With `save_plan_id`, also saves the window's events and their
  // decisions as that plan's events; the counts are then those of the saved
  // set (the same unless events arrived in the window meanwhile). The caller
  // creates the plan.
  absl::StatusOr<DryRunResult> Run(const ReplaySpec& spec, const std::string& save_plan_id = "");

  // The window's events (`total`) and its upstream sequence holes
  // (`missing`, `missing_ranges`), found as Run finds them; nothing is
  // decided per event. UNAVAILABLE when the database cannot be reached.
  absl::StatusOr<DryRunResult> FindHoles(const ReplaySpec& spec);

  // The rate a replay of `spec` would achieve: its own rate, capped by the
  // replay budget of every sink it sends to.
  double EffectiveRate(const ReplaySpec& spec, const std::vector<std::string>& sources) const;

 private:
  absl::Status CountByAggregate(const ReplaySpec& spec,
                                const std::vector<WindowAggregate>& aggregates,
                                DryRunResult* result);
  // What AggregateWindow saves as plan `plan_id` for `spec` (which must
  // outlive it): each event with the decision of its outcome and route.
  WindowPlanSave PlanSave(const ReplaySpec& spec, const std::string& plan_id) const;
  // Whether some event of the window might be decided on more than its
  // source and outcome: a lookup asked for, or a strict route that may
  // take one of its sources.
  bool MayDecidePerEvent(const ReplaySpec& spec) const;
  absl::Status CountByStreaming(const ReplaySpec& spec, const std::string& save_plan_id,
                                DryRunResult* result);
  void AddWarnings(const ReplaySpec& spec, const std::vector<std::string>& sources_seen,
                   DryRunResult* result);
  std::shared_ptr<const Route> RouteOf(const ReplaySpec& spec, const std::string& source) const {
    return ReplayRoute(routes_, deliverer_, spec, source);
  }
  // Finds the window's upstream sequence holes from its aggregate.
  absl::Status FindMissing(const ReplaySpec& spec,
                           const std::map<std::string, std::map<int64_t, int64_t>>& by_source,
                           DryRunResult* result);

  ReplayStore* store_;
  InspectionStore* holes_;  // finds the upstream sequence holes
  Partitions* partitions_;
  RouteLookup routes_;
  const Config* config_;
  const Clock* clock_;
  const Deliverer* deliverer_;
};

}  // namespace replayd
