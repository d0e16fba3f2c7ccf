#include "server/delivery/deliverer.h"

#include <future>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/delivery/http_sink.h"
#include "server/delivery/pg_table_sink.h"
#include "server/delivery/retry_policy.h"

namespace replayd {
namespace {

double Jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

absl::StatusOr<std::map<std::string, Route>> BuildRoutes(const Config& config) {
  std::map<std::string, std::shared_ptr<Sink>> sinks;
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
  std::map<std::string, Route> routes;
  for (const RouteConfig& r : config.routes) {
    auto it = sinks.find(r.sink);
    if (it == sinks.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("route ", r.name, ": sink \"", r.sink, "\" is not defined"));
    }
    Route route{r.name, r.sink, r.strict_order, r.retry, it->second};
    for (const std::string& source : r.sources) routes[source] = route;
  }
  return routes;
}

Deliverer::Deliverer(DeliveryStore* store, std::map<std::string, Route> routes,
                     DeliveryObserver* observer)
    : store_(store), routes_(std::move(routes)), observer_(observer) {}

const Route* Deliverer::RouteFor(const std::string& source) const {
  auto it = routes_.find(source);
  return it == routes_.end() ? nullptr : &it->second;
}

std::vector<std::string> Deliverer::RoutedSources() const {
  std::vector<std::string> out;
  for (const auto& [source, route] : routes_) out.push_back(source);
  return out;
}

std::vector<std::string> Deliverer::StrictSources() const {
  std::vector<std::string> out;
  for (const auto& [source, route] : routes_) {
    if (route.strict_order) out.push_back(source);
  }
  return out;
}

absl::StatusOr<DeliveryReport> Deliverer::DeliverOne(const StoredEvent& event,
                                                     const DeliveryContext& ctx) {
  std::promise<absl::Status> recorded;
  auto done = recorded.get_future();
  auto report = DeliverOneAsync(event, ctx,
                                [&recorded](absl::Status s) { recorded.set_value(std::move(s)); });
  if (!report.ok()) return report;
  if (absl::Status s = done.get(); !s.ok()) return s;
  return report;
}

absl::StatusOr<DeliveryReport> Deliverer::DeliverOneAsync(
    const StoredEvent& event, const DeliveryContext& ctx,
    std::function<void(absl::Status)> recorded) {
  const Route* route = RouteFor(event.event.source);
  if (route == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("source ", event.event.source, " has no route"));
  }
  const absl::Time started_at = absl::Now();
  const int attempt = event.attempts + 1;
  const bool delivered =
      event.outcome == Outcome::kSucceeded || event.outcome == Outcome::kAlreadyProcessed;

  CheckFacts facts;
  facts.resend_delivered = ctx.resend_delivered;
  // Whenever the sink can answer: a retry may follow a call that reached the
  // downstream and lost its answer, and after a crash even a first attempt may
  // follow a call whose record the dead daemon never wrote.
  // A table in the log's own database is looked up inside DeliverToLogTable's
  // transaction instead.
  const std::optional<std::string> log_table = route->sink->LogDatabaseTable();
  bool ask = !log_table && route->sink->HasLookup() && (!delivered || ctx.resend_delivered);
  std::optional<DeliveryResult> lookup_failure;
  if (ask) {
    auto found = route->sink->Lookup(event);
    if (found.ok()) {
      facts.downstream_record = *found;
    } else {
      lookup_failure.emplace();
      lookup_failure->kind = DeliveryResult::Kind::kRetryable;
      lookup_failure->error = std::string(found.status().message());
    }
  }

  DeliveryReport report;
  report.action = lookup_failure ? CheckDecision::Action::kDeliver
                                 : DecideCheckThenAct(event, facts).action;
  OutcomeUpdate update;
  AttemptRecord record;
  record.event_position = event.position;
  record.event_ingested_at = event.ingested_at;
  record.attempt = attempt;
  record.trigger = ctx.trigger;
  record.route = route->name;
  record.started_at = started_at;

  if (report.action == CheckDecision::Action::kSkipAlreadyDelivered) {
    if (absl::Status s = store_->Release(event.position, ctx.claim_owner);
        !s.ok()) {
      return s;
    }
    report.outcome = event.outcome;
    report.record_id = event.target_record_id;
    report.duration = absl::Now() - started_at;
    recorded(absl::OkStatus());
    return report;
  }
  if (lookup_failure) {
    update = DecideOutcome(*lookup_failure, attempt, route->retry, Jitter());
    record.error = lookup_failure->error;
  } else if (report.action == CheckDecision::Action::kSkipFoundDownstream) {
    update.outcome = Outcome::kAlreadyProcessed;
    update.target_record_id = **facts.downstream_record;
    record.record_id = update.target_record_id;
  } else {
    DeliveryResult result;
    if (log_table) {
      auto done = store_->DeliverToLogTable(*log_table, IdempotencyKey(event), EnvelopeJson(event),
                                            record, ctx.claim_owner);
      if (done.ok()) {
        report.duration = absl::Now() - started_at;
        if (!done->held) {
          Logger("delivery")->warn("{}/{}: claim lost before attempt {} (lease expired?)",
                                   event.event.source, event.event.event_id, attempt);
          report.outcome = event.outcome;
          recorded(absl::OkStatus());
          return report;
        }
        report.outcome = done->created ? Outcome::kSucceeded : Outcome::kAlreadyProcessed;
        report.attempt = attempt;
        report.record_id = done->record_id;
        if (observer_ != nullptr) {
          observer_->OnAttempt(route->name, report.outcome, report.duration);
        }
        recorded(absl::OkStatus());
        return report;
      }
      // Nothing was written: record the failure like a sink's.
      result.kind = absl::IsUnavailable(done.status()) ? DeliveryResult::Kind::kRetryable
                                                        : DeliveryResult::Kind::kFinal;
      result.error = std::string(done.status().message());
    } else {
      result = route->sink->Deliver({&event, attempt, ctx.replay_id});
    }
    update = DecideOutcome(result, attempt, route->retry, Jitter());
    record.http_status = result.http_status;
    record.error = result.error;
    record.record_id = result.record_id;
  }
  report.duration = absl::Now() - started_at;
  record.duration_ms = absl::ToDoubleMilliseconds(report.duration);
  record.outcome = update.outcome;

  if (observer_ != nullptr) observer_->OnAttempt(route->name, update.outcome, report.duration);
  store_->RecordAttemptAsync(
      record, update, ctx.claim_owner,
      [recorded = std::move(recorded), source = event.event.source,
       event_id = event.event.event_id, attempt](absl::StatusOr<bool> held) {
        if (held.ok() && !*held) {
          Logger("delivery")->warn("{}/{}: claim lost before attempt {} was recorded (lease expired?)",
                                   source, event_id, attempt);
        }
        recorded(held.status());
      });
  report.outcome = update.outcome;
  report.attempt = attempt;
  report.http_status = record.http_status;
  report.error = record.error;
  report.record_id = record.record_id;
  return report;
}

}  // namespace replayd
