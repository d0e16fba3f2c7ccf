#include "server/common/auth.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace replayd {
namespace {

bool Allows(Role have, Role needed) {
  switch (needed) {
    case Role::kPublisher: return have == Role::kPublisher;
    case Role::kViewer: return have == Role::kViewer || have == Role::kOperator;
    case Role::kOperator: return have == Role::kOperator;
  }
  return false;
}

// Compares without an early exit, so timing does not reveal a token's prefix.
bool SameToken(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kPublisher: return "publisher";
    case Role::kViewer: return "viewer";
    case Role::kOperator: return "operator";
  }
  return "viewer";
}

absl::StatusOr<Principal> Authenticator::Authorize(std::string_view authorization,
                                                   Role needed) const {
  if (credentials_.empty()) return Principal{"anonymous", Role::kOperator};
  absl::string_view token(authorization.data(), authorization.size());
  if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
    return absl::UnauthenticatedError("missing bearer token (authorization: Bearer <token>)");
  }
  for (const Credential& c : credentials_) {
    if (SameToken(c.token, std::string_view(token.data(), token.size()))) {
      if (!Allows(c.role, needed)) {
        return absl::PermissionDeniedError(
            absl::StrCat("role ", std::string(RoleName(c.role)), " of \"", c.name,
                         "\" may not do this (needs ", std::string(RoleName(needed)), ")"));
      }
      return Principal{c.name, c.role};
    }
  }
  return absl::UnauthenticatedError("unknown bearer token");
}

}  // namespace replayd
