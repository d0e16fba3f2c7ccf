// Bearer-token authentication with roles, shared by the gRPC and HTTP edges.
// publisher: ingest. viewer: read and dry run. operator: viewer + start and
// cancel replays. With no tokens configured, authentication is off and every
// caller is the "anonymous" operator (for local use only; documented).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace replayd {

enum class Role { kPublisher, kViewer, kOperator };

struct Principal {
  std::string name;
  Role role = Role::kOperator;
};

struct Credential {
  std::string token;
  Role role;
  std::string name;
};

class Authenticator {
 public:
  explicit Authenticator(std::vector<Credential> credentials)
      : credentials_(std::move(credentials)) {}

  // `authorization` is the header value ("Bearer <token>"). UNAUTHENTICATED
  // for a missing or unknown token, PERMISSION_DENIED when its role may not
  // do what `needed` stands for. The token never appears in a message.
  absl::StatusOr<Principal> Authorize(std::string_view authorization, Role needed) const;

  bool enabled() const { return !credentials_.empty(); }

 private:
  std::vector<Credential> credentials_;
};

std::string_view RoleName(Role role);

}  // namespace replayd
