#include "server/delivery/deliverer.h"

#include <future>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/await.h"
#include "server/delivery/http_sink.h"
#include "server/delivery/pg_table_sink.h"
#include "server/delivery/retry_policy.h"

namespace replayd {
namespace {

double Jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// What `recorded` gets when the caller's claim expired and another worker
// took the event: the attempt is in the trace, the event's row untouched.
absl::Status ClaimLost(const std::string& source, const std::string& event_id, int attempt) {
  return absl::AbortedError(absl::StrCat(source, "/", event_id, ": claim lost before attempt ",
                                         attempt, " was recorded (lease expired?)"));
}

}  // namespace

absl::StatusOr<RouteTable> BuildRoutes(const Config& config, SinkTable* all_sinks) {
  SinkTable sinks;
  for (const SinkConfig& s : config.sinks) {
    if (s.type == SinkConfig::Type::kHttp) {
      auto sink = HttpSink::Create(s);
      if (!sink.ok()) return sink.status();
      sinks[s.name] = std::move(*sink);
    } else {
      auto sink = PgTableSink::Create(s, config.database_url);
      if (!sink.ok()) return sink.status();
      sinks[s.name] = std::move(*sink);
    }
  }
  RouteTable routes;
  for (const RouteConfig& r : config.routes) {
    auto it = sinks.find(r.sink);
    if (it == sinks.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("route ", r.name, ": sink \"", r.sink, "\" is not defined"));
    }
    Route route{r.name, r.sink, r.strict_order, r.retry, it->second};
    for (const std::string& source : r.sources) routes[source] = route;
  }
  if (all_sinks != nullptr) *all_sinks = std::move(sinks);
  return routes;
}

Deliverer::Deliverer(DeliveryStore* store, RouteTable routes, DeliveryObserver* observer,
                     const Clock* clock)
    : Deliverer(store, std::move(routes), SinkTable{}, observer, clock) {}

Deliverer::Deliverer(DeliveryStore* store, RouteTable routes, SinkTable sinks,
                     DeliveryObserver* observer, const Clock* clock)
    : store_(store),
      targets_(MakeTargets(std::move(routes), std::move(sinks))),
      observer_(observer),
      clock_(clock) {}

Deliverer::~Deliverer() = default;

std::shared_ptr<const Deliverer::Targets> Deliverer::MakeTargets(RouteTable routes,
                                                                 SinkTable sinks) {
  // The routed sinks are always known, even when the caller lists none.
  for (const auto& [source, route] : routes) sinks.emplace(route.sink_name, route.sink);
  return std::make_shared<const Targets>(Targets{std::move(routes), std::move(sinks)});
}

void Deliverer::SetRoutes(RouteTable routes, SinkTable sinks) {
  auto next = MakeTargets(std::move(routes), std::move(sinks));
  {
    std::lock_guard lock(routes_mu_);
    retired_.push_back(std::exchange(targets_, std::move(next)));
  }
  ReleaseRetired();
}

size_t Deliverer::ReleaseRetired() {
  std::vector<std::shared_ptr<const Targets>> unused;
  size_t in_use = 0;
  {
    std::lock_guard lock(routes_mu_);
    // Only this list and deliveries in flight hold a replaced table: one
    // reference left means no delivery does.
    for (auto& table : retired_) {
      if (table.use_count() == 1) unused.push_back(std::move(table));
    }
    std::erase(retired_, nullptr);
    in_use = retired_.size();
  }
  // Destroyed here, outside the lock: a sink's destructor joins its thread.
  return in_use;
}

std::shared_ptr<const Deliverer::Targets> Deliverer::CurrentTargets() const {
  std::lock_guard lock(routes_mu_);
  return targets_;
}

std::shared_ptr<const RouteTable> Deliverer::Routes() const {
  std::shared_ptr<const Targets> targets = CurrentTargets();
  return std::shared_ptr<const RouteTable>(targets, &targets->routes);
}

std::shared_ptr<const Route> Deliverer::RouteFor(const std::string& source) const {
  std::shared_ptr<const RouteTable> table = Routes();
  auto it = table->find(source);
  if (it == table->end()) return nullptr;
  return std::shared_ptr<const Route>(table, &it->second);
}

std::shared_ptr<const Route> Deliverer::RouteFor(const std::string& source, const std::string& sink,
                                                 const RetrySettings& retry) const {
  std::shared_ptr<const Targets> targets = CurrentTargets();
  auto it = targets->routes.find(source);
  if (it == targets->routes.end()) return nullptr;
  if (sink.empty() && retry.empty()) return std::shared_ptr<const Route>(targets, &it->second);
  // The copy holds the table: its sink is destroyed with the table, never by
  // the last delivery on the sink's own thread.
  struct Held {
    std::shared_ptr<const Targets> targets;
    Route route;
  };
  auto held = std::make_shared<Held>(Held{targets, it->second});
  if (!sink.empty()) {
    auto s = targets->sinks.find(sink);
    if (s == targets->sinks.end()) return nullptr;
    held->route.sink_name = sink;
    held->route.sink = s->second;
  }
  held->route.retry = WithOverride(held->route.retry, retry);
  return std::shared_ptr<const Route>(held, &held->route);
}

std::vector<std::string> Deliverer::SinkNames() const {
  std::vector<std::string> out;
  for (const auto& [name, sink] : CurrentTargets()->sinks) out.push_back(name);
  return out;
}

std::vector<std::string> Deliverer::RoutedSources() const {
  std::vector<std::string> out;
  for (const auto& [source, route] : *Routes()) out.push_back(source);
  return out;
}

std::vector<std::string> Deliverer::StrictSources() const {
  std::vector<std::string> out;
  for (const auto& [source, route] : *Routes()) {
    if (route.strict_order) out.push_back(source);
  }
  return out;
}

// One event on its way: the check, then (through the sink's asynchronous
// calls) the create call and the record. Owned by the callbacks in flight.
struct Deliverer::Delivery {
  const StoredEvent* event;  // alive until `reported` is called
  DeliveryContext ctx;
  std::shared_ptr<const Route> route;  // holds the route table it started with
  ReportDone reported;
  RecordDone recorded;
  absl::Time started_at;
  int attempt;
  CheckFacts facts;
  AttemptRecord record;
  bool update = false;  // the update path (UpdateOne), not the create path
};

absl::StatusOr<DeliveryReport> Deliverer::DeliverOne(const StoredEvent& event,
                                                     const DeliveryContext& ctx) {
  return Wait([&](ReportDone reported, RecordDone recorded) {
    DeliverOneAsync(event, ctx, std::move(reported), std::move(recorded));
  });
}

absl::StatusOr<DeliveryReport> Deliverer::UpdateOne(
    const StoredEvent& event, const DeliveryContext& ctx,
    const std::optional<std::string>& known_version) {
  return Wait([&](ReportDone reported, RecordDone recorded) {
    std::shared_ptr<Delivery> d = Start(event, ctx, reported, recorded);
    if (d == nullptr) return;
    d->update = true;
    Record(d, d->route->sink->Update({&event, d->attempt, ctx.replay_id}, known_version));
  });
}

absl::StatusOr<DeliveryReport> Deliverer::RecordFound(const StoredEvent& event,
                                                      const DeliveryContext& ctx,
                                                      const DownstreamRecord& record) {
  return Wait([&](ReportDone reported, RecordDone recorded) {
    std::shared_ptr<Delivery> d = Start(event, ctx, reported, recorded);
    if (d == nullptr) return;
    RecordFind(d, record);
  });
}

void Deliverer::RecordFind(const std::shared_ptr<Delivery>& d, const DownstreamRecord& record) {
  DeliveryResult found;
  found.kind = DeliveryResult::Kind::kAlreadyProcessed;
  found.record_id = record.id;
  found.record_version = record.version;
  found.record_updated_at = record.updated_at;
  Record(d, found, CheckDecision::Action::kSkipFoundDownstream);
}

absl::StatusOr<DeliveryReport> Deliverer::Wait(
    const std::function<void(ReportDone reported, RecordDone recorded)>& start) {
  // The record is waited for only after an OK report: none follows an error.
  std::promise<absl::Status> recorded;
  auto done = recorded.get_future();
  absl::StatusOr<DeliveryReport> r = Await<absl::StatusOr<DeliveryReport>>([&](ReportDone report) {
    start(std::move(report), [&recorded](absl::Status s) { recorded.set_value(std::move(s)); });
  });
  if (!r.ok()) return r;
  // A lost claim (ABORTED) wrote nothing of the event's, but the call was
  // made: the caller gets its report.
  if (absl::Status s = done.get(); !s.ok() && !absl::IsAborted(s)) return s;
  return r;
}

std::shared_ptr<Deliverer::Delivery> Deliverer::Start(const StoredEvent& event,
                                                      const DeliveryContext& ctx,
                                                      ReportDone& reported, RecordDone& recorded) {
  std::shared_ptr<const Route> route =
      ctx.route != nullptr ? ctx.route : RouteFor(event.event.source);
  if (route == nullptr) {
    reported(absl::FailedPreconditionError(
        absl::StrCat("source ", event.event.source, " has no route")));
    return nullptr;
  }
  auto d = std::make_shared<Delivery>(Delivery{&event,
                                               ctx,
                                               route,
                                               std::move(reported),
                                               std::move(recorded),
                                               clock_->Now(),
                                               event.attempts + 1,
                                               {},
                                               {}});
  d->facts.resend_delivered = ctx.resend_delivered;
  d->record.event_position = event.position;
  d->record.event_ingested_at = event.ingested_at;
  d->record.attempt = d->attempt;
  d->record.trigger = ctx.trigger;
  d->record.route = route->name;
  d->record.sink = route->sink_name;
  d->record.retry = SettingsOf(route->retry);
  d->record.started_at = d->started_at;
  return d;
}

void Deliverer::DeliverOneAsync(const StoredEvent& event, const DeliveryContext& ctx,
                                ReportDone reported, RecordDone recorded) {
  std::shared_ptr<Delivery> d = Start(event, ctx, reported, recorded);
  if (d == nullptr) return;
  const std::shared_ptr<const Route>& route = d->route;
  const bool delivered = IsDelivered(event.outcome);
  // Whenever the sink can answer: a retry may follow a call that reached the
  // downstream and lost its answer, and after a crash even a first attempt may
  // follow a call whose record the dead daemon never wrote.
  // A table in the log's own database is looked up inside DeliverToLogTable's
  // transaction instead.
  // A delivered event is either skipped or resent as it is: its lookup
  // would decide nothing.
  const bool ask = !route->sink->LogDatabaseTable() && route->sink->HasLookup() && !delivered;
  if (!ask) {
    Decide(d);
    return;
  }
  route->sink->LookupAsync(event, [this, d](LookupResult found) {
    if (found.ok()) {
      d->facts.downstream_record = *found;
      Decide(d);
      return;
    }
    // A failed lookup is a retryable attempt without a create call; it counts
    // toward max_attempts, so a dead lookup endpoint cannot retry forever.
    DeliveryResult failure;
    failure.kind = DeliveryResult::Kind::kRetryable;
    failure.error = std::string(found.status().message());
    Record(d, failure);
  });
}

void Deliverer::Decide(const std::shared_ptr<Delivery>& d) {
  const StoredEvent& event = *d->event;
  const Route& route = *d->route;
  const CheckDecision decision = DecideCheckThenAct(event, d->facts);
  if (decision.action == CheckDecision::Action::kSkipAlreadyDelivered) {
    if (absl::Status s = store_->Release({event.position}, d->ctx.claim_owner); !s.ok()) {
      d->reported(s);
      return;
    }
    DeliveryReport report;
    report.action = decision.action;
    report.outcome = event.outcome;
    report.record_id = event.target_record_id;
    report.duration = clock_->Now() - d->started_at;
    d->reported(report);
    d->recorded(absl::OkStatus());
    return;
  }
  if (decision.action == CheckDecision::Action::kSkipFoundDownstream) {
    RecordFind(d, **d->facts.downstream_record);
    return;
  }
  if (const std::optional<std::string> log_table = route.sink->LogDatabaseTable()) {
    DeliverToLogTable(d, *log_table);
    return;
  }
  route.sink->DeliverAsync({&event, d->attempt, d->ctx.replay_id},
                           [this, d](DeliveryResult result) { Record(d, result); });
}

void Deliverer::DeliverToLogTable(const std::shared_ptr<Delivery>& d, const std::string& table) {
  const StoredEvent& event = *d->event;
  auto done = store_->DeliverToLogTable(table, IdempotencyKey(event), EnvelopeJson(event),
                                        d->record, d->ctx.claim_owner);
  if (!done.ok()) {
    // Nothing was written: record the failure like a sink's.
    DeliveryResult result;
    result.kind = absl::IsUnavailable(done.status()) ? DeliveryResult::Kind::kRetryable
                                                     : DeliveryResult::Kind::kFinal;
    result.error = std::string(done.status().message());
    Record(d, result);
    return;
  }
  DeliveryReport report;
  report.duration = clock_->Now() - d->started_at;
  if (!done->held) {
    report.outcome = event.outcome;
    // The event may be gone once `reported` returns.
    absl::Status lost = ClaimLost(event.event.source, event.event.event_id, d->attempt);
    d->reported(report);
    d->recorded(std::move(lost));
    return;
  }
  report.outcome = done->created ? Outcome::kSucceeded : Outcome::kAlreadyProcessed;
  report.attempt = d->attempt;
  report.record_id = done->record_id;
  if (observer_ != nullptr) observer_->OnAttempt(d->route->name, report.outcome, report.duration);
  d->reported(report);
  d->recorded(absl::OkStatus());
}

void Deliverer::Record(const std::shared_ptr<Delivery>& d, const DeliveryResult& result,
                       CheckDecision::Action action) {
  const StoredEvent& event = *d->event;
  const int policy_attempt = d->ctx.policy_attempt > 0 ? d->ctx.policy_attempt : d->attempt;
  OutcomeUpdate update = DecideOutcome(result, policy_attempt, d->route->retry, Jitter());
  AttemptRecord& record = d->record;
  record.outcome = update.outcome;
  if (d->update && update.outcome != Outcome::kSucceeded) {
    // A failed overwrite left the downstream's record as it was: the event
    // stays as delivered as it was, with the record it had; the attempt failed.
    record.outcome = Outcome::kFailed;
    OutcomeUpdate unchanged;
    unchanged.outcome = event.outcome;
    unchanged.last_error = update.last_error;
    update = unchanged;
  }
  record.http_status = result.http_status;
  record.error = result.error;
  record.record_id = result.record_id;
  DeliveryReport report;
  report.action = action;
  report.duration = clock_->Now() - d->started_at;
  record.duration_ms = absl::ToDoubleMilliseconds(report.duration);
  report.precondition_failed = result.kind == DeliveryResult::Kind::kPreconditionFailed;
  if (observer_ != nullptr) observer_->OnAttempt(d->route->name, record.outcome, report.duration);
  store_->RecordAttemptAsync(
      record, update, d->ctx.claim_owner,
      [recorded = d->recorded, source = event.event.source, event_id = event.event.event_id,
       attempt = d->attempt](absl::StatusOr<bool> held) {
        if (held.ok() && !*held) {
          recorded(ClaimLost(source, event_id, attempt));
          return;
        }
        recorded(held.status());
      });
  report.outcome = record.outcome;
  report.retry_delay = update.retry_delay;
  report.attempt = d->attempt;
  report.http_status = record.http_status;
  report.error = record.error;
  report.record_id = record.record_id;
  d->reported(report);
}

}  // namespace replayd
