#include "server/delivery/outbound_security.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace replayd {

absl::StatusOr<std::string> ReadSecret(const std::string& reference) {
  absl::string_view where = reference;
  std::string value;
  if (absl::ConsumePrefix(&where, "file:")) {
    std::ifstream in{std::string(where)};
    if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read secret file ", where));
    std::stringstream text;
    text << in.rdbuf();
    value = text.str();
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  } else if (absl::ConsumePrefix(&where, "env:")) {
    const char* v = std::getenv(std::string(where).c_str());
    if (v != nullptr) value = v;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("secret reference \"", reference, "\" is not file:PATH or env:NAME"));
  }
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat("secret ", reference, " is empty"));
  return value;
}

absl::StatusOr<std::string> WebhookSigningKey(absl::string_view secret) {
  absl::string_view text = secret;
  absl::ConsumePrefix(&text, "whsec_");
  std::string key;
  if (!absl::Base64Unescape(text, &key)) {
    return absl::InvalidArgumentError("signing secret is not whsec_ followed by base64");
  }
  if (key.size() < 24) {
    return absl::InvalidArgumentError(
        absl::StrCat("signing secret holds ", key.size(), " bytes; at least 24 are needed"));
  }
  return key;
}

std::string WebhookSignature(const std::vector<std::string>& keys, absl::string_view id,
                             int64_t timestamp, absl::string_view body) {
  const std::string content = absl::StrCat(id, ".", timestamp, ".", body);
  std::string header;
  for (const std::string& key : keys) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(content.data()), content.size(), mac, &mac_size);
    absl::StrAppend(&header, header.empty() ? "" : " ", "v1,",
                    absl::Base64Escape(absl::string_view(reinterpret_cast<char*>(mac), mac_size)));
  }
  return header;
}

absl::StatusOr<OutboundSecurity> LoadOutboundSecurity(const SinkConfig& sink) {
  OutboundSecurity out;
  auto problem = [&sink](const absl::Status& s) {
    return absl::InvalidArgumentError(absl::StrCat("sink ", sink.name, ": ", s.message()));
  };
  for (const std::string& reference : sink.signing_secrets) {
    auto secret = ReadSecret(reference);
    if (!secret.ok()) return problem(secret.status());
    auto key = WebhookSigningKey(*secret);
    if (!key.ok()) return problem(absl::InvalidArgumentError(absl::StrCat(reference, ": ", key.status().message())));
    out.signing_keys.push_back(*std::move(key));
  }
  for (const std::string& header : sink.headers) {
    const size_t colon = header.find(':');
    if (colon == std::string::npos) {
      return problem(absl::InvalidArgumentError("a header is not \"Name: value\""));
    }
    const std::string name = header.substr(0, colon);
    std::string value(absl::StripAsciiWhitespace(absl::string_view(header).substr(colon + 1)));
    if (absl::StartsWith(value, "file:") || absl::StartsWith(value, "env:")) {
      auto secret = ReadSecret(value);
      if (!secret.ok()) return problem(absl::InvalidArgumentError(absl::StrCat("header ", name, ": ", secret.status().message())));
      if (absl::StrContains(*secret, '\n') || absl::StrContains(*secret, '\r')) {
        return problem(absl::InvalidArgumentError(absl::StrCat("header ", name, ": ", value, " holds a line break")));
      }
      value = *std::move(secret);
    }
    out.headers.push_back(absl::StrCat(name, ": ", value));
  }
  return out;
}

}  // namespace replayd
