// Forward-only schema migrations from migrations/NNNN_name.sql, compiled into
// the binary. Each file runs once, in order, in its own transaction, under a
// session advisory lock, and is recorded in schema_migrations; several
// daemons starting together all succeed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace replayd {

struct Migration {
  int version;
  std::string name;
  std::string sql;
};

// The migrations built into this binary, by version.
const std::vector<Migration>& BuiltInMigrations();

// Applies the pending migrations; returns the names applied now.
// UNAVAILABLE when the database cannot be reached, INTERNAL when a migration fails.
absl::StatusOr<std::vector<std::string>> Migrate(const std::string& dsn);

// OK when every built-in migration is recorded as applied; FAILED_PRECONDITION
// naming the first missing one otherwise.
absl::Status CheckMigrated(const std::string& dsn);

// CheckMigrated over one connection of its own, kept open between checks and
// opened again after a failure: the health check asks every second, and the
// pool's connections may all be busy under load. Not thread-safe.
class SchemaProbe {
 public:
  explicit SchemaProbe(std::string dsn);
  ~SchemaProbe();
  absl::Status Check();

 private:
  struct Connection;
  absl::Status CheckOnce();

  std::string dsn_;
  std::unique_ptr<Connection> conn_;
};

}  // namespace replayd
