// The daemon's HTTP port: webhook ingest, health, and whatever else registers
// routes on it (dashboard, /metrics). Handlers never let an exception escape.
// With a certificate it speaks only HTTPS (TLS 1.2 or later), from the same
// files as gRPC; with a client CA too, only to clients with a certificate it signed.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace replayd {

// PEM files; an empty cert_file = plaintext HTTP.
struct HttpTls {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // set = mutual TLS
};

class HttpServer {
 public:
  explicit HttpServer(const HttpTls& tls = {});
  ~HttpServer();

  // For the Register*Routes functions, before Start.
  httplib::Server& server() { return *server_; }

  // Binds host:port (port 0 picks one) and serves on a background thread.
  // Returns the bound port; UNAVAILABLE if it cannot bind, INVALID_ARGUMENT
  // when the TLS files cannot be loaded.
  absl::StatusOr<int> Start(const std::string& listen);
  // Stops accepting, waits for the serving thread.
  void Stop();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace replayd
