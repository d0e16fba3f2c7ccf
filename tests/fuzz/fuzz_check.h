// What the fuzz targets share: a check that stops the run with a message (a
// finding for libFuzzer) and the fixed "now" of every target.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/time/time.h"

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

namespace replayd::fuzz {

// 2026-11-22T03:00:00Z.
inline absl::Time Now() { return absl::FromUnixSeconds(1795316400); }

}  // namespace replayd::fuzz
