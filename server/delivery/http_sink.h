// The HTTP sink: POSTs the JSON envelope to the configured URL with
// libcurl, answers lookups with GET lookup_url and updates with a PUT of the
// envelope to update_url under If-Match. Every call of a sink runs
// on the sink's own thread, on one curl multi handle (keep-alive connections
// shared by all calls, many calls in flight); the blocking Deliver and Lookup
// wait for their asynchronous forms and must not be called from a `done`
// callback. Thread safe. Every call carries the sink's static headers and
// client certificate; a create call is also signed when signing secrets are
// configured (server/delivery/outbound_security.h).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/common/clock.h"
#include "server/config/config.h"
#include "server/delivery/outbound_security.h"
#include "server/delivery/sink.h"

namespace replayd {
namespace http_sink_internal {
struct Transfer;
class Loop;
}  // namespace http_sink_internal

class HttpSink final : public Sink {
 public:
  // INVALID_ARGUMENT when the URLs are not http(s) URLs curl accepts, or a
  // secret cannot be read. `clock` stamps `webhook-timestamp`.
  static absl::StatusOr<std::unique_ptr<HttpSink>> Create(const SinkConfig& config,
                                                          const Clock* clock = &SystemClock::Get());
  ~HttpSink() override;

  const std::string& name() const override { return config_.name; }
  DeliveryResult Deliver(const DeliveryRequest& request) override;
  bool HasLookup() const override { return !config_.lookup_url.empty(); }
  LookupResult Lookup(const StoredEvent& event) override;
  void DeliverAsync(const DeliveryRequest& request, DeliverDone done) override;
  void LookupAsync(const StoredEvent& event, LookupDone done) override;
  bool NonBlocking() const override { return true; }
  bool HasUpdate() const override { return !config_.update_url.empty(); }
  // Blocking; not to be called from a `done` callback. The known version
  // goes out as If-Match: "<version>"; one that is not a valid entity tag
  // is refused (kFinal) without a call.
  DeliveryResult Update(const DeliveryRequest& request,
                        const std::optional<std::string>& known_version) override;

 private:
  HttpSink(SinkConfig config, OutboundSecurity security, const Clock* clock);
  // A transfer of `url` with the sink's timeouts and response readers set.
  std::unique_ptr<http_sink_internal::Transfer> NewTransfer(const std::string& url) const;
  // A transfer carrying the event's envelope and the create path's headers
  // (and `extra_header` when not empty), never re-sent by curl on its own.
  std::unique_ptr<http_sink_internal::Transfer> EnvelopeCall(const std::string& url,
                                                             const DeliveryRequest& request,
                                                             const std::string& extra_header) const;
  // `pattern` with {idempotency_key} replaced by the event's, URL-escaped.
  std::string KeyUrl(const std::string& pattern, const StoredEvent& event) const;

  const SinkConfig config_;
  const OutboundSecurity security_;
  const Clock* const clock_;
  std::unique_ptr<http_sink_internal::Loop> loop_;
};

// The body POSTed for `event`: source, event_id, sequence, key, type,
// occurred_at, ingested_at (RFC 3339, null when absent) and payload (as JSON).
std::string EnvelopeJson(const StoredEvent& event);

// The record id in a JSON body's "id" (string or number), or "".
std::string RecordIdFromBody(const std::string& body);

// The longest answer body read, and the deepest nesting of arrays and
// objects accepted in one.
inline constexpr size_t kMaxAnswerBody = 1 << 20;
inline constexpr int kMaxAnswerNesting = 64;

// The headers of an answer that speak of a record.
struct RecordHeaders {
  std::string record_id;      // X-Record-Id
  std::string etag;           // ETag
  std::string last_modified;  // Last-Modified
};

// The record a lookup's 200 describes. The body, when there is one, is a JSON
// object {"id", "version"?, "updated_at"? (RFC 3339), "data"? (an object)};
// X-Record-Id overrides its id, and ETag (a strong one) and Last-Modified
// stand in for a missing version and update time. An empty body, or one
// that is not JSON beside an X-Record-Id, is a record with that id alone; a
// record without any id is "(unknown)". UNAVAILABLE for a body over
// kMaxAnswerBody, one that is not a JSON object (or nests deeper than
// kMaxAnswerNesting), or a field of the wrong type.
absl::StatusOr<DownstreamRecord> DownstreamRecordFromAnswer(const std::string& body,
                                                            const RecordHeaders& headers);

}  // namespace replayd
