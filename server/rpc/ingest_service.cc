#include "server/rpc/ingest_service.h"

#include "server/rpc/grpc_status.h"
#include "server/rpc/proto_convert.h"

namespace replayd {
namespace {

replay::v1::EventResult::Status ToProto(IngestResult::Status s) {
  switch (s) {
    case IngestResult::Status::kAccepted: return replay::v1::EventResult::ACCEPTED;
    case IngestResult::Status::kDuplicate: return replay::v1::EventResult::DUPLICATE;
    case IngestResult::Status::kRejected: return replay::v1::EventResult::REJECTED;
  }
  return replay::v1::EventResult::STATUS_UNSPECIFIED;
}

}  // namespace

grpc::Status IngestServiceImpl::Publish(grpc::ServerContext* context,
                                        const replay::v1::PublishRequest* request,
                                        replay::v1::PublishResponse* response) {
  auto principal = AuthorizeCall(*auth_, *context, Role::kPublisher);
  if (!principal.ok()) return ToGrpcStatus(principal.status());
  std::vector<NewEvent> events;
  events.reserve(request->events_size());
  for (const auto& e : request->events()) events.push_back(proto_convert::FromProto(e));
  auto results = ingester_->Ingest(events);
  if (!results.ok()) return ToGrpcStatus(results.status());
  for (size_t i = 0; i < results->size(); ++i) {
    auto* r = response->add_results();
    r->set_index(static_cast<int32_t>(i));
    r->set_source(events[i].source);
    r->set_event_id(events[i].event_id);
    r->set_status(ToProto((*results)[i].status));
    r->set_reason((*results)[i].reason);
  }
  return grpc::Status::OK;
}

}  // namespace replayd
