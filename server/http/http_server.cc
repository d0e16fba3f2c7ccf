#include "server/http/http_server.h"

#include <httplib.h>
#include <openssl/ssl.h>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/logging.h"

namespace replayd {

namespace {

std::unique_ptr<httplib::Server> NewServer(const HttpTls& tls) {
  if (tls.cert_file.empty()) return std::make_unique<httplib::Server>();
  auto server = std::make_unique<httplib::SSLServer>(
      tls.cert_file.c_str(), tls.key_file.c_str(),
      tls.client_ca_file.empty() ? nullptr : tls.client_ca_file.c_str());
  if (server->is_valid()) SSL_CTX_set_min_proto_version(server->ssl_context(), TLS1_2_VERSION);
  return server;
}

}  // namespace

HttpServer::HttpServer(const HttpTls& tls)
    : server_(NewServer(tls)) {
  server_->set_exception_handler([](const httplib::Request& req, httplib::Response& res,
                                    std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    Logger("http")->error("{} {}: {}", req.method, req.path, what);
    res.status = 500;
    res.set_content(R"({"error":"internal error"})", "application/json");
  });
  server_->set_payload_max_length(64 << 20);
}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<int> HttpServer::Start(const std::string& listen) {
  auto colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("http listen address \"", listen, "\""));
  }
  if (!server_->is_valid()) {
    return absl::InvalidArgumentError(
        "http: cannot load tls.cert_file, tls.key_file or tls.client_ca_file");
  }
  std::string host = listen.substr(0, colon);
  if (port == 0) {
    port = server_->bind_to_any_port(host);
  } else if (!server_->bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on http ", listen));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return port;
}

void HttpServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace replayd
