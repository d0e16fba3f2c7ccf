// A downstream PostgreSQL table that the PostgreSQL sink writes to: one row per
// event, keyed by its idempotency key (idempotency_key text primary key,
// record_id, payload jsonb, created_at, version bigint, updated_at). Created
// when missing; a table without version and updated_at gets them. Thread safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace replayd {

class PgPool;

// The table's CREATE TABLE IF NOT EXISTS statement.
std::string DeliveryTableDdl(const std::string& table);
// Inserts ($1 idempotency key, $2 payload json) unless the key exists;
// returns one row (record_id, created, version as text, updated_at as epoch
// microseconds): the new row's, or the existing one's.
std::string DeliveryTableInsertSql(const std::string& table);
// Overwrites the payload of the row of key $1 with $2 and bumps its version,
// if the version (as text) is $3 or $4 is true; returns one row (record_id,
// updated, version as text, updated_at as epoch microseconds): the new row,
// or the row left as it was; none when the key has no row.
std::string DeliveryTableUpdateSql(const std::string& table);
// Creates `table` unless it exists, and adds version and updated_at to one
// that lacks them; a concurrent creator winning the race is not an error.
absl::Status CreateDeliveryTable(PgPool* pool, const std::string& table);

class DeliveryTable {
 public:
  struct InsertResult {
    bool created = false;  // false: a row with this key was there already
    std::string record_id;
    std::string version;
    absl::Time updated_at;
  };

  // Connects lazily to `dsn`; `table` is a validated [schema.]name.
  DeliveryTable(std::string dsn, std::string table, int pool_size);
  ~DeliveryTable();

  // Inserts the row unless its key exists. UNAVAILABLE when the database
  // cannot be reached; INVALID_ARGUMENT when the payload is not JSON.
  absl::StatusOr<InsertResult> Insert(const std::string& idempotency_key,
                                      const std::string& payload_json);

  struct UpdateResult {
    bool updated = false;  // false: the row is at another version, unchanged
    std::string record_id;
    std::string version;  // the row's, after the update
    absl::Time updated_at;
  };
  // Overwrites the key's payload and bumps its version, only if the row is
  // at `known_version` (nullopt: at any). nullopt when the key has no row.
  // Errors as Insert.
  absl::StatusOr<std::optional<UpdateResult>> Update(
      const std::string& idempotency_key, const std::string& payload_json,
      const std::optional<std::string>& known_version);
  // A row as read back.
  struct Row {
    std::string record_id;
    int64_t version = 0;  // 1 when inserted, one more at each update
    absl::Time updated_at;
    std::string payload;  // JSON text
  };

  // The row stored for the key, or nullopt. UNAVAILABLE as above.
  absl::StatusOr<std::optional<Row>> Lookup(const std::string& idempotency_key);

 private:
  absl::Status EnsureTable();

  const std::string table_;
  std::unique_ptr<PgPool> pool_;
  bool table_ready_ = false;
  std::mutex mu_;
};

}  // namespace replayd
