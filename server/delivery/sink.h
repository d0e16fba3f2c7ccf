// The downstream, as delivery and replay see it. Implementations: HttpSink
// (libcurl) and PgTableSink (a downstream table). Thread safe: Deliver,
// Lookup and Update are called from many workers at once.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/event.h"

namespace replayd {

// One call of the create path.
struct DeliveryRequest {
  const StoredEvent* event = nullptr;
  int attempt = 1;        // 1-based, sent as a header
  std::string replay_id;  // empty for live delivery
};

// How the downstream answered, classified.
struct DeliveryResult {
  enum class Kind {
    kSucceeded,         // 2xx: created (or updated)
    kAlreadyProcessed,  // 409: the downstream had it already
    kRetryable,         // 408, 429, 5xx, timeout, connection error
    kFinal,             // other 4xx: retrying cannot help
    // Update only (412): the record is no longer at the version given, so
    // the downstream changed it since; nothing was written.
    kPreconditionFailed,
  };
  Kind kind = Kind::kRetryable;
  std::optional<int> http_status;
  std::string error;      // empty on success
  std::string record_id;  // from X-Record-Id or the body's "id"
  // The record's version and update time as the downstream answered them,
  // when it did: what tells a later change downstream from this write.
  std::optional<std::string> record_version;
  std::optional<absl::Time> record_updated_at;
  std::optional<absl::Duration> retry_after;
  absl::Duration duration;
};

// The downstream's record for one idempotency key, as its lookup answers.
struct DownstreamRecord {
  std::string id;
  std::optional<std::string> version = std::nullopt;  // opaque; compared for equality only
  std::optional<absl::Time> updated_at = std::nullopt;
  std::optional<std::string> data = std::nullopt;  // the record's content: a JSON object's text
};

// The downstream's record, or nullopt when it has none.
using LookupResult = absl::StatusOr<std::optional<DownstreamRecord>>;

class Sink {
 public:
  using DeliverDone = std::function<void(DeliveryResult)>;
  using LookupDone = std::function<void(LookupResult)>;

  virtual ~Sink() = default;
  virtual const std::string& name() const = 0;

  // Calls the create path once. Never throws; transport failures are kRetryable.
  virtual DeliveryResult Deliver(const DeliveryRequest& request) = 0;

  // Whether Lookup can answer (an HTTP sink with lookup_url, a table sink).
  virtual bool HasLookup() const = 0;
  // Read-only: the downstream's record for this event, or nullopt when it
  // has none. UNAVAILABLE when the downstream cannot answer (or answers
  // something that is not a record), UNIMPLEMENTED when !HasLookup().
  virtual LookupResult Lookup(const StoredEvent& event) = 0;

  // Whether Update can be called (an HTTP sink with update_url, a table sink).
  virtual bool HasUpdate() const { return false; }
  // Overwrites the downstream's record of this event with the event as it is
  // logged, only if the record is still at `known_version` (nullopt: at any
  // version). kSucceeded with the new version; kPreconditionFailed when the
  // record changed since; kFinal when there is none (or !HasUpdate());
  // kRetryable as for Deliver. Never throws.
  virtual DeliveryResult Update(const DeliveryRequest& request,
                                const std::optional<std::string>& known_version);

  // Deliver and Lookup without waiting for the downstream, when the sink can
  // (NonBlocking()): `done` is called exactly once, on the sink's own thread,
  // or before these return. The request's event need only live until they
  // return. By default they call the blocking forms.
  virtual void DeliverAsync(const DeliveryRequest& request, DeliverDone done) {
    done(Deliver(request));
  }
  virtual void LookupAsync(const StoredEvent& event, LookupDone done) { done(Lookup(event)); }
  // Whether DeliverAsync and LookupAsync return before the downstream answers.
  virtual bool NonBlocking() const { return false; }

  // The downstream table when this sink writes to a table in the log's own
  // database: delivery then does the lookup, the insert and the log's update
  // in one transaction (DeliveryStore::DeliverToLogTable) instead of calling
  // Lookup and Deliver. nullopt for every other sink.
  virtual std::optional<std::string> LogDatabaseTable() const { return std::nullopt; }
};

// "<source>:<event_id>", the Idempotency-Key of every call for this event.
std::string IdempotencyKey(const StoredEvent& event);

}  // namespace replayd
