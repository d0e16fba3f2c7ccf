#include "server/http/http_errors.h"

#include <httplib.h>

#include "nlohmann/json.hpp"
#include "server/common/client_errors.h"

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
  // Messages may echo the request's bytes, which need not be UTF-8: those
  // become U+FFFD instead of failing the serializer.
  nlohmann::json body = {{"error", ClientMessage(s, "HTTP request")}};
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

}  // namespace replayd
