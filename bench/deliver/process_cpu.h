// CPU time of the calling process, for the deliver bench's tools.
#pragma once

#include <sys/resource.h>

namespace replayd::bench {

// User + system seconds this process has used so far.
inline double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

}  // namespace replayd::bench
