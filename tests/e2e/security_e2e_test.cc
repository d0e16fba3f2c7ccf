// Security on the real daemon: bearer tokens with roles on both APIs, TLS and
// mutual TLS on gRPC with certificates made by openssl for the test.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "replay/v1/ingest.grpc.pb.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"

namespace replayd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kPublisherToken = "publisher-secret-token-1234";
constexpr const char* kViewerToken = "viewer-secret-token-123456";

const char* kTokensYaml = R"(
delivery: {enabled: false}
tokens:
  - {token: publisher-secret-token-1234, role: publisher, name: upstream}
  - {token: viewer-secret-token-123456, role: viewer, name: dashboard}
)";

grpc::Status PublishWith(const std::shared_ptr<grpc::Channel>& channel, const std::string& id,
                         const std::string& token = "") {
  auto stub = replay::v1::IngestService::NewStub(channel);
  replay::v1::PublishResponse response;
  return testing::Publish(*stub, testing::KeyedBatch("orders", {{id, ""}}), &response,
                          {.token = token, .timeout = absl::Seconds(5)});
}

TEST(SecurityE2E, TokensAndRolesOnBothApis) {
  testing::ScratchDatabase db;
  testing::DaemonProcess daemon(db.dsn(), kTokensYaml);
  daemon.Start();
  auto channel = grpc::CreateChannel(daemon.grpc_address(), grpc::InsecureChannelCredentials());

  grpc::Status none = PublishWith(channel, "a");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(none.error_message(), HasSubstr("missing bearer token"));
  EXPECT_EQ(PublishWith(channel, "a", "wrong-token-000000000000").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status viewer = PublishWith(channel, "a", kViewerToken);
  EXPECT_EQ(viewer.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(viewer.error_message(), Not(HasSubstr(kViewerToken)));
  EXPECT_EQ(db.QueryInt("SELECT count(*) FROM events"), 0);
  EXPECT_TRUE(PublishWith(channel, "a", kPublisherToken).ok());

  httplib::Client http("127.0.0.1", daemon.http_port());
  const std::string body = R"({"events":[{"source":"orders","event_id":"h","payload":1}]})";
  auto anonymous = http.Post("/v1/events", body, "application/json");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto as_viewer =
      http.Post("/v1/events", {{"Authorization", std::string("Bearer ") + kViewerToken}}, body,
                "application/json");
  ASSERT_TRUE(as_viewer);
  EXPECT_EQ(as_viewer->status, 403);
  auto as_publisher =
      http.Post("/v1/events", {{"Authorization", std::string("Bearer ") + kPublisherToken}}, body,
                "application/json");
  ASSERT_TRUE(as_publisher);
  EXPECT_EQ(as_publisher->status, 200);
  EXPECT_EQ(db.QueryText("SELECT string_agg(event_id, ',' ORDER BY position) FROM events"), "a,h");

  EXPECT_EQ(daemon.Terminate(), 0);
  EXPECT_THAT(daemon.log(), Not(HasSubstr("secret-token")));
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, by openssl.
void MakeCertificates(const testing::TempDir& dir) {
  auto run = [](const std::string& script) {
    auto r = testing::RunCommand({"/bin/bash", "-ec", script});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  const std::string d = dir.path();
  run("cd " + d + R"(
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca \
      -keyout ca.key -out ca.pem 2>/dev/null
    for who in server client; do
      openssl req -newkey rsa:2048 -nodes -subj /CN=$who -keyout $who.key -out $who.csr 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1\n' > $who.ext
      openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile $who.ext -out $who.pem 2>/dev/null
    done)");
}

TEST(SecurityE2E, MutualTlsOnGrpc) {
  testing::TempDir certs;
  MakeCertificates(certs);
  testing::ScratchDatabase db;
  testing::DaemonProcess daemon(
      db.dsn(), "delivery: {enabled: false}\ntls:\n  cert_file: " + certs.File("server.pem") +
                    "\n  key_file: " + certs.File("server.key") +
                    "\n  client_ca_file: " + certs.File("ca.pem") + "\n");
  daemon.Start();

  grpc::SslCredentialsOptions with_client_cert;
  with_client_cert.pem_root_certs = testing::ReadFile(certs.File("ca.pem"));
  with_client_cert.pem_private_key = testing::ReadFile(certs.File("client.key"));
  with_client_cert.pem_cert_chain = testing::ReadFile(certs.File("client.pem"));
  grpc::SslCredentialsOptions without_client_cert;
  without_client_cert.pem_root_certs = testing::ReadFile(certs.File("ca.pem"));

  EXPECT_TRUE(PublishWith(grpc::CreateChannel(daemon.grpc_address(),
                                              grpc::SslCredentials(with_client_cert)),
                          "tls-1")
                  .ok());
  EXPECT_FALSE(PublishWith(grpc::CreateChannel(daemon.grpc_address(),
                                               grpc::SslCredentials(without_client_cert)),
                           "tls-2")
                   .ok());
  EXPECT_FALSE(
      PublishWith(grpc::CreateChannel(daemon.grpc_address(), grpc::InsecureChannelCredentials()),
                  "tls-3")
          .ok());
  EXPECT_EQ(db.QueryText("SELECT string_agg(event_id, ',') FROM events"), "tls-1");
}

}  // namespace
}  // namespace replayd
