#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/ingest/ingester.h"
#include "server/ingest/validation.h"

namespace replayd {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'790'000'000);

NewEvent Good() {
  NewEvent e;
  e.source = "orders";
  e.event_id = "evt-1";
  e.payload = R"({"amount": 10})";
  return e;
}

std::string Reason(const NewEvent& e, IngestLimits limits = {}) {
  absl::Status s = ValidateEvent(e, limits, kNow);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  return std::string(s.message());
}

TEST(ValidateEvent, AcceptsAWellFormedEvent) {
  NewEvent e = Good();
  e.sequence = 7;
  e.key = "order-1";
  e.type = "order.created";
  e.occurred_at = kNow - absl::Hours(1);
  EXPECT_TRUE(ValidateEvent(e, {}, kNow).ok());
}

TEST(ValidateEvent, Source) {
  NewEvent e = Good();
  e.source = "";
  EXPECT_THAT(Reason(e), HasSubstr("source is empty"));
  e.source = "Orders";
  EXPECT_THAT(Reason(e), HasSubstr("does not match [a-z0-9_.-]{1,64}"));
  e.source = "orders/eu";
  EXPECT_THAT(Reason(e), HasSubstr("does not match"));
  e.source = std::string(65, 'a');
  EXPECT_THAT(Reason(e), HasSubstr("does not match"));
  e.source = std::string(64, 'a');
  EXPECT_TRUE(ValidateEvent(e, {}, kNow).ok());
  e.source = "a.b_c-9";
  EXPECT_TRUE(ValidateEvent(e, {}, kNow).ok());
}

TEST(ValidateEvent, EventId) {
  NewEvent e = Good();
  e.event_id = "";
  EXPECT_THAT(Reason(e), HasSubstr("event_id is empty"));
  e.event_id = std::string(257, 'x');
  EXPECT_THAT(Reason(e), HasSubstr("event_id is 257 bytes, over the limit of 256"));
  e.event_id = std::string(256, 'x');
  EXPECT_TRUE(ValidateEvent(e, {}, kNow).ok());
  e.event_id = "bad\nid";
  EXPECT_THAT(Reason(e), HasSubstr("event_id contains control characters"));
}

TEST(ValidateEvent, Payload) {
  NewEvent e = Good();
  e.payload = "";
  EXPECT_THAT(Reason(e), HasSubstr("payload is empty"));
  e.payload = "{not json";
  EXPECT_THAT(Reason(e), HasSubstr("payload is not valid JSON"));
  e.payload = R"({"a": "\u0000"})";
  EXPECT_THAT(Reason(e), HasSubstr("\\u0000"));
  IngestLimits small;
  small.max_payload_bytes = 10;
  e.payload = R"({"a": "0123456789"})";
  EXPECT_THAT(Reason(e, small), HasSubstr("over the limit of 10"));
  e.payload = "[1,2]";
  EXPECT_TRUE(ValidateEvent(e, small, kNow).ok());
}

TEST(ValidateEvent, Timestamps) {
  NewEvent e = Good();
  e.occurred_at = kNow + absl::Hours(25);
  EXPECT_THAT(Reason(e), HasSubstr("too far in the future"));
  e.occurred_at = absl::UnixEpoch() - absl::Seconds(1);
  EXPECT_THAT(Reason(e), HasSubstr("before 1970"));
}

TEST(ValidateBatchSize, EmptyAndOversized) {
  IngestLimits limits;
  limits.max_batch = 3;
  EXPECT_EQ(ValidateBatchSize(0, limits).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateBatchSize(4, limits).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ValidateBatchSize(4, limits).message()), HasSubstr("over the maximum of 3"));
  EXPECT_TRUE(ValidateBatchSize(3, limits).ok());
}

// An in-memory EventStore: enough to test the ingester's own decisions.
class FakeEventStore : public EventStore {
 public:
  absl::StatusOr<std::vector<bool>> Append(absl::Time,
                                           const std::vector<NewEvent>& events) override {
    if (!available) return absl::UnavailableError("database down");
    std::vector<bool> out;
    for (const auto& e : events) out.push_back(keys.insert(e.source + "/" + e.event_id).second);
    appended += events.size();
    return out;
  }
  absl::StatusOr<StoredEvent> Find(const std::string&, const std::string&) override {
    return absl::NotFoundError("");
  }
  std::set<std::string> keys;
  size_t appended = 0;
  bool available = true;
};

TEST(Ingester, RejectsBadEventsAndDedupesWithinTheBatch) {
  FakeEventStore store;
  FakeClock clock(kNow);
  Ingester ingester(&store, &clock, {});
  std::vector<NewEvent> batch = {Good(), Good(), Good()};
  batch[1].source = "BAD";
  auto results = ingester.Ingest(batch);
  ASSERT_TRUE(results.ok());
  EXPECT_EQ((*results)[0].status, IngestResult::Status::kAccepted);
  EXPECT_EQ((*results)[1].status, IngestResult::Status::kRejected);
  EXPECT_THAT((*results)[1].reason, HasSubstr("source"));
  EXPECT_EQ((*results)[2].status, IngestResult::Status::kDuplicate);
  EXPECT_EQ(store.appended, 1u);

  auto again = ingester.Ingest({Good()});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].status, IngestResult::Status::kDuplicate);
}

TEST(Ingester, WholeBatchErrors) {
  FakeEventStore store;
  FakeClock clock(kNow);
  Ingester ingester(&store, &clock, {});
  EXPECT_EQ(ingester.Ingest({}).status().code(), absl::StatusCode::kInvalidArgument);
  store.available = false;
  EXPECT_EQ(ingester.Ingest({Good()}).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace replayd
