#include "server/http/http_errors.h"

#include <httplib.h>

#include "nlohmann/json.hpp"

namespace replayd {

int HttpStatusFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

void SetJsonError(httplib::Response& res, const absl::Status& s) {
  res.status = HttpStatusFor(s);
  res.set_content(nlohmann::json{{"error", std::string(s.message())}}.dump(), "application/json");
}

}  // namespace replayd
