// The daemon's wiring and lifecycle: start order, background loops, graceful drain.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
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

 private:
  struct Components;

  void MaintenanceLoop();
  void HealthLoop();
  // Updates the polled gauges of /metrics (backlog) before a scrape.
  void PollMetrics();
  absl::Status WritePortFile(int grpc_port, int http_port) const;
  // Sleeps up to `d`; false once shutdown was requested.
  bool SleepUnlessStopping(absl::Duration d);

  const Config config_;
  std::unique_ptr<Components> c_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::vector<std::thread> loops_;
};

}  // namespace replayd
