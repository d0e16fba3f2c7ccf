#include "server/replay/dry_run.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/time_format.h"
#include "server/replay/limits.h"

namespace replayd {
namespace {

constexpr int kStreamPageSize = 1000;

std::string SampleDetail(ReplayCategory category, const StoredEvent& e,
                         const std::optional<std::optional<DownstreamRecord>>& downstream) {
  switch (category) {
    case ReplayCategory::kDeliver:
      return e.last_error.empty() ? absl::StrCat("outcome ", std::string(OutcomeName(e.outcome)))
                                  : absl::StrCat("outcome ", std::string(OutcomeName(e.outcome)),
                                                 ": ", e.last_error);
    case ReplayCategory::kSkipAlreadyDelivered:
      return e.target_record_id.empty() ? "delivered"
                                        : absl::StrCat("delivered as record ", e.target_record_id);
    case ReplayCategory::kSkipFoundDownstream:
      return absl::StrCat("downstream record ",
                          downstream && *downstream ? (*downstream)->id : std::string("?"));
    case ReplayCategory::kSkipOutcomeNotSelected:
      return absl::StrCat("outcome ", std::string(OutcomeName(e.outcome)), " not selected");
    case ReplayCategory::kSkipNoRoute: return "the source has no route";
    case ReplayCategory::kSkipHeldByKey: return "held behind an earlier event of its key";
  }
  return "";
}

ReplaySample MakeSample(ReplayCategory category, const StoredEvent& e,
                        const std::optional<std::optional<DownstreamRecord>>& downstream) {
  return {category,      e.event.source, e.event.event_id,
          e.ingested_at, e.outcome,      SampleDetail(category, e, downstream)};
}

void Count(ReplayCategory category, int64_t n, DryRunResult* result) {
  if (category == ReplayCategory::kDeliver) {
    result->would_deliver += n;
  } else {
    result->would_skip += n;
    result->skipped_by_reason[std::string(CategoryName(category))] += n;
  }
}

// A plan's events as the dry run streams them, saved a chunk at a time.
class PlanChunks {
 public:
  PlanChunks(ReplayStore* store, std::string plan_id)
      : store_(store), plan_id_(std::move(plan_id)) {}

  absl::Status Add(const StoredEvent& e, ReplayCategory c) {
    if (plan_id_.empty()) return absl::OkStatus();
    entries_.push_back({e.position, e.ingested_at, std::string(CategoryName(c))});
    return static_cast<int>(entries_.size()) < kPlanChunkEvents ? absl::OkStatus() : Flush();
  }
  absl::Status Flush() {
    if (plan_id_.empty() || entries_.empty()) return absl::OkStatus();
    absl::Status s = store_->AddPlanEvents(plan_id_, next_chunk_++, entries_);
    entries_.clear();
    return s;
  }

 private:
  ReplayStore* store_;
  const std::string plan_id_;  // empty = not saving
  int64_t next_chunk_ = 0;
  std::vector<PlanEntry> entries_;
};

constexpr ReplayCategory kCategories[] = {ReplayCategory::kDeliver,
                                          ReplayCategory::kSkipAlreadyDelivered,
                                          ReplayCategory::kSkipFoundDownstream,
                                          ReplayCategory::kSkipOutcomeNotSelected,
                                          ReplayCategory::kSkipNoRoute,
                                          ReplayCategory::kSkipHeldByKey};

}  // namespace

std::vector<SequenceRange> PlanGapScan(const std::string& source,
                                       const std::map<int64_t, int64_t>& bucket_counts) {
  const int64_t size = int64_t{1} << kSequenceBucketBits;
  std::vector<SequenceRange> out;
  bool in_run = false;
  int64_t run_start = 0;  // the run's first bucket, when in_run
  bool first = true;
  int64_t previous = 0;  // the last bucket seen, unless first
  for (const auto& [bucket, count] : bucket_counts) {
    if (!first && bucket > previous + 1 && !in_run) {
      in_run = true;  // empty buckets: all missing
      run_start = previous + 1;
    }
    if (count != size) {  // more rows than numbers: duplicates, read them too
      if (!in_run) {
        in_run = true;
        run_start = bucket;
      }
    } else if (in_run) {
      out.push_back({source, run_start * size - 1, bucket * size});
      in_run = false;
    }
    previous = bucket;
    first = false;
  }
  if (in_run) out.push_back({source, run_start * size - 1, (previous + 1) * size});
  return out;
}

std::shared_ptr<const Route> ReplayRoute(const RouteLookup& routes, const Deliverer* deliverer,
                                         const ReplaySpec& spec, const std::string& source) {
  if (deliverer == nullptr || (spec.sink.empty() && spec.retry.empty())) return routes(source);
  return deliverer->RouteFor(source, spec.sink, spec.retry);
}

double DryRunner::EffectiveRate(const ReplaySpec& spec,
                                const std::vector<std::string>& sources) const {
  double rate = spec.rate;
  for (const std::string& source : sources) {
    std::shared_ptr<const Route> route = RouteOf(spec, source);
    if (route == nullptr) continue;
    if (const SinkConfig* sink = FindSink(*config_, route->sink_name)) {
      rate = std::min(rate, sink->replay_rate_budget);
    }
  }
  return rate;
}

namespace {

// Per source, the rows of each sequence bucket summed over outcomes; every
// row is also added to `*total`.
std::map<std::string, std::map<int64_t, int64_t>> BucketsBySource(
    const std::vector<WindowAggregate>& aggregates, int64_t* total) {
  std::map<std::string, std::map<int64_t, int64_t>> by_source;
  for (const WindowAggregate& a : aggregates) {
    *total += a.count;
    auto& buckets = by_source[a.source];
    if (a.sequence_bucket) buckets[*a.sequence_bucket] += a.count;
  }
  return by_source;
}

}  // namespace

absl::StatusOr<DryRunResult> DryRunner::FindHoles(const ReplaySpec& spec) {
  auto aggregates = store_->AggregateWindow(spec.window);
  if (!aggregates.ok()) return aggregates.status();
  DryRunResult result;
  auto by_source = BucketsBySource(*aggregates, &result.total);
  if (absl::Status s = FindMissing(spec, by_source, &result); !s.ok()) return s;
  return result;
}

absl::StatusOr<DryRunResult> DryRunner::Run(const ReplaySpec& spec,
                                            const std::string& save_plan_id) {
  std::vector<std::string> sinks;
  if (deliverer_ != nullptr) {
    sinks = deliverer_->SinkNames();
  } else {
    for (const SinkConfig& s : config_->sinks) sinks.push_back(s.name);
  }
  if (absl::Status s = ValidateReplaySink(spec.sink, sinks); !s.ok()) return s;
  DryRunResult result;
  // A plan whose decisions depend on (source, outcome) alone is saved by the
  // aggregate's own read; one whose events are decided one by one (a lookup,
  // a strict route) is saved as they are.
  const WindowPlanSave save = PlanSave(spec, save_plan_id);
  const bool save_in_read = !save_plan_id.empty() && !MayDecidePerEvent(spec);
  auto aggregates = store_->AggregateWindow(spec.window, save_in_read ? &save : nullptr);
  if (!aggregates.ok()) return aggregates.status();

  // On a strict route an event's fate depends on its key's earlier events:
  // decided per event, as the live replay does.
  bool any_strict = false;
  for (const WindowAggregate& a : *aggregates) {
    std::shared_ptr<const Route> route = RouteOf(spec, a.source);
    if (route != nullptr && route->strict_order) any_strict = true;
  }
  const bool streaming = spec.verify_downstream || any_strict;
  if (save_in_read && streaming) {
    // A source took a strict route after the check (a reload).
    if (absl::Status s = store_->DropPlanEvents(save_plan_id); !s.ok()) return s;
  } else if (!save_plan_id.empty() && !save_in_read && !streaming) {
    // Strict routes exist but none of the window's sources takes one.
    aggregates = store_->AggregateWindow(spec.window, &save);
    if (!aggregates.ok()) return aggregates.status();
  }

  auto by_source = BucketsBySource(*aggregates, &result.total);
  std::vector<std::string> sources_seen;
  for (const auto& [source, buckets] : by_source) sources_seen.push_back(source);
  if (spec.window.Filtered()) {
    result.warnings.push_back(
        "missing events are not counted when keys, types or event ids narrow the window: the "
        "events they leave out look like sequence gaps");
  } else if (absl::Status s = FindMissing(spec, by_source, &result); !s.ok()) {
    return s;
  }

  absl::Status counted = streaming ? CountByStreaming(spec, save_plan_id, &result)
                                   : CountByAggregate(spec, *aggregates, &result);
  if (!counted.ok()) return counted;

  std::vector<std::string> rate_sources =
      spec.window.sources.empty() ? sources_seen : spec.window.sources;
  result.effective_rate = EffectiveRate(spec, rate_sources);
  result.estimated_seconds = result.effective_rate > 0
                                 ? static_cast<double>(result.would_deliver) / result.effective_rate
                                 : 0;
  AddWarnings(spec, sources_seen, &result);
  return result;
}

WindowPlanSave DryRunner::PlanSave(const ReplaySpec& spec, const std::string& plan_id) const {
  WindowPlanSave save;
  save.plan_id = plan_id;
  save.decide = [&spec](Outcome outcome, bool routed) {
    StoredEvent e;
    e.outcome = outcome;
    return std::string(CategoryName(Classify(e, spec, routed, std::nullopt)));
  };
  save.routed = [this, &spec](const std::string& source) {
    return RouteOf(spec, source) != nullptr;
  };
  return save;
}

bool DryRunner::MayDecidePerEvent(const ReplaySpec& spec) const {
  if (spec.verify_downstream) return true;
  if (!spec.window.sources.empty()) {
    for (const std::string& source : spec.window.sources) {
      std::shared_ptr<const Route> route = RouteOf(spec, source);
      if (route != nullptr && route->strict_order) return true;
    }
    return false;
  }
  if (deliverer_ != nullptr) return !deliverer_->StrictSources().empty();
  for (const RouteConfig& r : config_->routes) {
    if (r.strict_order) return true;
  }
  return false;
}

absl::Status DryRunner::FindMissing(
    const ReplaySpec& spec, const std::map<std::string, std::map<int64_t, int64_t>>& by_source,
    DryRunResult* result) {
  std::vector<SequenceRange> to_scan;
  for (const auto& [source, buckets] : by_source) {
    // Only the runs of buckets that are not full are read again, by index range.
    auto scan = PlanGapScan(source, buckets);
    to_scan.insert(to_scan.end(), scan.begin(), scan.end());
  }
  if (to_scan.empty()) return absl::OkStatus();
  auto holes =
      holes_->FindSequenceHoles(spec.window.from, spec.window.to, to_scan, kMaxMissingRanges);
  if (!holes.ok()) return holes.status();
  result->missing = holes->missing;
  for (const SequenceHole& h : holes->holes) {
    result->missing_ranges.push_back({h.source, h.first_missing, h.last_missing});
  }
  return absl::OkStatus();
}

absl::Status DryRunner::CountByAggregate(const ReplaySpec& spec,
                                         const std::vector<WindowAggregate>& aggregates,
                                         DryRunResult* result) {
  // Without a lookup the decision depends on (source, outcome) alone: decide
  // once per aggregate row, through the same Classify as the live replay.
  std::map<ReplayCategory, std::pair<std::set<std::string>, std::set<Outcome>>> members;
  for (const WindowAggregate& a : aggregates) {
    StoredEvent e;
    e.event.source = a.source;
    e.outcome = a.outcome;
    ReplayCategory c = Classify(e, spec, RouteOf(spec, a.source) != nullptr, std::nullopt);
    Count(c, a.count, result);
    members[c].first.insert(a.source);
    members[c].second.insert(a.outcome);
  }
  for (ReplayCategory c : kCategories) {
    auto it = members.find(c);
    if (it == members.end()) continue;
    ReplayWindow window = spec.window;
    window.sources.assign(it->second.first.begin(), it->second.first.end());
    std::vector<Outcome> outcomes(it->second.second.begin(), it->second.second.end());
    auto first = store_->FirstEventsWithOutcome(window, outcomes, 10 * kSamplesPerCategory);
    if (!first.ok()) return first.status();
    int taken = 0;
    for (const StoredEvent& e : *first) {
      if (taken == kSamplesPerCategory) break;
      if (Classify(e, spec, RouteOf(spec, e.event.source) != nullptr, std::nullopt) != c) continue;
      result->samples.push_back(MakeSample(c, e, std::nullopt));
      ++taken;
    }
  }
  return absl::OkStatus();
}

absl::Status DryRunner::CountByStreaming(const ReplaySpec& spec, const std::string& save_plan_id,
                                         DryRunResult* result) {
  std::map<ReplayCategory, std::vector<ReplaySample>> samples;
  PlanChunks plan(store_, save_plan_id);
  int64_t lookup_failures = 0;
  std::string first_lookup_error;
  // Per strict key, the failed events this replay would deliver: they no
  // longer hold back the key's later events.
  std::map<std::pair<std::string, std::string>, std::set<int64_t>> delivered_first;
  std::optional<ReplayCursor> cursor;
  while (true) {
    auto page = store_->ReadWindowPage(spec.window, cursor, kStreamPageSize);
    if (!page.ok()) return page.status();
    if (page->empty()) break;
    for (const StoredEvent& e : *page) {
      std::shared_ptr<const Route> route = RouteOf(spec, e.event.source);
      std::optional<std::optional<DownstreamRecord>> downstream;
      if (NeedsLookup(e, spec, route != nullptr)) {
        if (route->sink != nullptr && route->sink->HasLookup()) {
          auto found = route->sink->Lookup(e);
          if (found.ok()) {
            downstream = *found;
          } else {
            // Unknown downstream state: the live replay would deliver (and
            // its create path is idempotent by key).
            if (lookup_failures++ == 0) first_lookup_error = std::string(found.status().message());
          }
        }
      }
      ReplayCategory c = Classify(e, spec, route != nullptr, downstream);
      std::optional<KeyBlocker> blocker;
      if (c == ReplayCategory::kDeliver && route->strict_order && !e.event.key.empty()) {
        auto& first = delivered_first[{e.event.source, e.event.key}];
        auto failed =
            store_->FailedBefore(e.event.source, e.event.key, e.position, kKeyBlockersRead);
        if (!failed.ok()) return failed.status();
        blocker = KeyOrderBlocker(true, true, *failed, first);
        if (blocker) {
          c = ReplayCategory::kSkipHeldByKey;
        } else if (e.outcome == Outcome::kFailed) {
          first.insert(e.position);
        }
      }
      Count(c, 1, result);
      if (absl::Status saved = plan.Add(e, c); !saved.ok()) return saved;
      auto& s = samples[c];
      if (static_cast<int>(s.size()) < kSamplesPerCategory) {
        ReplaySample sample = MakeSample(c, e, downstream);
        if (blocker) {
          sample.detail =
              absl::StrCat("held behind failed event ", blocker->event_id, " of key ", e.event.key);
        }
        s.push_back(std::move(sample));
      }
    }
    cursor = ReplayCursor{page->back().ingested_at, page->back().position};
    if (static_cast<int>(page->size()) < kStreamPageSize) break;
  }
  if (absl::Status saved = plan.Flush(); !saved.ok()) return saved;
  for (ReplayCategory c : kCategories) {
    for (auto& s : samples[c]) result->samples.push_back(std::move(s));
  }
  if (lookup_failures > 0) {
    result->warnings.push_back(
        absl::StrCat("the downstream lookup failed for ", lookup_failures,
                     " events (counted as would-deliver): ", first_lookup_error));
  }
  return absl::OkStatus();
}

void DryRunner::AddWarnings(const ReplaySpec& spec, const std::vector<std::string>& sources_seen,
                            DryRunResult* result) {
  auto& w = result->warnings;
  if (auto days = partitions_->ListDays(); days.ok()) {
    absl::Time oldest;
    std::string err;
    if (days->empty()) {
      w.push_back("the log has no partitions: nothing was ever stored");
    } else if (absl::ParseTime("%Y%m%d", days->front(), absl::UTCTimeZone(), &oldest, &err) &&
               spec.window.from < oldest) {
      w.push_back(absl::StrCat("the window starts at ", FormatRfc3339(spec.window.from),
                               ", before the oldest partition of the log (", FormatRfc3339(oldest),
                               "): older events were dropped by retention or never stored"));
    }
  }
  if (int days = config_->partitions.retention_days; days > 0) {
    absl::Time cutoff = StartOfUtcDay(clock_->Now()) - absl::Hours(24) * days;
    if (spec.window.from < cutoff) {
      w.push_back(absl::StrCat("the window reaches past retention (", days, " days, events before ",
                               FormatRfc3339(cutoff), " are dropped)"));
    }
  }
  for (const std::string& source : spec.window.sources) {
    if (!std::binary_search(sources_seen.begin(), sources_seen.end(), source)) {
      w.push_back(absl::StrCat("source ", source, " has no events in the window"));
    }
  }
  for (const std::string& source : sources_seen) {
    if (RouteOf(spec, source) == nullptr) {
      w.push_back(absl::StrCat("source ", source,
                               " has no route: its events cannot be replayed (no_route)"));
    }
  }
  if (result->missing > 0) {
    w.push_back(absl::StrCat(result->missing,
                             " events are missing upstream (sequence gaps): a replay cannot "
                             "restore them; ask the upstream to re-send them"));
  }
  if (result->would_deliver == 0) w.push_back("nothing to deliver in this window");
}

}  // namespace replayd
