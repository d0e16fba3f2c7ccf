#include "server/rpc/replay_service.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/rpc/compensation_convert.h"
#include "server/rpc/grpc_status.h"
#include "server/rpc/plan_convert.h"
#include "server/rpc/proto_convert.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using proto_convert::FromProto;
using proto_convert::ToProto;

pb::ReplayState ToProto(ReplayState s) {
  switch (s) {
    case ReplayState::kPending: return pb::REPLAY_PENDING;
    case ReplayState::kRunning: return pb::REPLAY_RUNNING;
    case ReplayState::kPaused: return pb::REPLAY_PAUSED;
    case ReplayState::kCancelling: return pb::REPLAY_CANCELLING;
    case ReplayState::kCancelled: return pb::REPLAY_CANCELLED;
    case ReplayState::kCompleted: return pb::REPLAY_COMPLETED;
    case ReplayState::kFailed: return pb::REPLAY_FAILED;
  }
  return pb::REPLAY_STATE_UNSPECIFIED;
}

std::optional<ReplayState> FromProto(pb::ReplayState s) {
  switch (s) {
    case pb::REPLAY_PENDING: return ReplayState::kPending;
    case pb::REPLAY_RUNNING: return ReplayState::kRunning;
    case pb::REPLAY_PAUSED: return ReplayState::kPaused;
    case pb::REPLAY_CANCELLING: return ReplayState::kCancelling;
    case pb::REPLAY_CANCELLED: return ReplayState::kCancelled;
    case pb::REPLAY_COMPLETED: return ReplayState::kCompleted;
    case pb::REPLAY_FAILED: return ReplayState::kFailed;
    default: return std::nullopt;
  }
}

// The breaker fields a request sets.
void SetBreaker(const pb::BreakerSettings& b, ReplayRequestInput* in) {
  if (b.has_consecutive_failures()) in->breaker_consecutive_failures = b.consecutive_failures();
  if (b.has_failure_ratio()) in->breaker_failure_ratio = b.failure_ratio();
  if (b.has_window()) in->breaker_window = b.window();
}

// The pacing and reason every job request carries (a replay, a diff, an apply).
template <typename Request>
void SetPacing(const Request& r, ReplayRequestInput* in) {
  in->rate = r.rate();
  in->burst = r.burst();
  in->allow_high_rate = r.allow_high_rate();
  in->reason = r.reason();
  SetBreaker(r.breaker(), in);
}

// A diff's window and pacing (the controller selects every outcome).
ReplayRequestInput FromProto(const pb::DiffRequest& r) {
  ReplayRequestInput in;
  if (r.has_from()) in.from = FromProto(r.from());
  if (r.has_to()) in.to = FromProto(r.to());
  in.sources.assign(r.sources().begin(), r.sources().end());
  SetPacing(r, &in);
  return in;
}

// An apply's pacing and reason (the plan gives the window).
ReplayRequestInput FromProto(const pb::ApplyCompensationRequest& r) {
  ReplayRequestInput in;
  SetPacing(r, &in);
  return in;
}

absl::StatusOr<ReplayRequestInput> FromProto(const pb::ReplayRequest& r) {
  ReplayRequestInput in;
  if (r.has_from()) in.from = FromProto(r.from());
  if (r.has_to()) in.to = FromProto(r.to());
  in.sources.assign(r.sources().begin(), r.sources().end());
  for (int o : r.outcomes()) {
    auto outcome = FromProto(static_cast<pb::Outcome>(o));
    if (!outcome) {
      return absl::InvalidArgumentError(absl::StrCat("outcomes: ", o, " is not an outcome"));
    }
    in.outcomes.push_back(*outcome);
  }
  in.include_succeeded = r.include_succeeded();
  in.verify_downstream = r.verify_downstream();
  SetPacing(r, &in);
  in.keys.assign(r.keys().begin(), r.keys().end());
  in.types.assign(r.types().begin(), r.types().end());
  in.event_ids.assign(r.event_ids().begin(), r.event_ids().end());
  in.sink = r.sink();
  if (r.has_retry()) in.retry = FromProto(r.retry());
  return in;
}

void ToProto(const ReplayJob& job, pb::ReplayProgress* out) {
  out->set_replay_id(job.id);
  out->set_state(ToProto(job.state));
  pb::ReplayRequest* r = out->mutable_request();
  ToProto(job.spec.window.from, r->mutable_from());
  ToProto(job.spec.window.to, r->mutable_to());
  for (const auto& s : job.spec.window.sources) r->add_sources(s);
  for (Outcome o : job.spec.outcomes) r->add_outcomes(ToProto(o));
  r->set_include_succeeded(job.spec.include_succeeded);
  r->set_rate(job.spec.rate);
  r->set_burst(job.spec.burst);
  r->set_allow_high_rate(job.spec.allow_high_rate);
  r->set_verify_downstream(job.spec.verify_downstream);
  r->set_reason(job.spec.reason);
  r->set_request_id(job.request_id);
  for (const auto& k : job.spec.window.keys) r->add_keys(k);
  for (const auto& t : job.spec.window.types) r->add_types(t);
  for (const auto& id : job.spec.window.event_ids) r->add_event_ids(id);
  r->set_sink(job.spec.sink);
  if (!job.spec.retry.empty()) ToProto(job.spec.retry, r->mutable_retry());
  out->set_total(job.counters.total);
  out->set_processed(job.counters.processed);
  out->set_delivered(job.counters.delivered);
  out->set_skipped(job.counters.skipped);
  out->set_failed(job.counters.failed);
  out->set_current_rate(IsTerminal(job.state) ? 0 : job.current_rate);
  out->set_eta_seconds(ReplayController::EtaSeconds(job));
  if (job.cursor) ToProto(job.cursor->ingested_at, out->mutable_cursor());
  out->set_last_error(job.last_error);
  ToProto(job.created_at, out->mutable_created_at());
  if (job.finished_at) ToProto(*job.finished_at, out->mutable_finished_at());
  out->set_created_by(job.created_by);
  out->set_held_by_key(job.counters.held_by_key);
  pb::BreakerSettings* b = out->mutable_breaker();
  b->set_consecutive_failures(job.spec.breaker.consecutive_failures);
  b->set_failure_ratio(job.spec.breaker.failure_ratio);
  b->set_window(job.spec.breaker.window);
  out->set_plan_id(job.spec.plan_id);
  out->set_changed_since_plan(job.counters.changed_since_plan);
  out->set_kind(std::string(ReplayKindName(job.spec.kind)));
}

void ToProto(const DryRunResult& d, pb::DryRunReport* out) {
  out->set_would_deliver(d.would_deliver);
  out->set_would_skip(d.would_skip);
  for (const auto& [reason, count] : d.skipped_by_reason) {
    auto* s = out->add_skipped_by_reason();
    s->set_reason(reason);
    s->set_count(count);
  }
  out->set_missing(d.missing);
  for (const SequenceGap& g : d.missing_ranges) {
    auto* r = out->add_missing_ranges();
    r->set_source(g.source);
    r->set_first(g.first);
    r->set_last(g.last);
  }
  for (const ReplaySample& s : d.samples) {
    auto* p = out->add_samples();
    p->set_category(std::string(CategoryName(s.category)));
    p->set_source(s.source);
    p->set_event_id(s.event_id);
    ToProto(s.ingested_at, p->mutable_ingested_at());
    p->set_outcome(ToProto(s.outcome));
    p->set_detail(s.detail);
  }
  out->set_effective_rate(d.effective_rate);
  out->set_estimated_seconds(d.estimated_seconds);
  for (const auto& w : d.warnings) out->add_warnings(w);
  out->set_total(d.total);
  if (!d.plan_id.empty()) {
    out->set_plan_id(d.plan_id);
    ToProto(d.plan_expires_at, out->mutable_expires_at());
  }
}

// Handlers never let an exception escape.
template <typename Fn>
grpc::Status Guard(const char* method, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    Logger("rpc")->error("{}: unexpected exception: {}", method, e.what());
    return grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat(method, ": internal error"));
  }
}

// The handlers that answer with one result (a job, a plan): authorize the
// caller for `role`, let `act` run as them, then answer with what it returns
// (converted by ToProto) or map its error.
template <typename Response, typename Act>
grpc::Status Answer(const char* method, const Authenticator& auth, grpc::ServerContext& context,
                    Role role, Response* response, Act&& act) {
  return Guard(method, [&] {
    absl::StatusOr<Principal> who = AuthorizeCall(auth, context, role);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto result = act(*who);
    if (!result.ok()) return ToGrpcStatus(result.status());
    ToProto(*result, response);
    return grpc::Status::OK;
  });
}

// Writes every item `read(after, limit)` gives, a page at a time (memory
// stays flat in the total), until a page comes back short; `cursor_of` is
// where the next page starts after an item.
template <typename Item, typename Out, typename Read, typename CursorOf>
grpc::Status StreamPages(grpc::ServerContext& context, grpc::ServerWriter<Out>& writer, Read read,
                         CursorOf cursor_of) {
  constexpr int kPage = 1000;
  std::optional<ReplayCursor> after;
  while (true) {
    if (context.IsCancelled()) return grpc::Status::CANCELLED;
    absl::StatusOr<std::vector<Item>> page = read(after, kPage);
    if (!page.ok()) return ToGrpcStatus(page.status());
    for (const Item& item : *page) {
      Out out;
      ToProto(item, &out);
      if (!writer.Write(out)) return grpc::Status::CANCELLED;
    }
    if (static_cast<int>(page->size()) < kPage) return grpc::Status::OK;
    after = cursor_of(page->back());
  }
}

}  // namespace

grpc::Status ReplayServiceImpl::DryRun(grpc::ServerContext* context,
                                       const pb::ReplayRequest* request,
                                       pb::DryRunReport* response) {
  return Guard("DryRun", [&] {
    auto who = AuthorizeCall(*auth_, *context, Role::kViewer);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto input = FromProto(*request);
    if (!input.ok()) return ToGrpcStatus(input.status());
    if (!request->plan_id().empty()) {
      return ToGrpcStatus(absl::InvalidArgumentError("plan_id: a dry run does not run a plan"));
    }
    std::optional<PlanSave> save;
    if (request->save_plan()) save = PlanSave{PlanRequestJson(*request), *who};
    auto result = controller_->DryRun(*input, save ? &*save : nullptr);
    if (!result.ok()) return ToGrpcStatus(result.status());
    ToProto(*result, response);
    return grpc::Status::OK;
  });
}

grpc::Status ReplayServiceImpl::StartReplay(grpc::ServerContext* context,
                                            const pb::ReplayRequest* request,
                                            pb::ReplayProgress* response) {
  return Guard("StartReplay", [&] {
    auto who = AuthorizeCall(*auth_, *context, Role::kOperator);
    if (!who.ok()) return ToGrpcStatus(who.status());
    if (request->save_plan()) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          "save_plan: a plan is saved by a dry run; start it with plan_id"));
    }
    if (!request->plan_id().empty()) return StartPlan(*request, *who, response);
    auto input = FromProto(*request);
    if (!input.ok()) return ToGrpcStatus(input.status());
    auto job = controller_->Start(*input, request->request_id(), *who);
    if (!job.ok()) return ToGrpcStatus(job.status());
    ToProto(*job, response);
    return grpc::Status::OK;
  });
}

grpc::Status ReplayServiceImpl::StartPlan(const pb::ReplayRequest& request, const Principal& who,
                                          pb::ReplayProgress* response) {
  if (absl::Status s = CheckPlanStart(request); !s.ok()) return ToGrpcStatus(s);
  auto plan = controller_->LivePlan(request.plan_id());
  if (!plan.ok()) return ToGrpcStatus(plan.status());
  auto merged = PlanStartRequest(request, plan->request_json);
  if (!merged.ok()) return ToGrpcStatus(merged.status());
  auto input = FromProto(*merged);
  if (!input.ok()) return ToGrpcStatus(input.status());
  auto job = controller_->Start(*input, merged->request_id(), who, &*plan);
  if (!job.ok()) return ToGrpcStatus(job.status());
  ToProto(*job, response);
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::GetPlan(grpc::ServerContext* context,
                                        const pb::GetPlanRequest* request, pb::Plan* response) {
  return Guard("GetPlan", [&] {
    auto who = AuthorizeCall(*auth_, *context, Role::kViewer);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto plan = controller_->GetPlan(request->plan_id());
    if (!plan.ok()) return ToGrpcStatus(plan.status());
    ToProto(*plan, absl::Now(), response);
    return grpc::Status::OK;
  });
}

grpc::Status ReplayServiceImpl::ListPlanEvents(grpc::ServerContext* context,
                                               const pb::ListPlanEventsRequest* request,
                                               grpc::ServerWriter<pb::PlanEvent>* writer) {
  return Guard("ListPlanEvents", [&] {
    auto who = AuthorizeCall(*auth_, *context, Role::kViewer);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto plan = controller_->LivePlan(request->plan_id());
    if (!plan.ok()) return ToGrpcStatus(plan.status());
    return StreamPages<PlannedEvent>(
        *context, *writer,
        [&](const std::optional<ReplayCursor>& after, int limit) {
          return controller_->PlanEvents(plan->id, after, limit);
        },
        [](const PlannedEvent& e) {
          return ReplayCursor{e.event.ingested_at, e.event.position};
        });
  });
}

grpc::Status ReplayServiceImpl::GetProgress(grpc::ServerContext* context,
                                            const pb::GetProgressRequest* request,
                                            pb::ReplayProgress* response) {
  return Answer("GetProgress", *auth_, *context, Role::kViewer, response,
                [&](const Principal&) { return controller_->Get(request->replay_id()); });
}

grpc::Status ReplayServiceImpl::WatchProgress(grpc::ServerContext* context,
                                              const pb::GetProgressRequest* request,
                                              grpc::ServerWriter<pb::ReplayProgress>* writer) {
  return Guard("WatchProgress", [&] {
    auto who = AuthorizeCall(*auth_, *context, Role::kViewer);
    if (!who.ok()) return ToGrpcStatus(who.status());
    std::string last_sent;
    while (!context->IsCancelled()) {
      if (shutting_down_) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
      }
      auto job = controller_->Get(request->replay_id());
      if (!job.ok()) return ToGrpcStatus(job.status());
      pb::ReplayProgress progress;
      ToProto(*job, &progress);
      std::string bytes = progress.SerializeAsString();
      if (bytes != last_sent) {
        if (!writer->Write(progress)) return grpc::Status::CANCELLED;
        last_sent = std::move(bytes);
      }
      if (IsTerminal(job->state)) return grpc::Status::OK;
      absl::SleepFor(watch_interval_);
    }
    return grpc::Status::CANCELLED;
  });
}

grpc::Status ReplayServiceImpl::CancelReplay(grpc::ServerContext* context,
                                             const pb::CancelReplayRequest* request,
                                             pb::ReplayProgress* response) {
  return Answer("CancelReplay", *auth_, *context, Role::kOperator, response,
                [&](const Principal& who) {
                  return controller_->Cancel(request->replay_id(), request->reason(), who);
                });
}

grpc::Status ReplayServiceImpl::PauseReplay(grpc::ServerContext* context,
                                            const pb::PauseReplayRequest* request,
                                            pb::ReplayProgress* response) {
  return Answer("PauseReplay", *auth_, *context, Role::kOperator, response,
                [&](const Principal& who) {
                  return controller_->Pause(request->replay_id(), request->reason(), who);
                });
}

grpc::Status ReplayServiceImpl::ResumeReplay(grpc::ServerContext* context,
                                             const pb::ResumeReplayRequest* request,
                                             pb::ReplayProgress* response) {
  return Answer("ResumeReplay", *auth_, *context, Role::kOperator, response,
                [&](const Principal& who) {
                  return controller_->Resume(request->replay_id(), request->reason(),
                                             request->rate(), request->allow_high_rate(), who);
                });
}

grpc::Status ReplayServiceImpl::ListReplays(grpc::ServerContext* context,
                                            const pb::ListReplaysRequest* request,
                                            pb::ListReplaysResponse* response) {
  return Guard("ListReplays", [&] {
    auto who = AuthorizeCall(*auth_, *context, Role::kViewer);
    if (!who.ok()) return ToGrpcStatus(who.status());
    std::vector<ReplayState> states;
    for (int s : request->states()) {
      auto state = FromProto(static_cast<pb::ReplayState>(s));
      if (!state) {
        return ToGrpcStatus(
            absl::InvalidArgumentError(absl::StrCat("states: ", s, " is not a replay state")));
      }
      states.push_back(*state);
    }
    auto jobs = controller_->List(states, request->limit());
    if (!jobs.ok()) return ToGrpcStatus(jobs.status());
    for (const ReplayJob& job : *jobs) ToProto(job, response->add_replays());
    return grpc::Status::OK;
  });
}

grpc::Status ReplayServiceImpl::StartDiff(grpc::ServerContext* context,
                                          const pb::DiffRequest* request,
                                          pb::ReplayProgress* response) {
  return Answer("StartDiff", *auth_, *context, Role::kViewer, response, [&](const Principal& who) {
    return controller_->StartDiff(FromProto(*request), request->request_id(), who);
  });
}

grpc::Status ReplayServiceImpl::GetCompensation(grpc::ServerContext* context,
                                                const pb::GetCompensationRequest* request,
                                                pb::Compensation* response) {
  return Answer("GetCompensation", *auth_, *context, Role::kViewer, response,
                [&](const Principal&) { return controller_->GetCompensation(request->plan_id()); });
}

grpc::Status ReplayServiceImpl::ListCompensationEntries(
    grpc::ServerContext* context, const pb::ListCompensationEntriesRequest* request,
    grpc::ServerWriter<pb::CompensationEntry>* writer) {
  return Guard("ListCompensationEntries", [&] {
    auto who = AuthorizeCall(*auth_, *context, Role::kViewer);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto diff_class = ParseEntryClass(request->diff_class(), "diff_class");
    if (!diff_class.ok()) return ToGrpcStatus(diff_class.status());
    return StreamPages<CompensationEntry>(
        *context, *writer,
        [&](const std::optional<ReplayCursor>& after, int limit) {
          return controller_->CompensationEntries(request->plan_id(),
                                                  EntryQuery{*diff_class, after, limit});
        },
        [](const CompensationEntry& e) {
          return ReplayCursor{e.ingested_at, e.position};
        });
  });
}

grpc::Status ReplayServiceImpl::SetCompensationActions(
    grpc::ServerContext* context, const pb::SetCompensationActionsRequest* request,
    pb::SetCompensationActionsResponse* response) {
  return Guard("SetCompensationActions", [&] {
    auto who = AuthorizeCall(*auth_, *context, Role::kOperator);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto change = FromProto(*request);
    if (!change.ok()) return ToGrpcStatus(change.status());
    auto changed = controller_->SetActions(request->plan_id(), *change, request->reason(), *who);
    if (!changed.ok()) return ToGrpcStatus(changed.status());
    response->set_changed(*changed);
    auto view = controller_->GetCompensation(request->plan_id());
    if (!view.ok()) return ToGrpcStatus(view.status());
    ToProto(*view, response->mutable_plan());
    return grpc::Status::OK;
  });
}

grpc::Status ReplayServiceImpl::ApplyCompensation(grpc::ServerContext* context,
                                                  const pb::ApplyCompensationRequest* request,
                                                  pb::ReplayProgress* response) {
  return Answer("ApplyCompensation", *auth_, *context, Role::kOperator, response,
                [&](const Principal& who) {
                  return controller_->Apply(request->plan_id(), FromProto(*request),
                                            request->request_id(), who);
                });
}

grpc::Status ReplayServiceImpl::ListCompensations(grpc::ServerContext* context,
                                                  const pb::ListCompensationsRequest* request,
                                                  pb::ListCompensationsResponse* response) {
  return Answer("ListCompensations", *auth_, *context, Role::kViewer, response,
                [&](const Principal&) { return controller_->ListCompensations(request->limit()); });
}

}  // namespace replayd
