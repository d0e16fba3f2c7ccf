#include "server/delivery/sink.h"

#include "absl/strings/str_cat.h"

namespace replayd {

DeliveryResult Sink::Update(const DeliveryRequest& /*request*/,
                            const std::optional<std::string>& /*known_version*/) {
  DeliveryResult result;
  result.kind = DeliveryResult::Kind::kFinal;
  result.error = absl::StrCat("sink ", name(), " has no update path");
  return result;
}

std::string IdempotencyKey(const StoredEvent& event) {
  return absl::StrCat(event.event.source, ":", event.event.event_id);
}

}  // namespace replayd
