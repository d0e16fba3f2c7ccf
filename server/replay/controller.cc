#include "server/replay/controller.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <random>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/common/logging.h"
#include "server/common/time_format.h"

namespace replayd {
namespace {

// An operator's reason for pausing, resuming or changing a plan: required,
// at most 1000 bytes.
absl::Status CheckReason(const std::string& reason, const char* done) {
  if (reason.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("reason is required (why it is ", done, ")"));
  }
  if (reason.size() > 1000) return absl::InvalidArgumentError("reason is longer than 1000 bytes");
  return absl::OkStatus();
}

// A client's idempotency key: at most 128 bytes.
absl::Status CheckRequestId(const std::string& request_id) {
  if (request_id.size() > 128) {
    return absl::InvalidArgumentError("request_id is longer than 128 bytes");
  }
  return absl::OkStatus();
}

// Reads `job` again every 20 ms until `settled` holds for it or `wait` has
// passed, and returns it as last read; a failed read ends the wait with its error.
absl::StatusOr<ReplayJob> AwaitJob(ReplayStore& store, ReplayJob job, absl::Duration wait,
                                   const std::function<bool(const ReplayJob&)>& settled) {
  absl::Time deadline = absl::Now() + wait;
  while (!settled(job) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    absl::StatusOr<ReplayJob> now = store.GetJob(job.id);
    if (!now.ok()) return now.status();
    job = *std::move(now);
  }
  return job;
}

// FAILED_PRECONDITION once `expires_at` has passed: plan `id` cannot be
// used any more, and `remedy` says what to do instead.
absl::Status CheckUnexpired(const std::string& id, absl::Time expires_at, absl::Time now,
                            const char* remedy) {
  if (now < expires_at) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("plan ", id, " expired at ", FormatRfc3339(expires_at), ": ", remedy));
}

constexpr char kDiffAgain[] = "run the diff again";

// FAILED_PRECONDITION unless the compensation plan is ready: what it is instead.
absl::Status CheckReady(const CompensationPlan& plan) {
  const std::string& id = plan.id;
  switch (plan.state) {
    case CompensationState::kReady: return absl::OkStatus();
    case CompensationState::kDiffing:
      return absl::FailedPreconditionError(absl::StrCat(
          "plan ", id, " is still diffing: wait until `replayctl progress ", id, "` completes"));
    case CompensationState::kApplying:
    case CompensationState::kApplied:
      return absl::FailedPreconditionError(
          absl::StrCat("plan ", id, " is ", std::string(CompensationStateName(plan.state)),
                       " (job ", plan.apply_job_id, "): its actions are frozen"));
    case CompensationState::kFailed:
      return absl::FailedPreconditionError(
          absl::StrCat("plan ", id, " is failed: its diff did not complete; ", kDiffAgain));
  }
  return absl::OkStatus();
}

}  // namespace

std::string StartAuditDetail(const ReplaySpec& spec, int64_t would_deliver, int64_t total,
                             const std::string& plan_id) {
  nlohmann::json outcomes = nlohmann::json::array();
  for (Outcome o : spec.outcomes) outcomes.push_back(std::string(OutcomeName(o)));
  nlohmann::json detail = {{"request",
                            {{"from", FormatRfc3339(spec.window.from)},
                             {"to", FormatRfc3339(spec.window.to)},
                             {"sources", spec.window.sources},
                             {"outcomes", outcomes},
                             {"rate", spec.rate},
                             {"burst", spec.burst},
                             {"allow_high_rate", spec.allow_high_rate},
                             {"include_succeeded", spec.include_succeeded},
                             {"verify_downstream", spec.verify_downstream}}},
                           {"would_deliver", would_deliver},
                           {"total", total}};
  const std::string& plan = plan_id.empty() ? spec.plan_id : plan_id;
  if (!plan.empty()) detail["plan_id"] = plan;
  nlohmann::json& request = detail["request"];
  if (!spec.window.keys.empty()) request["keys"] = spec.window.keys;
  if (!spec.window.types.empty()) request["types"] = spec.window.types;
  if (!spec.window.event_ids.empty()) request["event_ids"] = spec.window.event_ids;
  if (!spec.sink.empty()) request["sink"] = spec.sink;
  if (spec.retry.max_attempts) request["retry"]["max_attempts"] = *spec.retry.max_attempts;
  if (spec.retry.base_delay)
    request["retry"]["base"] = absl::FormatDuration(*spec.retry.base_delay);
  if (spec.retry.max_delay) request["retry"]["cap"] = absl::FormatDuration(*spec.retry.max_delay);
  // Control characters are escaped; a byte that is not UTF-8 becomes U+FFFD
  // instead of failing the start (jsonb accepts only UTF-8).
  return detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

std::string NewId(const char* prefix) {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard lock(mu);
  return absl::StrFormat("%s-%016x", prefix, rng());
}

}  // namespace

std::string NewReplayId() { return NewId("rp"); }
std::string NewPlanId() { return NewId("pl"); }
std::string NewDiffId() { return NewId("df"); }
std::string NewCompensateId() { return NewId("cp"); }

absl::StatusOr<DryRunResult> ReplayController::DryRun(const ReplayRequestInput& input,
                                                      const PlanSave* save) {
  auto spec = ValidateReplayRequest(input, config_->replay, clock_->Now());
  if (!spec.ok()) return spec.status();
  if (save == nullptr) return dry_runner_->Run(*spec);

  const std::string plan_id = NewPlanId();
  auto result = dry_runner_->Run(*spec, plan_id);
  if (!result.ok()) {
    (void)store_->DropPlanEvents(plan_id);
    return result.status();
  }
  ReplayPlan plan;
  plan.id = plan_id;
  plan.request_json = save->request_json;
  if (result->would_deliver > 0) plan.counts["deliver"] = result->would_deliver;
  for (const auto& [reason, count] : result->skipped_by_reason) plan.counts[reason] = count;
  plan.created_by = save->who.name;
  plan.created_at = clock_->Now();
  plan.expires_at = plan.created_at + config_->replay.plan_ttl;
  // The plan's own events are the report's: a streamed window may have
  // grown since its aggregate was read.
  result->total = plan.Total();
  AuditEntry audit{save->who.name,
                   "plan",
                   "",
                   spec->reason,
                   StartAuditDetail(*spec, result->would_deliver, result->total, plan_id),
                   absl::Now()};
  if (absl::Status s = store_->CreatePlan(plan, audit); !s.ok()) {
    (void)store_->DropPlanEvents(plan_id);
    return s;
  }
  Logger("replay")->info("plan {} saved by {}: [{}, {}) {} events, {} to deliver", plan_id,
                         save->who.name, FormatRfc3339(spec->window.from),
                         FormatRfc3339(spec->window.to), result->total, result->would_deliver);
  result->plan_id = plan_id;
  result->plan_expires_at = plan.expires_at;
  return result;
}

absl::StatusOr<ReplayPlan> ReplayController::GetPlan(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("plan_id is required");
  return store_->GetPlan(id);
}

absl::StatusOr<ReplayPlan> ReplayController::LivePlan(const std::string& id) {
  auto plan = GetPlan(id);
  if (!plan.ok()) return plan.status();
  if (absl::Status s = CheckUnexpired(id, plan->expires_at, clock_->Now(),
                                      "run the dry run again with save_plan");
      !s.ok()) {
    return s;
  }
  return plan;
}

absl::StatusOr<std::vector<PlannedEvent>> ReplayController::PlanEvents(
    const std::string& id, const std::optional<ReplayCursor>& after, int limit) {
  return store_->ReadPlanPage(id, after, limit);
}

absl::StatusOr<ReplayJob> ReplayController::Start(const ReplayRequestInput& input,
                                                  const std::string& request_id,
                                                  const Principal& who, const ReplayPlan* plan) {
  if (absl::Status valid = CheckRequestId(request_id); !valid.ok()) return valid;
  auto spec = ValidateReplayRequest(input, config_->replay, clock_->Now());
  if (!spec.ok()) return spec.status();
  DryRunResult counts;
  if (plan != nullptr) {
    spec->plan_id = plan->id;
    counts.total = plan->Total();
    auto deliver = plan->counts.find("deliver");
    counts.would_deliver = deliver == plan->counts.end() ? 0 : deliver->second;
  } else {
    auto dry_run = dry_runner_->Run(*spec);
    if (!dry_run.ok()) return dry_run.status();
    counts = std::move(*dry_run);
  }

  ReplayJob job;
  job.id = NewReplayId();
  job.request_id = request_id;
  job.spec = *spec;
  job.created_by = who.name;
  job.counters.total = counts.total;
  AuditEntry audit{who.name,
                   "start",
                   job.id,
                   spec->reason,
                   StartAuditDetail(*spec, counts.would_deliver, counts.total),
                   absl::Now()};
  bool existed = false;
  auto created = store_->CreateJob(job, audit, &existed);
  if (!created.ok()) return created.status();
  if (!existed) {
    Logger("replay")->info("replay {} created by {}: [{}, {}) {} events at {}/s", created->id,
                           who.name, FormatRfc3339(spec->window.from),
                           FormatRfc3339(spec->window.to), job.counters.total, spec->rate);
    if (runner_ != nullptr) runner_->Wake();
  }
  return *created;
}

absl::StatusOr<ReplayJob> ReplayController::Get(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("replay_id is required");
  return store_->GetJob(id);
}

absl::StatusOr<std::vector<ReplayJob>> ReplayController::List(
    const std::vector<ReplayState>& states, int limit) {
  if (limit < 0 || limit > 1000) {
    return absl::InvalidArgumentError("limit must be between 0 (default 100) and 1000");
  }
  return store_->ListJobs(states, limit);
}

absl::StatusOr<ReplayJob> ReplayController::Cancel(const std::string& id, const std::string& reason,
                                                   const Principal& who, absl::Duration wait) {
  if (id.empty()) return absl::InvalidArgumentError("replay_id is required");
  auto job =
      store_->RequestCancel(id, AuditEntry{who.name, "cancel", id, reason, "{}", absl::Now()});
  if (!job.ok()) return job.status();
  if (runner_ != nullptr) runner_->Cancel(id);
  Logger("replay")->info("replay {}: cancel asked by {}", id, who.name);
  return AwaitJob(*store_, *std::move(job), wait,
                  [](const ReplayJob& j) { return IsTerminal(j.state); });
}

absl::StatusOr<ReplayJob> ReplayController::Pause(const std::string& id, const std::string& reason,
                                                  const Principal& who, absl::Duration wait) {
  if (id.empty()) return absl::InvalidArgumentError("replay_id is required");
  if (absl::Status valid = CheckReason(reason, "paused"); !valid.ok()) return valid;
  auto job = store_->RequestPause(id, AuditEntry{who.name, "pause", id, reason, "{}", absl::Now()});
  if (!job.ok()) return job.status();
  if (runner_ != nullptr) runner_->Pause(id);
  Logger("replay")->info("replay {}: pause asked by {}", id, who.name);
  // Parked: nobody holds it any more, so nothing more is sent.
  return AwaitJob(*store_, *std::move(job), wait, [](const ReplayJob& j) {
    return j.state != ReplayState::kPaused || j.owner.empty();
  });
}

absl::StatusOr<ReplayJob> ReplayController::Resume(const std::string& id, const std::string& reason,
                                                   double rate, bool allow_high_rate,
                                                   const Principal& who) {
  if (id.empty()) return absl::InvalidArgumentError("replay_id is required");
  if (absl::Status valid = CheckReason(reason, "resumed"); !valid.ok()) return valid;
  double new_rate = 0;
  if (rate != 0) {
    auto validated = ValidateRate(rate, allow_high_rate, config_->replay);
    if (!validated.ok()) return validated.status();
    new_rate = *validated;
  }
  nlohmann::json detail = nlohmann::json::object();
  if (new_rate > 0) detail["rate"] = new_rate;
  auto job = store_->RequestResume(
      id, new_rate, AuditEntry{who.name, "resume", id, reason, detail.dump(), absl::Now()});
  if (!job.ok()) return job.status();
  Logger("replay")->info("replay {}: resumed by {}", id, who.name);
  if (runner_ != nullptr) runner_->Wake();
  return job;
}

absl::StatusOr<CompensationStore*> ReplayController::Compensations() const {
  if (compensations_ == nullptr) {
    return absl::UnimplementedError("this daemon keeps no compensation plans");
  }
  return compensations_;
}

absl::StatusOr<std::vector<std::string>> ReplayController::DiffSources(
    const std::vector<std::string>& asked) const {
  if (deliverer_ == nullptr) return absl::UnimplementedError("this daemon delivers nowhere");
  std::vector<std::string> sources = asked.empty() ? deliverer_->RoutedSources() : asked;
  if (sources.empty()) return absl::FailedPreconditionError("no source has a route to compare");
  std::vector<std::string> unrouted;
  std::set<std::string> without_lookup;
  for (const std::string& source : sources) {
    std::shared_ptr<const Route> route = deliverer_->RouteFor(source);
    if (route == nullptr) {
      unrouted.push_back(source);
    } else if (route->sink == nullptr || !route->sink->HasLookup()) {
      without_lookup.insert(route->sink_name);
    }
  }
  if (!unrouted.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no route, nothing to compare, for source ", absl::StrJoin(unrouted, ", ")));
  }
  if (!without_lookup.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("a diff reads the downstream through its sink's lookup; sink ",
                     absl::StrJoin(without_lookup, ", "), " has none (configure lookup_url)"));
  }
  return sources;
}

absl::StatusOr<ReplayJob> ReplayController::StartDiff(const ReplayRequestInput& input,
                                                      const std::string& request_id,
                                                      const Principal& who) {
  auto compensations = Compensations();
  if (!compensations.ok()) return compensations.status();
  if (absl::Status valid = CheckRequestId(request_id); !valid.ok()) return valid;
  // Every outcome: a diff compares the whole window, delivered or not.
  ReplayRequestInput window = input;
  window.outcomes.clear();
  window.include_succeeded = true;
  auto spec = ValidateReplayRequest(window, config_->replay, clock_->Now());
  if (!spec.ok()) return spec.status();
  auto sources = DiffSources(spec->window.sources);
  if (!sources.ok()) return sources.status();
  spec->kind = ReplayKind::kDiff;
  spec->window.sources = *std::move(sources);
  auto survey = dry_runner_->FindHoles(*spec);
  if (!survey.ok()) return survey.status();

  ReplayJob job;
  job.id = NewDiffId();
  job.request_id = request_id;
  job.spec = *spec;
  job.created_by = who.name;
  job.counters.total = survey->total;
  CompensationPlan plan;
  plan.id = job.id;
  plan.from = spec->window.from;
  plan.to = spec->window.to;
  plan.sources = spec->window.sources;
  for (const SequenceGap& g : survey->missing_ranges)
    plan.holes.push_back({g.source, g.first, g.last});
  plan.created_by = who.name;
  plan.created_at = clock_->Now();
  plan.expires_at = plan.created_at + config_->replay.plan_ttl;
  AuditEntry audit{
      who.name,   "diff", job.id, spec->reason, StartAuditDetail(*spec, 0, survey->total),
      absl::Now()};
  bool existed = false;
  auto created = (*compensations)->CreateDiff(job, plan, audit, &existed);
  if (!created.ok()) return created.status();
  if (!existed) {
    Logger("replay")->info("diff {} created by {}: [{}, {}) {} events, {} missing upstream",
                           created->id, who.name, FormatRfc3339(plan.from), FormatRfc3339(plan.to),
                           survey->total, survey->missing);
    if (runner_ != nullptr) runner_->Wake();
  }
  return *created;
}

absl::StatusOr<CompensationView> ReplayController::GetCompensation(const std::string& plan_id) {
  CompensationView view;
  auto plan = GetCompensationPlan(plan_id);
  if (!plan.ok()) return plan.status();
  view.plan = *std::move(plan);
  view.expired = clock_->Now() >= view.plan.expires_at;
  std::set<DiffClass> classes;
  for (const auto& [class_action, count] : view.plan.counts) {
    if (count > 0) classes.insert(class_action.first);
  }
  for (DiffClass c : classes) {
    auto samples = compensations_->ReadEntries(plan_id, {c, std::nullopt, kSamplesPerCategory});
    if (!samples.ok()) return samples.status();
    view.samples.insert(view.samples.end(), samples->begin(), samples->end());
  }
  return view;
}

absl::StatusOr<std::vector<CompensationEntry>> ReplayController::CompensationEntries(
    const std::string& plan_id, const EntryQuery& query) {
  if (!query.after) {  // the first page: NOT_FOUND for an unknown plan, before anything streams
    auto plan = GetCompensationPlan(plan_id);
    if (!plan.ok()) return plan.status();
  }
  auto compensations = Compensations();
  if (!compensations.ok()) return compensations.status();
  return (*compensations)->ReadEntries(plan_id, query);
}

absl::StatusOr<CompensationPlan> ReplayController::GetCompensationPlan(const std::string& plan_id) {
  auto compensations = Compensations();
  if (!compensations.ok()) return compensations.status();
  if (plan_id.empty()) return absl::InvalidArgumentError("plan_id is required");
  return (*compensations)->GetPlan(plan_id);
}

absl::StatusOr<int64_t> ReplayController::SetActions(const std::string& plan_id,
                                                     const ActionChange& change,
                                                     const std::string& reason,
                                                     const Principal& who) {
  if (absl::Status valid = CheckReason(reason, "changed"); !valid.ok()) return valid;
  if (change.diff_class.has_value() == !change.events.empty()) {
    return absl::InvalidArgumentError("give either a class or events, not both or neither");
  }
  if (change.events.size() > kMaxActionEvents) {
    return absl::InvalidArgumentError(
        absl::StrCat("events lists ", change.events.size(), ", more than ", kMaxActionEvents));
  }
  if (change.diff_class && !ActionAllowed(*change.diff_class, change.action)) {
    std::vector<std::string> allowed;
    for (const auto& [action, name] : kCompensationActionNames) {
      if (ActionAllowed(*change.diff_class, action)) allowed.emplace_back(name);
    }
    return absl::InvalidArgumentError(
        absl::StrCat("class ", std::string(DiffClassName(*change.diff_class)),
                     " does not allow action ", std::string(CompensationActionName(change.action)),
                     " (it allows ", absl::StrJoin(allowed, ", "), ")"));
  }
  auto plan = GetCompensationPlan(plan_id);
  if (!plan.ok()) return plan.status();
  if (absl::Status s = CheckReady(*plan); !s.ok()) return s;
  if (absl::Status s = CheckUnexpired(plan_id, plan->expires_at, clock_->Now(), kDiffAgain);
      !s.ok()) {
    return s;
  }
  nlohmann::json detail = {{"action", std::string(CompensationActionName(change.action))}};
  if (change.diff_class) {
    detail["class"] = std::string(DiffClassName(*change.diff_class));
  } else {
    detail["events"] = change.events.size();
  }
  auto changed = compensations_->SetActions(
      plan_id, change,
      AuditEntry{who.name, "compensate_set", plan_id, reason,
                 detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                 absl::Now()});
  if (!changed.ok()) return changed.status();
  Logger("replay")->info("plan {}: {} entries set to {} by {}", plan_id, *changed,
                         CompensationActionName(change.action), who.name);
  return changed;
}

absl::StatusOr<ReplayJob> ReplayController::Apply(const std::string& plan_id,
                                                  const ReplayRequestInput& pacing,
                                                  const std::string& request_id,
                                                  const Principal& who) {
  if (absl::Status valid = CheckReason(pacing.reason, "applied"); !valid.ok()) return valid;
  if (absl::Status valid = CheckRequestId(request_id); !valid.ok()) return valid;
  auto plan = GetCompensationPlan(plan_id);
  if (!plan.ok()) return plan.status();
  // Any other state is the store's to refuse: a retried apply (same
  // request_id) of a plan now applying answers its job.
  if (plan->state == CompensationState::kReady) {
    if (absl::Status s = CheckUnexpired(plan_id, plan->expires_at, clock_->Now(), kDiffAgain);
        !s.ok()) {
      return s;
    }
  }
  ReplayRequestInput input = pacing;
  input.from = plan->from;
  input.to = plan->to;
  input.sources = plan->sources;
  input.outcomes.clear();
  input.include_succeeded = true;
  // The window was valid when the diff started; only the pacing is new.
  auto spec = ValidateReplayRequest(input, config_->replay, plan->created_at);
  if (!spec.ok()) return spec.status();
  spec->kind = ReplayKind::kCompensate;
  spec->plan_id = plan->id;

  int64_t total = 0;
  int64_t to_act_on = 0;
  for (const auto& [class_action, count] : plan->counts) {
    total += count;
    CompensationAction a = class_action.second;
    if (a != CompensationAction::kKeep && a != CompensationAction::kNone) to_act_on += count;
  }
  ReplayJob job;
  job.id = NewCompensateId();
  job.request_id = request_id;
  job.spec = *spec;
  job.created_by = who.name;
  job.counters.total = total;
  AuditEntry audit{who.name,
                   "compensate_apply",
                   job.id,
                   spec->reason,
                   StartAuditDetail(*spec, to_act_on, total),
                   absl::Now()};
  bool existed = false;
  auto created = compensations_->CreateApply(job, audit, &existed);
  if (!created.ok()) return created.status();
  if (!existed) {
    Logger("replay")->info("apply {} of plan {} created by {}: {} of {} entries to act on at {}/s",
                           created->id, plan_id, who.name, to_act_on, total, spec->rate);
    if (runner_ != nullptr) runner_->Wake();
  }
  return *created;
}

absl::StatusOr<std::vector<CompensationView>> ReplayController::ListCompensations(int limit) {
  auto compensations = Compensations();
  if (!compensations.ok()) return compensations.status();
  if (limit < 0 || limit > 1000) {
    return absl::InvalidArgumentError("limit must be between 0 (default 20) and 1000");
  }
  auto plans = (*compensations)->ListPlans(limit);
  if (!plans.ok()) return plans.status();
  const absl::Time now = clock_->Now();
  std::vector<CompensationView> out;
  for (CompensationPlan& p : *plans) {
    const bool expired = now >= p.expires_at;
    out.push_back({std::move(p), {}, expired});
  }
  return out;
}

double ReplayController::EtaSeconds(const ReplayJob& job) {
  if (IsTerminal(job.state)) return 0;
  double rate = job.current_rate > 0 ? job.current_rate : job.spec.rate;
  int64_t left = std::max<int64_t>(0, job.counters.total - job.counters.processed);
  return rate > 0 ? static_cast<double>(left) / rate : 0;
}

}  // namespace replayd
