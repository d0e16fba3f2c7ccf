#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>

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

TEST(ValidateEvent, InvalidUtf8SourceIsEchoedEscaped) {
  NewEvent e = Good();
  e.source = "ord\xc3(ers";
  EXPECT_EQ(Reason(e), "source \"ord\\xc3(ers\" does not match [a-z0-9_.-]{1,64}");
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

TEST(JsonNestingDepth, CountsContainersOutsideStrings) {
  EXPECT_EQ(JsonNestingDepth("1", 10), 0);
  EXPECT_EQ(JsonNestingDepth("{}", 10), 1);
  EXPECT_EQ(JsonNestingDepth(R"({"a": [1, {"b": []}], "c": {}})", 10), 4);
  EXPECT_EQ(JsonNestingDepth(R"(["[[[[", "\"[[[", "\\\\", {"k]": 1}])", 10), 2);
  EXPECT_EQ(JsonNestingDepth(std::string(1000, '['), 10), 11);  // stops past the limit
}

TEST(ValidateEvent, PayloadDepthUpToTheMaximum) {
  NewEvent e = Good();
  e.payload = std::string(kMaxPayloadDepth, '[') + std::string(kMaxPayloadDepth, ']');
  EXPECT_TRUE(ValidateEvent(e, {}, kNow).ok());
  e.payload = "[" + e.payload + "]";
  EXPECT_EQ(Reason(e), "payload nests deeper than the maximum of 100 levels");
  e.payload = std::string(70000, '[') + std::string(70000, ']');
  EXPECT_EQ(Reason(e), "payload nests deeper than the maximum of 100 levels");
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
  EXPECT_THAT(std::string(ValidateBatchSize(4, limits).message()),
              HasSubstr("over the maximum of 3"));
  EXPECT_TRUE(ValidateBatchSize(3, limits).ok());
}

// An in-memory EventStore: enough to test the ingester's own decisions. Like
// the real one, it refuses a whole batch (and stores nothing) when `refuses`
// says one of its events holds a value the database does not take.
class FakeEventStore : public EventStore {
 public:
  absl::StatusOr<std::vector<bool>> Append(absl::Time,
                                           const std::vector<NewEvent>& events) override {
    if (!available) return absl::UnavailableError("database down");
    batch_sizes.push_back(events.size());
    for (const auto& e : events) {
      if (refuses && refuses(e)) {
        return absl::InvalidArgumentError(
            "ingest_copy: ERROR:  invalid input syntax for type json\nCONTEXT:  COPY events, line "
            "1");
      }
    }
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
  std::vector<size_t> batch_sizes;  // of every Append call, refused ones too
  bool available = true;
  std::function<bool(const NewEvent&)> refuses;
};

NewEvent WithPayload(const std::string& id, const std::string& payload) {
  NewEvent e = Good();
  e.event_id = id;
  e.payload = payload;
  return e;
}

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

TEST(Ingester, BatchRefusedForOnePayloadStoresTheRestAndNamesTheBadOne) {
  FakeEventStore store;
  store.refuses = [](const NewEvent& e) { return !ValidatePayloadJson(e).ok(); };  // as jsonb
  FakeClock clock(kNow);
  Ingester ingester(&store, &clock, {});
  std::vector<NewEvent> batch = {WithPayload("a", "{}"), WithPayload("b", "[1]"),
                                 WithPayload("c", "{\"broken\": "), WithPayload("d", "2"),
                                 WithPayload("e", "\"text\"")};
  auto results = ingester.Ingest(batch);
  ASSERT_TRUE(results.ok()) << results.status();
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_EQ((*results)[i].status,
              i == 2 ? IngestResult::Status::kRejected : IngestResult::Status::kAccepted)
        << i;
  }
  EXPECT_EQ((*results)[2].reason, "payload is not valid JSON");
  EXPECT_EQ(store.keys, (std::set<std::string>{"orders/a", "orders/b", "orders/d", "orders/e"}));
  // The whole batch (refused), the four that parse, the bad one alone (refused).
  EXPECT_THAT(store.batch_sizes, ::testing::ElementsAre(5u, 4u, 1u));
}

TEST(Ingester, TheDatabaseHasTheLastWordOnEachPayload) {
  // 1e400 is beyond double range: the parser here refuses it, jsonb stores it.
  ASSERT_FALSE(ValidatePayloadJson(WithPayload("x", R"({"n": 1e400})")).ok());
  FakeEventStore store;
  store.refuses = [](const NewEvent& e) {
    return e.payload == "{\"broken\": " || e.payload == R"({"db": "no"})";
  };
  FakeClock clock(kNow);
  Ingester ingester(&store, &clock, {});
  std::vector<NewEvent> batch = {
      WithPayload("big", R"({"n": 1e400})"), WithPayload("broken", "{\"broken\": "),
      WithPayload("db-no", R"({"db": "no"})"), WithPayload("fine", R"({"n": 1})")};
  auto results = ingester.Ingest(batch);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].status, IngestResult::Status::kAccepted);
  EXPECT_EQ((*results)[1].status, IngestResult::Status::kRejected);
  EXPECT_EQ((*results)[1].reason, "payload is not valid JSON");
  EXPECT_EQ((*results)[2].status, IngestResult::Status::kRejected);
  EXPECT_EQ((*results)[2].reason,
            "refused by the database: ingest_copy: ERROR:  invalid input syntax for type json");
  EXPECT_EQ((*results)[3].status, IngestResult::Status::kAccepted);
  EXPECT_EQ(store.keys, (std::set<std::string>{"orders/big", "orders/fine"}));
  // The first event alone gets the same answer as in the batch.
  store.refuses = nullptr;
  auto alone = ingester.Ingest({WithPayload("big-2", R"({"n": 1e400})")});
  ASSERT_TRUE(alone.ok());
  EXPECT_EQ((*alone)[0].status, IngestResult::Status::kAccepted);
}

TEST(Ingester, AValidBatchGoesToTheStoreOnceWithoutJsonParsing) {
  FakeEventStore store;
  store.refuses = [](const NewEvent&) { return false; };
  FakeClock clock(kNow);
  Ingester ingester(&store, &clock, {});
  auto results = ingester.Ingest({WithPayload("a", "{}"), WithPayload("b", "{not json")});
  ASSERT_TRUE(results.ok());
  // The store (the database) is the judge of JSON syntax: this one took it.
  EXPECT_EQ((*results)[1].status, IngestResult::Status::kAccepted);
  EXPECT_THAT(store.batch_sizes, ::testing::ElementsAre(2u));
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
