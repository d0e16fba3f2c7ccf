// A small C++ client of replay.v1.ReplayService for replayctl and for any
// service that triggers replays programmatically. Errors come back as
// absl::Status with the server's code and message (UNAVAILABLE when the
// server cannot be reached). Thread safe.
//
//   replayd::client::ReplayClient client({.address = "replayd:7070", .token = token});
//   replay::v1::ReplayRequest r;  // from, to, sources, reason, ...
//   auto job = client.StartReplay(r);  // retried safely with one request_id
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "replay/v1/replay.grpc.pb.h"

namespace replayd::client {

struct ClientOptions {
  std::string address = "127.0.0.1:7070";  // host:port
  std::string token;                       // bearer token; empty = none
  bool tls = false;                        // also implied by any of the four below
  std::string ca_file;                     // PEM roots for TLS; empty = the system's
  std::string cert_file;                   // PEM client certificate (mutual TLS); empty = none
  std::string key_file;                    // its private key
  std::string tls_server_name;  // name checked in the server's certificate; empty = the host
  absl::Duration timeout = absl::Seconds(30);  // per unary call
};

// The defaults overridden by REPLAYCTL_SERVER, REPLAYCTL_TOKEN,
// REPLAYCTL_CA_FILE, REPLAYCTL_CERT, REPLAYCTL_KEY and REPLAYCTL_TLS_SERVER_NAME.
ClientOptions OptionsFromEnvironment();

absl::Status FromGrpcStatus(const grpc::Status& status);

class ReplayClient {
 public:
  explicit ReplayClient(ClientOptions options);

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // Adds the bearer token and the deadline to a call.
  void PrepareCall(grpc::ClientContext* context) const;

  absl::StatusOr<replay::v1::DryRunReport> DryRun(const replay::v1::ReplayRequest& request);
  // Fills in a request_id when empty, and retries UNAVAILABLE a few times
  // with it: a start is never doubled.
  absl::StatusOr<replay::v1::ReplayProgress> StartReplay(replay::v1::ReplayRequest request);
  absl::StatusOr<replay::v1::ReplayProgress> GetProgress(const std::string& replay_id);
  // Calls `on_progress` with every update until the job ends; returns the last.
  absl::StatusOr<replay::v1::ReplayProgress> WatchProgress(
      const std::string& replay_id,
      const std::function<void(const replay::v1::ReplayProgress&)>& on_progress);
  absl::StatusOr<replay::v1::ReplayProgress> CancelReplay(const std::string& replay_id,
                                                          const std::string& reason);
  absl::StatusOr<replay::v1::ReplayProgress> PauseReplay(const std::string& replay_id,
                                                         const std::string& reason);
  // `rate` 0 keeps the replay's rate.
  absl::StatusOr<replay::v1::ReplayProgress> ResumeReplay(const std::string& replay_id,
                                                          const std::string& reason, double rate,
                                                          bool allow_high_rate);
  absl::StatusOr<std::vector<replay::v1::ReplayProgress>> ListReplays(
      const std::vector<replay::v1::ReplayState>& states, int limit);
  // A plan saved by DryRun with save_plan.
  absl::StatusOr<replay::v1::Plan> GetPlan(const std::string& plan_id);
  // Calls `on_event` with each of the plan's events as they stream in (no
  // deadline: a plan may hold millions).
  absl::Status ListPlanEvents(const std::string& plan_id,
                              const std::function<void(const replay::v1::PlanEvent&)>& on_event);

  // Diff and compensate. StartDiff and ApplyCompensation fill in a
  // request_id when empty and retry UNAVAILABLE with it, as StartReplay does.
  absl::StatusOr<replay::v1::ReplayProgress> StartDiff(replay::v1::DiffRequest request);
  absl::StatusOr<replay::v1::Compensation> GetCompensation(const std::string& plan_id);
  // Calls `on_entry` with each entry of the plan (of `diff_class`, or all
  // when empty) as they stream in, with no deadline.
  absl::Status ListCompensationEntries(
      const std::string& plan_id, const std::string& diff_class,
      const std::function<void(const replay::v1::CompensationEntry&)>& on_entry);
  absl::StatusOr<replay::v1::SetCompensationActionsResponse> SetCompensationActions(
      const replay::v1::SetCompensationActionsRequest& request);
  absl::StatusOr<replay::v1::ReplayProgress> ApplyCompensation(
      replay::v1::ApplyCompensationRequest request);
  absl::StatusOr<replay::v1::ListCompensationsResponse> ListCompensations(int limit);

 private:
  using Stub = replay::v1::ReplayService::Stub;
  template <typename Request, typename Response>
  using UnaryMethod = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&, Response*);
  template <typename Request, typename Item>
  using StreamMethod = std::unique_ptr<grpc::ClientReader<Item>> (Stub::*)(grpc::ClientContext*,
                                                                           const Request&);

  // One unary call with the token and the deadline; with `attempts` > 1,
  // UNAVAILABLE is retried (only for requests that are safe to repeat).
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(UnaryMethod<Request, Response> method, const Request& request,
                                int attempts = 1);
  // A server stream, read to its end with the token and no deadline.
  template <typename Request, typename Item>
  absl::Status ReadStream(StreamMethod<Request, Item> method, const Request& request,
                          const std::function<void(const Item&)>& on_item);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<replay::v1::ReplayService::Stub> stub_;
};

// A fresh random id for ReplayRequest.request_id.
std::string NewRequestId();

bool IsTerminal(replay::v1::ReplayState state);

}  // namespace replayd::client
