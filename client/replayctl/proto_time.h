// google.protobuf.Timestamp <-> absl::Time for replayctl's commands.
#pragma once

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

}  // namespace replayd::replayctl
