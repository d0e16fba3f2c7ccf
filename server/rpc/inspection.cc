#include "server/rpc/inspection.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/source_name.h"
#include "server/common/time_format.h"
#include "server/rpc/proto_convert.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using proto_convert::FromProto;
using proto_convert::ToProto;

constexpr int kMaxBuckets = 10000;
constexpr int kMaxSequenceGaps = 1000;
void ToProto(const OutcomeTally& c, pb::OutcomeCounts* out) {
  out->set_pending(c.pending);
  out->set_retrying(c.retrying);
  out->set_succeeded(c.succeeded);
  out->set_already_processed(c.already_processed);
  out->set_failed(c.failed);
  out->set_total(c.total);
}

void ToProto(const StoredEvent& e, pb::StoredEvent* out) {
  pb::Event* ev = out->mutable_event();
  ev->set_source(e.event.source);
  ev->set_event_id(e.event.event_id);
  if (e.event.sequence) ev->set_sequence(*e.event.sequence);
  ev->set_key(e.event.key);
  ev->set_type(e.event.type);
  if (e.event.occurred_at) ToProto(*e.event.occurred_at, ev->mutable_occurred_at());
  ev->set_payload(e.event.payload);
  out->set_log_position(e.position);
  ToProto(e.ingested_at, out->mutable_ingested_at());
  if (e.processed_at) ToProto(*e.processed_at, out->mutable_processed_at());
  out->set_outcome(ToProto(e.outcome));
  out->set_attempts(e.attempts);
  out->set_last_error(e.last_error);
  if (e.next_attempt_at) ToProto(*e.next_attempt_at, out->mutable_next_attempt_at());
  out->set_target_record_id(e.target_record_id);
}

void ToProto(const AttemptRecord& a, pb::DeliveryAttempt* out) {
  out->set_attempt(a.attempt);
  out->set_trigger(a.trigger);
  out->set_route(a.route);
  ToProto(a.started_at, out->mutable_started_at());
  out->set_duration_ms(a.duration_ms);
  out->set_http_status(a.http_status.value_or(0));
  out->set_error(a.error);
  out->set_outcome(ToProto(a.outcome));
  out->set_record_id(a.record_id);
  out->set_worker(a.worker);
}

absl::Status ValidateSources(const google::protobuf::RepeatedPtrField<std::string>& sources) {
  for (const std::string& s : sources) {
    if (absl::Status status = ValidateSourceName(s); !status.ok()) return status;
  }
  return absl::OkStatus();
}

std::vector<std::string> SourceList(const google::protobuf::RepeatedPtrField<std::string>& s) {
  std::vector<std::string> out(s.begin(), s.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool Unsettled(const BucketRow& row) { return row.counts.failed > 0 || row.settled_unfinished > 0; }

}  // namespace

absl::Duration PickBucket(absl::Duration span, int target_buckets) {
  static constexpr int64_t kWidths[] = {1,    2,    5,    10,    15,    30,    60,   120,
                                        300,  600,  900,  1800,  3600,  7200,  10800, 21600,
                                        43200, 86400};
  absl::Duration want = span / std::max(1, target_buckets);
  for (int64_t w : kWidths) {
    if (absl::Seconds(w) >= want) return absl::Seconds(w);
  }
  int64_t days = static_cast<int64_t>(std::ceil(absl::FDivDuration(want, absl::Hours(24))));
  return absl::Hours(24) * days;
}

std::vector<int64_t> MissingPerRow(const std::vector<BucketRow>& rows) {
  std::vector<int64_t> out(rows.size(), 0);
  std::map<std::string, int64_t> last_max;
  for (size_t i = 0; i < rows.size(); ++i) {
    const BucketRow& r = rows[i];
    if (!r.min_sequence || !r.max_sequence || r.sequenced == 0) continue;
    int64_t inside = std::max<int64_t>(0, *r.max_sequence - *r.min_sequence + 1 - r.sequenced);
    int64_t between = 0;
    auto it = last_max.find(r.source);
    if (it != last_max.end()) {
      between = std::max<int64_t>(0, *r.min_sequence - it->second - 1);
      it->second = std::max(it->second, *r.max_sequence);
    } else {
      last_max.emplace(r.source, *r.max_sequence);
    }
    out[i] = inside + between;
  }
  return out;
}

std::vector<Window> SuggestWindows(const std::vector<BucketRow>& rows, absl::Duration bucket,
                                   absl::Time clamp_from, absl::Time clamp_to) {
  std::vector<int64_t> missing = MissingPerRow(rows);
  // Group the rows of each bucket start.
  struct Run {
    absl::Time start;
    absl::Time end;
    std::vector<size_t> rows;
    std::set<std::string> sources;
  };
  std::vector<Run> runs;
  std::optional<Run> open;
  for (size_t i = 0; i < rows.size();) {
    size_t j = i;
    bool bad = false;
    std::set<std::string> bad_sources;
    while (j < rows.size() && rows[j].start == rows[i].start) {
      if (Unsettled(rows[j])) {
        bad = true;
        bad_sources.insert(rows[j].source);
      }
      ++j;
    }
    if (bad) {
      if (!open) open = Run{rows[i].start, rows[i].start, {}, {}};
      open->end = rows[i].start + bucket;
      for (size_t k = i; k < j; ++k) open->rows.push_back(k);
      open->sources.insert(bad_sources.begin(), bad_sources.end());
    } else if (open) {
      runs.push_back(std::move(*open));
      open.reset();
    }
    i = j;
  }
  if (open) runs.push_back(std::move(*open));

  std::vector<Window> out;
  for (const Run& run : runs) {
    Window w;
    w.from = std::max(run.start, clamp_from);
    w.to = std::min(run.end, clamp_to);
    if (w.to <= w.from) continue;
    w.sources.assign(run.sources.begin(), run.sources.end());
    for (size_t k : run.rows) {
      if (!run.sources.count(rows[k].source)) continue;
      w.failed += rows[k].counts.failed;
      w.pending += rows[k].counts.pending;
      w.retrying += rows[k].counts.retrying;
      w.missing += missing[k];
    }
    out.push_back(std::move(w));
  }
  return out;
}

std::string DryRunCommand(absl::Time from, absl::Time to, const std::vector<std::string>& sources) {
  std::string out =
      absl::StrCat("replayctl dry-run --from ", FormatRfc3339(from), " --to ", FormatRfc3339(to));
  for (const std::string& s : sources) absl::StrAppend(&out, " --source ", s);
  return out;
}

absl::StatusOr<ResolvedWindow> ResolveWindow(const google::protobuf::Timestamp* from,
                                             const google::protobuf::Timestamp* to,
                                             int64_t bucket_seconds, absl::Time now) {
  ResolvedWindow w;
  now = absl::FromUnixMicros(absl::ToUnixMicros(now));
  w.to = to != nullptr ? FromProto(*to) : now;
  w.from = from != nullptr ? FromProto(*from) : w.to - absl::Hours(1);
  if (w.to <= w.from) {
    return absl::InvalidArgumentError(absl::StrCat("to (", FormatRfc3339(w.to),
                                                   ") must be after from (",
                                                   FormatRfc3339(w.from), ")"));
  }
  if (bucket_seconds < 0) {
    return absl::InvalidArgumentError("bucket_seconds must not be negative");
  }
  w.bucket = bucket_seconds == 0 ? PickBucket(w.to - w.from) : absl::Seconds(bucket_seconds);
  if (absl::FDivDuration(w.to - w.from, w.bucket) > kMaxBuckets) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a bucket of ", bucket_seconds, "s gives more than ", kMaxBuckets,
        " buckets over this window; widen the bucket or narrow the window"));
  }
  return w;
}

absl::StatusOr<pb::Timeline> Inspector::GetTimeline(const pb::TimelineRequest& request) {
  auto window = ResolveWindow(request.has_from() ? &request.from() : nullptr,
                              request.has_to() ? &request.to() : nullptr,
                              request.bucket_seconds(), clock_->Now());
  if (!window.ok()) return window.status();
  if (absl::Status s = ValidateSources(request.sources()); !s.ok()) return s;
  TimelineQuery query{window->from, window->to, window->bucket, SourceList(request.sources())};
  auto rows = store_->Timeline(query);
  if (!rows.ok()) return rows.status();
  std::vector<int64_t> missing = MissingPerRow(*rows);
  pb::Timeline out;
  out.set_bucket_seconds(absl::ToInt64Seconds(window->bucket));
  ToProto(window->from, out.mutable_from());
  ToProto(window->to, out.mutable_to());
  OutcomeTally totals;
  for (size_t i = 0; i < rows->size(); ++i) {
    const BucketRow& r = (*rows)[i];
    pb::TimelineBucket* b = out.add_buckets();
    ToProto(r.start, b->mutable_start());
    b->set_source(r.source);
    ToProto(r.counts, b->mutable_counts());
    b->set_missing(missing[i]);
    totals += r.counts;
  }
  ToProto(totals, out.mutable_totals());
  return out;
}

absl::StatusOr<pb::Gaps> Inspector::GetGaps(const pb::GapsRequest& request) {
  // Microseconds, as Postgres stores them: a window clamped to now prints short.
  absl::Time now = absl::FromUnixMicros(absl::ToUnixMicros(clock_->Now()));
  auto window = ResolveWindow(request.has_from() ? &request.from() : nullptr,
                              request.has_to() ? &request.to() : nullptr,
                              request.bucket_seconds(), now);
  if (!window.ok()) return window.status();
  if (absl::Status s = ValidateSources(request.sources()); !s.ok()) return s;
  std::vector<std::string> sources = SourceList(request.sources());
  TimelineQuery query{window->from, window->to, window->bucket, sources, now - settle_};
  auto rows = store_->Timeline(query);
  if (!rows.ok()) return rows.status();
  auto holes = store_->SequenceHoles(window->from, window->to, sources, kMaxSequenceGaps);
  if (!holes.ok()) return holes.status();

  pb::Gaps out;
  out.set_bucket_seconds(absl::ToInt64Seconds(window->bucket));
  ToProto(window->from, out.mutable_from());
  ToProto(window->to, out.mutable_to());
  int64_t missing = 0;
  for (const SequenceHole& h : *holes) {
    pb::SequenceGap* g = out.add_sequence_gaps();
    g->set_source(h.source);
    g->set_first_missing(h.first_missing);
    g->set_last_missing(h.last_missing);
    ToProto(h.after_ingested_at, g->mutable_after_ingested_at());
    ToProto(h.before_ingested_at, g->mutable_before_ingested_at());
    missing += h.last_missing - h.first_missing + 1;
  }
  out.set_missing(missing);
  // A replay window must not reach into the future (the server refuses it).
  for (const Window& w :
       SuggestWindows(*rows, window->bucket, window->from, std::min(window->to, now))) {
    pb::SuggestedWindow* s = out.add_windows();
    ToProto(w.from, s->mutable_from());
    ToProto(w.to, s->mutable_to());
    for (const std::string& src : w.sources) s->add_sources(src);
    s->set_failed(w.failed);
    s->set_pending(w.pending);
    s->set_retrying(w.retrying);
    s->set_missing(w.missing);
    s->set_dry_run_command(DryRunCommand(w.from, w.to, w.sources));
  }
  return out;
}

absl::StatusOr<pb::EventTrace> Inspector::GetEventTrace(const pb::EventTraceRequest& request) {
  if (request.source().empty() || request.event_id().empty()) {
    return absl::InvalidArgumentError("source and event_id are both required");
  }
  pb::EventTrace out;
  if (delivery_store_ != nullptr) {
    auto trace = delivery_store_->GetTrace(request.source(), request.event_id());
    if (!trace.ok()) return trace.status();
    ToProto(trace->event, out.mutable_event());
    for (const AttemptRecord& a : trace->attempts) ToProto(a, out.add_attempts());
    return out;
  }
  auto event = events_->Find(request.source(), request.event_id());
  if (!event.ok()) return event.status();
  ToProto(*event, out.mutable_event());
  return out;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

}  // namespace replayd
