// The on-call web dashboard on the daemon's HTTP port: the page and its
// assets (compiled into the binary: no CDN, works offline) and the JSON
// endpoints it reads, answered by the same Inspector as the gRPC API.
//
//   GET /                      the dashboard page (also /dashboard)
//   GET /assets/<file>         its CSS and JavaScript
//   GET /api/timeline?from=&to=&bucket_seconds=&source=   replay.v1.Timeline as JSON
//   GET /api/gaps?from=&to=&bucket_seconds=&source=       replay.v1.Gaps as JSON
//   GET /api/trace?source=&event_id=                      replay.v1.EventTrace as JSON
//   GET /api/replays           replay.v1.ListReplaysResponse as JSON
//   GET /api/audit?replay=&since=&limit=                  replay.v1.ListAuditResponse as JSON
//   GET /api/compensations     replay.v1.ListCompensationsResponse as JSON (20 newest plans)
//   GET /api/compensation?plan=                           replay.v1.Compensation as JSON
//                              (one plan with the first samples of each class)
//
// from/to take RFC 3339 or relative times ("-6h", "now"); source repeats or
// is comma-separated. /api routes need the viewer role (Authorization:
// Bearer <token>) when tokens are configured; errors are {"error": "..."}
// with 400, 401, 403, 404 or 503.
#pragma once

#include <functional>
#include <string>

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "server/common/auth.h"
#include "server/rpc/inspection.h"

namespace httplib {
class Server;
}

namespace replayd {

// The replays (newest first) as replay.v1.ListReplaysResponse JSON, asked
// with the caller's Authorization header value.
using ListReplaysJson =
    std::function<absl::StatusOr<std::string>(const std::string& authorization)>;

// ListReplaysJson through ReplayService/ListReplays on `channel` (the daemon's
// in-process channel): the dashboard shows exactly what the API answers.
ListReplaysJson ListReplaysOverGrpc(std::shared_ptr<grpc::Channel> channel);

void RegisterDashboardRoutes(httplib::Server& server, Inspector* inspector,
                             const Authenticator* auth, ListReplaysJson list_replays);

// GET /api/audit through AuditService/ListAudit on `channel` (the daemon's
// in-process channel), 50 entries unless `limit` says otherwise.
void RegisterAuditRoute(httplib::Server& server, const Authenticator* auth,
                        std::shared_ptr<grpc::Channel> channel);

// GET /api/compensations and /api/compensation through ReplayService's
// ListCompensations and GetCompensation on `channel` (the daemon's
// in-process channel).
void RegisterCompensationRoutes(httplib::Server& server, const Authenticator* auth,
                                std::shared_ptr<grpc::Channel> channel);

}  // namespace replayd
