// Delivers one claimed event: the single path shared by live delivery (the
// Dispatcher) and replay (the replay runner). Check-then-act first (the log's
// state, and the sink's read-only lookup whenever the sink has one: a retry,
// or a first attempt after a crash, may follow a call that reached the
// downstream without its answer being recorded),
// then at most one call of the sink's create path, then the attempt and the
// event's new outcome (with retry scheduling from the route's RetryPolicy)
// written in one store call that also releases the caller's claim. A table
// sink in the log's own database does the lookup, the insert and the record in
// one transaction (DeliveryStore::DeliverToLogTable). A compensation's
// overwrite takes the sink's update path instead (UpdateOne), recorded the
// same way.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/config/config.h"
#include "server/delivery/check_then_act.h"
#include "server/delivery/sink.h"
#include "server/store/delivery_store.h"
#include "server/store/event.h"

namespace replayd {

// A route as delivery uses it: where a source's events go and how they retry.
struct Route {
  std::string name;
  std::string sink_name;
  bool strict_order = false;
  RetryPolicy retry;
  std::shared_ptr<Sink> sink;
};

// Every route, keyed by source.
using RouteTable = std::map<std::string, Route>;
// Every configured sink, routed or not, keyed by name.
using SinkTable = std::map<std::string, std::shared_ptr<Sink>>;

// Builds every sink and route of a validated config, routes keyed by source;
// every sink, routed or not, also goes to `sinks` when given.
// INVALID_ARGUMENT when a sink cannot be built (e.g. a bad URL).
absl::StatusOr<RouteTable> BuildRoutes(const Config& config, SinkTable* sinks = nullptr);

struct DeliveryContext {
  std::string trigger;            // "live", "retry", "replay:<id>"
  std::string replay_id;          // sent as X-Replay-Id; empty for live delivery
  bool resend_delivered = false;  // send events the log records as delivered
  // The claim holder (Claim / TryClaim owner); DeliverOne releases it.
  std::string claim_owner;
  // The route to deliver by (a replay's own sink or retry policy, from
  // Deliverer::RouteFor); nullptr = the source's current route.
  std::shared_ptr<const Route> route = nullptr;
  // Which attempt of the route's retry policy this is (a replay counts its
  // own); 0 = the event's attempt number.
  int policy_attempt = 0;
};

struct DeliveryReport {
  CheckDecision::Action action = CheckDecision::Action::kDeliver;
  Outcome outcome = Outcome::kPending;  // the event's outcome afterwards
  int attempt = 0;                      // 0 when nothing was recorded
  std::optional<int> http_status;
  std::string error;
  std::string record_id;
  absl::Duration duration;  // lookup + call
  // How long the event waits before its next attempt (outcome kRetrying).
  absl::Duration retry_delay = absl::ZeroDuration();
  // UpdateOne only: the downstream refused the update because its record is
  // no longer at the known version.
  bool precondition_failed = false;
};

// Hooks for metrics; delivery does not depend on any metrics library.
// Called from worker threads: implementations must be thread safe.
class DeliveryObserver {
 public:
  virtual ~DeliveryObserver() = default;
  // One recorded attempt (a create call, or a lookup that found the record).
  virtual void OnAttempt(const std::string& route, Outcome outcome, absl::Duration duration) = 0;
  // `events` could not be claimed because another daemon holds their claims
  // (called from the dispatcher's poll thread).
  virtual void OnClaimWait(int64_t events) { (void)events; }
};

class Deliverer {
 public:
  // `routes` keyed by source. `store`, `observer` (may be null) and `clock`
  // (times the attempts) outlive this.
  Deliverer(DeliveryStore* store, RouteTable routes, DeliveryObserver* observer = nullptr,
            const Clock* clock = &SystemClock::Get());
  // Also knows `sinks` (those no route names too), which a replay may name.
  Deliverer(DeliveryStore* store, RouteTable routes, SinkTable sinks, DeliveryObserver* observer,
            const Clock* clock = &SystemClock::Get());
  // Destroys the route tables replaced by SetRoutes (nothing may be in flight).
  ~Deliverer();

  // Delivers one event the caller has claimed as ctx.claim_owner (use the
  // fresh row Claim/TryClaim returned). Never two create calls: the
  // decision, the call and the record happen once. On OK the claim is
  // released. Errors: FAILED_PRECONDITION when the event's source has no
  // route; UNAVAILABLE when the log cannot be written (the claim then
  // expires by itself and the event is retried). Thread safe.
  absl::StatusOr<DeliveryReport> DeliverOne(const StoredEvent& event, const DeliveryContext& ctx);

  // Overwrites the downstream's record of an event the caller has claimed as
  // ctx.claim_owner through the sink's update path, only while the record is
  // at `known_version` (nullopt: at any version): one Sink::Update call, then
  // the attempt recorded as DeliverOne records one (its trigger, outcome, and
  // the record's new id, version and update time) with the claim released. A
  // refused or failed update is recorded as a failed attempt and leaves the
  // event's outcome as it was (the downstream still holds its record); the
  // report's outcome is then kFailed. Errors as DeliverOne's. Thread safe.
  absl::StatusOr<DeliveryReport> UpdateOne(const StoredEvent& event, const DeliveryContext& ctx,
                                           const std::optional<std::string>& known_version);

  // Records, for an event the caller has claimed as ctx.claim_owner, that
  // the downstream already holds `record` (found by the caller's own
  // lookup): an already_processed attempt with the record's id, version and
  // update time, as DeliverOne records a lookup's find, with the claim
  // released. Never calls the sink. Errors as DeliverOne's. Thread safe.
  absl::StatusOr<DeliveryReport> RecordFound(const StoredEvent& event, const DeliveryContext& ctx,
                                             const DownstreamRecord& record);

  using ReportDone = std::function<void(absl::StatusOr<DeliveryReport>)>;
  using RecordDone = std::function<void(absl::Status)>;
  // DeliverOne without waiting, neither for the downstream nor for the
  // record: `reported` is called exactly once with the report (the outcome
  // is decided before the write) or DeliverOne's error, from the sink's
  // thread or before this returns; only when the report is OK, `recorded` is
  // also called exactly once, when the write is done, in either order with
  // `reported` (from another thread, or at once when the write was
  // synchronous: a skip, or a table sink in the log's database), with OK,
  // the write's error, or ABORTED when the caller's claim was lost (its lease
  // expired and another worker took the event: the event's row was left
  // alone). Until then the claim is held, so no one else takes the event.
  // `event` must live until `reported` is called. The dispatcher keeps its
  // downstream calls in flight this way while records are group-committed.
  void DeliverOneAsync(const StoredEvent& event, const DeliveryContext& ctx, ReportDone reported,
                       RecordDone recorded);

  // Deliveries started from now on use `routes`; those in flight finish on
  // the table they started with, which stays alive until they are done and
  // is destroyed by a later SetRoutes or ReleaseRetired (never on a sink's
  // own thread). Thread safe.
  void SetRoutes(RouteTable routes, SinkTable sinks = {});
  // Destroys the replaced tables no delivery uses any more; returns how many
  // are still in use.
  size_t ReleaseRetired();

  // The route for `source` in the current table, or nullptr; the pointer
  // keeps that table alive.
  std::shared_ptr<const Route> RouteFor(const std::string& source) const;
  // The route for `source` with the sink named `sink` (empty = the route's
  // own) and `retry`'s fields in place of the route's policy; nullptr when
  // the source has no route or no such sink is configured. The pointer keeps
  // the current table alive.
  std::shared_ptr<const Route> RouteFor(const std::string& source, const std::string& sink,
                                        const RetrySettings& retry) const;
  // The names of every configured sink, routed or not, in order.
  std::vector<std::string> SinkNames() const;
  std::vector<std::string> RoutedSources() const;
  std::vector<std::string> StrictSources() const;
  DeliveryObserver* observer() const { return observer_; }

 private:
  struct Delivery;
  // Runs `start` (DeliverOneAsync or the update path) and waits for its
  // report and, after an OK report, for its record.
  absl::StatusOr<DeliveryReport> Wait(
      const std::function<void(ReportDone reported, RecordDone recorded)>& start);
  // The delivery of `event` by ctx.route (or the source's route), its attempt
  // prepared; nullptr after reporting FAILED_PRECONDITION when there is none.
  std::shared_ptr<Delivery> Start(const StoredEvent& event, const DeliveryContext& ctx,
                                  ReportDone& reported, RecordDone& recorded);
  // After the check's facts are in: skip, or call the sink.
  void Decide(const std::shared_ptr<Delivery>& d);
  void DeliverToLogTable(const std::shared_ptr<Delivery>& d, const std::string& table);
  // Records that the downstream holds `record` (an already_processed attempt).
  void RecordFind(const std::shared_ptr<Delivery>& d, const DownstreamRecord& record);
  // Records the attempt `result` was (or the lookup's find) and reports.
  void Record(const std::shared_ptr<Delivery>& d, const DeliveryResult& result,
              CheckDecision::Action action = CheckDecision::Action::kDeliver);

  // What one SetRoutes installs: the routes and every configured sink.
  struct Targets {
    RouteTable routes;
    SinkTable sinks;
  };
  static std::shared_ptr<const Targets> MakeTargets(RouteTable routes, SinkTable sinks);
  std::shared_ptr<const Targets> CurrentTargets() const;
  std::shared_ptr<const RouteTable> Routes() const;

  DeliveryStore* store_;
  mutable std::mutex routes_mu_;
  std::shared_ptr<const Targets> targets_;               // guarded by routes_mu_
  std::vector<std::shared_ptr<const Targets>> retired_;  // guarded by routes_mu_
  DeliveryObserver* observer_;
  const Clock* clock_;
};

}  // namespace replayd
