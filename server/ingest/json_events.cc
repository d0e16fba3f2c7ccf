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
  static const std::set<std::string> kFields = {"source", "event_id",    "sequence", "key",
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
    if (!j[name].is_string())
      return absl::InvalidArgumentError(absl::StrCat(name, " must be a string"));
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
      return absl::InvalidArgumentError(
          absl::StrCat("occurred_at \"", occurred, "\" is not RFC 3339"));
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

  bool null() {
    return Value([&] { return dom_.null(); });
  }
  bool boolean(bool v) {
    return Value([&] { return dom_.boolean(v); });
  }
  bool number_integer(json::number_integer_t v) {
    return Value([&] { return dom_.number_integer(v); });
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return Value([&] { return dom_.number_unsigned(v); });
  }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return Value([&] { return dom_.number_float(v, s); });
  }
  bool string(json::string_t& v) {
    return Value([&] { return dom_.string(v); });
  }
  bool binary(json::binary_t& v) {
    return Value([&] { return dom_.binary(v); });
  }
  bool key(json::string_t& k) { return skipping_ > 0 || dom_.key(k); }
  bool start_object(std::size_t n) {
    return Start(true, [&] { return dom_.start_object(n); });
  }
  bool start_array(std::size_t n) {
    return Start(false, [&] { return dom_.start_array(n); });
  }
  bool end_object() {
    return End([&] { return dom_.end_object(); });
  }
  bool end_array() {
    return End([&] { return dom_.end_array(); });
  }
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

}  // namespace

absl::StatusOr<JsonEventBatch> ParseJsonEvents(std::string_view body, const IngestLimits& limits) {
  // {"events": [{"payload": ...}]}: three levels above each payload.
  json parsed;
  DepthLimitedBuilder builder(parsed, limits.max_payload_depth + 3);
  const bool ok = json::sax_parse(body, &builder);
  if (builder.not_an_object())
    return absl::InvalidArgumentError(R"(body must be {"events": [...]})");
  if (!ok) return absl::InvalidArgumentError("body is not valid JSON");
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
  for (size_t i = 0; i < batch.items.size(); ++i) {
    if (builder.too_deep().count(i) > 0) {
      batch.events.push_back(NestingTooDeepError(limits.max_payload_depth));
    } else {
      batch.events.push_back(EventFromJson(batch.items[i]));
    }
  }
  return batch;
}

}  // namespace replayd
