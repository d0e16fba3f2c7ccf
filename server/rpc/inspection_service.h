// gRPC replay.v1.InspectionService: viewer-role calls answered by the Inspector.
#pragma once

#include "replay/v1/inspection.grpc.pb.h"
#include "server/common/auth.h"
#include "server/rpc/inspection.h"

namespace replayd {

class InspectionServiceImpl final : public replay::v1::InspectionService::Service {
 public:
  InspectionServiceImpl(Inspector* inspector, const Authenticator* auth)
      : inspector_(inspector), auth_(auth) {}

  grpc::Status GetTimeline(grpc::ServerContext* context, const replay::v1::TimelineRequest* request,
                           replay::v1::Timeline* response) override;
  grpc::Status GetGaps(grpc::ServerContext* context, const replay::v1::GapsRequest* request,
                       replay::v1::Gaps* response) override;
  grpc::Status GetEventTrace(grpc::ServerContext* context,
                             const replay::v1::EventTraceRequest* request,
                             replay::v1::EventTrace* response) override;

 private:
  Inspector* inspector_;
  const Authenticator* auth_;
};

}  // namespace replayd
