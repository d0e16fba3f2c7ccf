// Standard Webhooks signing and the reading of an HTTP sink's secrets.
#include "server/delivery/outbound_security.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace replayd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// The test vector published with the Standard Webhooks reference libraries.
constexpr const char* kSpecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr const char* kSpecId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr int64_t kSpecTimestamp = 1614265330;
constexpr const char* kSpecBody = R"({"test": 2432232314})";
constexpr const char* kSpecSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

std::string TempFile(const std::string& name, const std::string& content) {
  std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << content;
  return path;
}

TEST(WebhookSignature, MatchesTheStandardsTestVector) {
  auto key = WebhookSigningKey(kSpecSecret);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(WebhookSignature({*key}, kSpecId, kSpecTimestamp, kSpecBody), kSpecSignature);
}

TEST(WebhookSignature, SignsWithEveryKeySpaceSeparatedDuringARotation) {
  auto old_key = WebhookSigningKey(kSpecSecret);
  auto new_key = WebhookSigningKey("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
  ASSERT_TRUE(old_key.ok() && new_key.ok());
  const std::string both = WebhookSignature({*old_key, *new_key}, kSpecId, kSpecTimestamp, kSpecBody);
  const std::string second = WebhookSignature({*new_key}, kSpecId, kSpecTimestamp, kSpecBody);
  EXPECT_EQ(both, absl::StrCat(kSpecSignature, " ", second));
  EXPECT_NE(second, kSpecSignature);
}

TEST(WebhookSignature, ChangesWithTheBody) {
  auto key = WebhookSigningKey(kSpecSecret);
  ASSERT_TRUE(key.ok());
  EXPECT_NE(WebhookSignature({*key}, kSpecId, kSpecTimestamp, R"({"test": 2432232315})"),
            kSpecSignature);
}

TEST(WebhookSigningKey, AcceptsASecretWithoutThePrefix) {
  auto with = WebhookSigningKey(kSpecSecret);
  auto without = WebhookSigningKey("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_EQ(*with, *without);
  EXPECT_EQ(with->size(), 24u);
}

TEST(WebhookSigningKey, RejectsNonBase64AndShortSecretsWithoutShowingThem) {
  auto garbage = WebhookSigningKey("whsec_not*base64!");
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(garbage.status().message(), Not(HasSubstr("not*base64")));
  auto short_key = WebhookSigningKey("whsec_c2hvcnQ=");
  EXPECT_EQ(short_key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_key.status().message(), HasSubstr("5 bytes"));
}

TEST(ReadSecret, ReadsAFileWithoutItsTrailingLineBreak) {
  const std::string path = TempFile("secret-file", "s3cret-value\n");
  auto secret = ReadSecret("file:" + path);
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "s3cret-value");
}

TEST(ReadSecret, ReadsAnEnvironmentVariable) {
  setenv("OUTBOUND_TEST_SECRET", "from-the-environment", 1);
  auto secret = ReadSecret("env:OUTBOUND_TEST_SECRET");
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(*secret, "from-the-environment");
  unsetenv("OUTBOUND_TEST_SECRET");
  EXPECT_EQ(ReadSecret("env:OUTBOUND_TEST_SECRET").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReadSecret, NamesAMissingFile) {
  auto secret = ReadSecret("file:/nonexistent/secret");
  EXPECT_EQ(secret.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(secret.status().message(), HasSubstr("/nonexistent/secret"));
}

TEST(LoadOutboundSecurity, ResolvesSecretHeaderValuesAndKeepsLiteralOnes) {
  SinkConfig sink;
  sink.name = "api";
  sink.headers = {"Authorization: file:" + TempFile("auth", "Bearer downstream-token\n"),
                  "X-Tenant: acme"};
  sink.signing_secrets = {"file:" + TempFile("whsec", std::string(kSpecSecret) + "\n")};
  auto security = LoadOutboundSecurity(sink);
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_THAT(security->headers,
              ElementsAre("Authorization: Bearer downstream-token", "X-Tenant: acme"));
  ASSERT_EQ(security->signing_keys.size(), 1u);
  EXPECT_EQ(WebhookSignature(security->signing_keys, kSpecId, kSpecTimestamp, kSpecBody),
            kSpecSignature);
}

TEST(LoadOutboundSecurity, NamesTheSinkAndReferenceButNotTheSecret) {
  SinkConfig sink;
  sink.name = "api";
  sink.signing_secrets = {"file:" + TempFile("bad-whsec", "whsec_dG9vLXNob3J0LXNlY3JldA==\n")};
  auto security = LoadOutboundSecurity(sink);
  EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(security.status().message(), HasSubstr("sink api: file:"));
  EXPECT_THAT(security.status().message(), Not(HasSubstr("dG9vLXNob3J0LXNlY3JldA")));
}

}  // namespace
}  // namespace replayd
