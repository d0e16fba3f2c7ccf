#include "server/store/pg_pool.h"

#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/store/pg_errors.h"

namespace replayd {

PgPool::PgPool(std::string dsn, int size, std::chrono::steady_clock::duration max_age)
    : dsn_(std::move(dsn)), size_(size), max_age_(max_age) {}

PgPool::Lease::~Lease() {
  if (c_ != nullptr) {
    const bool drop = discard_ || c_->conn == nullptr || !c_->conn->is_open() ||
                      std::chrono::steady_clock::now() >= c_->retire_at;
    pool_->Release(std::move(c_), drop);
  }
}

void PgPool::Lease::Prepare(const std::string& name, const std::string& sql) {
  if (c_->prepared.insert(name).second) c_->conn->prepare(name, sql);
}

absl::StatusOr<PgPool::Lease> PgPool::Acquire(std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  if (!freed_.wait_for(lock, wait, [&] { return !idle_.empty() || open_ < size_; })) {
    return absl::UnavailableError("no database connection free (pool exhausted)");
  }
  if (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(c));
  }
  ++open_;
  lock.unlock();
  auto c = std::make_unique<Connection>();
  try {
    c->conn = std::make_unique<pqxx::connection>(dsn_);
    thread_local std::minstd_rand jitter(std::random_device{}());
    c->retire_at = std::chrono::steady_clock::now() + max_age_ +
                   max_age_ * std::uniform_int_distribution<int>(0, 249)(jitter) / 1000;
  } catch (const std::exception& e) {
    {
      std::lock_guard relock(mu_);
      --open_;
    }
    freed_.notify_one();
    // libpq's message names host and port, never the password.
    return absl::UnavailableError(absl::StrCat("database unreachable: ", e.what()));
  }
  return Lease(this, std::move(c));
}

absl::Status PgPool::Run(std::string_view what, const std::function<void(Lease&)>& fn) {
  auto lease = Acquire();
  if (!lease.ok()) return lease.status();
  try {
    fn(*lease);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    absl::Status status = StatusFromPg(e, what);
    if (absl::IsUnavailable(status) || !lease->conn().is_open()) lease->Discard();
    return status;
  }
}

void PgPool::Release(std::unique_ptr<Connection> c, bool discard) {
  {
    std::lock_guard lock(mu_);
    if (discard) {
      --open_;
    } else {
      idle_.push_back(std::move(c));
    }
  }
  freed_.notify_one();
}

}  // namespace replayd
