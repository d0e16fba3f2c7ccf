// Fields read and written under the mutex that guards them: the one-line
// accessors of the thread-safe fakes.
#pragma once

#include <mutex>
#include <utility>

namespace replayd::testing {

template <typename T>
T ReadLocked(std::mutex& mu, const T& field) {
  std::lock_guard lock(mu);
  return field;
}

template <typename T>
void WriteLocked(std::mutex& mu, T& field, T value) {
  std::lock_guard lock(mu);
  field = std::move(value);
}

}  // namespace replayd::testing
