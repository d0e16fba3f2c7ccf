#include "server/ingest/json_events.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"

namespace replayd {
namespace {

using nlohmann::json;

// Converts one JSON event. Problems that belong to the event (rather than to
// the request) become its rejection reason.
absl::StatusOr<NewEvent> EventFromJson(const json& j) {
  static const std::set<std::string> kFields = {"source", "event_id", "sequence", "key",
                                                "type",   "occurred_at", "payload"};
  if (!j.is_object()) return absl::InvalidArgumentError("event is not a JSON object");
  for (const auto& [name, value] : j.items()) {
    if (!kFields.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown field \"", name, "\""));
    }
  }
  NewEvent e;
  auto text = [&](const char* name, std::string* out) -> absl::Status {
    if (!j.contains(name) || j[name].is_null()) return absl::OkStatus();
    if (!j[name].is_string()) return absl::InvalidArgumentError(absl::StrCat(name, " must be a string"));
    *out = j[name].get<std::string>();
    return absl::OkStatus();
  };
  for (auto [name, out] : {std::pair{"source", &e.source}, std::pair{"event_id", &e.event_id},
                           std::pair{"key", &e.key}, std::pair{"type", &e.type}}) {
    if (absl::Status s = text(name, out); !s.ok()) return s;
  }
  if (j.contains("sequence") && !j["sequence"].is_null()) {
    if (!j["sequence"].is_number_integer()) {
      return absl::InvalidArgumentError("sequence must be an integer");
    }
    e.sequence = j["sequence"].get<int64_t>();
  }
  std::string occurred;
  if (absl::Status s = text("occurred_at", &occurred); !s.ok()) return s;
  if (!occurred.empty()) {
    absl::Time t;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, occurred, &t, &err)) {
      return absl::InvalidArgumentError(absl::StrCat("occurred_at \"", occurred, "\" is not RFC 3339"));
    }
    e.occurred_at = t;
  }
  if (!j.contains("payload")) return absl::InvalidArgumentError("payload is missing");
  e.payload = j["payload"].dump();
  return e;
}

}  // namespace

absl::StatusOr<JsonEventBatch> ParseJsonEvents(std::string_view body, const IngestLimits& limits) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError("body is not valid JSON");
  if (!parsed.is_object() || !parsed.contains("events") || !parsed["events"].is_array()) {
    return absl::InvalidArgumentError(R"(body must be {"events": [...]})");
  }
  for (const auto& [name, value] : parsed.items()) {
    if (name != "events") {
      return absl::InvalidArgumentError(absl::StrCat("unknown field \"", name, "\""));
    }
  }
  JsonEventBatch batch;
  batch.items = std::move(parsed["events"]);
  if (absl::Status s = ValidateBatchSize(batch.items.size(), limits); !s.ok()) return s;
  batch.events.reserve(batch.items.size());
  for (const json& item : batch.items) batch.events.push_back(EventFromJson(item));
  return batch;
}

}  // namespace replayd
