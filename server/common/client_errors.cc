#include "server/common/client_errors.h"

#include "server/common/logging.h"

namespace replayd {

std::string ClientMessage(const absl::Status& status, std::string_view where) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      Logger("rpc")->warn("{}: {}", where, status);
      return "service unavailable, retry later (the daemon's log has the details)";
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
      Logger("rpc")->error("{}: {}", where, status);
      return "internal error (the daemon's log has the details)";
    default: return std::string(status.message());
  }
}

}  // namespace replayd
