#include "server/store/migrator.h"

#include <set>

#include <pqxx/pqxx>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/store/pg_errors.h"
#include "server/store/sql_migrations.h"

namespace replayd {
namespace {

// pg_advisory_lock key: the bytes "replayd" + "m".
constexpr int64_t kMigrationLockKey = 0x7265706c6179646d;

constexpr const char* kCreateMigrationsTable = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
))sql";

}  // namespace

const std::vector<Migration>& BuiltInMigrations() {
  static const std::vector<Migration> migrations = [] {
    std::vector<Migration> out;
    for (const auto& m : kSqlMigrations) out.push_back({m.version, m.name, m.sql});
    return out;
  }();
  return migrations;
}

absl::StatusOr<std::vector<std::string>> Migrate(const std::string& dsn) {
  auto log = Logger("store");
  std::vector<std::string> applied;
  try {
    pqxx::connection conn(dsn);
    pqxx::nontransaction(conn).exec(
        absl::StrCat("SELECT pg_advisory_lock(", kMigrationLockKey, ")"));
    {
      pqxx::work tx(conn);
      tx.exec0(kCreateMigrationsTable);
      tx.commit();
    }
    std::set<int> done;
    {
      pqxx::read_transaction tx(conn);
      for (const auto& row : tx.exec("SELECT version FROM schema_migrations")) {
        done.insert(row[0].as<int>());
      }
    }
    for (const Migration& m : BuiltInMigrations()) {
      if (done.count(m.version)) continue;
      try {
        pqxx::work tx(conn);
        tx.exec(m.sql);
        tx.exec_params0("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                        m.name);
        tx.commit();
      } catch (const pqxx::broken_connection&) {
        throw;
      } catch (const std::exception& e) {
        return absl::InternalError(absl::StrCat("migration ", m.name, " failed: ", e.what()));
      }
      log->info("applied migration {}", m.name);
      applied.push_back(m.name);
    }
    pqxx::nontransaction(conn).exec(
        absl::StrCat("SELECT pg_advisory_unlock(", kMigrationLockKey, ")"));
  } catch (const std::exception& e) {
    return StatusFromPg(e, "migrate");
  }
  return applied;
}

absl::Status CheckMigrated(const std::string& dsn) { return SchemaProbe(dsn).Check(); }

struct SchemaProbe::Connection {
  explicit Connection(const std::string& dsn) : conn(dsn) {}
  pqxx::connection conn;
};

SchemaProbe::SchemaProbe(std::string dsn) : dsn_(std::move(dsn)) {}
SchemaProbe::~SchemaProbe() = default;

absl::Status SchemaProbe::Check() {
  // A kept connection may have died since the last check (a Postgres
  // restart): that is not the database's state now, so ask once more on a
  // fresh one.
  const bool reused = conn_ != nullptr;
  absl::Status status = CheckOnce();
  if (reused && absl::IsUnavailable(status)) status = CheckOnce();
  return status;
}

absl::Status SchemaProbe::CheckOnce() {
  try {
    if (conn_ == nullptr || !conn_->conn.is_open()) conn_ = std::make_unique<Connection>(dsn_);
    pqxx::read_transaction tx(conn_->conn);
    auto exists = tx.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL")[0].as<bool>();
    std::set<int> done;
    if (exists) {
      for (const auto& row : tx.exec("SELECT version FROM schema_migrations")) {
        done.insert(row[0].as<int>());
      }
    }
    for (const Migration& m : BuiltInMigrations()) {
      if (!done.count(m.version)) {
        return absl::FailedPreconditionError(absl::StrCat("migration ", m.name, " not applied"));
      }
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    conn_.reset();  // opened again next time
    return StatusFromPg(e, "check_migrated");
  }
}

}  // namespace replayd
