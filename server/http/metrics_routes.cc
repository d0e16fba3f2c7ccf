#include "server/http/metrics_routes.h"

#include <httplib.h>

#include "server/common/logging.h"

namespace replayd {

void RegisterMetricsRoutes(httplib::Server& server, Metrics* metrics,
                           std::function<void()> refresh) {
  server.Get("/metrics", [metrics, refresh](const httplib::Request&, httplib::Response& res) {
    if (refresh) refresh();
    res.set_content(metrics->Serialize(), "text/plain; version=0.0.4; charset=utf-8");
  });
}

void MetricsIngestObserver::OnIngested(const std::vector<NewEvent>& events,
                                       const std::vector<IngestResult>& results) {
  for (size_t i = 0; i < events.size() && i < results.size(); ++i) {
    std::string_view result = "rejected";
    if (results[i].status == IngestResult::Status::kAccepted) result = "accepted";
    if (results[i].status == IngestResult::Status::kDuplicate) result = "duplicate";
    // A rejected event's source may be anything the client sent: keep the
    // label set bounded.
    metrics_->CountIngested(
        results[i].status == IngestResult::Status::kRejected ? std::string("_rejected")
                                                             : events[i].source,
        result);
  }
}

void MetricsDeliveryObserver::OnAttempt(const std::string& route, Outcome outcome,
                                        absl::Duration duration) {
  metrics_->CountDelivery(route, OutcomeName(outcome), absl::ToDoubleSeconds(duration));
}

void MetricsReplayObserver::OnRateLimitWait(const std::string& limiter, absl::Duration wait) {
  metrics_->CountRateLimiterWait(limiter, absl::ToDoubleSeconds(wait));
}

void MetricsReplayObserver::OnReplayed(const std::string& result) {
  metrics_->CountReplayEvents(result);
}

}  // namespace replayd
