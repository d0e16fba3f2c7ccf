// The daemon's configuration: a YAML file, then REPLAYD_* environment
// variables, then command-line flags, each overriding the one before.
// Validate() lists every problem at once so that start-up fails with all of them.
// Each key is declared once, in the schema in config.cc (meaning, environment
// variable, flag, bounds); the fields below hold the defaults. Adding a key is
// a field here and a line there. The reference is docs/operations/configuration.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace replayd {

struct RetryPolicy {
  int max_attempts = 8;
  absl::Duration base_delay = absl::Milliseconds(500);
  absl::Duration max_delay = absl::Minutes(5);
};

struct SinkConfig {
  enum class Type { kHttp, kPostgres };
  std::string name;
  Type type = Type::kHttp;
  // http
  std::string url;
  std::string lookup_url;  // "{idempotency_key}" is replaced; empty = no lookup
  std::string update_url;  // "{idempotency_key}" is replaced; empty = no update path
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration timeout = absl::Seconds(10);
  int max_in_flight = 64;
  // postgres
  std::string table;         // downstream table
  std::string database_url;  // empty = the daemon's own database
  // Outbound security (http): Standard Webhooks signing keys and static
  // headers, each secret named by a reference ("file:PATH" or "env:NAME"),
  // never held in the file itself; TLS towards the downstream.
  std::vector<std::string> signing_secrets;
  std::vector<std::string> headers;  // "Name: value"; value may be a reference
  struct Tls {
    std::string ca_file;    // empty = the system's roots
    std::string cert_file;  // client certificate; empty = none
    std::string key_file;
  } tls;
  // Events per second all replays together may send to this sink.
  double replay_rate_budget = 200;
};

struct RouteConfig {
  std::string name;
  std::vector<std::string> sources;
  std::string sink;
  bool strict_order = false;
  RetryPolicy retry;
};

// A replay's circuit breaker (see server/replay/breaker.h); 0 turns a rule off.
struct ReplayBreakerConfig {
  int consecutive_failures = 10;
  double failure_ratio = 0.5;
  int window = 50;
};

// The bounds of a request's own breaker settings.
inline constexpr int kMaxBreakerCount = 10000;

struct ReplayLimits {
  double default_rate = 50;
  double high_rate_threshold = 200;
  double max_rate = 2000;
  int default_burst = 0;  // 0 = one second's worth of the rate, at least 1
  absl::Duration max_window = absl::Hours(24 * 7);
  // How long a plan saved by a dry run can be started.
  absl::Duration plan_ttl = absl::Hours(24);
  ReplayBreakerConfig breaker;
};

struct TokenConfig {
  std::string token;
  std::string role;  // publisher, viewer, operator
  std::string name;  // who, for the audit table
};

struct Config {
  std::string grpc_listen = "127.0.0.1:7070";
  std::string http_listen = "127.0.0.1:7080";
  std::string database_url;
  int database_pool_size = 16;
  // How long a starting daemon retries an unreachable database before exiting.
  absl::Duration database_startup_timeout = absl::Minutes(5);
  std::string log_format = "text";  // text or json
  std::string log_level = "info";
  // Where the daemon writes "grpc=PORT http=PORT" once listening (tests use port 0).
  std::string port_file;

  struct Ingest {
    int max_batch = 1000;
    int64_t max_payload_bytes = 1 << 20;
    // Accepted skew of occurred_at into the future.
    absl::Duration max_future_skew = absl::Hours(24);
  } ingest;

  struct Partitions {
    int create_ahead_days = 3;
    int retention_days = 0;  // 0 = keep everything
    absl::Duration maintenance_interval = absl::Minutes(10);
  } partitions;

  struct Delivery {
    bool enabled = true;
    int workers = 64;
    int claim_batch = 256;
    absl::Duration poll_interval = absl::Milliseconds(50);
    absl::Duration claim_lease = absl::Seconds(4);
  } delivery;

  std::vector<SinkConfig> sinks;
  std::vector<RouteConfig> routes;
  ReplayLimits replay;

  // Empty = authentication off (local use); otherwise every call needs a token.
  std::vector<TokenConfig> tokens;
  struct Tls {
    std::string cert_file;
    std::string key_file;
    std::string client_ca_file;  // set = mutual TLS
  } tls;
  // Empty = /metrics is open; otherwise it needs "Authorization: Bearer <it>".
  std::string metrics_token;

  absl::Duration shutdown_grace = absl::Seconds(20);
};

// Values given on the command line, by key ("database_url"); empty ones leave
// the config as is. Only keys that have a flag are read from here.
using ConfigOverrides = std::map<std::string, std::string>;

// Reads `path` (empty = no file), then the environment variables, then
// `overrides`, for the keys that declare them (ConfigFlags(), the reference
// table). INVALID_ARGUMENT when the file cannot be read or parsed, or has
// values of the wrong type or unknown keys; the message lists every problem found.
absl::StatusOr<Config> LoadConfig(const std::string& path, const ConfigOverrides& overrides);

// The file part of LoadConfig: YAML text to a Config (no environment, no
// overrides). INVALID_ARGUMENT as LoadConfig, messages prefixed with `origin`.
absl::StatusOr<Config> ParseConfigYaml(const std::string& text, const std::string& origin);

// Every semantic problem of a loaded config, one readable line each; empty when valid.
std::vector<std::string> Validate(const Config& config);

// The command-line flags of the configuration, e.g. {"--grpc-listen", "grpc_listen", "..."}.
struct ConfigFlag {
  std::string flag;
  std::string key;
  std::string help;
};
std::vector<ConfigFlag> ConfigFlags();

// Every key with its type, default, environment variable, flag, rules and
// meaning, as a Markdown table (docs/operations/configuration.md).
std::string ConfigReference();

// One key whose value differs between two configs ("routes[1].sink", or
// "routes" when the list's length changed), and whether SIGHUP can apply it
// (`sinks` and `routes`) or it needs a restart.
struct ConfigChange {
  std::string key;
  bool reloadable = false;
};
std::vector<ConfigChange> DiffConfigs(const Config& before, const Config& after);

// The sink a route sends to, or nullptr.
const SinkConfig* FindSink(const Config& config, const std::string& name);

}  // namespace replayd
