// The bad-input catalogue: one table of wrong requests, files and command
// lines against the real daemon (tokens on), the downstream test server and
// replayctl. Each row is its own test: the answer carries the expected code
// (gRPC status, per-event REJECTED, HTTP status or exit code) and a message
// that says what is wrong; afterwards no table gained or lost a row, the
// downstream saw no call and the daemon still answers.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "replay/v1/ingest.grpc.pb.h"
#include "replay/v1/inspection.grpc.pb.h"
#include "replay/v1/replay.grpc.pb.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/time.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kPublisher[] = "publisher-token-0123456789";
constexpr char kViewer[] = "viewer-token-0123456789";
constexpr char kOperator[] = "operator-token-0123456789";
constexpr int kMaxBatch = 50;
constexpr int kMaxPayload = 4096;

// What the daemon, replayd or replayctl answered: a code ("INVALID_ARGUMENT",
// "REJECTED", "HTTP 400", "exit 2") and the message.
struct Answer {
  std::string code;
  std::string message;
};

// One row of the catalogue.
struct Case {
  std::string name;       // the test's name
  std::string interface;  // grpc, http, config or replayctl
  std::function<Answer()> send;
  std::string code;
  std::string message;  // a substring of the expected message
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.interface << "/" << c.name; }

// The processes shared by every case, made once for the suite.
struct Env {
  testing::ScratchDatabase db;
  testing::DownstreamServer downstream{"idempotent"};
  std::unique_ptr<testing::DaemonProcess> daemon;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::IngestService::Stub> ingest;
  std::unique_ptr<pb::ReplayService::Stub> replay;
  std::unique_ptr<pb::InspectionService::Stub> inspection;
  std::string running_replay;  // active over the last hour on "orders"
  std::string ended_replay;    // completed
  std::string expired_plan;    // saved by a dry run, past replay.plan_ttl
  // Compensation plans of "ledger" (no events; its sink has a lookup), both
  // past replay.plan_ttl: one diffed only, one applied.
  std::string expired_compensation;
  std::string applied_compensation;
  int jobs = 0;  // the jobs ListReplays lists after the set-up
  testing::TempDir files;
};
Env* env = nullptr;

// ---- gRPC --------------------------------------------------------------

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    default: return absl::StrCat("code ", static_cast<int>(code));
  }
}

Answer FromStatus(const grpc::Status& s) { return {CodeName(s.error_code()), s.error_message()}; }

void Authorize(grpc::ClientContext* ctx, const std::string& token) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
}

// A Publish call; a refused call answers its status, an accepted call the
// first event's result (REJECTED and its reason for an invalid event).
Answer SendPublish(const pb::PublishRequest& request, const std::string& token = kPublisher) {
  grpc::ClientContext ctx;
  Authorize(&ctx, token);
  pb::PublishResponse response;
  grpc::Status s = env->ingest->Publish(&ctx, request, &response);
  if (!s.ok() || response.results_size() == 0) return FromStatus(s);
  const pb::EventResult& r = response.results(0);
  return {pb::EventResult::Status_Name(r.status()), r.reason()};
}

pb::Event ValidEvent() {
  pb::Event e;
  e.set_source("orders");
  e.set_event_id("catalogue-1");
  e.set_payload(R"({"n":1})");
  return e;
}

// Publishes one valid event changed by `edit`.
std::function<Answer()> PublishEvent(std::function<void(pb::Event&)> edit) {
  return [edit] {
    pb::PublishRequest request;
    pb::Event* e = request.add_events();
    *e = ValidEvent();
    edit(*e);
    return SendPublish(request);
  };
}

pb::ReplayRequest LastHour() {
  pb::ReplayRequest r;
  *r.mutable_from() = testing::ProtoTime(absl::Now() - absl::Hours(1));
  // Whole seconds: one ahead, so that events published this second are in.
  *r.mutable_to() = testing::ProtoTime(absl::Now() + absl::Seconds(1));
  r.add_sources("orders");
  r.set_reason("bad-input catalogue");
  return r;
}

// One unary call of `method` on `stub` with `token`; its status.
template <typename Stub, typename Request, typename Response>
Answer Call(Stub& stub,
            grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
            const Request& request, const std::string& token) {
  grpc::ClientContext ctx;
  Authorize(&ctx, token);
  Response out;
  return FromStatus((stub.*method)(&ctx, request, &out));
}

// Adds `n` distinct event ids to `r`.
void AddEventIds(pb::ReplayRequest& r, int n) {
  for (int i = 0; i < n; ++i) r.add_event_ids(absl::StrCat("ev-", i));
}

// StartReplay of the last hour changed by `edit`.
std::function<Answer()> StartReplay(std::function<void(pb::ReplayRequest&)> edit,
                                    std::string token = kOperator) {
  return [edit, token] {
    pb::ReplayRequest r = LastHour();
    edit(r);
    return Call(*env->replay, &pb::ReplayService::Stub::StartReplay, r, token);
  };
}

// StartReplay of a saved plan: only its id, changed by `edit`.
std::function<Answer()> StartPlan(std::function<std::string()> id,
                                  std::function<void(pb::ReplayRequest&)> edit = nullptr) {
  return [id, edit] {
    pb::ReplayRequest r;
    r.set_plan_id(id());
    if (edit) edit(r);
    return Call(*env->replay, &pb::ReplayService::Stub::StartReplay, r, std::string(kOperator));
  };
}

std::function<Answer()> DryRun(std::function<void(pb::ReplayRequest&)> edit) {
  return [edit] {
    pb::ReplayRequest r = LastHour();
    edit(r);
    return Call(*env->replay, &pb::ReplayService::Stub::DryRun, r, std::string(kViewer));
  };
}

// CancelReplay of the id `id()` returns (read when the case runs).
std::function<Answer()> Cancel(std::function<std::string()> id, std::string token = kOperator) {
  return [id, token] {
    pb::CancelReplayRequest r;
    r.set_replay_id(id());
    r.set_reason("bad-input catalogue");
    return Call(*env->replay, &pb::ReplayService::Stub::CancelReplay, r, token);
  };
}

std::function<Answer()> Progress(std::string id) {
  return [id] {
    pb::GetProgressRequest r;
    r.set_replay_id(id);
    return Call(*env->replay, &pb::ReplayService::Stub::GetProgress, r, std::string(kViewer));
  };
}

std::function<Answer()> Timeline(std::function<void(pb::TimelineRequest&)> edit,
                                 std::string token = kViewer) {
  return [edit, token] {
    pb::TimelineRequest r;
    edit(r);
    return Call(*env->inspection, &pb::InspectionService::Stub::GetTimeline, r, token);
  };
}

std::function<Answer()> Gaps(std::function<void(pb::GapsRequest&)> edit) {
  return [edit] {
    pb::GapsRequest r;
    edit(r);
    return Call(*env->inspection, &pb::InspectionService::Stub::GetGaps, r, std::string(kViewer));
  };
}

std::function<Answer()> Trace(std::string source, std::string event_id) {
  return [source, event_id] {
    pb::EventTraceRequest r;
    r.set_source(source);
    r.set_event_id(event_id);
    return Call(*env->inspection, &pb::InspectionService::Stub::GetEventTrace, r,
                std::string(kViewer));
  };
}

google::protobuf::Timestamp Ago(absl::Duration d) { return testing::ProtoTime(absl::Now() - d); }

// ---- diff and compensate ------------------------------------------------

// StartDiff of the last hour of "ledger" changed by `edit`.
std::function<Answer()> StartDiff(std::function<void(pb::DiffRequest&)> edit,
                                  std::string token = kViewer) {
  return [edit, token] {
    pb::ReplayRequest hour = LastHour();
    pb::DiffRequest r;
    *r.mutable_from() = hour.from();
    *r.mutable_to() = hour.to();
    r.add_sources("ledger");
    r.set_reason("bad-input catalogue");
    edit(r);
    return Call(*env->replay, &pb::ReplayService::Stub::StartDiff, r, token);
  };
}

std::function<Answer()> ShowCompensation(std::function<std::string()> plan) {
  return [plan] {
    pb::GetCompensationRequest r;
    r.set_plan_id(plan());
    return Call(*env->replay, &pb::ReplayService::Stub::GetCompensation, r, std::string(kViewer));
  };
}

// SetCompensationActions of `plan()`: every diverged entry kept, changed by `edit`.
std::function<Answer()> SetActions(std::function<std::string()> plan,
                                   std::function<void(pb::SetCompensationActionsRequest&)> edit,
                                   std::string token = kOperator) {
  return [plan, edit, token] {
    pb::SetCompensationActionsRequest r;
    r.set_plan_id(plan());
    r.set_diff_class("diverged");
    r.set_action("keep");
    r.set_reason("bad-input catalogue");
    edit(r);
    return Call(*env->replay, &pb::ReplayService::Stub::SetCompensationActions, r, token);
  };
}

std::function<Answer()> Apply(std::function<std::string()> plan,
                              std::function<void(pb::ApplyCompensationRequest&)> edit = nullptr,
                              std::string token = kOperator) {
  return [plan, edit, token] {
    pb::ApplyCompensationRequest r;
    r.set_plan_id(plan());
    r.set_reason("bad-input catalogue");
    if (edit) edit(r);
    return Call(*env->replay, &pb::ReplayService::Stub::ApplyCompensation, r, token);
  };
}

std::function<std::string()> Id(std::string id) {
  return [id] { return id; };
}

// ---- HTTP --------------------------------------------------------------

// A refused request answers its status and "error"; an accepted POST the
// first event's result, like SendPublish.
Answer FromHttp(const httplib::Result& res) {
  if (!res) return {"no answer", httplib::to_string(res.error())};
  json body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (res->status == 200 && body.is_object() && body.contains("results") &&
      !body["results"].empty()) {
    const json& r = body["results"][0];
    return {r.value("status", ""), r.value("reason", "")};
  }
  std::string message = res->body;
  if (body.is_object() && body.contains("error") && body["error"].is_string()) {
    message = body["error"].get<std::string>();
  }
  return {absl::StrCat("HTTP ", res->status), message};
}

httplib::Headers Bearer(const std::string& token) {
  if (token.empty()) return {};
  return {{"Authorization", "Bearer " + token}};
}

std::function<Answer()> PostEvents(std::string body, std::string token = kPublisher,
                                   std::string content_type = "application/json") {
  return [body, token, content_type] {
    httplib::Client http("127.0.0.1", env->daemon->http_port());
    return FromHttp(http.Post("/v1/events", Bearer(token), body, content_type));
  };
}

// POST /v1/events with one event whose JSON is `event`.
std::function<Answer()> PostEvent(std::string event) {
  return PostEvents(absl::StrCat(R"({"events":[)", event, "]}"));
}

std::function<Answer()> GetApi(std::string path, std::string token = kViewer) {
  return [path, token] {
    httplib::Client http("127.0.0.1", env->daemon->http_port());
    return FromHttp(http.Get(path, Bearer(token)));
  };
}

// ---- configuration and replayctl ----------------------------------------

// `replayd check-config` on a file holding `yaml`.
std::function<Answer()> CheckConfig(std::string yaml) {
  return [yaml] {
    static int n = 0;
    std::string path = env->files.File(absl::StrCat("config-", ++n, ".yaml"));
    std::ofstream(path) << yaml;
    // Without the environment's REPLAYD_DATABASE_URL, which would fill the key.
    testing::CommandResult r =
        testing::RunCommand({"/usr/bin/env", "-u", "REPLAYD_DATABASE_URL", testing::kReplaydPath,
                             "check-config", "--config", path});
    return Answer{absl::StrCat("exit ", r.exit_code), r.out + r.err};
  };
}

// A config that check-config accepts, with `more` appended.
std::string ValidConfig(const std::string& more) {
  return absl::StrCat(R"(database_url: postgres://catalogue@127.0.0.1:1/catalogue
sinks:
  - {name: down, url: "http://127.0.0.1:1/records"}
routes:
  - {name: orders, sources: [orders], sink: down}
)",
                      more);
}

// replayctl with `args`; the daemon's address unless `args` name another.
std::function<Answer()> Replayctl(std::vector<std::string> args, std::string token = kOperator) {
  return [args, token] {
    std::map<std::string, std::string> vars = {{"REPLAYCTL_SERVER", env->daemon->grpc_address()}};
    if (!token.empty()) vars["REPLAYCTL_TOKEN"] = token;
    testing::CommandResult r = testing::RunReplayctl(args, vars);
    return Answer{absl::StrCat("exit ", r.exit_code), r.out + r.err};
  };
}

// ---- the catalogue -------------------------------------------------------

std::vector<Case> Catalogue() {
  const std::string long_id(257, 'x');
  const std::string one_event = R"({"source":"orders","event_id":"h1","payload":{"n":1}})";
  std::string too_many = R"({"events":[)";
  for (int i = 0; i <= kMaxBatch; ++i) {
    absl::StrAppend(&too_many, i ? "," : "", R"({"source":"orders","event_id":"m)", i,
                    R"(","payload":1})");
  }
  too_many += "]}";
  pb::PublishRequest over_max = testing::NumberedBatch({.count = kMaxBatch + 1});

  return {
      // Publish: the whole call refused.
      {"PublishEmptyBatch", "grpc", [] { return SendPublish({}); }, "INVALID_ARGUMENT",
       "the batch holds no events"},
      {"PublishTooManyEvents", "grpc", [over_max] { return SendPublish(over_max); },
       "INVALID_ARGUMENT", "over the maximum of 50"},
      {"PublishWithoutToken", "grpc", [] { return SendPublish(testing::NumberedBatch({}), ""); },
       "UNAUTHENTICATED", "missing bearer token"},
      {"PublishUnknownToken", "grpc",
       [] { return SendPublish(testing::NumberedBatch({}), "not-a-token-0123456789"); },
       "UNAUTHENTICATED", "unknown bearer token"},
      {"PublishViewerToken", "grpc",
       [] { return SendPublish(testing::NumberedBatch({}), kViewer); }, "PERMISSION_DENIED",
       "needs publisher"},
      {"PublishOperatorToken", "grpc",
       [] { return SendPublish(testing::NumberedBatch({}), kOperator); }, "PERMISSION_DENIED",
       "needs publisher"},
      // Publish: the event rejected.
      {"PublishEmptySource", "grpc", PublishEvent([](auto& e) { e.set_source(""); }), "REJECTED",
       "source is empty"},
      {"PublishUppercaseSource", "grpc", PublishEvent([](auto& e) { e.set_source("Orders"); }),
       "REJECTED", "does not match [a-z0-9_.-]{1,64}"},
      {"PublishSourceWithSlash", "grpc", PublishEvent([](auto& e) { e.set_source("a/b"); }),
       "REJECTED", "does not match"},
      {"PublishSourceTooLong", "grpc",
       PublishEvent([](auto& e) { e.set_source(std::string(65, 's')); }), "REJECTED",
       "does not match"},
      {"PublishEmptyEventId", "grpc", PublishEvent([](auto& e) { e.set_event_id(""); }), "REJECTED",
       "event_id is empty"},
      {"PublishOversizedEventId", "grpc",
       PublishEvent([long_id](auto& e) { e.set_event_id(long_id); }), "REJECTED",
       "event_id is 257 bytes, over the limit of 256"},
      {"PublishControlCharEventId", "grpc", PublishEvent([](auto& e) { e.set_event_id("a\nb"); }),
       "REJECTED", "event_id contains control characters"},
      {"PublishOversizedKey", "grpc", PublishEvent([long_id](auto& e) { e.set_key(long_id); }),
       "REJECTED", "key is 257 bytes"},
      {"PublishControlCharType", "grpc", PublishEvent([](auto& e) { e.set_type("t\x01"); }),
       "REJECTED", "type contains control characters"},
      {"PublishInvalidJsonPayload", "grpc", PublishEvent([](auto& e) { e.set_payload("{\"n\":"); }),
       "REJECTED", "payload is not valid JSON"},
      {"PublishEmptyPayload", "grpc", PublishEvent([](auto& e) { e.set_payload(""); }), "REJECTED",
       "payload is empty"},
      {"PublishOversizedPayload", "grpc", PublishEvent([](auto& e) {
         e.set_payload(absl::StrCat("\"", std::string(5000, 'p'), "\""));
       }),
       "REJECTED", "over the limit of 4096"},
      {"PublishNulInPayload", "grpc",
       PublishEvent([](auto& e) { e.set_payload(R"({"s":"a\u0000b"})"); }), "REJECTED",
       "jsonb cannot store"},
      {"PublishFutureOccurredAt", "grpc", PublishEvent([](auto& e) {
         *e.mutable_occurred_at() = testing::ProtoTime(absl::Now() + absl::Hours(48));
       }),
       "REJECTED", "is too far in the future"},
      {"PublishOccurredAtBefore1970", "grpc",
       PublishEvent([](auto& e) { e.mutable_occurred_at()->set_seconds(-86400); }), "REJECTED",
       "occurred_at is before 1970"},

      // HTTP POST /v1/events.
      {"PostNotJson", "http", PostEvents("{not json"), "HTTP 400", "body is not valid JSON"},
      {"PostWrongContentType", "http", PostEvents(one_event, kPublisher, "text/plain"), "HTTP 415",
       "Content-Type must be application/json"},
      {"PostArrayBody", "http", PostEvents("[" + one_event + "]"), "HTTP 400",
       R"(body must be {"events": [...]})"},
      {"PostEventsNotArray", "http", PostEvents(R"({"events":{}})"), "HTTP 400",
       R"(body must be {"events": [...]})"},
      {"PostUnknownTopField", "http",
       PostEvents(absl::StrCat(R"({"events":[)", one_event, R"(],"extra":1})")), "HTTP 400",
       R"(unknown field "extra")"},
      {"PostEmptyEvents", "http", PostEvents(R"({"events":[]})"), "HTTP 400",
       "the batch holds no events"},
      {"PostTooManyEvents", "http", PostEvents(too_many), "HTTP 400", "over the maximum of 50"},
      {"PostWithoutToken", "http", PostEvents(R"({"events":[)" + one_event + "]}", ""), "HTTP 401",
       "missing bearer token"},
      {"PostUnknownToken", "http",
       PostEvents(R"({"events":[)" + one_event + "]}", "not-a-token-0123456789"), "HTTP 401",
       "unknown bearer token"},
      {"PostViewerToken", "http", PostEvents(R"({"events":[)" + one_event + "]}", kViewer),
       "HTTP 403", "needs publisher"},
      {"PostUnknownEventField", "http",
       PostEvent(R"({"source":"orders","event_id":"h1","payload":1,"colour":"red"})"), "REJECTED",
       R"(unknown field "colour")"},
      {"PostEventNotObject", "http", PostEvent("42"), "REJECTED", "event is not a JSON object"},
      {"PostSourceNotString", "http", PostEvent(R"({"source":5,"event_id":"h1","payload":1})"),
       "REJECTED", "source must be a string"},
      {"PostSequenceNotInteger", "http",
       PostEvent(R"({"source":"orders","event_id":"h1","sequence":"7","payload":1})"), "REJECTED",
       "sequence must be an integer"},
      {"PostOccurredAtNotRfc3339", "http",
       PostEvent(R"({"source":"orders","event_id":"h1","occurred_at":"yesterday","payload":1})"),
       "REJECTED", "is not RFC 3339"},
      {"PostPayloadMissing", "http", PostEvent(R"({"source":"orders","event_id":"h1"})"),
       "REJECTED", "payload is missing"},
      {"PostBadSource", "http", PostEvent(R"({"source":"no spaces","event_id":"h1","payload":1})"),
       "REJECTED", "does not match"},
      {"PostHugePayload", "http",
       PostEvent(absl::StrCat(R"({"source":"orders","event_id":"h1","payload":")",
                              std::string(100000, 'p'), "\"}")),
       "REJECTED", "over the limit of 4096"},

      // HTTP GET /api/*.
      {"ApiTimelineBadFrom", "http", GetApi("/api/timeline?from=banana"), "HTTP 400",
       "from: invalid time \"banana\""},
      {"ApiTimelineBadTo", "http", GetApi("/api/timeline?to=2026-13-45T00:00:00Z"), "HTTP 400",
       "to: invalid time"},
      {"ApiTimelineInverted", "http", GetApi("/api/timeline?from=-1h&to=-2h"), "HTTP 400",
       "must be after from"},
      {"ApiTimelineBadSource", "http", GetApi("/api/timeline?source=Bad!"), "HTTP 400",
       "does not match"},
      {"ApiTimelineBucketNotInteger", "http", GetApi("/api/timeline?bucket_seconds=ten"),
       "HTTP 400", "bucket_seconds must be an integer"},
      {"ApiTimelineNegativeBucket", "http", GetApi("/api/timeline?bucket_seconds=-5"), "HTTP 400",
       "bucket_seconds must not be negative"},
      {"ApiTimelineTooManyBuckets", "http", GetApi("/api/timeline?from=-30d&bucket_seconds=1"),
       "HTTP 400", "widen the bucket or narrow the window"},
      {"ApiGapsInverted", "http", GetApi("/api/gaps?from=-1h&to=-3h"), "HTTP 400",
       "must be after from"},
      {"ApiTraceWithoutIds", "http", GetApi("/api/trace"), "HTTP 400",
       "source and event_id are both required"},
      {"ApiTimelineWithoutToken", "http", GetApi("/api/timeline", ""), "HTTP 401",
       "missing bearer token"},
      {"ApiTimelinePublisherToken", "http", GetApi("/api/timeline", kPublisher), "HTTP 403",
       "needs viewer"},

      // Replay RPCs.
      {"StartWithoutBounds", "grpc", StartReplay([](auto& r) {
         r.clear_from();
         r.clear_to();
       }),
       "INVALID_ARGUMENT", "from and to are required"},
      {"StartWithoutFrom", "grpc", StartReplay([](auto& r) { r.clear_from(); }), "INVALID_ARGUMENT",
       "from is required"},
      {"StartWithoutTo", "grpc", StartReplay([](auto& r) { r.clear_to(); }), "INVALID_ARGUMENT",
       "to is required"},
      {"StartInvertedWindow", "grpc",
       StartReplay([](auto& r) { std::swap(*r.mutable_from(), *r.mutable_to()); }),
       "INVALID_ARGUMENT", "the window is inverted"},
      {"StartEmptyWindow", "grpc", StartReplay([](auto& r) { *r.mutable_to() = r.from(); }),
       "INVALID_ARGUMENT", "the window is empty"},
      {"StartFutureWindow", "grpc",
       StartReplay([](auto& r) { *r.mutable_to() = Ago(-absl::Hours(2)); }), "INVALID_ARGUMENT",
       "is in the future"},
      {"StartTooWideWindow", "grpc",
       StartReplay([](auto& r) { *r.mutable_from() = Ago(absl::Hours(24 * 30)); }),
       "INVALID_ARGUMENT", "the window is too wide"},
      {"StartRateOverMax", "grpc", StartReplay([](auto& r) {
         r.set_rate(5000);
         r.set_allow_high_rate(true);
       }),
       "INVALID_ARGUMENT", "above the hard cap replay.max_rate"},
      {"StartHighRateWithoutAllow", "grpc", StartReplay([](auto& r) { r.set_rate(500); }),
       "INVALID_ARGUMENT", "set allow_high_rate to confirm"},
      {"StartNegativeRate", "grpc", StartReplay([](auto& r) { r.set_rate(-1); }),
       "INVALID_ARGUMENT", "rate -1 must be positive"},
      {"StartBurstTooSmall", "grpc", StartReplay([](auto& r) {
         r.set_rate(50);
         r.set_burst(1);
       }),
       "INVALID_ARGUMENT", "is below what rate"},
      {"StartBadSource", "grpc", StartReplay([](auto& r) { r.add_sources("Not Valid"); }),
       "INVALID_ARGUMENT", "does not match"},
      {"StartUnknownOutcome", "grpc",
       StartReplay([](auto& r) { r.add_outcomes(static_cast<pb::Outcome>(99)); }),
       "INVALID_ARGUMENT", "is not an outcome"},
      {"StartReasonTooLong", "grpc",
       StartReplay([](auto& r) { r.set_reason(std::string(1001, 'r')); }), "INVALID_ARGUMENT",
       "reason is longer than 1000 bytes"},
      {"StartRequestIdTooLong", "grpc",
       StartReplay([](auto& r) { r.set_request_id(std::string(129, 'q')); }), "INVALID_ARGUMENT",
       "request_id is longer than 128 bytes"},
      {"StartOverlappingRunning", "grpc", StartReplay([](auto&) {}), "FAILED_PRECONDITION",
       "overlaps replay"},
      {"StartTooManyEventIds", "grpc", StartReplay([](auto& r) { AddEventIds(r, 10001); }),
       "INVALID_ARGUMENT", "event_ids lists 10001 values, over the limit of 10000"},
      {"DryRunTooManyEventIds", "grpc", DryRun([](auto& r) { AddEventIds(r, 10001); }),
       "INVALID_ARGUMENT", "event_ids lists 10001 values, over the limit of 10000"},
      {"StartEmptyKey", "grpc", StartReplay([](auto& r) { r.add_keys(""); }), "INVALID_ARGUMENT",
       "keys[0] is empty"},
      {"StartEmptyType", "grpc", StartReplay([](auto& r) { r.add_types(""); }), "INVALID_ARGUMENT",
       "types[0] is empty"},
      {"StartEmptyEventId", "grpc", StartReplay([](auto& r) {
         r.add_event_ids("e1");
         r.add_event_ids("");
       }),
       "INVALID_ARGUMENT", "event_ids[1] is empty"},
      {"StartUnknownSink", "grpc", StartReplay([](auto& r) { r.set_sink("down-v2"); }),
       "INVALID_ARGUMENT", "sink \"down-v2\" is not configured; the configured sinks are: down"},
      {"DryRunUnknownSink", "grpc", DryRun([](auto& r) { r.set_sink("down-v2"); }),
       "INVALID_ARGUMENT", "sink \"down-v2\" is not configured; the configured sinks are: down"},
      {"StartRetryMaxAttemptsZero", "grpc",
       StartReplay([](auto& r) { r.mutable_retry()->set_max_attempts(0); }), "INVALID_ARGUMENT",
       "retry.max_attempts 0 must be between 1 and 100"},
      {"StartRetryNegativeBase", "grpc",
       StartReplay([](auto& r) { r.mutable_retry()->mutable_base()->set_seconds(-1); }),
       "INVALID_ARGUMENT", "retry.base -1s must be between 1ms and 1h"},
      {"StartRetryCapBelowBase", "grpc", StartReplay([](auto& r) {
         r.mutable_retry()->mutable_base()->set_seconds(2);
         r.mutable_retry()->mutable_cap()->set_seconds(1);
       }),
       "INVALID_ARGUMENT", "retry.cap 1s is below retry.base 2s"},
      {"StartAsViewer", "grpc", StartReplay([](auto&) {}, kViewer), "PERMISSION_DENIED",
       "needs operator"},
      {"DryRunInvertedWindow", "grpc",
       DryRun([](auto& r) { std::swap(*r.mutable_from(), *r.mutable_to()); }), "INVALID_ARGUMENT",
       "the window is inverted"},
      {"ProgressUnknownReplay", "grpc", Progress("no-such-replay"), "NOT_FOUND",
       "no replay with id \"no-such-replay\""},
      {"ProgressWithoutId", "grpc", Progress(""), "INVALID_ARGUMENT", "replay_id is required"},
      {"CancelUnknownReplay", "grpc", Cancel([] { return std::string("no-such-replay"); }),
       "NOT_FOUND", "no replay with id"},
      {"CancelEndedReplay", "grpc", Cancel([] { return env->ended_replay; }), "FAILED_PRECONDITION",
       "already ended"},
      {"CancelAsViewer", "grpc", Cancel([] { return env->running_replay; }, kViewer),
       "PERMISSION_DENIED", "needs operator"},
      {"ListReplaysLimitTooHigh", "grpc",
       [] {
         pb::ListReplaysRequest r;
         r.set_limit(5000);
         return Call(*env->replay, &pb::ReplayService::Stub::ListReplays, r, std::string(kViewer));
       },
       "INVALID_ARGUMENT", "limit must be between 0 (default 100) and 1000"},

      // Inspection RPCs.
      {"TimelineInverted", "grpc", Timeline([](auto& r) {
         *r.mutable_from() = Ago(absl::Hours(1));
         *r.mutable_to() = Ago(absl::Hours(2));
       }),
       "INVALID_ARGUMENT", "must be after from"},
      {"TimelineNegativeBucket", "grpc", Timeline([](auto& r) { r.set_bucket_seconds(-1); }),
       "INVALID_ARGUMENT", "bucket_seconds must not be negative"},
      {"TimelineTooManyBuckets", "grpc", Timeline([](auto& r) {
         *r.mutable_from() = Ago(absl::Hours(24 * 30));
         r.set_bucket_seconds(1);
       }),
       "INVALID_ARGUMENT", "widen the bucket or narrow the window"},
      {"TimelineBadSource", "grpc", Timeline([](auto& r) { r.add_sources("UPPER"); }),
       "INVALID_ARGUMENT", "does not match"},
      {"TimelineWithoutToken", "grpc", Timeline([](auto&) {}, ""), "UNAUTHENTICATED",
       "missing bearer token"},
      {"GapsInverted", "grpc", Gaps([](auto& r) {
         *r.mutable_from() = Ago(absl::Minutes(1));
         *r.mutable_to() = Ago(absl::Minutes(2));
       }),
       "INVALID_ARGUMENT", "must be after from"},
      {"TraceUnknownEvent", "grpc", Trace("orders", "never-published"), "NOT_FOUND",
       "event orders/never-published is not in the log"},
      {"TraceWithoutEventId", "grpc", Trace("orders", ""), "INVALID_ARGUMENT",
       "source and event_id are both required"},

      // Configuration files: replayd check-config.
      {"ConfigUnknownKey", "config", CheckConfig(ValidConfig("bogus_key: 1\n")), "exit 2",
       R"(unknown key "bogus_key")"},
      {"ConfigUnknownNestedKey", "config", CheckConfig(ValidConfig("ingest: {max_batchh: 5}\n")),
       "exit 2", R"(ingest: unknown key "max_batchh")"},
      {"ConfigBadDuration", "config", CheckConfig(ValidConfig("shutdown_grace: 5 parsecs\n")),
       "exit 2", R"(shutdown_grace: invalid duration "5 parsecs")"},
      {"ConfigBadSinkUrl", "config",
       CheckConfig("database_url: postgres://u@127.0.0.1:1/d\nsinks:\n  - {name: down, url: "
                   "\"ftp://x\"}\n"),
       "exit 2", R"(url "ftp://x" is not an http(s) URL)"},
      {"ConfigMissingDatabaseUrl", "config", CheckConfig("grpc_listen: 127.0.0.1:0\n"), "exit 2",
       "database_url is empty"},
      {"ConfigDuplicateRoute", "config",
       CheckConfig(ValidConfig("  - {name: orders, sources: [refunds], sink: down}\n")), "exit 2",
       R"(duplicate route name "orders")"},
      {"ConfigSourceInTwoRoutes", "config",
       CheckConfig(ValidConfig("  - {name: again, sources: [orders], sink: down}\n")), "exit 2",
       "is already routed by another route"},
      {"ConfigRouteToUnknownSink", "config",
       CheckConfig(ValidConfig("  - {name: lost, sources: [lost], sink: nowhere}\n")), "exit 2",
       R"(sink "nowhere" is not defined under sinks)"},
      {"ConfigShortToken", "config",
       CheckConfig(ValidConfig("tokens:\n  - {token: short, role: viewer, name: v}\n")), "exit 2",
       "token must be at least 16 characters"},
      {"ConfigBadRole", "config",
       CheckConfig(
           ValidConfig("tokens:\n  - {token: aaaaaaaaaaaaaaaaaaaa, role: admin, name: v}\n")),
       "exit 2", R"(role "admin" must be publisher, viewer or operator)"},
      {"ConfigNotYaml", "config", CheckConfig("database_url: [unclosed\n"), "exit 2",
       "not valid YAML"},
      {"ConfigZeroMaxBatch", "config", CheckConfig(ValidConfig("ingest: {max_batch: 0}\n")),
       "exit 2", "ingest.max_batch must be greater than 0"},
      {"ConfigBadLogLevel", "config", CheckConfig(ValidConfig("log_level: loud\n")), "exit 2",
       R"(log_level "loud" must be trace, debug)"},
      {"ConfigBadListenAddress", "config", CheckConfig(ValidConfig("grpc_listen: nowhere\n")),
       "exit 2", "is not host:port"},
      {"ConfigKeyWithoutCert", "config", CheckConfig(ValidConfig("tls: {key_file: /tmp/k.pem}\n")),
       "exit 2", "tls.cert_file and tls.key_file go together"},
      {"ConfigDefaultRateAboveThreshold", "config",
       CheckConfig(ValidConfig("replay: {default_rate: 500, high_rate_threshold: 100}\n")),
       "exit 2", "replay.default_rate must not exceed replay.high_rate_threshold"},
      {"ConfigFileMissing", "config",
       [] {
         testing::CommandResult r =
             testing::RunReplayd({"check-config", "--config", env->files.File("absent.yaml")});
         return Answer{absl::StrCat("exit ", r.exit_code), r.out + r.err};
       },
       "exit 2", "cannot read config file"},

      // replayctl.
      {"ReplayctlUnknownCommand", "replayctl", Replayctl({"frobnicate"}), "exit 2",
       "not expected: frobnicate"},
      {"ReplayctlNoCommand", "replayctl", Replayctl({}), "exit 2", "a command is required"},
      {"ReplayctlBadTime", "replayctl",
       Replayctl({"dry-run", "--from", "yesterdayish", "--to", "now"}), "exit 2",
       R"(--from: invalid time "yesterdayish")"},
      {"ReplayctlMissingFrom", "replayctl", Replayctl({"dry-run", "--to", "now"}), "exit 2",
       "--from is required"},
      {"ReplayctlMissingTo", "replayctl", Replayctl({"start", "--from", "-1h"}), "exit 2",
       "--to is required"},
      {"ReplayctlBadOutputFormat", "replayctl", Replayctl({"-o", "yaml", "list"}), "exit 2",
       "--output: yaml not in {text,json}"},
      {"ReplayctlUnreachableServer", "replayctl",
       Replayctl({"--server", "127.0.0.1:1", "--timeout", "5", "list"}), "exit 4",
       "UNAVAILABLE: failed to connect"},
      {"ReplayctlUnknownToken", "replayctl", Replayctl({"list"}, "not-a-token-0123456789"),
       "exit 5", "unknown bearer token"},
      // Saved plans: a start of one takes no selection; unknown and expired
      // plans are refused as such.
      {"StartPlanWithSelectionFields", "grpc",
       StartReplay([](pb::ReplayRequest& r) { r.set_plan_id(env->expired_plan); }),
       "INVALID_ARGUMENT", "a plan carries its selection; do not also set from, to, sources"},
      {"StartPlanWithOutcomes", "grpc",
       StartPlan([] { return env->expired_plan; },
                 [](pb::ReplayRequest& r) { r.add_outcomes(pb::FAILED); }),
       "INVALID_ARGUMENT", "do not also set outcomes"},
      {"StartUnknownPlan", "grpc", StartPlan([] { return std::string("pl-0000000000000000"); }),
       "NOT_FOUND", "no plan with id \"pl-0000000000000000\""},
      {"StartExpiredPlan", "grpc", StartPlan([] { return env->expired_plan; }),
       "FAILED_PRECONDITION", "expired at"},
      {"StartWithSavePlan", "grpc",
       StartReplay([](pb::ReplayRequest& r) { r.set_save_plan(true); }), "INVALID_ARGUMENT",
       "save_plan: a plan is saved by a dry run"},
      {"DryRunWithPlanId", "grpc",
       DryRun([](pb::ReplayRequest& r) { r.set_plan_id("pl-0000000000000000"); }),
       "INVALID_ARGUMENT", "plan_id: a dry run does not run a plan"},
      {"ReplayctlStartPlanWithWindow", "replayctl",
       Replayctl({"start", "--plan", "pl-0000000000000000", "--from", "-1h", "--yes"}), "exit 2",
       "--from: the plan carries its selection"},
      {"ReplayctlStartUnknownPlan", "replayctl",
       Replayctl({"start", "--plan", "pl-0000000000000000", "--yes"}), "exit 1",
       "NOT_FOUND: no plan with id"},
      {"ReplayctlShowUnknownPlan", "replayctl",
       Replayctl({"plan", "show", "pl-0000000000000000"}, kViewer), "exit 1",
       "NOT_FOUND: no plan with id"},
      {"ReplayctlInvertedWindow", "replayctl",
       Replayctl({"dry-run", "--from", "-1h", "--to", "-2h"}), "exit 1", "the window is inverted"},
      {"ReplayctlEventIdsFileOverTheLimit", "replayctl",
       [] {
         const std::string path = env->files.File("too-many-ids.txt");
         std::ofstream out(path);
         out << "# one more than a replay may name\n";
         for (int i = 0; i < 10001; ++i) out << "ev-" << i << "\n";
         out.close();
         return Replayctl({"dry-run", "--from", "-1h", "--to", "now", "--event-ids-file", path})();
       },
       "exit 1", "event_ids lists 10001 values, over the limit of 10000"},
      // Diff and compensate.
      {"DiffWithoutBounds", "grpc", StartDiff([](auto& r) {
         r.clear_from();
         r.clear_to();
       }),
       "INVALID_ARGUMENT", "from and to are required"},
      {"DiffInvertedWindow", "grpc",
       StartDiff([](auto& r) { std::swap(*r.mutable_from(), *r.mutable_to()); }),
       "INVALID_ARGUMENT", "the window is inverted"},
      {"DiffTooWideWindow", "grpc",
       StartDiff([](auto& r) { *r.mutable_from() = Ago(absl::Hours(24 * 30)); }),
       "INVALID_ARGUMENT", "the window is too wide"},
      {"DiffRateOverMax", "grpc", StartDiff([](auto& r) {
         r.set_rate(5000);
         r.set_allow_high_rate(true);
       }),
       "INVALID_ARGUMENT", "above the hard cap replay.max_rate"},
      {"DiffSinkWithoutLookup", "grpc", StartDiff([](auto& r) { r.set_sources(0, "orders"); }),
       "FAILED_PRECONDITION", "sink down has none"},
      {"DiffSourceWithoutRoute", "grpc", StartDiff([](auto& r) { r.set_sources(0, "quiet"); }),
       "FAILED_PRECONDITION", "no route, nothing to compare, for source quiet"},
      {"DiffPublisherToken", "grpc", StartDiff([](auto&) {}, kPublisher), "PERMISSION_DENIED",
       "needs viewer"},
      {"ShowUnknownCompensation", "grpc", ShowCompensation(Id("df-00000000000000ff")), "NOT_FOUND",
       "df-00000000000000ff"},
      {"SetUnknownCompensation", "grpc", SetActions(Id("df-00000000000000ff"), [](auto&) {}),
       "NOT_FOUND", "df-00000000000000ff"},
      {"ApplyUnknownCompensation", "grpc", Apply(Id("df-00000000000000ff")), "NOT_FOUND",
       "df-00000000000000ff"},
      {"SetUnknownClass", "grpc",
       SetActions([] { return env->expired_compensation; },
                  [](auto& r) { r.set_diff_class("drifted"); }),
       "INVALID_ARGUMENT", R"(diff_class: "drifted" is not a class of entries)"},
      {"SetMissingUpstreamClass", "grpc",
       SetActions([] { return env->expired_compensation; },
                  [](auto& r) { r.set_diff_class("missing_upstream"); }),
       "INVALID_ARGUMENT", R"(diff_class: "missing_upstream" is not a class of entries)"},
      {"SetUnknownAction", "grpc",
       SetActions([] { return env->expired_compensation; },
                  [](auto& r) { r.set_action("delete"); }),
       "INVALID_ARGUMENT", R"(action: "delete" is not an action)"},
      {"SetOverwriteInSync", "grpc",
       SetActions([] { return env->expired_compensation; },
                  [](auto& r) {
                    r.set_diff_class("in_sync");
                    r.set_action("overwrite");
                  }),
       "INVALID_ARGUMENT", "class in_sync does not allow action overwrite"},
      {"SetOverwriteMissingDownstream", "grpc",
       SetActions([] { return env->expired_compensation; },
                  [](auto& r) {
                    r.set_diff_class("missing_downstream");
                    r.set_action("overwrite");
                  }),
       "INVALID_ARGUMENT", "class missing_downstream does not allow action overwrite"},
      {"SetClassAndEvents", "grpc",
       SetActions([] { return env->expired_compensation; },
                  [](auto& r) {
                    pb::EventRef* e = r.add_events();
                    e->set_source("ledger");
                    e->set_event_id("l-1");
                  }),
       "INVALID_ARGUMENT", "give either a class or events, not both or neither"},
      {"SetWithoutReason", "grpc",
       SetActions([] { return env->expired_compensation; }, [](auto& r) { r.clear_reason(); }),
       "INVALID_ARGUMENT", "reason is required"},
      {"SetByViewer", "grpc",
       SetActions([] { return env->expired_compensation; }, [](auto&) {}, kViewer),
       "PERMISSION_DENIED", "needs operator"},
      {"ApplyByViewer", "grpc", Apply([] { return env->expired_compensation; }, nullptr, kViewer),
       "PERMISSION_DENIED", "needs operator"},
      {"ApplyWithoutReason", "grpc",
       Apply([] { return env->expired_compensation; }, [](auto& r) { r.clear_reason(); }),
       "INVALID_ARGUMENT", "reason is required"},
      {"ApplyExpiredCompensation", "grpc", Apply([] { return env->expired_compensation; }),
       "FAILED_PRECONDITION", "expired at"},
      {"SetAppliedCompensation", "grpc",
       SetActions([] { return env->applied_compensation; }, [](auto&) {}), "FAILED_PRECONDITION",
       "applied"},
      {"ApplyAppliedCompensation", "grpc", Apply([] { return env->applied_compensation; }),
       "FAILED_PRECONDITION", "was already applied by job cp-"},
      {"ReplayctlDiffSinkWithoutLookup", "replayctl",
       Replayctl({"diff", "--from", "-1h", "--to", "now", "--source", "orders"}, kViewer), "exit 1",
       "sink down has none"},
      {"ReplayctlCompensateShowUnknown", "replayctl",
       Replayctl({"compensate", "show", "df-00000000000000ff"}, kViewer), "exit 1",
       "df-00000000000000ff"},
      {"ReplayctlCompensateSetWithoutReason", "replayctl",
       Replayctl({"compensate", "set", "df-00000000000000ff", "--class", "diverged", "--action",
                  "overwrite"}),
       "exit 2", "--reason is required"},
      {"ReplayctlCompensateSetClassAndFile", "replayctl",
       Replayctl({"compensate", "set", "df-00000000000000ff", "--class", "diverged",
                  "--events-file", "/nonexistent/events.csv", "--action", "keep", "--reason", "x"}),
       "exit 2", "excludes"},
      {"ReplayctlCompensateSetBadEventsFile", "replayctl",
       [] {
         const std::string path = env->files.File("events.csv");
         std::ofstream(path) << "# source,event_id\nledger,l-1\nledger l-2\n";
         return Replayctl({"compensate", "set", "df-00000000000000ff", "--events-file", path,
                           "--action", "keep", "--reason", "x"})();
       },
       "exit 2", R"(--events-file: line 3: "ledger l-2" is not source,event_id)"},
      {"ReplayctlCompensateApplyByViewer", "replayctl",
       [] {
         return Replayctl(
             {"compensate", "apply", env->expired_compensation, "--reason", "x", "--yes"},
             kViewer)();
       },
       "exit 5", "needs operator"},
      {"ReplayctlMissingEventIdsFile", "replayctl",
       Replayctl(
           {"dry-run", "--from", "-1h", "--to", "now", "--event-ids-file", "/nonexistent/ids.txt"}),
       "exit 2", "--event-ids-file: cannot read /nonexistent/ids.txt"},
      {"ReplayctlUnknownSink", "replayctl",
       Replayctl({"dry-run", "--from", "-1h", "--to", "now", "--sink", "down-v2"}), "exit 1",
       "the configured sinks are: down"},
      {"ReplayctlMaxAttemptsTooHigh", "replayctl",
       Replayctl({"dry-run", "--from", "-1h", "--to", "now", "--max-attempts", "101"}), "exit 1",
       "retry.max_attempts 101 must be between 1 and 100"},
      {"ReplayctlBadRetryBase", "replayctl",
       Replayctl({"dry-run", "--from", "-1h", "--to", "now", "--retry-base", "soon"}), "exit 2",
       R"(--retry-base: "soon" is not a duration)"},
  };
}

// Row counts of every table, the downstream's calls, and whether the daemon
// answers: what no bad input may change.
std::map<std::string, int64_t> Footprint() {
  std::map<std::string, int64_t> out;
  for (const char* table : {"events", "event_keys", "delivery_attempts", "replays", "replay_audit",
                            "delivery_claims", "delivery_failed_keys", "replay_plans",
                            "replay_plan_events", "compensation_plans", "compensation_entries"}) {
    out[table] = env->db.QueryInt(absl::StrCat("SELECT count(*) FROM ", table));
  }
  out["downstream calls"] = static_cast<int64_t>(env->downstream.Requests().size());
  return out;
}

class BadInputCatalogue : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    env = new Env;
    env->daemon = std::make_unique<testing::DaemonProcess>(
        env->db.dsn(), absl::StrCat(R"(
delivery: {enabled: false}
ingest: {max_batch: )",
                                    kMaxBatch, ", max_payload_bytes: ", kMaxPayload, R"(}
replay: {default_rate: 10, high_rate_threshold: 100, max_rate: 1000, max_window: 7d,
         plan_ttl: 1s}
sinks:
  - name: down
    url: )",
                                    env->downstream.records_url(), R"(
    replay_rate_budget: 1000
  - name: looked
    url: )",
                                    env->downstream.records_url(), R"(
    lookup_url: )",
                                    env->downstream.lookup_url(), R"(
    replay_rate_budget: 1000
routes:
  - {name: orders, sources: [orders], sink: down}
  - {name: ledger, sources: [ledger], sink: looked}
tokens:
  - {token: ")",
                                    kPublisher, R"(", role: publisher, name: upstream}
  - {token: ")",
                                    kViewer, R"(", role: viewer, name: victor}
  - {token: ")",
                                    kOperator, R"(", role: operator, name: alice}
)"));
    env->daemon->Start();
    env->channel =
        grpc::CreateChannel(env->daemon->grpc_address(), grpc::InsecureChannelCredentials());
    env->ingest = pb::IngestService::NewStub(env->channel);
    env->replay = pb::ReplayService::NewStub(env->channel);
    env->inspection = pb::InspectionService::NewStub(env->channel);

    // An ended replay (a source without events completes at once), then one
    // that stays active: three events at one per 1000 s.
    env->ended_replay = StartForSetUp([](pb::ReplayRequest& r) { r.set_sources(0, "quiet"); });
    ASSERT_TRUE(testing::PollUntil([] { return State(env->ended_replay) == pb::REPLAY_COMPLETED; },
                                   absl::Seconds(30)));
    testing::PublishAccepted(env->daemon->grpc_address(), testing::NumberedBatch({.count = 3}),
                             {.token = kPublisher});
    env->running_replay = StartForSetUp([](pb::ReplayRequest& r) { r.set_rate(0.001); });
    ASSERT_TRUE(testing::PollUntil([] { return State(env->running_replay) == pb::REPLAY_RUNNING; },
                                   absl::Seconds(30)))
        << pb::ReplayState_Name(State(env->running_replay)) << "\n"
        << env->daemon->log();
    // The bucket's first token is spent at once; the next is 1000 s away.
    ASSERT_TRUE(
        testing::PollUntil([] { return !env->downstream.Requests().empty(); }, absl::Seconds(30)));
    // A plan that expires a second after it is saved.
    pb::ReplayRequest save = LastHour();
    save.set_save_plan(true);
    grpc::ClientContext ctx;
    Authorize(&ctx, kViewer);
    pb::DryRunReport report;
    ASSERT_TRUE(env->replay->DryRun(&ctx, save, &report).ok());
    env->expired_plan = report.plan_id();
    // Two diffs of "ledger", which has no events: they end at once, and
    // the second plan is applied (its apply ends at once too).
    env->expired_compensation = DiffForSetUp();
    env->applied_compensation = DiffForSetUp();
    ApplyForSetUp(env->applied_compensation);
    absl::SleepFor(absl::Milliseconds(1100));
    grpc::ClientContext list;
    Authorize(&list, kViewer);
    pb::ListReplaysResponse jobs;
    ASSERT_TRUE(env->replay->ListReplays(&list, {}, &jobs).ok());
    env->jobs = jobs.replays_size();
  }

  static void TearDownTestSuite() {
    delete env;
    env = nullptr;
  }

  static std::string StartForSetUp(const std::function<void(pb::ReplayRequest&)>& edit) {
    pb::ReplayRequest r = LastHour();
    edit(r);
    grpc::ClientContext ctx;
    Authorize(&ctx, kOperator);
    pb::ReplayProgress out;
    grpc::Status s = env->replay->StartReplay(&ctx, r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out.replay_id();
  }

  // A diff of "ledger" over the last hour, once it has completed.
  static std::string DiffForSetUp() {
    pb::DiffRequest r;
    pb::ReplayRequest hour = LastHour();
    *r.mutable_from() = hour.from();
    *r.mutable_to() = hour.to();
    r.add_sources("ledger");
    grpc::ClientContext ctx;
    Authorize(&ctx, kViewer);
    pb::ReplayProgress out;
    return Completed(env->replay->StartDiff(&ctx, r, &out), out);
  }

  // The apply job of `plan`, once it has completed.
  static std::string ApplyForSetUp(const std::string& plan) {
    pb::ApplyCompensationRequest r;
    r.set_plan_id(plan);
    r.set_reason("set-up");
    grpc::ClientContext ctx;
    Authorize(&ctx, kOperator);
    pb::ReplayProgress out;
    return Completed(env->replay->ApplyCompensation(&ctx, r, &out), out);
  }

  // The id of the job `started` created, once it has completed.
  static std::string Completed(const grpc::Status& started, const pb::ReplayProgress& job) {
    EXPECT_TRUE(started.ok()) << started.error_message();
    EXPECT_TRUE(testing::PollUntil([&] { return State(job.replay_id()) == pb::REPLAY_COMPLETED; },
                                   absl::Seconds(30)))
        << env->daemon->log();
    return job.replay_id();
  }

  static pb::ReplayState State(const std::string& id) {
    grpc::ClientContext ctx;
    Authorize(&ctx, kViewer);
    pb::GetProgressRequest request;
    request.set_replay_id(id);
    pb::ReplayProgress out;
    if (!env->replay->GetProgress(&ctx, request, &out).ok()) return pb::REPLAY_STATE_UNSPECIFIED;
    return out.state();
  }

  static bool DaemonAnswers() {
    grpc::ClientContext ctx;
    Authorize(&ctx, kViewer);
    pb::ListReplaysResponse out;
    return env->daemon->Running() && env->replay->ListReplays(&ctx, {}, &out).ok() &&
           out.replays_size() == env->jobs;
  }
};

TEST_P(BadInputCatalogue, RefusedClearlyAndNothingChanged) {
  ASSERT_NE(env, nullptr);
  ASSERT_FALSE(env->running_replay.empty());
  const Case& c = GetParam();
  const auto before = Footprint();

  Answer answer = c.send();

  EXPECT_EQ(answer.code, c.code) << answer.message;
  EXPECT_THAT(answer.message, HasSubstr(c.message)) << answer.code;
  for (const char* secret : {kPublisher, kViewer, kOperator}) {
    EXPECT_THAT(answer.message, ::testing::Not(HasSubstr(secret)));
  }
  EXPECT_EQ(Footprint(), before);
  EXPECT_TRUE(DaemonAnswers());
  EXPECT_EQ(State(env->running_replay), pb::REPLAY_RUNNING);
}

INSTANTIATE_TEST_SUITE_P(Catalogue, BadInputCatalogue, ::testing::ValuesIn(Catalogue()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

TEST(BadInputCatalogueSize, AtLeastSixtyDistinctCases) {
  std::set<std::string> names;
  std::set<std::string> interfaces;
  for (const Case& c : Catalogue()) {
    names.insert(c.name);
    interfaces.insert(c.interface);
  }
  EXPECT_EQ(names.size(), Catalogue().size());
  EXPECT_GE(names.size(), 60u);
  EXPECT_EQ(interfaces, (std::set<std::string>{"config", "grpc", "http", "replayctl"}));
}

}  // namespace
}  // namespace replayd
