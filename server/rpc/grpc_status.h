// The one place absl::Status becomes grpc::Status.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "server/common/auth.h"

namespace replayd {

// The code is kept; the message is ClientMessage's (see client_errors.h).
grpc::Status ToGrpcStatus(const absl::Status& status);

// Authorizes the call from its "authorization" metadata.
absl::StatusOr<Principal> AuthorizeCall(const Authenticator& auth,
                                        const grpc::ServerContext& context, Role needed);

}  // namespace replayd
