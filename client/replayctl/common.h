// replayctl's shared options and exit codes (documented in client/README.md).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "client/replay_client.h"

namespace replayd::replayctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitServerError = 1;   // the server refused or failed the request
inline constexpr int kExitUsage = 2;         // bad flags or arguments
inline constexpr int kExitAborted = 3;       // the user did not confirm
inline constexpr int kExitUnreachable = 4;   // no answer from the server
inline constexpr int kExitAuth = 5;          // token missing, unknown or not allowed
inline constexpr int kExitNotCompleted = 6;  // a watched replay ended cancelled or failed

struct CommonOptions {
  std::string server;
  std::string token;
  bool tls = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string tls_server_name;
  std::string output = "text";  // text or json
  double timeout_seconds = 30;

  client::ClientOptions ClientOptionsFor() const {
    client::ClientOptions o;
    o.address = server;
    o.token = token;
    o.tls = tls;
    o.ca_file = ca_file;
    o.cert_file = cert_file;
    o.key_file = key_file;
    o.tls_server_name = tls_server_name;
    o.timeout = absl::Seconds(timeout_seconds);
    return o;
  }
  bool json() const { return output == "json"; }
};

// Prints the server's message to stderr and returns the exit code for it.
int ReportError(const absl::Status& status);

}  // namespace replayd::replayctl
