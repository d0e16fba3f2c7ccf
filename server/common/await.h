// Waiting for a callback-style call: the blocking forms of the asynchronous
// sink, delivery and record calls.
#pragma once

#include <future>
#include <utility>

namespace replayd {

// Calls `start` with a callback taking a T, waits until that callback has
// been called (from any thread; exactly once), and returns what it was given.
// Must not be called on the thread that would run the callback.
template <typename T, typename Start>
T Await(Start&& start) {
  std::promise<T> answer;
  std::future<T> result = answer.get_future();
  std::forward<Start>(start)([&answer](T value) { answer.set_value(std::move(value)); });
  return result.get();
}

}  // namespace replayd
