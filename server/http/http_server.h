// The daemon's HTTP port: webhook ingest, health, and whatever else registers
// routes on it (dashboard, /metrics). Handlers never let an exception escape.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace replayd {

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();

  // For the Register*Routes functions, before Start.
  httplib::Server& server() { return *server_; }

  // Binds host:port (port 0 picks one) and serves on a background thread.
  // Returns the bound port; UNAVAILABLE if it cannot bind.
  absl::StatusOr<int> Start(const std::string& listen);
  // Stops accepting, waits for the serving thread.
  void Stop();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace replayd
