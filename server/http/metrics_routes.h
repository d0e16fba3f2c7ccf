// GET /metrics in the Prometheus text format, and the observers that feed the
// metrics from ingest and delivery without those depending on prometheus-cpp.
#pragma once

#include <functional>
#include <string>

#include "server/common/metrics.h"
#include "server/delivery/deliverer.h"
#include "server/ingest/ingester.h"
#include "server/replay/runner.h"

namespace httplib {
class Server;
}

namespace replayd {

// `refresh` (may be empty) runs before each scrape to update polled gauges
// (backlog, replays); its failure is logged and the scrape still answers.
// With an empty `token` the metrics are open (they hold counts and
// source/route names only); otherwise a scrape needs "Authorization: Bearer
// <token>" and is answered 401 without it.
void RegisterMetricsRoutes(httplib::Server& server, Metrics* metrics,
                           std::function<void()> refresh, const std::string& token = "");

class MetricsIngestObserver final : public IngestObserver {
 public:
  explicit MetricsIngestObserver(Metrics* metrics) : metrics_(metrics) {}
  void OnIngested(const std::vector<NewEvent>& events,
                  const std::vector<IngestResult>& results) override;

 private:
  Metrics* metrics_;
};

class MetricsDeliveryObserver final : public DeliveryObserver {
 public:
  explicit MetricsDeliveryObserver(Metrics* metrics) : metrics_(metrics) {}
  void OnAttempt(const std::string& route, Outcome outcome, absl::Duration duration) override;

 private:
  Metrics* metrics_;
};

class MetricsReplayObserver final : public ReplayObserver {
 public:
  explicit MetricsReplayObserver(Metrics* metrics) : metrics_(metrics) {}
  void OnRateLimitWait(const std::string& limiter, absl::Duration wait) override;
  void OnReplayed(const std::string& result) override;
  void OnPaused(const std::string& cause) override;

 private:
  Metrics* metrics_;
};

}  // namespace replayd
