#include "server/common/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace replayd {

struct Metrics::Families {
  prometheus::Family<prometheus::Counter>* ingested;
  prometheus::Family<prometheus::Counter>* deliveries;
  prometheus::Family<prometheus::Histogram>* delivery_duration;
  prometheus::Family<prometheus::Gauge>* backlog;
  prometheus::Family<prometheus::Counter>* replay_events;
  prometheus::Family<prometheus::Counter>* replay_pauses;
  prometheus::Family<prometheus::Gauge>* replay_processed;
  prometheus::Family<prometheus::Gauge>* replay_planned;
  prometheus::Family<prometheus::Gauge>* replays;
  prometheus::Family<prometheus::Counter>* limiter_waits;
  prometheus::Family<prometheus::Counter>* limiter_wait_seconds;
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), f_(std::make_unique<Families>()) {
  auto& r = *registry_;
  f_->ingested = &prometheus::BuildCounter()
                      .Name("replayd_ingested_events_total")
                      .Help("Published events by source and result (accepted, duplicate, rejected).")
                      .Register(r);
  f_->deliveries = &prometheus::BuildCounter()
                        .Name("replayd_deliveries_total")
                        .Help("Recorded delivery attempts by route and the event's outcome after it.")
                        .Register(r);
  f_->delivery_duration = &prometheus::BuildHistogram()
                               .Name("replayd_delivery_duration_seconds")
                               .Help("Duration of one delivery attempt (lookup and call).")
                               .Register(r);
  f_->backlog = &prometheus::BuildGauge()
                     .Name("replayd_backlog_events")
                     .Help("Events waiting for delivery in the whole log, by outcome.")
                     .Register(r);
  f_->replay_events = &prometheus::BuildCounter()
                           .Name("replayd_replay_events_total")
                           .Help("Events handled by replays, by result (delivered, skipped, failed).")
                           .Register(r);
  f_->replay_pauses = &prometheus::BuildCounter()
                           .Name("replayd_replay_pauses_total")
                           .Help("Replays paused, by cause (breaker: the downstream kept failing; operator).")
                           .Register(r);
  f_->replay_processed = &prometheus::BuildGauge()
                              .Name("replayd_replay_processed_events")
                              .Help("Events a running replay has processed so far.")
                              .Register(r);
  f_->replay_planned = &prometheus::BuildGauge()
                            .Name("replayd_replay_planned_events")
                            .Help("Events a running replay planned to process.")
                            .Register(r);
  f_->replays = &prometheus::BuildGauge()
                     .Name("replayd_replays")
                     .Help("Replay jobs by state.")
                     .Register(r);
  f_->limiter_waits = &prometheus::BuildCounter()
                           .Name("replayd_rate_limiter_waits_total")
                           .Help("Times a replay waited for a rate-limiter token.")
                           .Register(r);
  f_->limiter_wait_seconds = &prometheus::BuildCounter()
                                  .Name("replayd_rate_limiter_wait_seconds_total")
                                  .Help("Time replays spent waiting for rate-limiter tokens.")
                                  .Register(r);
  // Series that exist from the start, so that dashboards and alerts see
  // zeros rather than nothing.
  SetBacklog(0, 0);
  for (const char* result : {"delivered", "skipped", "failed"}) CountReplayEvents(result, 0);
  for (const char* cause : {"breaker", "operator"}) f_->replay_pauses->Add({{"cause", cause}});
  f_->limiter_waits->Add({{"limiter", "replay"}});
  f_->limiter_wait_seconds->Add({{"limiter", "replay"}});
}

Metrics::~Metrics() = default;

prometheus::Registry& Metrics::registry() { return *registry_; }

void Metrics::CountIngested(const std::string& source, std::string_view result, int64_t n) {
  f_->ingested->Add({{"source", source}, {"result", std::string(result)}})
      .Increment(static_cast<double>(n));
}

void Metrics::CountDelivery(const std::string& route, std::string_view outcome, double seconds) {
  f_->deliveries->Add({{"route", route}, {"outcome", std::string(outcome)}}).Increment();
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  f_->delivery_duration->Add({{"route", route}}, kBuckets).Observe(seconds);
}

void Metrics::SetBacklog(int64_t pending, int64_t retrying) {
  f_->backlog->Add({{"outcome", "pending"}}).Set(static_cast<double>(pending));
  f_->backlog->Add({{"outcome", "retrying"}}).Set(static_cast<double>(retrying));
}

void Metrics::CountReplayEvents(std::string_view result, int64_t n) {
  f_->replay_events->Add({{"result", std::string(result)}}).Increment(static_cast<double>(n));
}

void Metrics::CountReplayPause(std::string_view cause) {
  f_->replay_pauses->Add({{"cause", std::string(cause)}}).Increment();
}

void Metrics::SetReplayProgress(const std::string& replay_id, int64_t processed,
                                int64_t planned) {
  std::lock_guard lock(mu_);
  replay_ids_[replay_id] = true;
  f_->replay_processed->Add({{"replay_id", replay_id}}).Set(static_cast<double>(processed));
  f_->replay_planned->Add({{"replay_id", replay_id}}).Set(static_cast<double>(planned));
}

void Metrics::RetainReplayProgress(const std::map<std::string, bool>& live) {
  std::lock_guard lock(mu_);
  for (auto it = replay_ids_.begin(); it != replay_ids_.end();) {
    if (live.count(it->first)) {
      ++it;
      continue;
    }
    f_->replay_processed->Remove(&f_->replay_processed->Add({{"replay_id", it->first}}));
    f_->replay_planned->Remove(&f_->replay_planned->Add({{"replay_id", it->first}}));
    it = replay_ids_.erase(it);
  }
}

void Metrics::SetReplayStates(const std::map<std::string, int64_t>& count_by_state) {
  for (const auto& [state, n] : count_by_state) {
    f_->replays->Add({{"state", state}}).Set(static_cast<double>(n));
  }
}

void Metrics::CountRateLimiterWait(const std::string& limiter, double seconds) {
  f_->limiter_waits->Add({{"limiter", limiter}}).Increment();
  f_->limiter_wait_seconds->Add({{"limiter", limiter}}).Increment(seconds);
}

std::string Metrics::Serialize() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace replayd
