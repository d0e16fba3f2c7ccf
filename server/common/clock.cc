#include "server/common/clock.h"

#include <chrono>
#include <thread>

namespace replayd {
namespace {

// How often a wait on a FakeClock looks at the fake time again.
constexpr std::chrono::milliseconds kFakePollStep{1};

}  // namespace

const Clock& SystemClock::Get() {
  static const SystemClock clock;
  return clock;
}

void SystemClock::SleepUntil(absl::Time deadline) const {
  absl::Duration left = deadline - absl::Now();
  if (left > absl::ZeroDuration()) absl::SleepFor(left);
}

void SystemClock::WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                            absl::Time deadline) const {
  // A relative wait runs on the steady clock: a wall-clock step does not
  // stretch or cut it.
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return;
  cv.wait_for(lock, absl::ToChronoNanoseconds(left));
}

bool FakeClock::Reached(absl::Time deadline) const {
  std::lock_guard lock(mu_);
  if (auto_advance_ && now_ < deadline) now_ = deadline;
  return now_ >= deadline;
}

void FakeClock::SleepUntil(absl::Time deadline) const {
  while (!Reached(deadline)) std::this_thread::sleep_for(kFakePollStep);
}

void FakeClock::WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                          absl::Time deadline) const {
  if (Reached(deadline)) return;
  cv.wait_for(lock, kFakePollStep);
}

}  // namespace replayd
