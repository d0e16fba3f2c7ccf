// replayctl: the command-line client of replayd's replay and inspection APIs.
// Exit codes: see client/README.md (0 ok, 1 server error, 2 usage, 3 aborted,
// 4 unreachable, 5 authentication, 6 watched replay not completed).
#include <iostream>

#include <CLI/CLI.hpp>

#include "client/replayctl/audit_command.h"
#include "client/replayctl/common.h"
#include "client/replayctl/compensate_commands.h"
#include "client/replayctl/inspect_commands.h"
#include "client/replayctl/plan_commands.h"
#include "client/replayctl/replay_commands.h"

int main(int argc, char** argv) {
  using namespace replayd::replayctl;
  CLI::App app{
      "replayctl: dry-run, start, watch, pause, resume and cancel replays; diff and compensate; "
      "inspect the event log"};
  // At most one here and "none" checked after parsing, so that an unknown
  // command is named as such instead of reported as a missing one.
  app.require_subcommand(0, 1);
  CommonOptions options;
  app.add_option("-s,--server", options.server, "replayd gRPC address host:port")
      ->envname("REPLAYCTL_SERVER")
      ->default_val("127.0.0.1:7070");
  app.add_option("--token", options.token, "bearer token")->envname("REPLAYCTL_TOKEN");
  app.add_flag("--tls", options.tls, "connect with TLS (implied by the four options below)");
  app.add_option("--ca-file", options.ca_file,
                 "PEM CA certificates the server's is checked against")
      ->envname("REPLAYCTL_CA_FILE")
      ->check(CLI::ExistingFile);
  auto* cert = app.add_option("--cert", options.cert_file, "PEM client certificate (mutual TLS)")
                   ->envname("REPLAYCTL_CERT")
                   ->check(CLI::ExistingFile);
  auto* key = app.add_option("--key", options.key_file, "PEM private key of --cert")
                  ->envname("REPLAYCTL_KEY")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  app.add_option("--tls-server-name", options.tls_server_name,
                 "name expected in the server's certificate (default: the host of --server)")
      ->envname("REPLAYCTL_TLS_SERVER_NAME");
  app.add_option("-o,--output", options.output, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--timeout", options.timeout_seconds, "seconds per call (default 30)");
  app.fallthrough();

  RegisterReplayCommands(app, options);
  RegisterPlanCommands(app, options);
  RegisterCompensateCommands(app, options);
  InspectEnv server_env{
      [&options] { return replayd::client::ReplayClient(options.ClientOptionsFor()).channel(); },
      [&options](grpc::ClientContext* ctx) {
        replayd::client::ReplayClient(options.ClientOptionsFor()).PrepareCall(ctx);
      },
      &options.output,
      [](const grpc::Status& s) { return ReportError(replayd::client::FromGrpcStatus(s)); }};
  RegisterInspectCommands(app, server_env);
  RegisterAuditCommand(app, server_env);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (app.get_subcommands().empty()) {
    std::cerr << "replayctl: a command is required (see --help)\n";
    return kExitUsage;
  }
  return kExitOk;
}
