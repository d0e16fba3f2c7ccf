#include "server/rpc/audit_service.h"

#include "server/common/logging.h"
#include "server/rpc/grpc_status.h"
#include "server/rpc/proto_convert.h"

namespace replayd {
namespace {

namespace pb = replay::v1;

absl::StatusOr<AuditQuery> FromProto(const pb::ListAuditRequest& r) {
  if (r.limit() < 0) return absl::InvalidArgumentError("limit must not be negative");
  if (r.before_id() < 0) return absl::InvalidArgumentError("before_id must not be negative");
  AuditQuery q;
  q.replay_id = r.replay_id();
  if (r.has_since()) q.since = proto_convert::FromProto(r.since());
  q.before_id = r.before_id();
  q.limit = r.limit();
  return q;
}

void ToProto(const AuditEntry& e, pb::AuditEntry* out) {
  out->set_id(e.id);
  proto_convert::ToProto(e.at, out->mutable_at());
  out->set_actor(e.actor);
  out->set_action(e.action);
  out->set_replay_id(e.replay_id);
  out->set_reason(e.reason);
  out->set_detail_json(e.detail_json);
}

}  // namespace

grpc::Status AuditServiceImpl::ListAudit(grpc::ServerContext* context,
                                         const pb::ListAuditRequest* request,
                                         pb::ListAuditResponse* response) {
  auto principal = AuthorizeCall(*auth_, *context, Role::kViewer);
  if (!principal.ok()) return ToGrpcStatus(principal.status());
  try {
    auto query = FromProto(*request);
    if (!query.ok()) return ToGrpcStatus(query.status());
    auto entries = store_->ListAudit(*query);
    if (!entries.ok()) return ToGrpcStatus(entries.status());
    for (const AuditEntry& e : *entries) ToProto(e, response->add_entries());
    // A full page may have an older one; a short page is the last.
    if (!entries->empty() && static_cast<int>(entries->size()) == query->PageSize()) {
      response->set_next_before_id(entries->back().id);
    }
    return grpc::Status::OK;
  } catch (const std::exception& e) {
    Logger("rpc")->error("audit: {}", e.what());
    return grpc::Status(grpc::StatusCode::INTERNAL, "internal error");
  }
}

}  // namespace replayd
