// replayd: flags -> logging -> config -> run the daemon (or migrate, check the
// config, or print its reference) -> exit code.
//   0 ok, 1 runtime failure, 2 invalid configuration or usage.
#include <csignal>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/str_join.h"
#include "server/common/logging.h"
#include "server/config/config.h"
#include "server/daemon/daemon.h"
#include "server/store/migrator.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitBadConfig = 2;

// Blocks SIGINT, SIGTERM and SIGHUP in every thread, and waits for them on one.
class SignalWaiter {
 public:
  SignalWaiter() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  // `shutdown` on the first SIGINT or SIGTERM; `reload` on each SIGHUP before it.
  void OnSignal(std::function<void()> shutdown, std::function<void()> reload) {
    thread_ = std::thread([this, shutdown = std::move(shutdown), reload = std::move(reload)] {
      for (;;) {
        int sig = 0;
        sigwait(&set_, &sig);
        if (sig == SIGHUP) {
          replayd::Logger("daemon")->info("received SIGHUP, reading the configuration again");
          reload();
          continue;
        }
        replayd::Logger("daemon")->info("received {}, shutting down",
                                        sig == SIGTERM ? "SIGTERM" : "SIGINT");
        shutdown();
        return;
      }
    });
    thread_.detach();
  }

 private:
  sigset_t set_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  SignalWaiter signals;
  CLI::App app{"replayd: durable event log, exactly-once delivery and safe replay"};
  std::string config_path;
  replayd::ConfigOverrides overrides;
  app.add_option("-c,--config", config_path, "YAML configuration file")->envname("REPLAYD_CONFIG");
  for (const auto& flag : replayd::ConfigFlags()) {
    app.add_option(flag.flag, overrides[flag.key], flag.help);
  }
  // Subcommands accept the top-level options too: replayd check-config --config x.
  app.fallthrough();
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");
  auto* migrate = app.add_subcommand("migrate", "apply pending schema migrations and exit");
  auto* check = app.add_subcommand("check-config", "validate the configuration and exit");
  auto* reference = app.add_subcommand(
      "config-reference", "print every configuration key as a Markdown table and exit");
  app.add_subcommand("run", "run the daemon (the default)");
  app.require_subcommand(0, 1);
  CLI11_PARSE(app, argc, argv);

  if (version) {
    std::cout << "replayd " << REPLAYD_VERSION << "\n";
    return kExitOk;
  }
  if (reference->parsed()) {
    std::cout << replayd::ConfigReference();
    return kExitOk;
  }

  auto config = replayd::LoadConfig(config_path, overrides);
  if (!config.ok()) {
    std::cerr << "invalid configuration: " << config.status().message() << "\n";
    return kExitBadConfig;
  }
  std::vector<std::string> problems = replayd::Validate(*config);
  if (!problems.empty()) {
    std::cerr << "invalid configuration (" << problems.size() << " problem"
              << (problems.size() == 1 ? "" : "s") << "):\n  " << absl::StrJoin(problems, "\n  ")
              << "\n";
    return kExitBadConfig;
  }
  if (check->parsed()) {
    std::cout << "configuration ok: " << config->routes.size() << " routes, "
              << config->sinks.size() << " sinks, database "
              << replayd::RedactDsn(config->database_url) << "\n";
    return kExitOk;
  }
  auto format =
      config->log_format == "json" ? replayd::LogFormat::kJson : replayd::LogFormat::kText;
  if (auto s = replayd::SetupLogging(format, config->log_level); !s.ok()) {
    std::cerr << s.message() << "\n";
    return kExitBadConfig;
  }
  if (migrate->parsed()) {
    auto applied = replayd::Migrate(config->database_url);
    if (!applied.ok()) {
      replayd::Logger("daemon")->error("migrate failed: {}", applied.status().message());
      return kExitFailure;
    }
    std::cout << "applied " << applied->size() << " migrations"
              << (applied->empty() ? "" : ": " + absl::StrJoin(*applied, ", ")) << "\n";
    return kExitOk;
  }

  replayd::Daemon daemon(*std::move(config));
  signals.OnSignal([&daemon] { daemon.Shutdown(); },
                   [&] { daemon.Reload(replayd::LoadConfig(config_path, overrides)); });
  absl::Status status = daemon.Run();
  if (!status.ok()) {
    replayd::Logger("daemon")->error("{}", status.message());
    return kExitFailure;
  }
  return kExitOk;
}
