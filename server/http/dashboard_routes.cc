#include "server/http/dashboard_routes.h"

#include <httplib.h>

#include <chrono>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "replay/v1/replay.grpc.pb.h"
#include "server/common/logging.h"
#include "server/common/time_format.h"
#include "server/http/dashboard_assets.h"
#include "server/http/http_errors.h"
#include "server/rpc/proto_convert.h"

namespace replayd {
namespace {

// Fills the window fields shared by TimelineRequest and GapsRequest.
template <typename Request>
absl::Status WindowFromQuery(const httplib::Request& req, Request* out) {
  absl::Time now = absl::Now();
  for (const char* name : {"from", "to"}) {
    if (!req.has_param(name) || req.get_param_value(name).empty()) continue;
    auto t = ParseTimeArg(req.get_param_value(name), now);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", t.status().message()));
    proto_convert::ToProto(
        *t, std::string_view(name) == "from" ? out->mutable_from() : out->mutable_to());
  }
  if (req.has_param("bucket_seconds") && !req.get_param_value("bucket_seconds").empty()) {
    int64_t seconds = 0;
    if (!absl::SimpleAtoi(req.get_param_value("bucket_seconds"), &seconds)) {
      return absl::InvalidArgumentError("bucket_seconds must be an integer");
    }
    out->set_bucket_seconds(seconds);
  }
  size_t n = req.get_param_value_count("source");
  for (size_t i = 0; i < n; ++i) {
    std::vector<std::string> parts = absl::StrSplit(req.get_param_value("source", i), ',');
    for (const std::string& s : parts) {
      if (!s.empty()) out->add_sources(s);
    }
  }
  return absl::OkStatus();
}

using Handler = std::function<absl::StatusOr<std::string>(const httplib::Request&)>;

// Authorizes as viewer and answers JSON; no exception escapes.
httplib::Server::Handler Api(const Authenticator* auth, Handler handler) {
  return [auth, handler](const httplib::Request& req, httplib::Response& res) {
    auto principal = auth->Authorize(req.get_header_value("Authorization"), Role::kViewer);
    if (!principal.ok()) return SetJsonError(res, principal.status());
    try {
      auto body = handler(req);
      if (!body.ok()) return SetJsonError(res, body.status());
      res.set_header("Cache-Control", "no-store");
      res.set_content(*body, "application/json");
    } catch (const std::exception& e) {
      Logger("http")->error("{}: {}", req.path, e.what());
      SetJsonError(res, absl::InternalError("internal error"));
    }
  };
}

// One call on the daemon's in-process channel as the HTTP caller
// (`authorization` passed on), its answer as JSON; 10 s deadline.
template <typename Response, typename Call>
absl::StatusOr<std::string> CallAsJson(const std::string& authorization, Call call) {
  grpc::ClientContext context;
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  Response response;
  grpc::Status status = call(&context, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  return ToJson(response);
}

// An inspector's answer as JSON, or its error.
template <typename Message>
absl::StatusOr<std::string> AsJson(const absl::StatusOr<Message>& answer) {
  if (!answer.ok()) return answer.status();
  return ToJson(*answer);
}

// GET `path`: one call of `method` on `stub` as the HTTP caller, with the
// request `make` builds from the query (or its error), answered as JSON.
template <typename Stub, typename Request, typename Response, typename Make>
void ServeCall(httplib::Server& server, const Authenticator* auth, const char* path,
               std::shared_ptr<Stub> stub,
               grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
               Make make) {
  server.Get(
      path,
      Api(auth, [stub, method, make](const httplib::Request& req) -> absl::StatusOr<std::string> {
        absl::StatusOr<Request> request = make(req);
        if (!request.ok()) return request.status();
        return CallAsJson<Response>(req.get_header_value("Authorization"),
                                    [&](grpc::ClientContext* context, Response* response) {
                                      return ((*stub).*method)(context, *request, response);
                                    });
      }));
}

void Serve(httplib::Response& res, std::string_view body, const char* type) {
  res.set_header("Cache-Control", "no-cache");
  res.set_content(std::string(body), type);
}

}  // namespace

void RegisterDashboardRoutes(httplib::Server& server, Inspector* inspector,
                             const Authenticator* auth, ListReplaysJson list_replays) {
  auto page = [](const httplib::Request&, httplib::Response& res) {
    Serve(res, kDashboardHtml, "text/html; charset=utf-8");
  };
  server.Get("/", page);
  server.Get("/dashboard", page);
  server.Get("/assets/dashboard.js", [](const httplib::Request&, httplib::Response& res) {
    Serve(res, kDashboardJs, "text/javascript; charset=utf-8");
  });
  server.Get("/assets/dashboard.css", [](const httplib::Request&, httplib::Response& res) {
    Serve(res, kDashboardCss, "text/css; charset=utf-8");
  });

  server.Get("/api/timeline",
             Api(auth, [inspector](const httplib::Request& req) -> absl::StatusOr<std::string> {
               replay::v1::TimelineRequest request;
               if (absl::Status s = WindowFromQuery(req, &request); !s.ok()) return s;
               return AsJson(inspector->GetTimeline(request));
             }));
  server.Get("/api/gaps",
             Api(auth, [inspector](const httplib::Request& req) -> absl::StatusOr<std::string> {
               replay::v1::GapsRequest request;
               if (absl::Status s = WindowFromQuery(req, &request); !s.ok()) return s;
               return AsJson(inspector->GetGaps(request));
             }));
  server.Get("/api/trace",
             Api(auth, [inspector](const httplib::Request& req) -> absl::StatusOr<std::string> {
               replay::v1::EventTraceRequest request;
               request.set_source(req.get_param_value("source"));
               request.set_event_id(req.get_param_value("event_id"));
               return AsJson(inspector->GetEventTrace(request));
             }));
  server.Get("/api/replays",
             Api(auth, [list_replays](const httplib::Request& req) -> absl::StatusOr<std::string> {
               if (!list_replays) return std::string(R"({"replays":[]})");
               return list_replays(req.get_header_value("Authorization"));
             }));
}

ListReplaysJson ListReplaysOverGrpc(std::shared_ptr<grpc::Channel> channel) {
  auto stub =
      std::shared_ptr<replay::v1::ReplayService::Stub>(replay::v1::ReplayService::NewStub(channel));
  return [stub](const std::string& authorization) -> absl::StatusOr<std::string> {
    replay::v1::ListReplaysRequest request;
    request.set_limit(20);
    return CallAsJson<replay::v1::ListReplaysResponse>(
        authorization,
        [&](grpc::ClientContext* context, replay::v1::ListReplaysResponse* response) {
          return stub->ListReplays(context, request, response);
        });
  };
}

void RegisterAuditRoute(httplib::Server& server, const Authenticator* auth,
                        std::shared_ptr<grpc::Channel> channel) {
  ServeCall(
      server, auth, "/api/audit",
      std::shared_ptr<replay::v1::AuditService::Stub>(replay::v1::AuditService::NewStub(channel)),
      &replay::v1::AuditService::Stub::ListAudit,
      [](const httplib::Request& req) -> absl::StatusOr<replay::v1::ListAuditRequest> {
        replay::v1::ListAuditRequest request;
        request.set_replay_id(req.get_param_value("replay"));
        if (req.has_param("since") && !req.get_param_value("since").empty()) {
          auto since = ParseTimeArg(req.get_param_value("since"), absl::Now());
          if (!since.ok())
            return absl::InvalidArgumentError(absl::StrCat("since: ", since.status().message()));
          proto_convert::ToProto(*since, request.mutable_since());
        }
        int limit = 50;
        if (req.has_param("limit") && !absl::SimpleAtoi(req.get_param_value("limit"), &limit)) {
          return absl::InvalidArgumentError("limit must be an integer");
        }
        request.set_limit(limit);
        return request;
      });
}

void RegisterCompensationRoutes(httplib::Server& server, const Authenticator* auth,
                                std::shared_ptr<grpc::Channel> channel) {
  using replay::v1::ReplayService;
  auto stub = std::shared_ptr<ReplayService::Stub>(ReplayService::NewStub(channel));
  ServeCall(server, auth, "/api/compensations", stub, &ReplayService::Stub::ListCompensations,
            [](const httplib::Request&) -> absl::StatusOr<replay::v1::ListCompensationsRequest> {
              replay::v1::ListCompensationsRequest request;
              request.set_limit(20);
              return request;
            });
  ServeCall(server, auth, "/api/compensation", stub, &ReplayService::Stub::GetCompensation,
            [](const httplib::Request& req) -> absl::StatusOr<replay::v1::GetCompensationRequest> {
              replay::v1::GetCompensationRequest request;
              request.set_plan_id(req.get_param_value("plan"));
              return request;
            });
}

}  // namespace replayd
