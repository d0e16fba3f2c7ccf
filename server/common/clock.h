// Injectable time. Production code asks a Clock for the time and waits
// through it; tests hand in a FakeClock, so logic that waits or schedules
// runs in milliseconds without real sleeps.
#pragma once

#include <condition_variable>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace replayd {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // Blocks the calling thread until Now() reaches `deadline`.
  virtual void SleepUntil(absl::Time deadline) const = 0;
  void SleepFor(absl::Duration d) const { SleepUntil(Now() + d); }

  // Waits on `cv` (its mutex held through `lock`) until it is notified or
  // Now() reaches `deadline`. It may return early, like any condition
  // variable wait: callers check their condition again.
  virtual void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                         absl::Time deadline) const = 0;
  void WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
               absl::Duration d) const {
    WaitUntil(cv, lock, Now() + d);
  }
};

class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  void SleepUntil(absl::Time deadline) const override;
  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 absl::Time deadline) const override;
  // The process-wide real clock.
  static const Clock& Get();
};

// A clock that only moves when told to. Thread safe.
//
// Waits on it poll in real steps of a millisecond until the fake time
// reaches their deadline (or, for WaitUntil, the condition variable is
// notified). With auto_advance on, a sleep instead moves the clock to its
// deadline at once, so code paced by sleeps (token buckets, retry delays)
// runs through simulated time without waiting.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time now = absl::FromUnixSeconds(1'700'000'000)) : now_(now) {}

  absl::Time Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void SleepUntil(absl::Time deadline) const override;
  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 absl::Time deadline) const override;

  void Set(absl::Time now) {
    std::lock_guard lock(mu_);
    now_ = now;
  }
  void Advance(absl::Duration d) {
    std::lock_guard lock(mu_);
    now_ += d;
  }
  void set_auto_advance(bool on) {
    std::lock_guard lock(mu_);
    auto_advance_ = on;
  }

 private:
  // Moves the clock forward to `deadline` if auto_advance is on; true when
  // the clock has reached it.
  bool Reached(absl::Time deadline) const;

  mutable std::mutex mu_;
  mutable absl::Time now_;
  bool auto_advance_ = false;
};

}  // namespace replayd
