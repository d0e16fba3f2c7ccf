// The HTTP sink (SPEC §4): POSTs the JSON envelope to the configured URL with
// libcurl, one keep-alive connection per calling thread, and answers lookups
// with GET lookup_url. Thread safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/config/config.h"
#include "server/delivery/sink.h"

namespace replayd {

class HttpSink final : public Sink {
 public:
  // INVALID_ARGUMENT when the URLs are not http(s) URLs curl accepts.
  static absl::StatusOr<std::unique_ptr<HttpSink>> Create(const SinkConfig& config);
  ~HttpSink() override;

  const std::string& name() const override { return config_.name; }
  DeliveryResult Deliver(const DeliveryRequest& request) override;
  bool HasLookup() const override { return !config_.lookup_url.empty(); }
  absl::StatusOr<std::optional<std::string>> Lookup(const StoredEvent& event) override;

 private:
  explicit HttpSink(SinkConfig config);

  const SinkConfig config_;
  const uint64_t id_;  // keys this sink's per-thread curl handles
};

// The body POSTed for `event`: source, event_id, sequence, key, type,
// occurred_at, ingested_at (RFC 3339, null when absent) and payload (as JSON).
std::string EnvelopeJson(const StoredEvent& event);

// The record id in a JSON body's "id" (string or number), or "".
std::string RecordIdFromBody(const std::string& body);

}  // namespace replayd
