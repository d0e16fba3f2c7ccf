#include "server/rpc/inspection_service.h"

#include "server/common/logging.h"
#include "server/rpc/grpc_status.h"

namespace replayd {
namespace {

// Authorizes as viewer, runs `call`, and maps its status; no exception escapes.
template <typename Response, typename Call>
grpc::Status Serve(const Authenticator& auth, const grpc::ServerContext& context,
                   Response* response, Call call) {
  auto principal = AuthorizeCall(auth, context, Role::kViewer);
  if (!principal.ok()) return ToGrpcStatus(principal.status());
  try {
    auto result = call();
    if (!result.ok()) return ToGrpcStatus(result.status());
    *response = std::move(*result);
    return grpc::Status::OK;
  } catch (const std::exception& e) {
    Logger("rpc")->error("inspection: {}", e.what());
    return grpc::Status(grpc::StatusCode::INTERNAL, "internal error");
  }
}

}  // namespace

grpc::Status InspectionServiceImpl::GetTimeline(grpc::ServerContext* context,
                                                const replay::v1::TimelineRequest* request,
                                                replay::v1::Timeline* response) {
  return Serve(*auth_, *context, response, [&] { return inspector_->GetTimeline(*request); });
}

grpc::Status InspectionServiceImpl::GetGaps(grpc::ServerContext* context,
                                            const replay::v1::GapsRequest* request,
                                            replay::v1::Gaps* response) {
  return Serve(*auth_, *context, response, [&] { return inspector_->GetGaps(*request); });
}

grpc::Status InspectionServiceImpl::GetEventTrace(grpc::ServerContext* context,
                                                  const replay::v1::EventTraceRequest* request,
                                                  replay::v1::EventTrace* response) {
  return Serve(*auth_, *context, response, [&] { return inspector_->GetEventTrace(*request); });
}

}  // namespace replayd
