#include "server/daemon/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/auth.h"
#include "server/common/backoff.h"
#include "server/common/clock.h"
#include "server/common/logging.h"
#include "server/common/metrics.h"
#include "server/daemon/config_reload.h"
#include "server/delivery/deliverer.h"
#include "server/delivery/dispatcher.h"
#include "server/http/dashboard_routes.h"
#include "server/http/events_routes.h"
#include "server/http/http_server.h"
#include "server/http/metrics_routes.h"
#include "server/ingest/ingester.h"
#include "server/replay/controller.h"
#include "server/rpc/audit_service.h"
#include "server/rpc/ingest_service.h"
#include "server/rpc/inspection.h"
#include "server/rpc/inspection_service.h"
#include "server/rpc/replay_service.h"
#include "server/store/migrator.h"
#include "server/store/partitions.h"
#include "server/store/pg_compensation_store.h"
#include "server/store/pg_delivery_store.h"
#include "server/store/pg_event_store.h"
#include "server/store/pg_inspection_store.h"
#include "server/store/pg_pool.h"
#include "server/store/pg_replay_store.h"

namespace replayd {

struct Daemon::Components {
  // First: the observers feeding it are used until everything else is gone.
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<MetricsIngestObserver> ingest_observer;
  std::unique_ptr<MetricsDeliveryObserver> delivery_observer;
  std::unique_ptr<MetricsReplayObserver> replay_observer;
  std::unique_ptr<PgPool> pool;
  std::unique_ptr<Partitions> partitions;
  std::unique_ptr<PgEventStore> event_store;
  std::unique_ptr<PgDeliveryStore> delivery_store;
  std::unique_ptr<Deliverer> deliverer;
  std::unique_ptr<Dispatcher> dispatcher;
  std::unique_ptr<Authenticator> auth;
  std::unique_ptr<Ingester> ingester;
  std::unique_ptr<IngestServiceImpl> ingest_service;
  std::unique_ptr<PgReplayStore> replay_store;
  std::unique_ptr<PgCompensationStore> compensation_store;
  std::unique_ptr<DryRunner> dry_runner;
  std::unique_ptr<ReplayRunner> replay_runner;
  std::unique_ptr<ReplayController> replay_controller;
  std::unique_ptr<ReplayServiceImpl> replay_service;
  std::unique_ptr<AuditServiceImpl> audit_service;
  std::unique_ptr<PgInspectionStore> inspection_store;
  std::unique_ptr<Inspector> inspector;
  std::unique_ptr<InspectionServiceImpl> inspection_service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<HttpServer> http_server;
  std::unique_ptr<ConfigReloader> reloader;
};

namespace {

constexpr const char* kLivenessService = "liveness";

std::vector<Credential> Credentials(const Config& config) {
  std::vector<Credential> out;
  for (const TokenConfig& t : config.tokens) {
    Role role = t.role == "publisher" ? Role::kPublisher
                : t.role == "viewer"  ? Role::kViewer
                                      : Role::kOperator;
    out.push_back({t.token, role, t.name.empty() ? std::string(RoleName(role)) : t.name});
  }
  return out;
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const Config& config) {
  if (config.tls.cert_file.empty()) return grpc::InsecureServerCredentials();
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  grpc::SslServerCredentialsOptions options(
      config.tls.client_ca_file.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = config.tls.client_ca_file.empty() ? "" : read(config.tls.client_ca_file);
  options.pem_key_cert_pairs.push_back({read(config.tls.key_file), read(config.tls.cert_file)});
  return grpc::SslServerCredentials(options);
}

}  // namespace

Daemon::Daemon(Config config) : config_(std::move(config)), c_(std::make_unique<Components>()) {}

Daemon::~Daemon() = default;

void Daemon::Shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
}

bool Daemon::SleepUnlessStopping(absl::Duration d) {
  std::unique_lock lock(mu_);
  return !stop_cv_.wait_for(lock, absl::ToChronoMilliseconds(d), [&] { return stopping_; });
}

absl::Status Daemon::Run() {
  auto log = Logger("daemon");
  log->info("replayd {} starting; database {}", REPLAYD_VERSION, RedactDsn(config_.database_url));

  absl::StatusOr<std::vector<std::string>> applied;
  absl::Status reached =
      RetryWhileUnavailable([&] { return (applied = Migrate(config_.database_url)).status(); },
                            {.total = config_.database_startup_timeout},
                            [&](const absl::Status& s, absl::Duration wait) {
                              log->warn("database not reachable ({}); retrying in {}", s.message(),
                                        absl::FormatDuration(wait));
                            });
  if (!reached.ok()) return reached;
  log->info("schema up to date ({} migrations applied now)", applied->size());

  const Clock& clock = SystemClock::Get();
  c_->pool = std::make_unique<PgPool>(config_.database_url, config_.database_pool_size);
  c_->partitions = std::make_unique<Partitions>(c_->pool.get());
  if (absl::Status s = c_->partitions->EnsureDays(
          clock.Now() - absl::Hours(24),
          clock.Now() + absl::Hours(24) * config_.partitions.create_ahead_days);
      !s.ok()) {
    return s;
  }
  c_->event_store = std::make_unique<PgEventStore>(c_->pool.get(), c_->partitions.get());
  c_->metrics = std::make_unique<Metrics>();
  c_->ingest_observer = std::make_unique<MetricsIngestObserver>(c_->metrics.get());
  c_->delivery_observer = std::make_unique<MetricsDeliveryObserver>(c_->metrics.get());
  c_->delivery_store = std::make_unique<PgDeliveryStore>(c_->pool.get());
  SinkTable sinks;
  auto routes = BuildRoutes(config_, &sinks);
  if (!routes.ok()) return routes.status();
  c_->deliverer = std::make_unique<Deliverer>(c_->delivery_store.get(), *std::move(routes),
                                              std::move(sinks), c_->delivery_observer.get());
  c_->auth = std::make_unique<Authenticator>(Credentials(config_));
  if (!c_->auth->enabled()) log->warn("no tokens configured: authentication is off");
  c_->ingester = std::make_unique<Ingester>(
      c_->event_store.get(), &clock,
      IngestLimits{config_.ingest.max_batch, config_.ingest.max_payload_bytes,
                   config_.ingest.max_future_skew},
      c_->ingest_observer.get());
  c_->ingest_service = std::make_unique<IngestServiceImpl>(c_->ingester.get(), c_->auth.get());
  c_->replay_store = std::make_unique<PgReplayStore>(c_->pool.get());
  c_->compensation_store = std::make_unique<PgCompensationStore>(c_->pool.get());
  RouteLookup routes_by_source = [d = c_->deliverer.get()](const std::string& source) {
    return d->RouteFor(source);
  };
  c_->inspection_store = std::make_unique<PgInspectionStore>(c_->pool.get());
  c_->dry_runner = std::make_unique<DryRunner>(c_->replay_store.get(), c_->inspection_store.get(),
                                               c_->partitions.get(), routes_by_source, &config_,
                                               &clock, c_->deliverer.get());
  c_->replay_observer = std::make_unique<MetricsReplayObserver>(c_->metrics.get());
  c_->replay_runner = std::make_unique<ReplayRunner>(
      c_->replay_store.get(), c_->delivery_store.get(), c_->deliverer.get(), routes_by_source,
      &config_,
      ReplayRunnerOptions{.instance = NewRunnerInstanceId(), .observer = c_->replay_observer.get()},
      c_->compensation_store.get());
  c_->replay_controller = std::make_unique<ReplayController>(
      c_->replay_store.get(), c_->dry_runner.get(), c_->replay_runner.get(), &config_, &clock,
      c_->compensation_store.get(), c_->deliverer.get());
  c_->replay_service =
      std::make_unique<ReplayServiceImpl>(c_->replay_controller.get(), c_->auth.get());
  c_->audit_service = std::make_unique<AuditServiceImpl>(c_->replay_store.get(), c_->auth.get());
  c_->inspector = std::make_unique<Inspector>(c_->inspection_store.get(), c_->event_store.get(),
                                              c_->delivery_store.get(), &clock);
  c_->inspection_service =
      std::make_unique<InspectionServiceImpl>(c_->inspector.get(), c_->auth.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(config_.grpc_listen, ServerCredentials(config_), &grpc_port);
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.RegisterService(c_->ingest_service.get());
  builder.RegisterService(c_->replay_service.get());
  builder.RegisterService(c_->inspection_service.get());
  builder.RegisterService(c_->audit_service.get());
  c_->grpc_server = builder.BuildAndStart();
  if (c_->grpc_server == nullptr || grpc_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on grpc ", config_.grpc_listen));
  }
  // "" (the overall status, readiness) follows the database; "liveness" only
  // says the process serves, so that a database outage takes replicas out of
  // load balancing without restarting them all.
  c_->grpc_server->GetHealthCheckService()->SetServingStatus("", true);
  c_->grpc_server->GetHealthCheckService()->SetServingStatus(kLivenessService, true);

  c_->http_server = std::make_unique<HttpServer>(
      HttpTls{config_.tls.cert_file, config_.tls.key_file, config_.tls.client_ca_file});
  RegisterEventRoutes(c_->http_server->server(), c_->ingester.get(), c_->auth.get());
  RegisterDashboardRoutes(c_->http_server->server(), c_->inspector.get(), c_->auth.get(),
                          ListReplaysOverGrpc(c_->grpc_server->InProcessChannel({})));
  RegisterAuditRoute(c_->http_server->server(), c_->auth.get(),
                     c_->grpc_server->InProcessChannel({}));
  RegisterCompensationRoutes(c_->http_server->server(), c_->auth.get(),
                             c_->grpc_server->InProcessChannel({}));
  RegisterMetricsRoutes(
      c_->http_server->server(), c_->metrics.get(), [this] { PollMetrics(); },
      config_.metrics_token);
  auto http_port = c_->http_server->Start(config_.http_listen);
  if (!http_port.ok()) {
    c_->grpc_server->Shutdown();
    return http_port.status();
  }
  std::string grpc_host = config_.grpc_listen.substr(0, config_.grpc_listen.rfind(':'));
  std::string http_host = config_.http_listen.substr(0, config_.http_listen.rfind(':'));
  log->info("listening: grpc {}:{} http {}:{}", grpc_host, grpc_port, http_host, *http_port);
  if (absl::Status s = WritePortFile(grpc_port, *http_port); !s.ok()) return s;

  loops_.emplace_back([this] { MaintenanceLoop(); });
  c_->replay_runner->Start();
  {
    std::lock_guard lock(reload_mu_);
    StartDispatcher();
    c_->reloader = std::make_unique<ConfigReloader>(
        config_, [this](const Config& next) { return ApplyRoutes(next); }, c_->metrics.get(),
        c_->replay_store.get());
    if (reload_during_start_) c_->reloader->Reload(*std::exchange(reload_during_start_, {}));
  }
  if (!config_.delivery.enabled) {
    log->warn("delivery is disabled (delivery.enabled: false): events stay pending");
  }
  loops_.emplace_back([this] { HealthLoop(); });

  {
    std::unique_lock lock(mu_);
    stop_cv_.wait(lock, [&] { return stopping_; });
  }

  log->info("draining: refusing new calls, finishing in-flight ones");
  c_->grpc_server->GetHealthCheckService()->SetServingStatus(false);
  c_->http_server->Stop();
  {
    std::lock_guard lock(reload_mu_);
    draining_ = true;
    c_->reloader.reset();
    if (c_->dispatcher != nullptr) c_->dispatcher->Stop();
  }
  c_->replay_runner->Stop();
  c_->replay_service->Shutdown();
  c_->grpc_server->Shutdown(std::chrono::system_clock::now() +
                            absl::ToChronoMilliseconds(config_.shutdown_grace));
  for (auto& t : loops_) t.join();
  loops_.clear();
  log->info("stopped");
  return absl::OkStatus();
}

void Daemon::Reload(const absl::StatusOr<Config>& next) {
  std::lock_guard lock(reload_mu_);
  if (c_->reloader != nullptr) {
    c_->reloader->Reload(next);
  } else if (!draining_) {
    Logger("config")->info("replayd is starting: the configuration is applied once it runs");
    reload_during_start_ = next;
  } else {
    Logger("config")->warn("SIGHUP ignored: replayd is stopping");
  }
}

void Daemon::StartDispatcher() {
  if (!config_.delivery.enabled) return;
  c_->dispatcher = std::make_unique<Dispatcher>(
      c_->delivery_store.get(), c_->deliverer.get(),
      DispatcherOptions{config_.delivery.workers, config_.delivery.claim_batch,
                        config_.delivery.poll_interval, config_.delivery.claim_lease, ""});
  c_->dispatcher->Start();
}

absl::Status Daemon::ApplyRoutes(const Config& next) {
  SinkTable sinks;
  auto routes = BuildRoutes(next, &sinks);
  if (!routes.ok()) return routes.status();
  // Live deliveries in flight finish, and are recorded, on the old routes
  // (Stop waits for them and gives their claims back); the new dispatcher
  // reads the log from its start, so the pending events of a source that
  // gained a route are delivered. Replays take each event's route as they
  // reach it.
  if (c_->dispatcher != nullptr) c_->dispatcher->Stop();
  c_->deliverer->SetRoutes(*std::move(routes), std::move(sinks));
  StartDispatcher();
  return absl::OkStatus();
}

absl::Status Daemon::WritePortFile(int grpc_port, int http_port) const {
  if (config_.port_file.empty()) return absl::OkStatus();
  std::string tmp = config_.port_file + ".tmp";
  {
    std::ofstream out(tmp);
    out << "grpc=" << grpc_port << "\nhttp=" << http_port << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, config_.port_file, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot write ", config_.port_file));
  return absl::OkStatus();
}

void Daemon::MaintenanceLoop() {
  auto log = Logger("store");
  const Clock& clock = SystemClock::Get();
  do {
    absl::Time now = clock.Now();
    if (absl::Status s = c_->partitions->EnsureDays(
            now, now + absl::Hours(24) * config_.partitions.create_ahead_days);
        !s.ok()) {
      log->warn("creating partitions ahead failed (will retry): {}", s.message());
    }
    if (auto dropped = c_->partitions->DropExpired(now, config_.partitions.retention_days);
        !dropped.ok()) {
      log->warn("retention failed (will retry): {}", dropped.status().message());
    }
  } while (SleepUnlessStopping(config_.partitions.maintenance_interval));
}

void Daemon::PollMetrics() {
  auto backlog = c_->inspection_store->CountBacklog();
  if (backlog.ok()) {
    c_->metrics->SetBacklog(backlog->pending, backlog->retrying);
  } else {
    Logger("http")->debug("metrics: backlog not polled: {}", backlog.status().message());
  }
  auto replays = c_->replay_controller->List({}, 500);
  if (!replays.ok()) return;
  std::map<std::string, int64_t> by_state;
  for (ReplayState s : {ReplayState::kPending, ReplayState::kRunning, ReplayState::kPaused,
                        ReplayState::kCancelling, ReplayState::kCancelled, ReplayState::kCompleted,
                        ReplayState::kFailed}) {
    by_state[std::string(ReplayStateName(s))] = 0;
  }
  std::map<std::string, bool> live;
  for (const ReplayJob& job : *replays) {
    ++by_state[std::string(ReplayStateName(job.state))];
    if (IsTerminal(job.state)) continue;
    live[job.id] = true;
    c_->metrics->SetReplayProgress(job.id, job.counters.processed, job.counters.total);
  }
  c_->metrics->SetReplayStates(by_state);
  c_->metrics->RetainReplayProgress(live);
}

void Daemon::HealthLoop() {
  auto log = Logger("daemon");
  bool serving = true;
  SchemaProbe probe(config_.database_url);
  do {
    // Route tables a reload replaced go once no delivery uses them.
    c_->deliverer->ReleaseRetired();
    bool ok = probe.Check().ok();
    std::lock_guard lock(mu_);
    // Once draining, Run() owns the status (NOT_SERVING); do not flip it back.
    if (stopping_) break;
    if (ok != serving) {
      serving = ok;
      c_->grpc_server->GetHealthCheckService()->SetServingStatus("", serving);
      if (serving) {
        log->info("health: SERVING (database answers, schema migrated)");
      } else {
        log->warn("health: NOT_SERVING (database unreachable or schema not migrated)");
      }
    }
  } while (SleepUnlessStopping(absl::Seconds(1)));
}

}  // namespace replayd
