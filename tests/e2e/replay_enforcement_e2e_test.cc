// The replay control plane's server-side rules, through a raw gRPC client (not
// replayctl, so that the CLI cannot hide a server gap): every refused request
// gets the right status code and a message that says what is wrong.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "replay/v1/ingest.grpc.pb.h"
#include "replay/v1/replay.grpc.pb.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/replay_config.h"
#include "tests/support/scratch_database.h"
#include "tests/support/time.h"

namespace replayd {
namespace {

namespace pb = replay::v1;
using ::testing::HasSubstr;

constexpr char kOperator[] = "operator-token-0123456789";
constexpr char kViewer[] = "viewer-token-0123456789";

class ReplayEnforcementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<testing::DaemonProcess>(
        db_.dsn(), testing::ReplayOnlyConfig(ds_.records_url(), absl::StrCat(R"(
tokens:
  - {token: ")", kOperator, R"(", role: operator, name: alice}
  - {token: ")", kViewer, R"(", role: viewer, name: victor}
  - {token: "publisher-token-0123456789", role: publisher, name: upstream}
)")));
    daemon_->Start();
    auto channel = grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials());
    stub_ = pb::ReplayService::NewStub(channel);
    ingest_ = pb::IngestService::NewStub(channel);
  }

  void Publish(int count) {
    pb::PublishResponse resp;
    ASSERT_TRUE(testing::Publish(*ingest_, testing::NumberedBatch({.count = count}), &resp,
                                 {.token = "publisher-token-0123456789"})
                    .ok());
  }

  grpc::Status Start(const pb::ReplayRequest& r, pb::ReplayProgress* out,
                     const char* token = kOperator) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    return stub_->StartReplay(&ctx, r, out);
  }
  grpc::Status DryRun(const pb::ReplayRequest& r, pb::DryRunReport* out,
                      const char* token = kViewer) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    return stub_->DryRun(&ctx, r, out);
  }
  grpc::Status Cancel(const std::string& id, pb::ReplayProgress* out) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kOperator));
    pb::CancelReplayRequest req;
    req.set_replay_id(id);
    req.set_reason("enforcement test");
    return stub_->CancelReplay(&ctx, req, out);
  }

  // A valid request over the last hour.
  pb::ReplayRequest Valid() {
    pb::ReplayRequest r;
    *r.mutable_from() = testing::ProtoTime(absl::Now() - absl::Hours(1));
    *r.mutable_to() = testing::ProtoTime(absl::Now());
    r.add_sources("orders");
    r.set_reason("test");
    return r;
  }

  // Both DryRun and StartReplay refuse `r` with `code` and a message holding `text`.
  void ExpectRefused(const pb::ReplayRequest& r, grpc::StatusCode code, const std::string& text) {
    pb::DryRunReport report;
    grpc::Status s = DryRun(r, &report);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(text));
    pb::ReplayProgress progress;
    s = Start(r, &progress);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(text));
  }

  testing::ScratchDatabase db_;
  testing::DownstreamServer ds_{"idempotent"};
  std::unique_ptr<testing::DaemonProcess> daemon_;
  std::unique_ptr<pb::ReplayService::Stub> stub_;
  std::unique_ptr<pb::IngestService::Stub> ingest_;
};

TEST_F(ReplayEnforcementTest, WindowRules) {
  pb::ReplayRequest r = Valid();
  r.clear_from();
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "from is required");

  r = Valid();
  r.clear_to();
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "to is required");

  r = Valid();
  r.clear_from();
  r.clear_to();
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "explicit time bounds");

  r = Valid();
  *r.mutable_to() = Valid().from();
  *r.mutable_from() = Valid().to();
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "inverted");

  r = Valid();
  *r.mutable_to() = r.from();
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "empty");

  r = Valid();
  *r.mutable_to() = testing::ProtoTime(absl::Now() + absl::Hours(1));
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "in the future");

  r = Valid();
  *r.mutable_from() = testing::ProtoTime(absl::Now() - absl::Hours(24 * 8));
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "replay.max_window 7d");

  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replays"), 0);
}

TEST_F(ReplayEnforcementTest, RateRules) {
  pb::ReplayRequest r = Valid();
  r.set_rate(300);
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "allow_high_rate");

  r.set_allow_high_rate(true);
  r.set_rate(5000);
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "hard cap replay.max_rate 2000/s");

  r.set_rate(-1);
  ExpectRefused(r, grpc::StatusCode::INVALID_ARGUMENT, "rate -1 must be positive");

  // 300/s with the opt-in is accepted; the default is 50/s.
  r.set_rate(300);
  pb::DryRunReport report;
  ASSERT_TRUE(DryRun(r, &report).ok());
  r = Valid();
  ASSERT_TRUE(DryRun(r, &report).ok());
  EXPECT_EQ(report.effective_rate(), 50);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replays"), 0);
}

TEST_F(ReplayEnforcementTest, JobsOverlapCancelAndIdempotency) {
  Publish(20);
  pb::ReplayRequest r = Valid();
  *r.mutable_to() = testing::ProtoTime(absl::Now() + absl::Seconds(1));
  r.set_rate(1);  // 20 events at 1/s: still running during the test
  pb::ReplayProgress a;
  ASSERT_TRUE(Start(r, &a).ok());
  EXPECT_EQ(a.total(), 20);
  EXPECT_EQ(a.created_by(), "alice");

  // A viewer may dry-run but not start.
  pb::ReplayProgress denied;
  EXPECT_EQ(Start(r, &denied, kViewer).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Overlap on the same source, even with a shifted window.
  pb::ReplayRequest overlap = Valid();
  *overlap.mutable_from() = testing::ProtoTime(absl::Now() - absl::Minutes(30));
  pb::ReplayProgress b;
  grpc::Status s = Start(overlap, &b);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr(a.replay_id()));
  // Every source (no sources given) overlaps too.
  overlap.clear_sources();
  EXPECT_EQ(Start(overlap, &b).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // Cancel: unknown, then A, then A again (already ended).
  pb::ReplayProgress c;
  s = Cancel("rp-unknown", &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("rp-unknown"));
  ASSERT_TRUE(Cancel(a.replay_id(), &c).ok());
  EXPECT_EQ(c.state(), pb::REPLAY_CANCELLED);
  EXPECT_LT(c.processed(), 20);
  s = Cancel(a.replay_id(), &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("already ended"));

  // The same request_id twice: the same job, not ALREADY_EXISTS.
  r.set_request_id("retry-me-1");
  r.set_rate(1000);
  r.set_allow_high_rate(true);
  pb::ReplayProgress first, second;
  ASSERT_TRUE(Start(r, &first).ok());
  s = Start(r, &second);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(first.replay_id(), second.replay_id());
  EXPECT_NE(first.replay_id(), a.replay_id());
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM replays"), 2);

  // Every control action is audited with who and why.
  EXPECT_EQ(db_.QueryText(absl::StrCat(
                "SELECT string_agg(action || ':' || actor || ':' || reason, ',' ORDER BY id)"
                " FROM replay_audit WHERE replay_id = '", a.replay_id(), "' AND action IN"
                " ('start', 'cancel')")),
            "start:alice:test,cancel:alice:enforcement test");
}

}  // namespace
}  // namespace replayd
