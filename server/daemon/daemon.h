// The daemon's wiring and lifecycle: start order, background loops, graceful drain.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/config/config.h"

namespace replayd {

class Daemon {
 public:
  explicit Daemon(Config config);
  ~Daemon();

  // Migrates, starts every component, and blocks until Shutdown() is called;
  // then drains and stops them in reverse order. Errors: a component failed
  // to start (the database unreachable at start-up, a port in use, ...).
  absl::Status Run();

  // Asks Run() to drain and return. Safe from any thread, idempotent.
  void Shutdown();

  // SIGHUP: applies `next` (the configuration read again) if it is valid and
  // changes only sinks and routes; otherwise logs every problem and keeps the
  // running one (ConfigReloader). During start-up the last one is kept and
  // applied once everything runs; once Run() drains, it is ignored. Safe from
  // any thread.
  void Reload(const absl::StatusOr<Config>& next);

 private:
  struct Components;

  void MaintenanceLoop();
  void HealthLoop();
  // Updates the polled gauges of /metrics (backlog) before a scrape.
  void PollMetrics();
  absl::Status WritePortFile(int grpc_port, int http_port) const;
  // Starts live delivery unless it is disabled (reload_mu_ held).
  void StartDispatcher();
  // Builds `next`'s sinks and routes and swaps them in (reload_mu_ held).
  absl::Status ApplyRoutes(const Config& next);
  // Sleeps up to `d`; false once shutdown was requested.
  bool SleepUnlessStopping(absl::Duration d);

  const Config config_;
  std::unique_ptr<Components> c_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::vector<std::thread> loops_;
  // Serializes reloads with start-up and drain (the dispatcher, the reloader).
  std::mutex reload_mu_;
  std::optional<absl::StatusOr<Config>> reload_during_start_;  // guarded by reload_mu_
  bool draining_ = false;                                      // guarded by reload_mu_
};

}  // namespace replayd
