// gRPC replay.v1.IngestService: converts requests and hands them to the Ingester.
#pragma once

#include "replay/v1/ingest.grpc.pb.h"
#include "server/common/auth.h"
#include "server/ingest/ingester.h"

namespace replayd {

class IngestServiceImpl final : public replay::v1::IngestService::Service {
 public:
  IngestServiceImpl(Ingester* ingester, const Authenticator* auth)
      : ingester_(ingester), auth_(auth) {}

  grpc::Status Publish(grpc::ServerContext* context, const replay::v1::PublishRequest* request,
                       replay::v1::PublishResponse* response) override;

 private:
  Ingester* ingester_;
  const Authenticator* auth_;
};

}  // namespace replayd
