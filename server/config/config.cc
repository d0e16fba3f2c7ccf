#include "server/config/config.h"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/source_name.h"
#include "server/common/status_macros.h"
#include "server/config/schema.h"
#include "yaml-cpp/yaml.h"

namespace replayd {
namespace {

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

bool ValidLookupUrl(const std::string& url) {
  return ValidHttpUrl(url) && url.find("{idempotency_key}") != std::string::npos;
}

bool ValidTableName(const std::string& table) {
  static const std::regex kIdent(R"(^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$)");
  return std::regex_match(table, kIdent);
}

// "file:PATH" or "env:NAME": where a secret is read from when the daemon starts.
bool ValidSecretReference(const std::string& ref) {
  static const std::regex kRef(R"(^(file:.+|env:[A-Za-z_][A-Za-z0-9_]*)$)");
  return std::regex_match(ref, kRef);
}

absl::Status ValidateSecretReference(const std::string& ref) {
  if (ValidSecretReference(ref)) return absl::OkStatus();
  return absl::InvalidArgumentError("signing_secrets: each must be file:PATH or env:NAME");
}

absl::Status ValidateHeader(const std::string& header) {
  static const std::regex kHeader(R"(^[A-Za-z0-9!#$%&'*+.^_`|~-]+:[ \t]*[^\r\n]*$)");
  if (std::regex_match(header, kHeader)) return absl::OkStatus();
  // Nothing of it is shown: a malformed entry may be all value, and a value may be a secret.
  return absl::InvalidArgumentError("headers: an entry is not \"Name: value\"");
}

bool IsHttp(const SinkConfig& s) { return s.type == SinkConfig::Type::kHttp; }
bool IsPostgres(const SinkConfig& s) { return s.type == SinkConfig::Type::kPostgres; }

// Every key of the configuration. Its type and default come from the struct
// field; everything else about it is said here, once.
const schema::Section<Config>& ConfigSchema() {
  static const auto* kSchema = [] {
    auto* retry = new schema::Section<RetryPolicy>;
    retry->Add("max_attempts", &RetryPolicy::max_attempts, "attempts before an event is `failed`")
        .AtLeast(1);
    retry
        ->Add("base_delay", &RetryPolicy::base_delay,
              "wait before the first retry; doubled for each later one, with jitter")
        .Positive();
    retry->Add("max_delay", &RetryPolicy::max_delay, "longest wait between two attempts")
        .NotBelow(&RetryPolicy::base_delay, "base_delay");

    auto* sink = new schema::Section<SinkConfig>;
    sink->Add("name", &SinkConfig::name, "what routes call it (`routes[].sink`); unique")
        .Required();
    sink->AddEnum("type", &SinkConfig::type,
                  {{"http", SinkConfig::Type::kHttp}, {"postgres", SinkConfig::Type::kPostgres}},
                  "an HTTP downstream or a PostgreSQL table");
    sink->Add("url", &SinkConfig::url, "where each event is sent (http)")
        .OnlyWhen(IsHttp, "type is `http`")
        .Format(ValidHttpUrl, "http(s) URL", "is not an http(s) URL");
    sink->Add("lookup_url", &SinkConfig::lookup_url,
              "where a record is looked up before every create call (check-then-act); "
              "`{idempotency_key}` is replaced; empty = no lookup")
        .OnlyWhen(IsHttp, "type is `http`")
        .Format(ValidLookupUrl, "http(s) URL containing `{idempotency_key}`",
                "must be an http(s) URL containing {idempotency_key}", /*empty_ok=*/true);
    sink->Add("update_url", &SinkConfig::update_url,
              "where a record is overwritten with the event as logged (PUT of the envelope, "
              "`If-Match` with the record's known version; 412 = changed downstream since); "
              "`{idempotency_key}` is replaced; empty = no update path")
        .OnlyWhen(IsHttp, "type is `http`")
        .Format(ValidLookupUrl, "http(s) URL containing `{idempotency_key}`",
                "must be an http(s) URL containing {idempotency_key}", /*empty_ok=*/true);
    sink->Add("connect_timeout", &SinkConfig::connect_timeout, "longest wait for a connection")
        .OnlyWhen(IsHttp, "type is `http`")
        .Positive();
    sink->Add("timeout", &SinkConfig::timeout,
              "longest wait for an answer, counted from when the call is sent")
        .OnlyWhen(IsHttp, "type is `http`")
        .Positive();
    sink->Add("max_in_flight", &SinkConfig::max_in_flight,
              "calls to it at once; further calls wait their turn")
        .OnlyWhen(IsHttp, "type is `http`")
        .Positive();
    sink->Add("table", &SinkConfig::table, "downstream table (postgres)")
        .OnlyWhen(IsPostgres, "type is `postgres`")
        .Format(ValidTableName, "`table` or `schema.table`",
                "must be a plain table name (optionally schema.table)");
    sink->Add("database_url", &SinkConfig::database_url,
              "downstream database (postgres); empty = the daemon's own")
        .Secret();
    sink->Add("signing_secrets", &SinkConfig::signing_secrets,
              "Standard Webhooks signing: each `whsec_` secret signs every call "
              "(`webhook-signature`); two during a rotation; empty = unsigned")
        .OnlyWhen(IsHttp, "type is `http`")
        .Each(ValidateSecretReference, "each `file:PATH` or `env:NAME`, read at start-up");
    sink->Add("headers", &SinkConfig::headers,
              "static headers on every call, `Name: value`; a value `file:PATH` or `env:NAME` "
              "is read at start-up (e.g. `Authorization` from a secret file) and never logged")
        .OnlyWhen(IsHttp, "type is `http`")
        .Each(ValidateHeader, "each `Name: value`");
    auto* sink_tls = new schema::Section<SinkConfig::Tls>;
    sink_tls->Add("ca_file", &SinkConfig::Tls::ca_file,
                  "PEM CA bundle the downstream's certificate is checked against; empty = the "
                  "system's");
    sink_tls
        ->Add("cert_file", &SinkConfig::Tls::cert_file,
              "client certificate presented to the downstream (mutual TLS); empty = none")
        .Together(&SinkConfig::Tls::key_file, "key_file");
    sink_tls->Add("key_file", &SinkConfig::Tls::key_file, "private key of `cert_file`");
    sink->AddSection("tls", &SinkConfig::tls, sink_tls);
    sink->Add("replay_rate_budget", &SinkConfig::replay_rate_budget,
              "events per second all replays together may send to it")
        .Positive();

    auto* route = new schema::Section<RouteConfig>;
    route->Add("name", &RouteConfig::name, "shown in metrics and traces; unique").Required();
    route
        ->Add("sources", &RouteConfig::sources,
              "the sources whose events it delivers; a source is in one route at most")
        .Required()
        .Each(ValidateSourceName, "each `[a-z0-9_.-]{1,64}`");
    route->Add("sink", &RouteConfig::sink, "the `sinks[].name` it delivers to");
    route->Add("strict_order", &RouteConfig::strict_order,
               "a key's failed event holds back the key's later events until it is delivered");
    route->AddSection("retry", &RouteConfig::retry, retry);

    auto* token = new schema::Section<TokenConfig>;
    token->Add("token", &TokenConfig::token, "the bearer token").Secret().MinLength(16);
    token
        ->Add("role", &TokenConfig::role,
              "publisher: ingest; viewer: read and dry run; operator: viewer plus start and cancel")
        .OneOf({"publisher", "viewer", "operator"});
    token->Add("name", &TokenConfig::name, "who holds it, recorded in the audit table");

    auto* ingest = new schema::Section<Config::Ingest>;
    ingest->Add("max_batch", &Config::Ingest::max_batch, "events per Publish call or POST")
        .Positive();
    ingest
        ->Add("max_payload_bytes", &Config::Ingest::max_payload_bytes,
              "largest payload of one event")
        .Positive();
    ingest->Add("max_future_skew", &Config::Ingest::max_future_skew,
                "how far in the future `occurred_at` may be");

    auto* partitions = new schema::Section<Config::Partitions>;
    partitions
        ->Add("create_ahead_days", &Config::Partitions::create_ahead_days,
              "daily partitions kept ready ahead of today")
        .AtLeast(1);
    partitions
        ->Add("retention_days", &Config::Partitions::retention_days,
              "whole days older than this are dropped, and replays cannot reach them; "
              "0 keeps everything")
        .AtLeast(0);
    partitions->Add("maintenance_interval", &Config::Partitions::maintenance_interval,
                    "how often partitions are created and dropped");

    auto* delivery = new schema::Section<Config::Delivery>;
    delivery->Add("enabled", &Config::Delivery::enabled, "run live delivery in this daemon");
    delivery->Add("workers", &Config::Delivery::workers, "live delivery calls in flight at once")
        .Positive();
    delivery
        ->Add("claim_batch", &Config::Delivery::claim_batch,
              "events read and claimed per statement; twice as many are held in memory, and "
              "at most `claim_batch` or 4 × `workers` (the larger) are claimed ahead")
        .Positive();
    delivery->Add("poll_interval", &Config::Delivery::poll_interval,
                  "how often an idle dispatcher looks for new events");
    delivery->Add("claim_lease", &Config::Delivery::claim_lease,
                  "a claim held by a daemon that died is taken over after this");

    auto* replay = new schema::Section<ReplayLimits>;
    replay
        ->Add("default_rate", &ReplayLimits::default_rate,
              "events per second of a replay that names no rate")
        .Positive()
        .NotAbove(&ReplayLimits::high_rate_threshold, "high_rate_threshold");
    replay
        ->Add("high_rate_threshold", &ReplayLimits::high_rate_threshold,
              "a replay faster than this must be confirmed (`allow_high_rate`)")
        .Positive()
        .NotAbove(&ReplayLimits::max_rate, "max_rate");
    replay->Add("max_rate", &ReplayLimits::max_rate, "the fastest rate a replay may ask for")
        .Positive();
    replay
        ->Add("default_burst", &ReplayLimits::default_burst,
              "a replay's burst; 0 = one second's worth of its rate, at least 1")
        .AtLeast(0);
    replay
        ->Add("max_window", &ReplayLimits::max_window,
              "the widest time window one replay may select")
        .Positive();
    replay
        ->Add("plan_ttl", &ReplayLimits::plan_ttl,
              "how long a plan saved by a dry run (`save_plan`) can be started")
        .Positive();

    auto* breaker = new schema::Section<ReplayBreakerConfig>;
    breaker
        ->Add("consecutive_failures", &ReplayBreakerConfig::consecutive_failures,
              "a replay pauses itself after this many failed deliveries in a row; 0 = off")
        .AtLeast(0)
        .AtMost(kMaxBreakerCount);
    breaker
        ->Add("failure_ratio", &ReplayBreakerConfig::failure_ratio,
              "a replay pauses itself when this share of its last `window` outcomes failed; "
              "0 = off")
        .AtLeast(0)
        .AtMost(1);
    breaker
        ->Add("window", &ReplayBreakerConfig::window,
              "how many recent outcomes `failure_ratio` looks at (judged once that many are "
              "seen); 0 = off")
        .AtLeast(0)
        .AtMost(kMaxBreakerCount);
    replay->AddSection("breaker", &ReplayLimits::breaker, breaker);

    auto* tls = new schema::Section<Config::Tls>;
    tls->Add("cert_file", &Config::Tls::cert_file,
             "certificate for gRPC and the HTTP port; empty = plaintext")
        .Together(&Config::Tls::key_file, "key_file");
    tls->Add("key_file", &Config::Tls::key_file, "private key of `cert_file`");
    tls->Add("client_ca_file", &Config::Tls::client_ca_file,
             "set = mutual TLS: clients need a certificate signed by this CA")
        .Needs(&Config::Tls::cert_file, "cert_file");

    auto* config = new schema::Section<Config>;
    config->Add("grpc_listen", &Config::grpc_listen, "gRPC address; port 0 picks a free port")
        .Env("REPLAYD_GRPC_LISTEN")
        .Flag("--grpc-listen")
        .Format(ValidListenAddress, "host:port", "is not host:port");
    config
        ->Add("http_listen", &Config::http_listen,
              "HTTP address (dashboard, /metrics, POST /v1/events); port 0 picks a free port")
        .Env("REPLAYD_HTTP_LISTEN")
        .Flag("--http-listen")
        .Format(ValidListenAddress, "host:port", "is not host:port");
    config->Add("database_url", &Config::database_url, "PostgreSQL URL of the event log")
        .Env("REPLAYD_DATABASE_URL")
        .Flag("--database-url")
        .Required()
        .Secret();
    config
        ->Add("database_pool_size", &Config::database_pool_size, "database connections per daemon")
        .Positive();
    config
        ->Add("database_startup_timeout", &Config::database_startup_timeout,
              "a starting daemon retries an unreachable database (backing off up to 5 s) "
              "this long, then exits 1")
        .Positive();
    config
        ->Add("log_format", &Config::log_format, "how log lines are written; `json` for Kubernetes")
        .Env("REPLAYD_LOG_FORMAT")
        .Flag("--log-format")
        .OneOf({"text", "json"});
    config->Add("log_level", &Config::log_level, "the least severe level logged")
        .Env("REPLAYD_LOG_LEVEL")
        .Flag("--log-level")
        .OneOf({"trace", "debug", "info", "warn", "error", "critical", "off"});
    config
        ->Add("port_file", &Config::port_file,
              "where `grpc=PORT http=PORT` is written once listening; empty = nowhere")
        .Env("REPLAYD_PORT_FILE")
        .Flag("--port-file");
    config->AddSection("ingest", &Config::ingest, ingest);
    config->AddSection("partitions", &Config::partitions, partitions);
    config->AddSection("delivery", &Config::delivery, delivery);
    config->AddList("sinks", &Config::sinks, sink, &SinkConfig::name, "where events are delivered",
                    /*reloadable=*/true);
    config->AddList("routes", &Config::routes, route, &RouteConfig::name,
                    "which sources go to which sink", /*reloadable=*/true);
    config->AddSection("replay", &Config::replay, replay);
    config->AddList("tokens", &Config::tokens, token, &TokenConfig::name,
                    "API tokens; none = authentication off (local use only)");
    config->AddSection("tls", &Config::tls, tls);
    config
        ->Add("metrics_token", &Config::metrics_token,
              "set = `GET /metrics` needs `Authorization: Bearer <it>`; empty = open")
        .Env("REPLAYD_METRICS_TOKEN")
        .Secret()
        .Format([](const std::string& v) { return v.size() >= 16; }, "≥ 16 characters",
                "must be at least 16 characters", /*empty_ok=*/true);
    config->Add("shutdown_grace", &Config::shutdown_grace,
                "how long SIGTERM waits for work in flight");
    return config;
  }();
  return *kSchema;
}

// What one key cannot say about itself: names that must be unique or refer to
// another list.
void CheckAcrossKeys(const Config& c, std::vector<std::string>* p) {
  auto where = [](const char* list, size_t i, const std::string& name) {
    return absl::StrCat(list, "[", i, "]", name.empty() ? "" : " (" + name + ")");
  };
  // Reports entry `i` of `list` when an earlier entry took its name.
  auto check_name = [&](std::set<std::string>& taken, const char* list, const char* what, size_t i,
                        const std::string& name) {
    if (!taken.insert(name).second) {
      p->push_back(
          absl::StrCat(where(list, i, name), ": duplicate ", what, " name \"", name, "\""));
    }
  };
  std::set<std::string> sink_names;
  for (size_t i = 0; i < c.sinks.size(); ++i) {
    check_name(sink_names, "sinks", "sink", i, c.sinks[i].name);
  }
  std::set<std::string> route_names;
  std::set<std::string> routed_sources;
  for (size_t i = 0; i < c.routes.size(); ++i) {
    const RouteConfig& r = c.routes[i];
    check_name(route_names, "routes", "route", i, r.name);
    for (const auto& source : r.sources) {
      if (IsValidSourceName(source) && !routed_sources.insert(source).second) {
        p->push_back(absl::StrCat(where("routes", i, r.name), ": source \"", source,
                                  "\" is already routed by another route (one route per source)"));
      }
    }
    if (FindSink(c, r.sink) == nullptr) {
      p->push_back(absl::StrCat(where("routes", i, r.name), ": sink \"", r.sink,
                                "\" is not defined under sinks"));
    }
  }
}

}  // namespace

absl::StatusOr<Config> ParseConfigYaml(const std::string& text, const std::string& origin) {
  Config config;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": not valid YAML: ", e.what()));
  }
  schema::Problems problems;
  if (!root.IsNull()) ConfigSchema().Read(root, "", &config, &problems);
  if (!problems.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ":\n  ", absl::StrJoin(problems, "\n  ")));
  }
  return config;
}

absl::StatusOr<Config> LoadConfig(const std::string& path, const ConfigOverrides& overrides) {
  Config config;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read config file ", path));
    }
    std::stringstream text;
    text << in.rdbuf();
    ASSIGN_OR_RETURN(config, ParseConfigYaml(text.str(), path));
  }
  schema::Problems problems;
  ConfigSchema().Override(overrides, "", &config, &problems);
  if (!problems.empty()) return absl::InvalidArgumentError(absl::StrJoin(problems, "\n  "));
  return config;
}

std::vector<ConfigFlag> ConfigFlags() {
  std::vector<ConfigFlag> flags;
  ConfigSchema().Flags("", &flags);
  return flags;
}

std::string ConfigReference() {
  std::vector<schema::KeyDoc> rows;
  ConfigSchema().Document(Config{}, "", &rows);
  return schema::Markdown(rows);
}

std::vector<ConfigChange> DiffConfigs(const Config& before, const Config& after) {
  std::vector<ConfigChange> changes;
  ConfigSchema().Diff(before, after, "", /*reloadable=*/false, &changes);
  return changes;
}

const SinkConfig* FindSink(const Config& config, const std::string& name) {
  for (const auto& sink : config.sinks) {
    if (sink.name == name) return &sink;
  }
  return nullptr;
}

std::vector<std::string> Validate(const Config& c) {
  std::vector<std::string> problems;
  ConfigSchema().Check(c, schema::Where{}, &problems);
  CheckAcrossKeys(c, &problems);
  return problems;
}

}  // namespace replayd
