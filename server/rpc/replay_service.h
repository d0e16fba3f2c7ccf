// gRPC replay.v1.ReplayService: thin handlers over ReplayController
// (conversion, authorization, status mapping). Roles: viewer for DryRun
// (saving a plan too), GetProgress, WatchProgress, ListReplays, GetPlan,
// ListPlanEvents, StartDiff (nothing is sent), GetCompensation,
// ListCompensationEntries and ListCompensations; operator for StartReplay,
// PauseReplay, ResumeReplay, CancelReplay, SetCompensationActions and
// ApplyCompensation.
#pragma once

#include <atomic>

#include "replay/v1/replay.grpc.pb.h"
#include "server/common/auth.h"
#include "server/replay/controller.h"

namespace replayd {

class ReplayServiceImpl final : public replay::v1::ReplayService::Service {
 public:
  ReplayServiceImpl(ReplayController* controller, const Authenticator* auth,
                    absl::Duration watch_interval = absl::Milliseconds(200))
      : controller_(controller), auth_(auth), watch_interval_(watch_interval) {}

  grpc::Status DryRun(grpc::ServerContext* context, const replay::v1::ReplayRequest* request,
                      replay::v1::DryRunReport* response) override;
  grpc::Status StartReplay(grpc::ServerContext* context, const replay::v1::ReplayRequest* request,
                           replay::v1::ReplayProgress* response) override;
  grpc::Status GetProgress(grpc::ServerContext* context,
                           const replay::v1::GetProgressRequest* request,
                           replay::v1::ReplayProgress* response) override;
  grpc::Status WatchProgress(grpc::ServerContext* context,
                             const replay::v1::GetProgressRequest* request,
                             grpc::ServerWriter<replay::v1::ReplayProgress>* writer) override;
  grpc::Status CancelReplay(grpc::ServerContext* context,
                            const replay::v1::CancelReplayRequest* request,
                            replay::v1::ReplayProgress* response) override;
  grpc::Status PauseReplay(grpc::ServerContext* context,
                           const replay::v1::PauseReplayRequest* request,
                           replay::v1::ReplayProgress* response) override;
  grpc::Status ResumeReplay(grpc::ServerContext* context,
                            const replay::v1::ResumeReplayRequest* request,
                            replay::v1::ReplayProgress* response) override;
  grpc::Status ListReplays(grpc::ServerContext* context,
                           const replay::v1::ListReplaysRequest* request,
                           replay::v1::ListReplaysResponse* response) override;

  grpc::Status GetPlan(grpc::ServerContext* context, const replay::v1::GetPlanRequest* request,
                       replay::v1::Plan* response) override;
  grpc::Status ListPlanEvents(grpc::ServerContext* context,
                              const replay::v1::ListPlanEventsRequest* request,
                              grpc::ServerWriter<replay::v1::PlanEvent>* writer) override;

  grpc::Status StartDiff(grpc::ServerContext* context, const replay::v1::DiffRequest* request,
                         replay::v1::ReplayProgress* response) override;
  grpc::Status GetCompensation(grpc::ServerContext* context,
                               const replay::v1::GetCompensationRequest* request,
                               replay::v1::Compensation* response) override;
  grpc::Status ListCompensationEntries(
      grpc::ServerContext* context, const replay::v1::ListCompensationEntriesRequest* request,
      grpc::ServerWriter<replay::v1::CompensationEntry>* writer) override;
  grpc::Status SetCompensationActions(
      grpc::ServerContext* context, const replay::v1::SetCompensationActionsRequest* request,
      replay::v1::SetCompensationActionsResponse* response) override;
  grpc::Status ApplyCompensation(grpc::ServerContext* context,
                                 const replay::v1::ApplyCompensationRequest* request,
                                 replay::v1::ReplayProgress* response) override;
  grpc::Status ListCompensations(grpc::ServerContext* context,
                                 const replay::v1::ListCompensationsRequest* request,
                                 replay::v1::ListCompensationsResponse* response) override;

  // Ends open WatchProgress streams (UNAVAILABLE) so that the server drains fast.
  void Shutdown() { shutting_down_ = true; }

 private:
  // StartReplay of a saved plan (request.plan_id).
  grpc::Status StartPlan(const replay::v1::ReplayRequest& request, const Principal& who,
                         replay::v1::ReplayProgress* response);

  std::atomic<bool> shutting_down_{false};
  ReplayController* controller_;
  const Authenticator* auth_;
  const absl::Duration watch_interval_;
};

}  // namespace replayd
