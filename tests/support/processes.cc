#include "tests/support/processes.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace replayd::testing {
namespace {

// fork + exec with the child's stdout/stderr on the given fds.
pid_t Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd,
            const std::map<std::string, std::string>& env) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    // Own process group, so that signals to the test runner do not reach it twice.
    setpgid(0, 0);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, STDIN_FILENO);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TempDir::TempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "replayd-test-XXXXXX").string();
  path_ = mkdtemp(templ.data());
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Process::~Process() {
  if (pid_ > 0) Signal(SIGKILL, 5000);
}

void Process::Start(const std::vector<std::string>& argv, const std::string& log_path,
                    const std::map<std::string, std::string>& env) {
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_ = Spawn(argv, fd, fd, env);
  close(fd);
}

bool Process::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int Process::Wait(int timeout_ms) {
  if (pid_ <= 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return ExitCode(status);
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int Process::Signal(int sig, int timeout_ms) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  return Wait(timeout_ms);
}

CommandResult SetPostgresRunning(bool running) {
  const char* cluster = std::getenv("PG_THROWAWAY_DIR");
  if (cluster == nullptr) return {-1, "", "run the tests under deploy/local/pg-throwaway run"};
  return RunCommand(
      {"/bin/bash", kPgThrowawayPath, running ? "start-server" : "stop-server", cluster});
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env, int timeout_ms) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) return {};
  pid_t pid = Spawn(argv, out_pipe[1], err_pipe[1], env);
  close(out_pipe[1]);
  close(err_pipe[1]);
  CommandResult result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[65536];
  while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
    if (poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, n);
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  if (open_fds > 0) kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  result.exit_code = open_fds > 0 ? -1 : ExitCode(status);
  return result;
}

namespace {

CommandResult RunWithPathFirst(const char* path, const std::vector<std::string>& args,
                               const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv = {path};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, env);
}

}  // namespace

CommandResult RunReplayd(const std::vector<std::string>& args) {
  return RunWithPathFirst(kReplaydPath, args, {});
}

CommandResult RunReplayctl(const std::vector<std::string>& args,
                           const std::map<std::string, std::string>& env) {
  return RunWithPathFirst(kReplayctlPath, args, env);
}

std::map<std::string, std::string> WaitForPortFile(const std::string& path, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(path)) {
      std::map<std::string, std::string> out;
      std::string text = ReadFile(path);
      for (absl::string_view line :
           absl::StrSplit(text, absl::ByAnyChar("\n "), absl::SkipEmpty())) {
        std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
        out[kv.first] = kv.second;
      }
      if (!out.empty()) return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {};
}

DownstreamServer::DownstreamServer(const std::string& mode) {
  std::string port_file = dir_.File("port");
  // More workers than two replicas hold connections: a worker serves one
  // connection while it stays open, so calls left hanging by a killed replica
  // must not keep another replica's calls waiting.
  process_.Start({kDownstreamServerPath, "--listen", "127.0.0.1:0", "--mode", mode, "--threads",
                  "128", "--port-file", port_file},
                 dir_.File("downstream.log"));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (port_ == 0 && std::chrono::steady_clock::now() < deadline) {
    std::string text = ReadFile(port_file);
    if (!text.empty()) port_ = std::atoi(text.c_str());
    if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (port_ == 0)
    ADD_FAILURE() << "downstream_server did not start: " << ReadFile(dir_.File("downstream.log"));
}

DownstreamServer::~DownstreamServer() { process_.Signal(SIGTERM, 5000); }

std::string DownstreamServer::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

nlohmann::json DownstreamServer::Call(const std::string& method, const std::string& path,
                                      const std::string& body) {
  httplib::Client client("127.0.0.1", port_);
  client.set_read_timeout(10, 0);
  httplib::Result res = method == "GET"      ? client.Get(path.c_str())
                        : method == "DELETE" ? client.Delete(path.c_str())
                                             : client.Post(path.c_str(), body, "application/json");
  if (!res) {
    ADD_FAILURE() << method << " " << path << ": downstream unreachable";
    return nullptr;
  }
  return nlohmann::json::parse(res->body, nullptr, false);
}

void DownstreamServer::SetFaults(const nlohmann::json& faults) {
  Call("POST", "/admin/faults", faults.dump());
}
void DownstreamServer::ClearFaults() { Call("DELETE", "/admin/faults"); }
nlohmann::json DownstreamServer::Requests() { return Call("GET", "/admin/requests"); }
nlohmann::json DownstreamServer::Updates() { return Call("GET", "/admin/updates"); }
nlohmann::json DownstreamServer::Stats() { return Call("GET", "/admin/stats"); }
void DownstreamServer::Edit(const std::string& idempotency_key, const nlohmann::json& data) {
  const nlohmann::json r =
      Call("POST", "/admin/edit", nlohmann::json{{"key", idempotency_key}, {"data", data}}.dump());
  EXPECT_TRUE(r.is_object() && r.contains("version")) << r.dump();
}
void DownstreamServer::Drop(const std::vector<std::string>& idempotency_keys) {
  const nlohmann::json r =
      Call("POST", "/admin/drop", nlohmann::json{{"keys", idempotency_keys}}.dump());
  EXPECT_EQ(r.value("dropped", -1), static_cast<int>(idempotency_keys.size())) << r.dump();
}

std::vector<int64_t> DownstreamServer::ArrivalTimes(const std::string& replay_id) {
  std::vector<int64_t> out;
  for (const nlohmann::json& r : Requests()) {
    if (replay_id.empty() || (r["replay_id"].is_string() && r["replay_id"] == replay_id)) {
      out.push_back(r["arrival_us"].get<int64_t>());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void DownstreamServer::Reset() { Call("POST", "/admin/reset"); }

DaemonProcess::DaemonProcess(std::string database_url, std::string extra_yaml)
    : database_url_(std::move(database_url)),
      base_yaml_(absl::StrCat("grpc_listen: 127.0.0.1:0\n", "http_listen: 127.0.0.1:0\n",
                              "port_file: ", dir_.File("ports"), "\n", "log_level: debug\n")) {
  std::ofstream config(config_path());
  config << base_yaml_ << extra_yaml << "\n";
}

double MetricValue(int http_port, const std::string& prefix) {
  httplib::Client http("127.0.0.1", http_port);
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) return -1;
  std::istringstream lines(res->body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

void DaemonProcess::Reload(const std::string& extra_yaml) {
  {
    std::ofstream config(config_path(), std::ios::trunc);
    config << base_yaml_ << extra_yaml << "\n";
  }
  kill(process_.pid(), SIGHUP);
}

DaemonProcess::~DaemonProcess() {
  if (process_.Running()) process_.Signal(SIGKILL, 5000);
}

void DaemonProcess::Start() {
  std::filesystem::remove(dir_.File("ports"));
  // A flag, so that a REPLAYD_DATABASE_URL in the environment cannot redirect it.
  process_.Start({kReplaydPath, "--config", config_path(), "--database-url", database_url_},
                 log_path());
  auto ports = WaitForPortFile(dir_.File("ports"), 30000);
  if (ports.empty()) {
    ADD_FAILURE() << "replayd did not start listening; log:\n" << log();
    return;
  }
  grpc_port_ = std::atoi(ports["grpc"].c_str());
  http_port_ = std::atoi(ports["http"].c_str());
}

void DaemonProcess::KillHard() { process_.Signal(SIGKILL, 10000); }

int DaemonProcess::Terminate() { return process_.Signal(SIGTERM, 60000); }

std::string DaemonProcess::grpc_address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

std::string DaemonProcess::log() const { return ReadFile(log_path()); }

}  // namespace replayd::testing
