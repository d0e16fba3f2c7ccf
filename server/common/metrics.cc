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
  prometheus::Family<prometheus::Counter>* claim_waits;
  prometheus::Family<prometheus::Counter>* config_reloads;
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), f_(std::make_unique<Families>()) {
  // Each family: its builder, name and help text, registered with registry_.
  auto declare = [this](auto&& builder, const char* name, const char* help) {
    return &builder.Name(name).Help(help).Register(*registry_);
  };
  f_->ingested = declare(prometheus::BuildCounter(), "replayd_ingested_events_total",
                         "Published events by source and result (accepted, duplicate, rejected).");
  f_->deliveries = declare(prometheus::BuildCounter(), "replayd_deliveries_total",
                           "Recorded delivery attempts by route and the event's outcome after it.");
  f_->delivery_duration = declare(prometheus::BuildHistogram(), "replayd_delivery_duration_seconds",
                                  "Duration of one delivery attempt (lookup and call).");
  f_->backlog = declare(prometheus::BuildGauge(), "replayd_backlog_events",
                        "Events waiting for delivery in the whole log, by outcome.");
  f_->replay_events = declare(prometheus::BuildCounter(), "replayd_replay_events_total",
                              "Events handled by replays, by result (delivered, skipped, failed).");
  f_->replay_pauses =
      declare(prometheus::BuildCounter(), "replayd_replay_pauses_total",
              "Replays paused, by cause (breaker: the downstream kept failing; operator).");
  f_->replay_processed = declare(prometheus::BuildGauge(), "replayd_replay_processed_events",
                                 "Events a running replay has processed so far.");
  f_->replay_planned = declare(prometheus::BuildGauge(), "replayd_replay_planned_events",
                               "Events a running replay planned to process.");
  f_->replays = declare(prometheus::BuildGauge(), "replayd_replays", "Replay jobs by state.");
  f_->limiter_waits = declare(prometheus::BuildCounter(), "replayd_rate_limiter_waits_total",
                              "Times a replay waited for a rate-limiter token.");
  f_->limiter_wait_seconds =
      declare(prometheus::BuildCounter(), "replayd_rate_limiter_wait_seconds_total",
              "Time replays spent waiting for rate-limiter tokens.");
  f_->claim_waits = declare(prometheus::BuildCounter(), "replayd_delivery_claim_waits_total",
                            "Claim attempts that found the event claimed by another daemon.");
  f_->config_reloads =
      declare(prometheus::BuildCounter(), "replayd_config_reloads_total",
              "Configuration reloads (SIGHUP) by result (applied, unchanged, refused).");
  // Series that exist from the start, so that dashboards and alerts see
  // zeros rather than nothing.
  SetBacklog(0, 0);
  CountClaimWaits(0);
  for (const char* result : {"applied", "unchanged", "refused"}) CountConfigReload(result, 0);
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

void Metrics::SetReplayProgress(const std::string& replay_id, int64_t processed, int64_t planned) {
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

void Metrics::CountClaimWaits(int64_t events) {
  f_->claim_waits->Add({}).Increment(static_cast<double>(events));
}

void Metrics::CountConfigReload(std::string_view result, int64_t n) {
  f_->config_reloads->Add({{"result", std::string(result)}}).Increment(static_cast<double>(n));
}

std::string Metrics::Serialize() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace replayd
