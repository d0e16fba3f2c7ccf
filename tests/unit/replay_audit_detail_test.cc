// The audit detail of a replay start is JSON that keeps every byte of a
// source name: quotes, backslashes and control characters round-trip; bytes
// that are not UTF-8 become U+FFFD.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/time/time.h"
#include "server/replay/controller.h"

namespace replayd {
namespace {

using nlohmann::json;

ReplaySpec SpecWithSources(std::vector<std::string> sources) {
  ReplaySpec spec;
  spec.window.from = absl::FromUnixSeconds(1795000000);
  spec.window.to = absl::FromUnixSeconds(1795003600);
  spec.window.sources = std::move(sources);
  spec.outcomes = {Outcome::kFailed, Outcome::kPending};
  spec.rate = 50;
  spec.burst = 6;
  spec.verify_downstream = true;
  return spec;
}

TEST(StartAuditDetail, EveryByteOfASourceNameRoundTrips) {
  std::string all_ascii;
  for (int c = 0; c < 0x80; ++c) all_ascii += static_cast<char>(c);
  const std::vector<std::string> sources = {all_ascii, "quote\" back\\slash", "tab\tnl\n",
                                            "caf\xc3\xa9"};
  json detail = json::parse(StartAuditDetail(SpecWithSources(sources), 7, 9));
  EXPECT_EQ(detail["request"]["sources"].get<std::vector<std::string>>(), sources);
  EXPECT_EQ(detail["would_deliver"], 7);
  EXPECT_EQ(detail["total"], 9);
}

TEST(StartAuditDetail, InvalidUtf8BecomesReplacementCharacter) {
  json detail = json::parse(StartAuditDetail(SpecWithSources({"a\xff"
                                                              "b"}),
                                             0, 0));
  EXPECT_EQ(detail["request"]["sources"][0],
            "a\xef\xbf\xbd"
            "b");
}

TEST(StartAuditDetail, CarriesTheValidatedRequest) {
  json request = json::parse(StartAuditDetail(SpecWithSources({"orders"}), 0, 0))["request"];
  EXPECT_EQ(request["from"], "2026-11-18T11:06:40Z");
  EXPECT_EQ(request["to"], "2026-11-18T12:06:40Z");
  EXPECT_EQ(request["outcomes"], json::array({"failed", "pending"}));
  EXPECT_EQ(request["rate"], 50.0);
  EXPECT_EQ(request["burst"], 6);
  EXPECT_EQ(request["allow_high_rate"], false);
  EXPECT_EQ(request["include_succeeded"], false);
  EXPECT_EQ(request["verify_downstream"], true);
}

}  // namespace
}  // namespace replayd
