// google.protobuf.Timestamp <-> absl::Time and google.protobuf.Duration <->
// absl::Duration for replayctl's commands.
#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace replayd::replayctl {

// Microsecond precision (the log's), correct before 1970 too.
inline void ToTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  int64_t us = absl::ToUnixMicros(t);
  int64_t seconds = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>((us - seconds * 1000000) * 1000));
}

inline absl::Time FromTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

inline void ToDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

inline absl::Duration FromDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace replayd::replayctl
