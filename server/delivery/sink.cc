#include "server/delivery/sink.h"

#include "absl/strings/str_cat.h"

namespace replayd {

std::string IdempotencyKey(const StoredEvent& event) {
  return absl::StrCat(event.event.source, ":", event.event.event_id);
}

}  // namespace replayd
