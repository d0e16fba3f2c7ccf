#include "server/config/config.h"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/time_format.h"
#include "yaml-cpp/yaml.h"

namespace replayd {
namespace {

// Reads typed values out of YAML maps, collecting every problem with its path
// ("sinks[1].timeout: ...") instead of stopping at the first.
class YamlReader {
 public:
  std::vector<std::string>& problems() { return problems_; }

  // Reports keys of `node` that are not in `known`.
  void CheckKeys(const YAML::Node& node, const std::string& path,
                 std::initializer_list<const char*> known) {
    if (!node.IsMap()) {
      problems_.push_back(absl::StrCat(Where(path), "expected a mapping"));
      return;
    }
    std::set<std::string> names(known.begin(), known.end());
    for (const auto& item : node) {
      auto key = item.first.as<std::string>();
      if (!names.count(key)) {
        problems_.push_back(absl::StrCat(Where(path), "unknown key \"", key, "\""));
      }
    }
  }

  template <typename T>
  void Read(const YAML::Node& node, const char* key, const std::string& path, T* out) {
    const YAML::Node value = node[key];
    if (!value.IsDefined() || value.IsNull()) return;
    try {
      *out = value.as<T>();
    } catch (const YAML::Exception&) {
      problems_.push_back(absl::StrCat(Join(path, key), ": expected ", TypeName<T>()));
    }
  }

  void ReadDuration(const YAML::Node& node, const char* key, const std::string& path,
                    absl::Duration* out) {
    std::string text;
    Read(node, key, path, &text);
    if (text.empty()) return;
    auto d = ParseDurationArg(text);
    if (!d.ok()) {
      problems_.push_back(absl::StrCat(Join(path, key), ": ", d.status().message()));
      return;
    }
    *out = *d;
  }

  static std::string Join(const std::string& path, const char* key) {
    return path.empty() ? key : absl::StrCat(path, ".", key);
  }

 private:
  static std::string Where(const std::string& path) {
    return path.empty() ? "" : absl::StrCat(path, ": ");
  }
  template <typename T>
  static const char* TypeName() {
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    if constexpr (std::is_integral_v<T>) return "an integer";
    if constexpr (std::is_floating_point_v<T>) return "a number";
    if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of strings";
    return "a string";
  }

  std::vector<std::string> problems_;
};

void ReadRetry(YamlReader& r, const YAML::Node& node, const std::string& path,
               RetryPolicy* retry) {
  if (!node.IsDefined()) return;
  r.CheckKeys(node, path, {"max_attempts", "base_delay", "max_delay"});
  r.Read(node, "max_attempts", path, &retry->max_attempts);
  r.ReadDuration(node, "base_delay", path, &retry->base_delay);
  r.ReadDuration(node, "max_delay", path, &retry->max_delay);
}

void ReadFile(YamlReader& r, const YAML::Node& root, Config* c) {
  if (root.IsNull()) return;
  r.CheckKeys(root, "",
              {"grpc_listen", "http_listen", "database_url", "database_pool_size", "log_format",
               "log_level", "port_file", "ingest", "partitions", "delivery", "sinks", "routes",
               "replay", "tokens", "tls", "shutdown_grace"});
  if (!root.IsMap()) return;
  r.Read(root, "grpc_listen", "", &c->grpc_listen);
  r.Read(root, "http_listen", "", &c->http_listen);
  r.Read(root, "database_url", "", &c->database_url);
  r.Read(root, "database_pool_size", "", &c->database_pool_size);
  r.Read(root, "log_format", "", &c->log_format);
  r.Read(root, "log_level", "", &c->log_level);
  r.Read(root, "port_file", "", &c->port_file);
  r.ReadDuration(root, "shutdown_grace", "", &c->shutdown_grace);

  if (auto n = root["ingest"]; n.IsDefined()) {
    r.CheckKeys(n, "ingest", {"max_batch", "max_payload_bytes", "max_future_skew"});
    r.Read(n, "max_batch", "ingest", &c->ingest.max_batch);
    r.Read(n, "max_payload_bytes", "ingest", &c->ingest.max_payload_bytes);
    r.ReadDuration(n, "max_future_skew", "ingest", &c->ingest.max_future_skew);
  }
  if (auto n = root["partitions"]; n.IsDefined()) {
    r.CheckKeys(n, "partitions", {"create_ahead_days", "retention_days", "maintenance_interval"});
    r.Read(n, "create_ahead_days", "partitions", &c->partitions.create_ahead_days);
    r.Read(n, "retention_days", "partitions", &c->partitions.retention_days);
    r.ReadDuration(n, "maintenance_interval", "partitions", &c->partitions.maintenance_interval);
  }
  if (auto n = root["delivery"]; n.IsDefined()) {
    r.CheckKeys(n, "delivery", {"enabled", "workers", "claim_batch", "poll_interval", "claim_lease"});
    r.Read(n, "enabled", "delivery", &c->delivery.enabled);
    r.Read(n, "workers", "delivery", &c->delivery.workers);
    r.Read(n, "claim_batch", "delivery", &c->delivery.claim_batch);
    r.ReadDuration(n, "poll_interval", "delivery", &c->delivery.poll_interval);
    r.ReadDuration(n, "claim_lease", "delivery", &c->delivery.claim_lease);
  }
  if (auto n = root["sinks"]; n.IsDefined()) {
    if (!n.IsSequence()) r.problems().push_back("sinks: expected a list");
    for (size_t i = 0; n.IsSequence() && i < n.size(); ++i) {
      std::string path = absl::StrCat("sinks[", i, "]");
      SinkConfig s;
      r.CheckKeys(n[i], path,
                  {"name", "type", "url", "lookup_url", "connect_timeout", "timeout",
                   "max_in_flight", "table", "database_url", "replay_rate_budget"});
      r.Read(n[i], "name", path, &s.name);
      std::string type = "http";
      r.Read(n[i], "type", path, &type);
      if (type == "http") {
        s.type = SinkConfig::Type::kHttp;
      } else if (type == "postgres") {
        s.type = SinkConfig::Type::kPostgres;
      } else {
        r.problems().push_back(
            absl::StrCat(path, ".type: \"", type, "\" is not a sink type (http, postgres)"));
      }
      r.Read(n[i], "url", path, &s.url);
      r.Read(n[i], "lookup_url", path, &s.lookup_url);
      r.ReadDuration(n[i], "connect_timeout", path, &s.connect_timeout);
      r.ReadDuration(n[i], "timeout", path, &s.timeout);
      r.Read(n[i], "max_in_flight", path, &s.max_in_flight);
      r.Read(n[i], "table", path, &s.table);
      r.Read(n[i], "database_url", path, &s.database_url);
      r.Read(n[i], "replay_rate_budget", path, &s.replay_rate_budget);
      c->sinks.push_back(std::move(s));
    }
  }
  if (auto n = root["routes"]; n.IsDefined()) {
    if (!n.IsSequence()) r.problems().push_back("routes: expected a list");
    for (size_t i = 0; n.IsSequence() && i < n.size(); ++i) {
      std::string path = absl::StrCat("routes[", i, "]");
      RouteConfig route;
      r.CheckKeys(n[i], path, {"name", "sources", "sink", "strict_order", "retry"});
      r.Read(n[i], "name", path, &route.name);
      r.Read(n[i], "sources", path, &route.sources);
      r.Read(n[i], "sink", path, &route.sink);
      r.Read(n[i], "strict_order", path, &route.strict_order);
      ReadRetry(r, n[i]["retry"], path + ".retry", &route.retry);
      c->routes.push_back(std::move(route));
    }
  }
  if (auto n = root["replay"]; n.IsDefined()) {
    r.CheckKeys(n, "replay",
                {"default_rate", "high_rate_threshold", "max_rate", "default_burst", "max_window"});
    r.Read(n, "default_rate", "replay", &c->replay.default_rate);
    r.Read(n, "high_rate_threshold", "replay", &c->replay.high_rate_threshold);
    r.Read(n, "max_rate", "replay", &c->replay.max_rate);
    r.Read(n, "default_burst", "replay", &c->replay.default_burst);
    r.ReadDuration(n, "max_window", "replay", &c->replay.max_window);
  }
  if (auto n = root["tokens"]; n.IsDefined()) {
    if (!n.IsSequence()) r.problems().push_back("tokens: expected a list");
    for (size_t i = 0; n.IsSequence() && i < n.size(); ++i) {
      std::string path = absl::StrCat("tokens[", i, "]");
      TokenConfig t;
      r.CheckKeys(n[i], path, {"token", "role", "name"});
      r.Read(n[i], "token", path, &t.token);
      r.Read(n[i], "role", path, &t.role);
      r.Read(n[i], "name", path, &t.name);
      c->tokens.push_back(std::move(t));
    }
  }
  if (auto n = root["tls"]; n.IsDefined()) {
    r.CheckKeys(n, "tls", {"cert_file", "key_file", "client_ca_file"});
    r.Read(n, "cert_file", "tls", &c->tls.cert_file);
    r.Read(n, "key_file", "tls", &c->tls.key_file);
    r.Read(n, "client_ca_file", "tls", &c->tls.client_ca_file);
  }
}

void Override(std::string* field, const char* env_name, const std::string& flag) {
  if (const char* v = std::getenv(env_name); v != nullptr && *v != '\0') *field = v;
  if (!flag.empty()) *field = flag;
}

bool ValidListenAddress(const std::string& addr) {
  static const std::regex kHostPort(R"(^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$)");
  std::smatch m;
  if (!std::regex_match(addr, m, kHostPort)) return false;
  return std::stoi(m[2].str()) <= 65535;
}

bool ValidHttpUrl(const std::string& url) {
  static const std::regex kUrl(R"(^https?://[A-Za-z0-9_.\-\[\]:]+(:[0-9]{1,5})?(/[^\s]*)?$)");
  return std::regex_match(url, kUrl);
}

}  // namespace

absl::StatusOr<Config> LoadConfig(const std::string& path, const ConfigOverrides& overrides) {
  Config config;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read config file ", path));
    }
    std::stringstream text;
    text << in.rdbuf();
    YAML::Node root;
    try {
      root = YAML::Load(text.str());
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not valid YAML: ", e.what()));
    }
    YamlReader reader;
    ReadFile(reader, root, &config);
    if (!reader.problems().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":\n  ", absl::StrJoin(reader.problems(), "\n  ")));
    }
  }
  Override(&config.database_url, "REPLAYD_DATABASE_URL", overrides.database_url);
  Override(&config.grpc_listen, "REPLAYD_GRPC_LISTEN", overrides.grpc_listen);
  Override(&config.http_listen, "REPLAYD_HTTP_LISTEN", overrides.http_listen);
  Override(&config.log_format, "REPLAYD_LOG_FORMAT", overrides.log_format);
  Override(&config.log_level, "REPLAYD_LOG_LEVEL", overrides.log_level);
  Override(&config.port_file, "REPLAYD_PORT_FILE", overrides.port_file);
  return config;
}

const SinkConfig* FindSink(const Config& config, const std::string& name) {
  for (const auto& sink : config.sinks) {
    if (sink.name == name) return &sink;
  }
  return nullptr;
}

std::vector<std::string> Validate(const Config& c) {
  std::vector<std::string> p;
  auto positive = [&](const std::string& what, double v) {
    if (v <= 0) p.push_back(absl::StrCat(what, " must be greater than 0 (got ", v, ")"));
  };
  if (c.database_url.empty()) {
    p.push_back("database_url is empty: set it in the file or REPLAYD_DATABASE_URL");
  }
  if (!ValidListenAddress(c.grpc_listen)) {
    p.push_back(absl::StrCat("grpc_listen \"", c.grpc_listen, "\" is not host:port"));
  }
  if (!ValidListenAddress(c.http_listen)) {
    p.push_back(absl::StrCat("http_listen \"", c.http_listen, "\" is not host:port"));
  }
  if (c.log_format != "text" && c.log_format != "json") {
    p.push_back(absl::StrCat("log_format \"", c.log_format, "\" must be text or json"));
  }
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn",
                                                "error", "critical", "off"};
  if (!kLevels.count(c.log_level)) {
    p.push_back(absl::StrCat("log_level \"", c.log_level,
                             "\" must be one of trace, debug, info, warn, error, critical, off"));
  }
  positive("database_pool_size", c.database_pool_size);
  positive("ingest.max_batch", c.ingest.max_batch);
  positive("ingest.max_payload_bytes", static_cast<double>(c.ingest.max_payload_bytes));
  if (c.partitions.create_ahead_days < 1) {
    p.push_back("partitions.create_ahead_days must be at least 1");
  }
  if (c.partitions.retention_days < 0) {
    p.push_back("partitions.retention_days must be 0 (keep everything) or more");
  }
  positive("delivery.workers", c.delivery.workers);
  positive("delivery.claim_batch", c.delivery.claim_batch);

  std::set<std::string> sink_names;
  for (size_t i = 0; i < c.sinks.size(); ++i) {
    const SinkConfig& s = c.sinks[i];
    std::string where = absl::StrCat("sinks[", i, "]", s.name.empty() ? "" : " (" + s.name + ")");
    if (s.name.empty()) p.push_back(absl::StrCat(where, ": name is empty"));
    if (!sink_names.insert(s.name).second) {
      p.push_back(absl::StrCat(where, ": duplicate sink name \"", s.name, "\""));
    }
    if (s.type == SinkConfig::Type::kHttp) {
      if (!ValidHttpUrl(s.url)) {
        p.push_back(absl::StrCat(where, ": url \"", s.url, "\" is not an http(s) URL"));
      }
      if (!s.lookup_url.empty() &&
          (!ValidHttpUrl(s.lookup_url) ||
           s.lookup_url.find("{idempotency_key}") == std::string::npos)) {
        p.push_back(absl::StrCat(where, ": lookup_url \"", s.lookup_url,
                                 "\" must be an http(s) URL containing {idempotency_key}"));
      }
      if (s.timeout <= absl::ZeroDuration() || s.connect_timeout <= absl::ZeroDuration()) {
        p.push_back(absl::StrCat(where, ": timeout and connect_timeout must be positive"));
      }
      positive(where + ": max_in_flight", s.max_in_flight);
    } else {
      static const std::regex kIdent(R"(^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$)");
      if (!std::regex_match(s.table, kIdent)) {
        p.push_back(absl::StrCat(where, ": table \"", s.table,
                                 "\" must be a plain table name (optionally schema.table)"));
      }
    }
    positive(where + ": replay_rate_budget", s.replay_rate_budget);
  }

  std::set<std::string> route_names;
  std::set<std::string> routed_sources;
  static const std::regex kSource("^[a-z0-9_.-]{1,64}$");
  for (size_t i = 0; i < c.routes.size(); ++i) {
    const RouteConfig& r = c.routes[i];
    std::string where = absl::StrCat("routes[", i, "]", r.name.empty() ? "" : " (" + r.name + ")");
    if (r.name.empty()) p.push_back(absl::StrCat(where, ": name is empty"));
    if (!route_names.insert(r.name).second) {
      p.push_back(absl::StrCat(where, ": duplicate route name \"", r.name, "\""));
    }
    if (r.sources.empty()) p.push_back(absl::StrCat(where, ": sources is empty"));
    for (const auto& source : r.sources) {
      if (!std::regex_match(source, kSource)) {
        p.push_back(absl::StrCat(where, ": source \"", source, "\" does not match [a-z0-9_.-]{1,64}"));
      } else if (!routed_sources.insert(source).second) {
        p.push_back(absl::StrCat(where, ": source \"", source,
                                 "\" is already routed by another route (one route per source)"));
      }
    }
    if (FindSink(c, r.sink) == nullptr) {
      p.push_back(absl::StrCat(where, ": sink \"", r.sink, "\" is not defined under sinks"));
    }
    if (r.retry.max_attempts < 1) {
      p.push_back(absl::StrCat(where, ": retry.max_attempts must be at least 1 (got ",
                               r.retry.max_attempts, ")"));
    }
    if (r.retry.base_delay <= absl::ZeroDuration()) {
      p.push_back(absl::StrCat(where, ": retry.base_delay must be positive"));
    }
    if (r.retry.max_delay < r.retry.base_delay) {
      p.push_back(absl::StrCat(where, ": retry.max_delay must be at least retry.base_delay"));
    }
  }

  positive("replay.default_rate", c.replay.default_rate);
  positive("replay.high_rate_threshold", c.replay.high_rate_threshold);
  positive("replay.max_rate", c.replay.max_rate);
  if (c.replay.default_rate > c.replay.high_rate_threshold) {
    p.push_back("replay.default_rate must not exceed replay.high_rate_threshold");
  }
  if (c.replay.high_rate_threshold > c.replay.max_rate) {
    p.push_back("replay.high_rate_threshold must not exceed replay.max_rate");
  }
  if (c.replay.default_burst < 0) p.push_back("replay.default_burst must be 0 or more");
  if (c.replay.max_window <= absl::ZeroDuration()) {
    p.push_back("replay.max_window must be positive");
  }

  static const std::set<std::string> kRoles = {"publisher", "viewer", "operator"};
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    const TokenConfig& t = c.tokens[i];
    std::string where = absl::StrCat("tokens[", i, "]", t.name.empty() ? "" : " (" + t.name + ")");
    if (t.token.size() < 16) p.push_back(absl::StrCat(where, ": token must be at least 16 characters"));
    if (!kRoles.count(t.role)) {
      p.push_back(absl::StrCat(where, ": role \"", t.role, "\" must be publisher, viewer or operator"));
    }
  }
  if (c.tls.cert_file.empty() != c.tls.key_file.empty()) {
    p.push_back("tls.cert_file and tls.key_file go together");
  }
  if (!c.tls.client_ca_file.empty() && c.tls.cert_file.empty()) {
    p.push_back("tls.client_ca_file (mutual TLS) needs tls.cert_file and tls.key_file");
  }
  return p;
}

}  // namespace replayd
