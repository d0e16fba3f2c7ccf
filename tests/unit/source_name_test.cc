#include "server/common/source_name.h"

#include <gtest/gtest.h>

#include <string>

namespace replayd {
namespace {

TEST(IsValidSourceName, AcceptsTheAllowedAlphabet) {
  EXPECT_TRUE(IsValidSourceName("orders"));
  EXPECT_TRUE(IsValidSourceName("a"));
  EXPECT_TRUE(IsValidSourceName("billing.v2_eu-west"));
  EXPECT_TRUE(IsValidSourceName(std::string(64, 'x')));
}

TEST(IsValidSourceName, RejectsEmptyTooLongAndOtherCharacters) {
  EXPECT_FALSE(IsValidSourceName(""));
  EXPECT_FALSE(IsValidSourceName(std::string(65, 'x')));
  EXPECT_FALSE(IsValidSourceName("Orders"));
  EXPECT_FALSE(IsValidSourceName("or ders"));
  EXPECT_FALSE(IsValidSourceName("orders/eu"));
  EXPECT_FALSE(IsValidSourceName("caf\xc3\xa9"));
}

TEST(ValidateSourceName, OkForAValidName) { EXPECT_TRUE(ValidateSourceName("orders").ok()); }

TEST(ValidateSourceName, InvalidArgumentWithTheRuleAndTheName) {
  absl::Status s = ValidateSourceName("Orders");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "source \"Orders\" does not match [a-z0-9_.-]{1,64}");
}

TEST(ValidateSourceName, EscapesBytesThatAreNotPrintableAscii) {
  absl::Status s = ValidateSourceName(std::string("a\xff\"\n\x01z", 6));
  EXPECT_EQ(s.message(), "source \"a\\xff\\\"\\n\\x01z\" does not match [a-z0-9_.-]{1,64}");
}

TEST(ValidateSourceName, EchoesAtMostEightyBytes) {
  absl::Status s = ValidateSourceName(std::string(100, 'x'));
  EXPECT_EQ(s.message(),
            "source \"" + std::string(80, 'x') + "...\" does not match [a-z0-9_.-]{1,64}");
}

}  // namespace
}  // namespace replayd
