// replayctl's `audit`: the control actions (starts, cancels, lease
// take-overs, ...) over replay.v1.AuditService, newest first. A text table for
// people, `-o json` (the protobuf JSON mapping) for scripts.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "client/replayctl/inspect_commands.h"
#include "replay/v1/replay.pb.h"

namespace replayd::replayctl {

// Adds `audit [--replay ID] [--since -24h] [--limit N] [--before ID]` to `app`;
// the server, token and output come from `env`, as for the inspect commands.
void RegisterAuditCommand(CLI::App& app, InspectEnv env);

// One line per entry (time, actor, action, replay, reason, details), then
// how to ask for the older page when there is one. Pure (tested directly).
std::string RenderAudit(const replay::v1::ListAuditResponse& audit);

}  // namespace replayd::replayctl
