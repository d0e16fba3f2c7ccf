// IngestService/Publish without gRPC or a database: a serialized
// PublishRequest, converted as the service converts it, through the ingester.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "replay/v1/ingest.pb.h"
#include "server/rpc/proto_convert.h"
#include "tests/fuzz/ingest_check.h"

// Protobuf logs every string field that is not UTF-8; the parse failing is
// what matters here, and the log would slow the run down.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace replayd;
  replay::v1::PublishRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  std::vector<NewEvent> events;
  for (const auto& e : request.events()) events.push_back(proto_convert::FromProto(e));
  fuzz::IngestAndCheck(events);
  return 0;
}
