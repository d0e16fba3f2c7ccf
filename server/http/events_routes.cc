#include "server/http/events_routes.h"

#include <httplib.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/http/http_errors.h"
#include "server/common/time_format.h"

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

// Builds the body's DOM with the SAX parser (whose own stack is one bit per
// level), so that no recursion ever sees more than the allowed depth. A
// container deeper than `max_depth` is replaced by null and the events-array
// element it sits in is remembered in `too_deep`; a body that is not an
// object stops the parse at its first byte.
class DepthLimitedBuilder {
 public:
  using Dom = nlohmann::detail::json_sax_dom_parser<json>;

  DepthLimitedBuilder(json& root, int max_depth) : dom_(root, false), max_depth_(max_depth) {}

  bool null() { return Value([&] { return dom_.null(); }); }
  bool boolean(bool v) { return Value([&] { return dom_.boolean(v); }); }
  bool number_integer(json::number_integer_t v) { return Value([&] { return dom_.number_integer(v); }); }
  bool number_unsigned(json::number_unsigned_t v) { return Value([&] { return dom_.number_unsigned(v); }); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return Value([&] { return dom_.number_float(v, s); });
  }
  bool string(json::string_t& v) { return Value([&] { return dom_.string(v); }); }
  bool binary(json::binary_t& v) { return Value([&] { return dom_.binary(v); }); }
  bool key(json::string_t& k) { return skipping_ > 0 || dom_.key(k); }
  bool start_object(std::size_t n) { return Start(true, [&] { return dom_.start_object(n); }); }
  bool start_array(std::size_t n) { return Start(false, [&] { return dom_.start_array(n); }); }
  bool end_object() { return End([&] { return dom_.end_object(); }); }
  bool end_array() { return End([&] { return dom_.end_array(); }); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

  bool not_an_object() const { return not_an_object_; }
  const std::set<size_t>& too_deep() const { return too_deep_; }

 private:
  // A value directly inside the body's second-level container (the events
  // array) starts a new element.
  void CountElement() {
    if (depth_ == 2) ++element_;
  }
  template <typename F>
  bool Value(F add) {
    if (skipping_ > 0) return true;
    CountElement();
    return add();
  }
  template <typename F>
  bool Start(bool object, F start) {
    if (skipping_ > 0) {
      ++skipping_;
      return true;
    }
    if (depth_ == 0 && !object) {
      not_an_object_ = true;  // stop before reading the rest
      return false;
    }
    CountElement();
    if (depth_ >= max_depth_) {
      skipping_ = 1;
      too_deep_.insert(element_ - 1);
      return dom_.null();
    }
    ++depth_;
    return start();
  }
  template <typename F>
  bool End(F end) {
    if (skipping_ > 0) {
      --skipping_;
      return true;
    }
    --depth_;
    return end();
  }

  Dom dom_;
  const int max_depth_;
  int depth_ = 0;
  int skipping_ = 0;
  size_t element_ = 0;
  bool not_an_object_ = false;
  std::set<size_t> too_deep_;
};

std::string_view ResultName(IngestResult::Status s) {
  switch (s) {
    case IngestResult::Status::kAccepted: return "ACCEPTED";
    case IngestResult::Status::kDuplicate: return "DUPLICATE";
    case IngestResult::Status::kRejected: return "REJECTED";
  }
  return "REJECTED";
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
    // {"events": [{"payload": ...}]}: three levels above each payload.
    const int max_depth = ingester->limits().max_payload_depth + 3;
    json body;
    DepthLimitedBuilder builder(body, max_depth);
    const bool parsed = json::sax_parse(req.body, &builder);
    if (builder.not_an_object()) {
      return SetJsonError(res, absl::InvalidArgumentError(R"(body must be {"events": [...]})"));
    }
    if (!parsed) return SetJsonError(res, absl::InvalidArgumentError("body is not valid JSON"));
    if (!body.is_object() || !body.contains("events") || !body["events"].is_array()) {
      return SetJsonError(res, absl::InvalidArgumentError(R"(body must be {"events": [...]})"));
    }
    for (const auto& [name, value] : body.items()) {
      if (name != "events") {
        return SetJsonError(res, absl::InvalidArgumentError(absl::StrCat("unknown field \"", name, "\"")));
      }
    }
    const json& items = body["events"];
    if (absl::Status s = ValidateBatchSize(items.size(), ingester->limits()); !s.ok()) {
      return SetJsonError(res, s);
    }
    // Events that do not convert are rejected here; the rest go to the ingester.
    std::vector<IngestResult> results(items.size());
    std::vector<NewEvent> events;
    std::vector<size_t> index;
    for (size_t i = 0; i < items.size(); ++i) {
      if (builder.too_deep().count(i) > 0) {
        const auto s = NestingTooDeepError(ingester->limits().max_payload_depth);
        results[i] = {IngestResult::Status::kRejected, std::string(s.message())};
        continue;
      }
      auto e = EventFromJson(items[i]);
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
      if (item.is_object() && item.contains("source") && item["source"].is_string()) r["source"] = item["source"];
      if (item.is_object() && item.contains("event_id") && item["event_id"].is_string()) r["event_id"] = item["event_id"];
      if (!results[i].reason.empty()) r["reason"] = results[i].reason;
      out.push_back(std::move(r));
    }
    res.set_content(json{{"results", std::move(out)}}.dump(), "application/json");
  });
}

}  // namespace replayd
