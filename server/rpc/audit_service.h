// gRPC replay.v1.AuditService: the audit trail read from the ReplayStore.
// Viewer role.
#pragma once

#include "replay/v1/replay.grpc.pb.h"
#include "server/common/auth.h"
#include "server/store/replay_store.h"

namespace replayd {

class AuditServiceImpl final : public replay::v1::AuditService::Service {
 public:
  AuditServiceImpl(ReplayStore* store, const Authenticator* auth) : store_(store), auth_(auth) {}

  // INVALID_ARGUMENT for a negative limit or before_id.
  grpc::Status ListAudit(grpc::ServerContext* context, const replay::v1::ListAuditRequest* request,
                         replay::v1::ListAuditResponse* response) override;

 private:
  ReplayStore* store_;
  const Authenticator* auth_;
};

}  // namespace replayd
