// A fresh, migrated database on the throwaway cluster named by REPLAYD_TEST_DSN,
// dropped when the test ends. pg and e2e tests use one each.
#pragma once

#include <cstdint>
#include <string>

namespace replayd::testing {

class ScratchDatabase {
 public:
  // Fails the test (FAIL) if REPLAYD_TEST_DSN is unset or the cluster does not answer.
  ScratchDatabase();
  ~ScratchDatabase();
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& dsn() const { return dsn_; }
  const std::string& name() const { return name_; }

  // Runs SQL on this database (test set-up and checks; throws on error).
  void Exec(const std::string& sql) const;
  // The first column of the first row as an integer (0 for NULL).
  int64_t QueryInt(const std::string& sql) const;
  // The first column of the first row as text ("" for NULL).
  std::string QueryText(const std::string& sql) const;

 private:
  std::string admin_dsn_;
  std::string name_;
  std::string dsn_;
};

// The admin DSN of the throwaway cluster (REPLAYD_TEST_DSN), or "" if unset.
std::string ClusterDsn();

// `dsn` with its database name replaced by `database`.
std::string WithDatabase(const std::string& dsn, const std::string& database);

}  // namespace replayd::testing
