// TLS on the real daemon's HTTP port, replayctl against a daemon with mutual
// TLS, and signed deliveries over mutual TLS to a downstream that checks the
// Standard Webhooks signatures with its own code (OpenSSL's HMAC, not
// replayd's signer). Certificates are made by the openssl command line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

// A server that drops a TLS handshake (no client certificate) makes the
// client's next write raise SIGPIPE: the test must see a failed request, not die.
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kPublisherToken = "publisher-tls-token-1234";
constexpr const char* kViewerToken = "viewer-tls-token-1234567";
constexpr const char* kMetricsToken = "metrics-tls-token-7654321";
// Standard Webhooks secrets ("whsec_" + base64 of 24 and 32 bytes).
constexpr const char* kOldSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr const char* kNewSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
constexpr const char* kDownstreamAuthorization = "Bearer downstream-credential-0042";

// A CA, and certificates it signs: "server" for 127.0.0.1 and the name
// replayd.test, "client" for replayctl and the daemon's sink, "downstream"
// for 127.0.0.1.
void MakeCertificates(const testing::TempDir& dir) {
  auto r = testing::RunCommand({"/bin/bash", "-ec", "cd " + dir.path() + R"(
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca \
      -keyout ca.key -out ca.pem 2>/dev/null
    for who in server client downstream; do
      openssl req -newkey rsa:2048 -nodes -subj /CN=$who -keyout $who.key -out $who.csr 2>/dev/null
      if [ $who = server ]; then san=IP:127.0.0.1,DNS:replayd.test; else san=IP:127.0.0.1; fi
      printf 'subjectAltName=%s\n' $san > $who.ext
      openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile $who.ext -out $who.pem 2>/dev/null
    done)"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

std::string TlsYaml(const testing::TempDir& certs, bool mutual) {
  return absl::StrCat("tls:\n  cert_file: ", certs.File("server.pem"),
                      "\n  key_file: ", certs.File("server.key"), "\n",
                      mutual ? absl::StrCat("  client_ca_file: ", certs.File("ca.pem"), "\n") : "");
}

// An HTTPS client of the daemon's HTTP port that trusts the test CA, with the
// client certificate when `with_client_cert`.
std::unique_ptr<httplib::SSLClient> HttpsClient(const testing::TempDir& certs, int port,
                                                bool with_client_cert) {
  auto client = with_client_cert
                    ? std::make_unique<httplib::SSLClient>(
                          "127.0.0.1", port, certs.File("client.pem"), certs.File("client.key"))
                    : std::make_unique<httplib::SSLClient>("127.0.0.1", port);
  client->set_ca_cert_path(certs.File("ca.pem").c_str());
  client->enable_server_certificate_verification(true);
  client->set_connection_timeout(5, 0);
  client->set_read_timeout(10, 0);
  return client;
}

const std::string kOneEvent =
    R"({"events":[{"source":"orders","event_id":"https-1","payload":1}]})";

// --- the HTTP port with mutual TLS, and replayctl ----------------------------

// A daemon serving TLS with certificates from MakeCertificates and a scratch
// database of its own, started once for a suite's tests.
class TlsDaemonSuite : public ::testing::Test {
 protected:
  // `mutual` asks clients for certificates; `yaml` follows the TLS section.
  static void StartDaemon(bool mutual, const std::string& yaml) {
    certs_ = new testing::TempDir;
    MakeCertificates(*certs_);
    db_ = new testing::ScratchDatabase;
    daemon_ = new testing::DaemonProcess(
        db_->dsn(), absl::StrCat("delivery: {enabled: false}\n", TlsYaml(*certs_, mutual), yaml));
    daemon_->Start();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    delete db_;
    delete certs_;
    daemon_ = nullptr;
    db_ = nullptr;
    certs_ = nullptr;
  }

  static inline testing::TempDir* certs_ = nullptr;
  static inline testing::ScratchDatabase* db_ = nullptr;
  static inline testing::DaemonProcess* daemon_ = nullptr;
};

class MutualTlsDaemon : public TlsDaemonSuite {
 protected:
  static void SetUpTestSuite() {
    StartDaemon(/*mutual=*/true, absl::StrCat("tokens:\n  - {token: ", kPublisherToken,
                                              ", role: publisher, name: upstream}\n  - {token: ",
                                              kViewerToken, ", role: viewer, name: dashboard}\n"));
  }

  // replayctl list with the global flags `flags`, as a viewer.
  static testing::CommandResult ReplayctlList(std::vector<std::string> flags,
                                              const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> args = {
        "--server", daemon_->grpc_address(), "--token", kViewerToken, "--timeout", "5"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("list");
    return testing::RunReplayctl(args, env);
  }
};

TEST_F(MutualTlsDaemon, ReplayctlConnectsWithItsClientCertificate) {
  auto r = ReplayctlList({"--ca-file", certs_->File("ca.pem"), "--cert", certs_->File("client.pem"),
                          "--key", certs_->File("client.key")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(MutualTlsDaemon, ReplayctlReadsTheTlsFilesFromTheEnvironment) {
  auto r = ReplayctlList({}, {{"REPLAYCTL_CA_FILE", certs_->File("ca.pem")},
                              {"REPLAYCTL_CERT", certs_->File("client.pem")},
                              {"REPLAYCTL_KEY", certs_->File("client.key")}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(MutualTlsDaemon, ReplayctlWithoutAClientCertificateIsRefused) {
  auto r = ReplayctlList({"--ca-file", certs_->File("ca.pem")});
  EXPECT_EQ(r.exit_code, 4) << r.err;  // unreachable: the handshake fails
}

TEST_F(MutualTlsDaemon, ReplayctlChecksTheTlsServerName) {
  const std::vector<std::string> files = {"--ca-file", certs_->File("ca.pem"),
                                          "--cert",    certs_->File("client.pem"),
                                          "--key",     certs_->File("client.key")};
  auto named = files;
  named.insert(named.end(), {"--tls-server-name", "replayd.test"});
  EXPECT_EQ(ReplayctlList(named).exit_code, 0);
  auto wrong = files;
  wrong.insert(wrong.end(), {"--tls-server-name", "other.test"});
  EXPECT_EQ(ReplayctlList(wrong).exit_code, 4);
  EXPECT_EQ(ReplayctlList(files, {{"REPLAYCTL_TLS_SERVER_NAME", "other.test"}}).exit_code, 4);
}

TEST_F(MutualTlsDaemon, ReplayctlRefusesAMissingCertificateFile) {
  auto r =
      ReplayctlList({"--cert", certs_->File("absent.pem"), "--key", certs_->File("client.key")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("absent.pem"));
}

TEST_F(MutualTlsDaemon, HttpPortIngestsOverMutualTls) {
  auto client = HttpsClient(*certs_, daemon_->http_port(), /*with_client_cert=*/true);
  auto res =
      client->Post("/v1/events", {{"Authorization", std::string("Bearer ") + kPublisherToken}},
                   kOneEvent, "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(db_->QueryInt("SELECT count(*) FROM events WHERE event_id = 'https-1'"), 1);
}

TEST_F(MutualTlsDaemon, HttpPortRefusesAClientWithoutCertificate) {
  auto client = HttpsClient(*certs_, daemon_->http_port(), /*with_client_cert=*/false);
  auto res = client->Get("/");
  EXPECT_FALSE(res);
}

// --- the HTTP port with TLS: no plaintext, and /metrics behind its token -----

class TlsDaemon : public TlsDaemonSuite {
 protected:
  static void SetUpTestSuite() {
    StartDaemon(/*mutual=*/false, absl::StrCat("metrics_token: ", kMetricsToken, "\n",
                                               "tokens:\n  - {token: ", kPublisherToken,
                                               ", role: publisher, name: upstream}\n"));
  }
};

TEST_F(TlsDaemon, BearerTokenOverPlaintextHttpIsRefused) {
  httplib::Client plain("127.0.0.1", daemon_->http_port());
  plain.set_connection_timeout(5, 0);
  plain.set_read_timeout(5, 0);
  auto res = plain.Post("/v1/events", {{"Authorization", std::string("Bearer ") + kPublisherToken}},
                        kOneEvent, "application/json");
  EXPECT_FALSE(res) << "answered " << res->status;
  EXPECT_EQ(db_->QueryInt("SELECT count(*) FROM events"), 0);

  auto https = HttpsClient(*certs_, daemon_->http_port(), /*with_client_cert=*/false);
  auto ok = https->Post("/v1/events", {{"Authorization", std::string("Bearer ") + kPublisherToken}},
                        kOneEvent, "application/json");
  ASSERT_TRUE(ok) << httplib::to_string(ok.error());
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(db_->QueryInt("SELECT count(*) FROM events"), 1);
}

TEST_F(TlsDaemon, MetricsNeedTheMetricsToken) {
  auto https = HttpsClient(*certs_, daemon_->http_port(), /*with_client_cert=*/false);
  auto anonymous = https->Get("/metrics");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto publisher =
      https->Get("/metrics", {{"Authorization", std::string("Bearer ") + kPublisherToken}});
  ASSERT_TRUE(publisher);
  EXPECT_EQ(publisher->status, 401);
  auto scraper =
      https->Get("/metrics", {{"Authorization", std::string("Bearer ") + kMetricsToken}});
  ASSERT_TRUE(scraper);
  EXPECT_EQ(scraper->status, 200);
  EXPECT_THAT(scraper->body, HasSubstr("# TYPE replayd_"));
}

// --- signed deliveries ------------------------------------------------------

// The HMAC key of a "whsec_" secret, decoded here without replayd's code.
std::string KeyOf(const std::string& secret) {
  std::string key;
  EXPECT_TRUE(absl::Base64Unescape(secret.substr(6), &key));
  return key;
}

// The Standard Webhooks check, written from the specification: some "v1,"
// entry of webhook-signature equals base64(HMAC-SHA256(key, id.timestamp.body)),
// and the timestamp is within five minutes of now.
bool VerifyWebhook(const std::string& key, const httplib::Headers& headers,
                   const std::string& body) {
  auto header = [&headers](const char* name) {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  };
  const std::string id = header("webhook-id");
  const std::string timestamp = header("webhook-timestamp");
  int64_t seconds = 0;
  if (id.empty() || !absl::SimpleAtoi(timestamp, &seconds)) return false;
  if (std::abs(absl::ToUnixSeconds(absl::Now()) - seconds) > 300) return false;
  const std::string content = id + "." + timestamp + "." + body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(content.data()), content.size(), mac, &mac_size);
  unsigned char encoded[4 * EVP_MAX_MD_SIZE];
  const int encoded_size = EVP_EncodeBlock(encoded, mac, static_cast<int>(mac_size));
  const std::string expected =
      "v1," + std::string(reinterpret_cast<char*>(encoded), static_cast<size_t>(encoded_size));
  for (const auto& entry : absl::StrSplit(header("webhook-signature"), ' ')) {
    if (entry == expected) return true;
  }
  return false;
}

struct ReceivedCall {
  httplib::Headers headers;
  std::string body;
  bool verified = false;
};

// An HTTPS downstream with mutual TLS (the test CA signs its clients) that
// answers 200 to a create call whose signature verifies against `key` and
// whose Authorization is the expected one, and 401 to any other.
class VerifyingDownstream {
 public:
  VerifyingDownstream(const testing::TempDir& certs, std::string key)
      : key_(std::move(key)),
        server_(certs.File("downstream.pem").c_str(), certs.File("downstream.key").c_str(),
                certs.File("ca.pem").c_str()) {
    server_.Post("/records", [this](const httplib::Request& req, httplib::Response& res) {
      ReceivedCall call{req.headers, req.body, false};
      call.verified = VerifyWebhook(key_, req.headers, req.body) &&
                      req.get_header_value("Authorization") == kDownstreamAuthorization;
      res.status = call.verified ? 200 : 401;
      res.set_content(call.verified ? R"({"id":"r"})" : R"({"error":"bad signature"})",
                      "application/json");
      std::lock_guard lock(mu_);
      calls_.push_back(std::move(call));
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~VerifyingDownstream() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return absl::StrCat("https://127.0.0.1:", port_, "/records"); }
  int port() const { return port_; }
  std::vector<ReceivedCall> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  std::string key_;
  httplib::SSLServer server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<ReceivedCall> calls_;
};

class SignedDelivery : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeCertificates(certs_);
    std::ofstream(certs_.File("old.whsec")) << kOldSecret << "\n";
    std::ofstream(certs_.File("authorization")) << kDownstreamAuthorization << "\n";
    setenv("TLS_E2E_NEW_WHSEC", kNewSecret, 1);
  }
  void TearDown() override { unsetenv("TLS_E2E_NEW_WHSEC"); }

  // A daemon delivering "orders" to `downstream`, signing with `secrets`.
  std::unique_ptr<testing::DaemonProcess> StartDaemon(const VerifyingDownstream& downstream,
                                                      const std::string& secrets) {
    auto daemon = std::make_unique<testing::DaemonProcess>(
        db_.dsn(),
        absl::StrCat("delivery:\n  poll_interval: 20ms\n",
                     "sinks:\n  - name: downstream\n    type: http\n    url: ", downstream.url(),
                     "\n    signing_secrets: ", secrets, "\n    headers: [\"Authorization: file:",
                     certs_.File("authorization"), "\", \"X-Tenant: acme\"]",
                     "\n    tls:\n      ca_file: ", certs_.File("ca.pem"), "\n      cert_file: ",
                     certs_.File("client.pem"), "\n      key_file: ", certs_.File("client.key"),
                     "\nroutes:\n  - name: orders\n    sources: [orders]\n    sink: downstream\n",
                     "    retry: {max_attempts: 2, base_delay: 50ms}\n"));
    daemon->Start();
    return daemon;
  }

  std::string OldSecretFile() const { return "[\"file:" + certs_.File("old.whsec") + "\"]"; }
  // Mid-rotation: the old secret from its file, the new one from the environment.
  std::string RotatingSecrets() const {
    return "[\"file:" + certs_.File("old.whsec") + "\", \"env:TLS_E2E_NEW_WHSEC\"]";
  }

  // Publishes the orders event `event_id` and returns the first call that
  // `downstream` receives, or nothing after 20 s.
  static std::optional<ReceivedCall> FirstCall(const testing::DaemonProcess& daemon,
                                               VerifyingDownstream& downstream,
                                               const std::string& event_id) {
    testing::PublishAccepted(daemon.grpc_address(),
                             testing::KeyedBatch("orders", {{event_id, ""}}));
    if (!testing::PollUntil([&] { return !downstream.calls().empty(); }, absl::Seconds(20))) {
      return std::nullopt;
    }
    return downstream.calls().front();
  }

  testing::TempDir certs_;
  testing::ScratchDatabase db_;
};

TEST_F(SignedDelivery, DownstreamVerifiesEverySignatureIndependently) {
  VerifyingDownstream downstream(certs_, KeyOf(kOldSecret));
  auto daemon = StartDaemon(downstream, OldSecretFile());
  testing::PublishAccepted(daemon->grpc_address(),
                           testing::KeyedBatch("orders", {{"s1", "k"}, {"s2", "k"}, {"s3", ""}}));

  ASSERT_TRUE(
      testing::PollUntil([&] { return downstream.calls().size() >= 3; }, absl::Seconds(20)));
  const auto calls = downstream.calls();
  ASSERT_EQ(calls.size(), 3u);
  std::set<std::string> ids;
  for (const ReceivedCall& call : calls) {
    EXPECT_TRUE(call.verified) << call.body;
    EXPECT_EQ(call.headers.find("X-Tenant")->second, "acme");
    EXPECT_THAT(call.headers.find("webhook-signature")->second, Not(HasSubstr(" ")));
    ids.insert(call.headers.find("webhook-id")->second);
  }
  EXPECT_EQ(ids, (std::set<std::string>{"orders:s1", "orders:s2", "orders:s3"}));
  // The downstream answered before the attempts were recorded: wait for the records.
  EXPECT_TRUE(testing::PollUntil(
      [&] {
        return db_.QueryInt("SELECT count(*) FROM delivery_attempts WHERE http_status = 200") == 3;
      },
      absl::Seconds(10)));
}

TEST_F(SignedDelivery, TamperedBodyIsRejectedByTheVerifier) {
  VerifyingDownstream downstream(certs_, KeyOf(kOldSecret));
  auto daemon = StartDaemon(downstream, OldSecretFile());
  const std::optional<ReceivedCall> received = FirstCall(*daemon, downstream, "t1");
  ASSERT_TRUE(received);
  const ReceivedCall& signed_call = *received;
  ASSERT_TRUE(signed_call.verified);

  // The same headers, signature included, with one byte of the body changed.
  httplib::SSLClient client("127.0.0.1", downstream.port(), certs_.File("client.pem"),
                            certs_.File("client.key"));
  client.set_ca_cert_path(certs_.File("ca.pem").c_str());
  client.enable_server_certificate_verification(true);
  httplib::Headers headers;
  for (const char* name :
       {"webhook-id", "webhook-timestamp", "webhook-signature", "Authorization"}) {
    headers.emplace(name, signed_call.headers.find(name)->second);
  }
  std::string tampered = signed_call.body;
  tampered.replace(tampered.find("\"t1\""), 4, "\"t2\"");
  auto res = client.Post("/records", headers, tampered, "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 401);
  auto replayed = client.Post("/records", headers, signed_call.body, "application/json");
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->status, 200);  // the untouched copy still verifies
}

TEST_F(SignedDelivery, DuringARotationBothSecretsSignAndTheNewOneVerifies) {
  VerifyingDownstream downstream(certs_, KeyOf(kNewSecret));
  auto daemon = StartDaemon(downstream, RotatingSecrets());
  const std::optional<ReceivedCall> call = FirstCall(*daemon, downstream, "r1");
  ASSERT_TRUE(call);
  EXPECT_TRUE(call->verified);
  const std::vector<std::string> signatures =
      absl::StrSplit(call->headers.find("webhook-signature")->second, ' ');
  EXPECT_EQ(signatures.size(), 2u);
  // A downstream still on the old secret accepts the same call.
  EXPECT_TRUE(VerifyWebhook(KeyOf(kOldSecret), call->headers, call->body));
}

TEST_F(SignedDelivery, AWrongSecretIsRejectedAndNeverDelivered) {
  VerifyingDownstream downstream(certs_, KeyOf(kNewSecret));
  auto daemon = StartDaemon(downstream, OldSecretFile());
  testing::PublishAccepted(daemon->grpc_address(), testing::KeyedBatch("orders", {{"w1", ""}}));
  ASSERT_TRUE(testing::PollUntil(
      [&] { return db_.QueryInt("SELECT count(*) FROM delivery_attempts") >= 1; },
      absl::Seconds(20)));
  for (const ReceivedCall& call : downstream.calls()) EXPECT_FALSE(call.verified);
  EXPECT_EQ(db_.QueryInt("SELECT count(*) FROM delivery_attempts WHERE http_status = 200"), 0);
}

TEST_F(SignedDelivery, SecretsNeverReachTheLog) {
  VerifyingDownstream downstream(certs_, KeyOf(kNewSecret));
  auto daemon = StartDaemon(downstream, RotatingSecrets());
  const std::optional<ReceivedCall> call = FirstCall(*daemon, downstream, "l1");
  ASSERT_TRUE(call);
  const std::string signature = call->headers.find("webhook-signature")->second;
  EXPECT_EQ(daemon->Terminate(), 0);
  const std::string log = daemon->log();
  ASSERT_THAT(log, HasSubstr("listening"));
  for (const std::string& secret :
       {std::string(kOldSecret).substr(6), std::string(kNewSecret).substr(6),
        std::string("downstream-credential-0042"), signature.substr(3, 20)}) {
    EXPECT_THAT(log, Not(HasSubstr(secret)));
  }
}

TEST_F(SignedDelivery, AnUnreadableSecretStopsStartUpNamingOnlyTheReference) {
  std::ofstream(certs_.File("short.whsec")) << "whsec_dG9vLXNob3J0LXNlY3JldA==\n";
  std::ofstream config(certs_.File("bad.yaml"));
  config << "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\n"
         << "sinks:\n  - name: downstream\n    type: http\n    url: https://127.0.0.1:1/records\n"
         << "    signing_secrets: [\"file:" << certs_.File("short.whsec") << "\"]\n"
         << "routes:\n  - name: orders\n    sources: [orders]\n    sink: downstream\n";
  config.close();
  testing::Process daemon;
  daemon.Start(
      {testing::kReplaydPath, "--config", certs_.File("bad.yaml"), "--database-url", db_.dsn()},
      certs_.File("bad.log"));
  EXPECT_NE(daemon.Wait(30000), 0);
  const std::string log = testing::ReadFile(certs_.File("bad.log"));
  EXPECT_THAT(log, HasSubstr("short.whsec"));
  EXPECT_THAT(log, Not(HasSubstr("dG9vLXNob3J0LXNlY3JldA")));
}

}  // namespace
}  // namespace replayd
