#include "server/common/clock.h"

namespace replayd {

const Clock& SystemClock::Get() {
  static const SystemClock clock;
  return clock;
}

}  // namespace replayd
