#include "server/rpc/inspection.h"

#include <google/protobuf/util/json_util.h>

#include "server/rpc/proto_convert.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using proto_convert::FromProto;
using proto_convert::ToProto;

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
  out->set_sink(a.sink);
  if (!a.retry.empty()) ToProto(a.retry, out->mutable_retry());
}

void SetWindow(const ResolvedWindow& w, pb::Timeline* out) {
  out->set_bucket_seconds(absl::ToInt64Seconds(w.bucket));
  ToProto(w.from, out->mutable_from());
  ToProto(w.to, out->mutable_to());
}

void SetWindow(const ResolvedWindow& w, pb::Gaps* out) {
  out->set_bucket_seconds(absl::ToInt64Seconds(w.bucket));
  ToProto(w.from, out->mutable_from());
  ToProto(w.to, out->mutable_to());
}

// The request's window (unset fields take Inspection's defaults).
template <typename Request>
WindowQuery WindowQueryFrom(const Request& request) {
  WindowQuery q;
  if (request.has_from()) q.from = FromProto(request.from());
  if (request.has_to()) q.to = FromProto(request.to());
  q.bucket_seconds = request.bucket_seconds();
  q.sources.assign(request.sources().begin(), request.sources().end());
  return q;
}

}  // namespace

pb::Timeline ToProto(const TimelineView& view) {
  pb::Timeline out;
  SetWindow(view.window, &out);
  for (const TimelineBucket& b : view.buckets) {
    pb::TimelineBucket* p = out.add_buckets();
    ToProto(b.start, p->mutable_start());
    p->set_source(b.source);
    ToProto(b.counts, p->mutable_counts());
    p->set_missing(b.missing);
  }
  ToProto(view.totals, out.mutable_totals());
  return out;
}

pb::Gaps ToProto(const GapsView& view) {
  pb::Gaps out;
  SetWindow(view.window, &out);
  for (const SequenceHole& h : view.holes) {
    pb::SequenceGap* g = out.add_sequence_gaps();
    g->set_source(h.source);
    g->set_first_missing(h.first_missing);
    g->set_last_missing(h.last_missing);
    ToProto(h.after_ingested_at, g->mutable_after_ingested_at());
    ToProto(h.before_ingested_at, g->mutable_before_ingested_at());
  }
  out.set_missing(view.missing);
  for (const SuggestedWindow& sw : view.windows) {
    const Window& w = sw.window;
    pb::SuggestedWindow* s = out.add_windows();
    ToProto(w.from, s->mutable_from());
    ToProto(w.to, s->mutable_to());
    for (const std::string& src : w.sources) s->add_sources(src);
    s->set_failed(w.failed);
    s->set_pending(w.pending);
    s->set_retrying(w.retrying);
    s->set_missing(w.missing);
    s->set_dry_run_command(sw.dry_run_command);
  }
  return out;
}

pb::EventTrace ToProto(const EventTrace& trace) {
  pb::EventTrace out;
  ToProto(trace.event, out.mutable_event());
  for (const AttemptRecord& a : trace.attempts) ToProto(a, out.add_attempts());
  out.set_target_version(trace.event.target_version);
  if (trace.event.target_updated_at) {
    ToProto(*trace.event.target_updated_at, out.mutable_target_updated_at());
  }
  return out;
}

absl::StatusOr<pb::Timeline> Inspector::GetTimeline(const pb::TimelineRequest& request) {
  auto view = inspection_.Timeline(WindowQueryFrom(request));
  if (!view.ok()) return view.status();
  return ToProto(*view);
}

absl::StatusOr<pb::Gaps> Inspector::GetGaps(const pb::GapsRequest& request) {
  auto view = inspection_.Gaps(WindowQueryFrom(request));
  if (!view.ok()) return view.status();
  return ToProto(*view);
}

absl::StatusOr<pb::EventTrace> Inspector::GetEventTrace(const pb::EventTraceRequest& request) {
  auto trace = inspection_.Trace(request.source(), request.event_id());
  if (!trace.ok()) return trace.status();
  return ToProto(*trace);
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
