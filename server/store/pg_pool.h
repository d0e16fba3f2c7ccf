// A small pool of libpqxx connections to one database. Broken connections are
// dropped and replaced on the next Acquire, so the daemon recovers by itself
// when Postgres comes back. A connection that has served `max_age` (plus up
// to a quarter more, at random, so that connections opened together are not
// all replaced at once) is closed when it comes back to the pool: the
// statements prepared on it (one per day partition for some, see
// DayPartitionOf) and its backend's caches do not pile up over a daemon's
// life. Internal to store/.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

#include "absl/status/statusor.h"

namespace replayd {

class PgPool {
 public:
  struct Connection {
    std::unique_ptr<pqxx::connection> conn;
    std::chrono::steady_clock::time_point retire_at;  // closed when released after this
    std::set<std::string> prepared;                   // statement names prepared on this connection
    std::set<std::string> flags;                      // per-session set-up done (temp tables, ...)
  };

  // Returns the connection to the pool on destruction; Discard() drops it instead.
  class Lease {
   public:
    Lease(PgPool* pool, std::unique_ptr<Connection> c) : pool_(pool), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease();
    pqxx::connection& conn() { return *c_->conn; }
    // Prepares `sql` under `name` on this connection once.
    void Prepare(const std::string& name, const std::string& sql);
    // Per-session set-up done on this connection (temp tables, settings).
    bool HasFlag(const std::string& flag) const { return c_->flags.count(flag) > 0; }
    void SetFlag(const std::string& flag) { c_->flags.insert(flag); }
    void Discard() { discard_ = true; }

   private:
    PgPool* pool_;
    std::unique_ptr<Connection> c_;
    bool discard_ = false;
  };

  PgPool(std::string dsn, int size,
         std::chrono::steady_clock::duration max_age = std::chrono::hours(1));

  // A connection, waiting up to `wait` for a free one. UNAVAILABLE when the
  // database cannot be reached or no connection frees up in time.
  absl::StatusOr<Lease> Acquire(std::chrono::milliseconds wait = std::chrono::seconds(10));

  // Runs `fn` on a pooled connection. Exceptions are caught and mapped by
  // SQLSTATE (see pg_errors.h); a connection that failed with UNAVAILABLE is
  // dropped. `what` names the operation in error messages and logs.
  absl::Status Run(std::string_view what, const std::function<void(Lease&)>& fn);

  const std::string& dsn() const { return dsn_; }

 private:
  void Release(std::unique_ptr<Connection> c, bool discard);

  const std::string dsn_;
  const int size_;
  const std::chrono::steady_clock::duration max_age_;
  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<Connection>> idle_;
  int open_ = 0;
};

}  // namespace replayd
