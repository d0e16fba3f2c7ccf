// Instants for tests: written as RFC 3339 text, and as the protobuf
// Timestamps the APIs take.
#pragma once

#include <google/protobuf/timestamp.pb.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/time/time.h"

namespace replayd::testing {

// The instant `rfc3339` names (fractions of a second allowed); fails the test
// when it is not RFC 3339.
inline absl::Time At(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) << rfc3339 << ": " << err;
  return t;
}

// `t` in whole seconds, as the replay and inspection requests take it.
inline google::protobuf::Timestamp ProtoTime(absl::Time t) {
  google::protobuf::Timestamp out;
  out.set_seconds(absl::ToUnixSeconds(t));
  return out;
}

}  // namespace replayd::testing
