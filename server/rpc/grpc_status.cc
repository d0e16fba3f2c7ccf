#include "server/rpc/grpc_status.h"

#include "server/common/client_errors.h"

namespace replayd {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      ClientMessage(status, "gRPC call"));
}

absl::StatusOr<Principal> AuthorizeCall(const Authenticator& auth,
                                        const grpc::ServerContext& context, Role needed) {
  std::string_view header;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    header = std::string_view(it->second.data(), it->second.size());
  }
  return auth.Authorize(header, needed);
}

}  // namespace replayd
