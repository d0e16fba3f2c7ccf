#include "client/replay_client.h"

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/str_format.h"

namespace replayd::client {

namespace pb = replay::v1;

ClientOptions OptionsFromEnvironment() {
  ClientOptions o;
  if (const char* v = std::getenv("REPLAYCTL_SERVER"); v != nullptr && *v) o.address = v;
  if (const char* v = std::getenv("REPLAYCTL_TOKEN"); v != nullptr && *v) o.token = v;
  if (const char* v = std::getenv("REPLAYCTL_CA_FILE"); v != nullptr && *v) o.ca_file = v;
  if (const char* v = std::getenv("REPLAYCTL_CERT"); v != nullptr && *v) o.cert_file = v;
  if (const char* v = std::getenv("REPLAYCTL_KEY"); v != nullptr && *v) o.key_file = v;
  if (const char* v = std::getenv("REPLAYCTL_TLS_SERVER_NAME"); v != nullptr && *v) {
    o.tls_server_name = v;
  }
  return o;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::string NewRequestId() {
  std::random_device rd;
  return absl::StrFormat("req-%08x%08x%08x", rd(), rd(), rd());
}

bool IsTerminal(pb::ReplayState state) {
  return state == pb::REPLAY_CANCELLED || state == pb::REPLAY_COMPLETED ||
         state == pb::REPLAY_FAILED;
}

namespace {

std::string ReadPem(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

ReplayClient::ReplayClient(ClientOptions options) : options_(std::move(options)) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  grpc::ChannelArguments args;
  // A progress echoes its request, which may list 10,000 event ids: a list
  // of such replays outgrows gRPC's default 4 MB.
  args.SetMaxReceiveMessageSize(64 << 20);
  if (options_.tls || !options_.ca_file.empty() || !options_.cert_file.empty() ||
      !options_.key_file.empty() || !options_.tls_server_name.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadPem(options_.ca_file);
    ssl.pem_cert_chain = ReadPem(options_.cert_file);
    ssl.pem_private_key = ReadPem(options_.key_file);
    creds = grpc::SslCredentials(ssl);
    if (!options_.tls_server_name.empty()) args.SetSslTargetNameOverride(options_.tls_server_name);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  channel_ = grpc::CreateCustomChannel(options_.address, creds, args);
  stub_ = pb::ReplayService::NewStub(channel_);
}

template <typename Request, typename Response>
absl::StatusOr<Response> ReplayClient::Call(UnaryMethod<Request, Response> method,
                                            const Request& request, int attempts) {
  absl::Status last;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500 * attempt));
    grpc::ClientContext ctx;
    PrepareCall(&ctx);
    Response out;
    grpc::Status s = (stub_.get()->*method)(&ctx, request, &out);
    if (s.ok()) return out;
    last = FromGrpcStatus(s);
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  return last;
}

template <typename Request, typename Item>
absl::Status ReplayClient::ReadStream(StreamMethod<Request, Item> method, const Request& request,
                                      const std::function<void(const Item&)>& on_item) {
  grpc::ClientContext ctx;
  if (!options_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.token);
  auto reader = (stub_.get()->*method)(&ctx, request);
  Item item;
  while (reader->Read(&item)) on_item(item);
  return FromGrpcStatus(reader->Finish());
}

void ReplayClient::PrepareCall(grpc::ClientContext* context) const {
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options_.timeout));
}

absl::StatusOr<pb::DryRunReport> ReplayClient::DryRun(const pb::ReplayRequest& request) {
  grpc::ClientContext ctx;
  PrepareCall(&ctx);
  pb::DryRunReport out;
  grpc::Status s = stub_->DryRun(&ctx, request, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

absl::StatusOr<pb::ReplayProgress> ReplayClient::StartReplay(pb::ReplayRequest request) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return Call(&Stub::StartReplay, request, 3);
}

absl::StatusOr<pb::ReplayProgress> ReplayClient::GetProgress(const std::string& replay_id) {
  grpc::ClientContext ctx;
  PrepareCall(&ctx);
  pb::GetProgressRequest req;
  req.set_replay_id(replay_id);
  pb::ReplayProgress out;
  grpc::Status s = stub_->GetProgress(&ctx, req, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

absl::StatusOr<pb::ReplayProgress> ReplayClient::WatchProgress(
    const std::string& replay_id,
    const std::function<void(const pb::ReplayProgress&)>& on_progress) {
  pb::ReplayProgress last;
  bool have = false;
  // A stream ends with the job; a broken stream (daemon restart) is resumed.
  for (int broken = 0; broken < 30;) {
    grpc::ClientContext ctx;
    if (!options_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.token);
    pb::GetProgressRequest req;
    req.set_replay_id(replay_id);
    auto reader = stub_->WatchProgress(&ctx, req);
    pb::ReplayProgress p;
    while (reader->Read(&p)) {
      last = p;
      have = true;
      on_progress(p);
    }
    grpc::Status s = reader->Finish();
    if (have && IsTerminal(last.state())) return last;
    if (!s.ok() && s.error_code() != grpc::StatusCode::UNAVAILABLE) return FromGrpcStatus(s);
    if (s.ok() && have) return last;
    ++broken;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return absl::UnavailableError("lost the progress stream (server unreachable)");
}

absl::StatusOr<pb::ReplayProgress> ReplayClient::CancelReplay(const std::string& replay_id,
                                                              const std::string& reason) {
  grpc::ClientContext ctx;
  PrepareCall(&ctx);
  pb::CancelReplayRequest req;
  req.set_replay_id(replay_id);
  req.set_reason(reason);
  pb::ReplayProgress out;
  grpc::Status s = stub_->CancelReplay(&ctx, req, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

absl::StatusOr<pb::ReplayProgress> ReplayClient::PauseReplay(const std::string& replay_id,
                                                             const std::string& reason) {
  grpc::ClientContext ctx;
  PrepareCall(&ctx);
  pb::PauseReplayRequest req;
  req.set_replay_id(replay_id);
  req.set_reason(reason);
  pb::ReplayProgress out;
  grpc::Status s = stub_->PauseReplay(&ctx, req, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

absl::StatusOr<pb::ReplayProgress> ReplayClient::ResumeReplay(const std::string& replay_id,
                                                              const std::string& reason,
                                                              double rate, bool allow_high_rate) {
  grpc::ClientContext ctx;
  PrepareCall(&ctx);
  pb::ResumeReplayRequest req;
  req.set_replay_id(replay_id);
  req.set_reason(reason);
  req.set_rate(rate);
  req.set_allow_high_rate(allow_high_rate);
  pb::ReplayProgress out;
  grpc::Status s = stub_->ResumeReplay(&ctx, req, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

absl::StatusOr<std::vector<pb::ReplayProgress>> ReplayClient::ListReplays(
    const std::vector<pb::ReplayState>& states, int limit) {
  grpc::ClientContext ctx;
  PrepareCall(&ctx);
  pb::ListReplaysRequest req;
  for (auto s : states) req.add_states(s);
  req.set_limit(limit);
  pb::ListReplaysResponse out;
  grpc::Status s = stub_->ListReplays(&ctx, req, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return std::vector<pb::ReplayProgress>(out.replays().begin(), out.replays().end());
}

absl::StatusOr<pb::Plan> ReplayClient::GetPlan(const std::string& plan_id) {
  grpc::ClientContext ctx;
  PrepareCall(&ctx);
  pb::GetPlanRequest req;
  req.set_plan_id(plan_id);
  pb::Plan out;
  grpc::Status s = stub_->GetPlan(&ctx, req, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

absl::Status ReplayClient::ListPlanEvents(
    const std::string& plan_id, const std::function<void(const pb::PlanEvent&)>& on_event) {
  pb::ListPlanEventsRequest req;
  req.set_plan_id(plan_id);
  return ReadStream(&Stub::ListPlanEvents, req, on_event);
}

absl::StatusOr<pb::ReplayProgress> ReplayClient::StartDiff(pb::DiffRequest request) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return Call(&Stub::StartDiff, request, 3);
}

absl::StatusOr<pb::Compensation> ReplayClient::GetCompensation(const std::string& plan_id) {
  pb::GetCompensationRequest req;
  req.set_plan_id(plan_id);
  return Call(&Stub::GetCompensation, req);
}

absl::Status ReplayClient::ListCompensationEntries(
    const std::string& plan_id, const std::string& diff_class,
    const std::function<void(const pb::CompensationEntry&)>& on_entry) {
  pb::ListCompensationEntriesRequest req;
  req.set_plan_id(plan_id);
  req.set_diff_class(diff_class);
  return ReadStream(&Stub::ListCompensationEntries, req, on_entry);
}

absl::StatusOr<pb::SetCompensationActionsResponse> ReplayClient::SetCompensationActions(
    const pb::SetCompensationActionsRequest& request) {
  return Call(&Stub::SetCompensationActions, request);
}

absl::StatusOr<pb::ReplayProgress> ReplayClient::ApplyCompensation(
    pb::ApplyCompensationRequest request) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return Call(&Stub::ApplyCompensation, request, 3);
}

absl::StatusOr<pb::ListCompensationsResponse> ReplayClient::ListCompensations(int limit) {
  pb::ListCompensationsRequest req;
  req.set_limit(limit);
  return Call(&Stub::ListCompensations, req);
}

}  // namespace replayd::client
