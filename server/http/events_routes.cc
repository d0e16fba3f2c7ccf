#include "server/http/events_routes.h"

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/names.h"
#include "server/http/http_errors.h"
#include "server/ingest/json_events.h"

namespace replayd {
namespace {

using nlohmann::json;

std::string_view ResultName(IngestResult::Status s) {
  static constexpr NamedValue<IngestResult::Status> kNames[] = {
      {IngestResult::Status::kAccepted, "ACCEPTED"},
      {IngestResult::Status::kDuplicate, "DUPLICATE"},
      {IngestResult::Status::kRejected, "REJECTED"}};
  return NameIn(kNames, s);
}

}  // namespace

void RegisterEventRoutes(httplib::Server& server, Ingester* ingester, const Authenticator* auth) {
  server.Post("/v1/events", [ingester, auth](const httplib::Request& req, httplib::Response& res) {
    auto principal = auth->Authorize(req.get_header_value("Authorization"), Role::kPublisher);
    if (!principal.ok()) return SetJsonError(res, principal.status());
    if (!absl::StartsWithIgnoreCase(req.get_header_value("Content-Type"), "application/json")) {
      res.status = 415;
      res.set_content(json{{"error", "Content-Type must be application/json"}}.dump(),
                      "application/json");
      return;
    }
    auto batch = ParseJsonEvents(req.body, ingester->limits());
    if (!batch.ok()) return SetJsonError(res, batch.status());
    const json& items = batch->items;
    // Events that do not convert are rejected here; the rest go to the ingester.
    std::vector<IngestResult> results(items.size());
    std::vector<NewEvent> events;
    std::vector<size_t> index;
    for (size_t i = 0; i < items.size(); ++i) {
      auto& e = batch->events[i];
      if (!e.ok()) {
        results[i] = {IngestResult::Status::kRejected, std::string(e.status().message())};
        continue;
      }
      events.push_back(std::move(*e));
      index.push_back(i);
    }
    if (!events.empty()) {
      auto stored = ingester->Ingest(events);
      if (!stored.ok()) return SetJsonError(res, stored.status());
      for (size_t j = 0; j < events.size(); ++j) results[index[j]] = (*stored)[j];
    }
    json out = json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      const json& item = items[i];
      json r = {{"index", i}, {"status", ResultName(results[i].status)}};
      if (item.is_object() && item.contains("source") && item["source"].is_string())
        r["source"] = item["source"];
      if (item.is_object() && item.contains("event_id") && item["event_id"].is_string())
        r["event_id"] = item["event_id"];
      if (!results[i].reason.empty()) r["reason"] = results[i].reason;
      out.push_back(std::move(r));
    }
    res.set_content(json{{"results", std::move(out)}}.dump(), "application/json");
  });
}

}  // namespace replayd
