#include "tests/support/scratch_database.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <regex>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "server/store/migrator.h"

namespace replayd::testing {

std::string ClusterDsn() {
  const char* dsn = std::getenv("REPLAYD_TEST_DSN");
  return dsn == nullptr ? "" : dsn;
}

std::string WithDatabase(const std::string& dsn, const std::string& database) {
  static const std::regex kPath(R"(^(postgres(?:ql)?://[^/?]*)(/[^?]*)?(\?.*)?$)");
  std::smatch m;
  if (std::regex_match(dsn, m, kPath)) {
    return absl::StrCat(m[1].str(), "/", database, m[3].str());
  }
  return absl::StrCat(dsn, " dbname=", database);
}

ScratchDatabase::ScratchDatabase() : admin_dsn_(ClusterDsn()) {
  if (admin_dsn_.empty()) {
    ADD_FAILURE() << "REPLAYD_TEST_DSN is not set: run under deploy/local/pg-throwaway run";
    return;
  }
  static std::atomic<int> counter{0};
  name_ = absl::StrCat("t_", getpid(), "_", counter++);
  {
    pqxx::connection conn(admin_dsn_);
    pqxx::nontransaction tx(conn);
    tx.exec0(absl::StrCat("DROP DATABASE IF EXISTS ", name_));
    tx.exec0(absl::StrCat("CREATE DATABASE ", name_));
  }
  dsn_ = WithDatabase(admin_dsn_, name_);
  auto migrated = Migrate(dsn_);
  if (!migrated.ok()) ADD_FAILURE() << "migrate: " << migrated.status();
}

ScratchDatabase::~ScratchDatabase() {
  if (name_.empty()) return;
  try {
    pqxx::connection conn(admin_dsn_);
    pqxx::nontransaction tx(conn);
    tx.exec0(absl::StrCat("DROP DATABASE IF EXISTS ", name_, " WITH (FORCE)"));
  } catch (const std::exception& e) {
    // Leaving a scratch database behind is harmless: the cluster is thrown away.
  }
}

void ScratchDatabase::Exec(const std::string& sql) const {
  pqxx::connection conn(dsn_);
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

int64_t ScratchDatabase::QueryInt(const std::string& sql) const {
  pqxx::connection conn(dsn_);
  pqxx::nontransaction tx(conn);
  auto row = tx.exec1(sql);
  return row[0].is_null() ? 0 : row[0].as<int64_t>();
}

std::string ScratchDatabase::QueryText(const std::string& sql) const {
  pqxx::connection conn(dsn_);
  pqxx::nontransaction tx(conn);
  auto row = tx.exec1(sql);
  return row[0].is_null() ? "" : row[0].as<std::string>();
}

}  // namespace replayd::testing
