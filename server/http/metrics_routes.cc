#include "server/http/metrics_routes.h"

#include <httplib.h>

#include <map>
#include <string_view>
#include <utility>

#include "server/common/auth.h"
#include "server/common/logging.h"
#include "server/http/http_errors.h"

namespace replayd {

void RegisterMetricsRoutes(httplib::Server& server, Metrics* metrics,
                           std::function<void()> refresh, const std::string& token) {
  std::vector<Credential> scrapers;
  if (!token.empty()) scrapers.push_back({token, Role::kViewer, "metrics"});
  auto auth = std::make_shared<Authenticator>(std::move(scrapers));
  server.Get("/metrics", [metrics, refresh, auth](const httplib::Request& req,
                                                  httplib::Response& res) {
    if (auto who = auth->Authorize(req.get_header_value("Authorization"), Role::kViewer);
        !who.ok()) {
      SetJsonError(res, who.status());
      return;
    }
    if (refresh) refresh();
    res.set_content(metrics->Serialize(), "text/plain; version=0.0.4; charset=utf-8");
  });
}

void MetricsIngestObserver::OnIngested(const std::vector<NewEvent>& events,
                                       const std::vector<IngestResult>& results) {
  // One counter update per (source, result) of the batch, not one per event.
  std::map<std::pair<std::string_view, std::string_view>, int64_t> counts;
  for (size_t i = 0; i < events.size() && i < results.size(); ++i) {
    std::string_view result = "rejected";
    if (results[i].status == IngestResult::Status::kAccepted) result = "accepted";
    if (results[i].status == IngestResult::Status::kDuplicate) result = "duplicate";
    // A rejected event's source may be anything the client sent: keep the
    // label set bounded.
    std::string_view source = results[i].status == IngestResult::Status::kRejected
                                  ? std::string_view("_rejected")
                                  : std::string_view(events[i].source);
    ++counts[{source, result}];
  }
  for (const auto& [labels, n] : counts) {
    metrics_->CountIngested(std::string(labels.first), labels.second, n);
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

void MetricsReplayObserver::OnPaused(const std::string& cause) {
  metrics_->CountReplayPause(cause);
}

}  // namespace replayd
