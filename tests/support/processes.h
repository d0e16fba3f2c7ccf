// Real processes for e2e tests: replayd, the downstream test server, and
// one-shot commands such as replayctl. Ports are 0 and read back from port files.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace replayd::testing {

// Paths of the binaries under test and of the cluster launcher, set by CMake.
extern const char* const kReplaydPath;
extern const char* const kReplayctlPath;
extern const char* const kDownstreamServerPath;
extern const char* const kPgThrowawayPath;

// A fresh temporary directory, removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The whole content of the file at `path` ("" when it cannot be read).
std::string ReadFile(const std::string& path);

// A child process with stdout and stderr appended to a log file.
class Process {
 public:
  Process() = default;
  ~Process();  // SIGKILLs the child if it still runs
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Start(const std::vector<std::string>& argv, const std::string& log_path,
             const std::map<std::string, std::string>& env = {});
  bool Running();
  // Sends `sig`; then waits for the exit and returns the exit code (128+signal
  // when killed). Returns -1 if it had not exited after `timeout_ms`.
  int Signal(int sig, int timeout_ms = 30000);
  // Waits for exit; -1 on timeout.
  int Wait(int timeout_ms);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a command to completion, capturing stdout and stderr.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {},
                         int timeout_ms = 120000);

// Runs replayd, or replayctl, to completion with `args` after its path.
CommandResult RunReplayd(const std::vector<std::string>& args);
CommandResult RunReplayctl(const std::vector<std::string>& args,
                           const std::map<std::string, std::string>& env = {});

// Stops, or starts again, the PostgreSQL server of the throwaway cluster the
// tests run on (`deploy/local/pg-throwaway run` exports PG_THROWAWAY_DIR), on
// the same port and data. The launcher's outcome, with its stderr when it
// failed or when the tests do not run under the launcher.
CommandResult SetPostgresRunning(bool running);

// Reads "key=value" lines written by a server once it listens; waits up to
// `timeout_ms`. Empty map on timeout.
std::map<std::string, std::string> WaitForPortFile(const std::string& path, int timeout_ms);

// The value of the first sample of replayd's /metrics (on `http_port`) whose
// line starts with `prefix` (the name and the start of its labels), or -1.
double MetricValue(int http_port, const std::string& prefix);

// The downstream test server (tests/tools/downstream).
class DownstreamServer {
 public:
  // mode: "idempotent" or "non-idempotent". Starts at once; fails the test
  // if it does not listen.
  explicit DownstreamServer(const std::string& mode = "idempotent");
  ~DownstreamServer();

  int port() const { return port_; }
  // Base URL, e.g. "http://127.0.0.1:PORT".
  std::string url() const;
  // The create path and the lookup URL pattern for replayd's sink config.
  std::string records_url() const { return url() + "/records"; }
  std::string lookup_url() const { return url() + "/records/{idempotency_key}"; }

  void SetFaults(const nlohmann::json& faults);
  void ClearFaults();
  nlohmann::json Requests();  // every create request, in arrival order
  nlohmann::json Updates();   // every update request, in arrival order
  nlohmann::json Stats();
  // Changes records as someone downstream would: a new version and `data`;
  // or forgets them (a restored backup). Fail the test unless answered 200.
  void Edit(const std::string& idempotency_key, const nlohmann::json& data);
  void Drop(const std::vector<std::string>& idempotency_keys);
  // Arrival times (µs) of the create requests, ascending; with `replay_id`,
  // only those that replay sent.
  std::vector<int64_t> ArrivalTimes(const std::string& replay_id = "");
  void Reset();

 private:
  nlohmann::json Call(const std::string& method, const std::string& path,
                      const std::string& body = "");

  TempDir dir_;
  Process process_;
  int port_ = 0;
};

// The real replayd, on its own config file.
class DaemonProcess {
 public:
  // `extra_yaml` is appended to a config holding database_url, loopback port-0
  // listeners and a port file; it may set sinks, routes, replay, delivery, ...
  DaemonProcess(std::string database_url, std::string extra_yaml = "");
  ~DaemonProcess();

  // Starts and waits until it listens (fails the test otherwise).
  void Start();
  // SIGKILL, no chance to clean up.
  void KillHard();
  // SIGTERM; returns the exit code.
  int Terminate();
  void Restart() { Start(); }
  // Rewrites the config file with `extra_yaml` in place of the one it was
  // made with, then sends SIGHUP.
  void Reload(const std::string& extra_yaml);
  bool Running() { return process_.Running(); }
  pid_t pid() const { return process_.pid(); }

  std::string grpc_address() const;  // "127.0.0.1:PORT"
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string config_path() const { return dir_.File("replayd.yaml"); }
  std::string log_path() const { return dir_.File("replayd.log"); }
  std::string log() const;  // the whole log so far

 private:
  TempDir dir_;
  std::string database_url_;
  std::string base_yaml_;  // the config file without the extra YAML
  Process process_;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

}  // namespace replayd::testing
