// Publish requests for tests that talk to a real replayd over gRPC, and the
// calls that send them.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "replay/v1/ingest.grpc.pb.h"

namespace replayd::testing {

// Events of one source numbered `first` to `first + count - 1`: the i-th has
// event id `prefix`i and payload {"n":i}, key "k<i % keys>" when `keys` is
// set, and sequence i when `sequence` is.
struct NumberedEvents {
  std::string source = "orders";
  std::string prefix = "e";
  int first = 0;
  int count = 1;
  int keys = 0;
  bool sequence = false;
};

inline replay::v1::PublishRequest NumberedBatch(const NumberedEvents& events) {
  replay::v1::PublishRequest request;
  for (int i = events.first; i < events.first + events.count; ++i) {
    auto* e = request.add_events();
    e->set_source(events.source);
    e->set_event_id(absl::StrCat(events.prefix, i));
    if (events.keys > 0) e->set_key(absl::StrCat("k", i % events.keys));
    if (events.sequence) e->set_sequence(i);
    e->set_payload(absl::StrCat(R"({"n":)", i, "}"));
  }
  return request;
}

// One event of `source` per (event id, key) pair, in order: no key where it
// is empty, payload {"n":i} for the i-th.
inline replay::v1::PublishRequest KeyedBatch(
    const std::string& source, const std::vector<std::pair<std::string, std::string>>& ids_keys) {
  replay::v1::PublishRequest request;
  for (size_t i = 0; i < ids_keys.size(); ++i) {
    auto* e = request.add_events();
    e->set_source(source);
    e->set_event_id(ids_keys[i].first);
    if (!ids_keys[i].second.empty()) e->set_key(ids_keys[i].second);
    e->set_payload(absl::StrCat(R"({"n":)", i, "}"));
  }
  return request;
}

inline std::unique_ptr<replay::v1::IngestService::Stub> IngestStub(const std::string& address) {
  return replay::v1::IngestService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

struct PublishOptions {
  // Sent as "authorization: Bearer <token>" when set.
  std::string token = "";
  // No deadline when infinite.
  absl::Duration timeout = absl::InfiniteDuration();
  // PublishAccepted sends the request in pieces of at most this many events
  // (all at once when 0).
  int batch = 0;
};

// One Publish call; its status, and the per-event results in `response`.
inline grpc::Status Publish(replay::v1::IngestService::Stub& stub,
                            const replay::v1::PublishRequest& request,
                            replay::v1::PublishResponse* response,
                            const PublishOptions& options = {}) {
  grpc::ClientContext ctx;
  if (options.timeout != absl::InfiniteDuration()) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options.timeout));
  }
  if (!options.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options.token);
  return stub.Publish(&ctx, request, response);
}

// Publishes `request` to the daemon at `address`; fails the test (fatally)
// unless every call succeeds and every event comes back ACCEPTED.
inline void PublishAccepted(const std::string& address, const replay::v1::PublishRequest& request,
                            const PublishOptions& options = {}) {
  auto stub = IngestStub(address);
  const int size = request.events_size();
  const int batch = options.batch > 0 ? options.batch : std::max(size, 1);
  for (int start = 0; start < size; start += batch) {
    replay::v1::PublishRequest piece;
    for (int i = start; i < std::min(size, start + batch); ++i) {
      *piece.add_events() = request.events(i);
    }
    replay::v1::PublishResponse response;
    grpc::Status s = Publish(*stub, piece, &response, options);
    ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
    for (const auto& r : response.results()) {
      ASSERT_EQ(r.status(), replay::v1::EventResult::ACCEPTED) << r.DebugString();
    }
  }
}

}  // namespace replayd::testing
