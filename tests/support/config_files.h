// Configuration files for the config tests: each written where only its own
// test reads it, and loaded expecting rejection.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/config/config.h"

namespace replayd::testing {

// Writes `text` to a file of the running test's own (CTest runs test cases as
// parallel processes) and returns its path.
inline std::string WriteConfig(const std::string& text) {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string path = absl::StrCat(::testing::TempDir(), "/config_", test->test_suite_name(), "_",
                                  test->name(), "_", getpid(), ".yaml");
  std::ofstream(path) << text;
  return path;
}

// The message LoadConfig rejects `text` with; the test fails unless it is
// rejected as INVALID_ARGUMENT.
inline std::string LoadProblems(const std::string& text) {
  absl::StatusOr<Config> config = LoadConfig(WriteConfig(text), {});
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

// An HTTP sink with only its name and URL set.
inline SinkConfig HttpSink(std::string name, std::string url) {
  SinkConfig sink;
  sink.name = std::move(name);
  sink.url = std::move(url);
  return sink;
}

}  // namespace replayd::testing
