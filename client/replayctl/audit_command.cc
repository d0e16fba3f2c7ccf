#include "client/replayctl/audit_command.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/replayctl/json_output.h"
#include "client/replayctl/proto_time.h"
#include "replay/v1/replay.grpc.pb.h"
#include "server/common/time_format.h"

namespace replayd::replayctl {
namespace {

namespace pb = replay::v1;

struct AuditArgs {
  std::string replay_id;
  std::string since;
  int limit = 0;
  int64_t before = 0;
  std::string output;
};

}  // namespace

std::string RenderAudit(const pb::ListAuditResponse& audit) {
  if (audit.entries().empty()) return "No audit entries.\n";
  size_t actor_width = 5;
  size_t action_width = 6;
  size_t replay_width = 6;
  for (const pb::AuditEntry& e : audit.entries()) {
    actor_width = std::max(actor_width, e.actor().size());
    action_width = std::max(action_width, e.action().size());
    replay_width = std::max(replay_width, e.replay_id().size());
  }
  auto row = [&](const std::string& at, const std::string& actor, const std::string& action,
                 const std::string& replay, const std::string& rest) {
    return absl::StrFormat("%-20s  %-*s  %-*s  %-*s  %s\n", at, actor_width, actor, action_width,
                           action, replay_width, replay, rest);
  };
  std::string out = row("AT", "ACTOR", "ACTION", "REPLAY", "REASON / DETAIL");
  for (const pb::AuditEntry& e : audit.entries()) {
    std::string rest = e.reason();
    if (!e.detail_json().empty() && e.detail_json() != "{}") {
      absl::StrAppend(&rest, rest.empty() ? "" : "  ", e.detail_json());
    }
    // Whole seconds keep the column aligned; -o json has the exact time.
    const absl::Time at = absl::FromUnixSeconds(absl::ToUnixSeconds(FromTimestamp(e.at())));
    absl::StrAppend(&out, row(FormatRfc3339(at), e.actor(), e.action(),
                              e.replay_id().empty() ? "-" : e.replay_id(), rest));
  }
  if (audit.next_before_id() > 0) {
    absl::StrAppend(&out, "Older entries: add --before ", audit.next_before_id(), "\n");
  }
  return out;
}

void RegisterAuditCommand(CLI::App& app, InspectEnv env) {
  auto args = std::make_shared<AuditArgs>();
  CLI::App* audit = app.add_subcommand(
      "audit", "Who started, cancelled or took over which replay, when and why (newest first)");
  audit->add_option("--replay", args->replay_id, "Only this replay's entries");
  audit->add_option("--since", args->since, "Only entries from this time (RFC 3339 or -24h, -7d)");
  audit->add_option("--limit", args->limit, "At most this many entries (default 100, max 1000)")
      ->check(CLI::NonNegativeNumber);
  audit->add_option("--before", args->before, "Only entries older than this id (paging)")
      ->check(CLI::NonNegativeNumber);
  if (env.output == nullptr) {
    audit->add_option("-o,--output", args->output, "Output: text or json")
        ->check(CLI::IsMember({"text", "json"}));
  }
  audit->callback([env, args] {
    pb::ListAuditRequest request;
    request.set_replay_id(args->replay_id);
    if (!args->since.empty()) {
      auto since = ParseTimeArg(args->since, absl::Now());
      if (!since.ok()) throw CLI::ValidationError("--since", std::string(since.status().message()));
      ToTimestamp(*since, request.mutable_since());
    }
    request.set_limit(args->limit);
    request.set_before_id(args->before);
    pb::ListAuditResponse response;
    grpc::ClientContext context;
    if (env.prepare_call) env.prepare_call(&context);
    grpc::Status status =
        pb::AuditService::NewStub(env.channel())->ListAudit(&context, request, &response);
    if (!status.ok()) {
      int code = env.report_error ? env.report_error(status) : 1;
      throw CLI::RuntimeError(code);
    }
    const std::string& output =
        env.output != nullptr && args->output.empty() ? *env.output : args->output;
    std::cout << (output == "json" ? ToJson(response) + "\n" : RenderAudit(response));
  });
}

}  // namespace replayd::replayctl
