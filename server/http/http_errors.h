// The one mapping from absl::Status to an HTTP error answer, for every route.
#pragma once

#include "absl/status/status.h"

namespace httplib {
struct Response;
}

namespace replayd {

// 400 invalid argument, 401 unauthenticated, 403 permission denied, 404 not
// found, 503 unavailable, 500 otherwise.
int HttpStatusFor(const absl::Status& status);

// Sets the status and a JSON body {"error": "<message>"}, the message being
// ClientMessage's (see client_errors.h) with invalid UTF-8 replaced.
void SetJsonError(httplib::Response& res, const absl::Status& status);

}  // namespace replayd
