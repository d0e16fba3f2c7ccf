// What an HTTP sink adds to every call for the downstream to trust it:
// Standard Webhooks signatures (https://www.standardwebhooks.com) and static
// headers whose values may be secrets. Secrets are named in the configuration
// by a reference, "file:PATH" or "env:NAME", and read once at start-up; no
// message here ever holds a secret's value.
#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "server/config/config.h"

namespace replayd {

// The secret a reference names: the file's content without its trailing line
// break, or the environment variable's value. INVALID_ARGUMENT naming the
// reference when it is unreadable, unset or empty.
absl::StatusOr<std::string> ReadSecret(const std::string& reference);

// The HMAC key of a Standard Webhooks secret, "whsec_" then base64 (the
// prefix is optional). INVALID_ARGUMENT when it is not base64 or holds fewer
// than 24 bytes.
absl::StatusOr<std::string> WebhookSigningKey(absl::string_view secret);

// The `webhook-signature` header's value: "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>" for each key, space-separated (two keys while a secret
// is being rotated, so the downstream accepts either).
std::string WebhookSignature(const std::vector<std::string>& keys, absl::string_view id,
                             int64_t timestamp, absl::string_view body);

// An HTTP sink's secrets, read from their references.
struct OutboundSecurity {
  std::vector<std::string> signing_keys;  // decoded; empty = unsigned
  std::vector<std::string> headers;       // "Name: value", values resolved
};

// INVALID_ARGUMENT naming the sink and the reference on the first secret
// that cannot be read or decoded.
absl::StatusOr<OutboundSecurity> LoadOutboundSecurity(const SinkConfig& sink);

}  // namespace replayd
