// The event log's records, as the rest of the daemon sees them (no libpqxx here).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "server/model/outcome.h"
#include "server/model/retry.h"

namespace replayd {

// "pending", "retrying", "succeeded", "already_processed", "failed": the log's spelling.
std::string_view OutcomeName(Outcome outcome);
std::optional<Outcome> ParseOutcome(std::string_view name);

// An event as published, after validation.
struct NewEvent {
  std::string source;
  std::string event_id;
  std::optional<int64_t> sequence;
  std::string key;   // empty = none
  std::string type;  // empty = none
  std::optional<absl::Time> occurred_at;
  std::string payload;  // JSON text
};

// An event as stored, with its delivery bookkeeping.
struct StoredEvent {
  int64_t position = 0;
  NewEvent event;
  absl::Time ingested_at;
  std::optional<absl::Time> processed_at;
  Outcome outcome = Outcome::kPending;
  int attempts = 0;
  std::string last_error;
  std::optional<absl::Time> next_attempt_at;
  std::string target_record_id;
  // The downstream record's version and update time as it last reported
  // them; empty and nullopt when it did not.
  std::string target_version;
  std::optional<absl::Time> target_updated_at;
};

// One delivery attempt of one event.
struct AttemptRecord {
  int64_t event_position = 0;
  absl::Time event_ingested_at;
  int attempt = 0;
  std::string trigger;  // live, retry, replay:<id>
  std::string route;
  absl::Time started_at;
  double duration_ms = 0;
  std::optional<int> http_status;
  std::string error;
  Outcome outcome = Outcome::kPending;
  std::string record_id;
  std::string worker;  // the claim owner that made it; filled in by the store
  std::string sink = {};     // where it went
  RetrySettings retry = {};  // the policy that decided what follows it
};

}  // namespace replayd
