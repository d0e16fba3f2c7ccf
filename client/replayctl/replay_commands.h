// replayctl's replay subcommands: dry-run, start, progress, pause, resume,
// cancel, list.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "client/replayctl/common.h"
#include "replay/v1/replay.pb.h"

namespace replayd::replayctl {

// Adds the subcommands to `app`; they read `options` when they run. A
// failing subcommand throws CLI::RuntimeError(exit code).
void RegisterReplayCommands(CLI::App& app, CommonOptions& options);

// Renderers, pure.
std::string RenderDryRun(const replay::v1::DryRunReport& report);
std::string RenderProgressBar(const replay::v1::ReplayProgress& p, int width = 30);
std::string StateName(replay::v1::ReplayState state);  // "running", ...

// The ids of an --event-ids-file: one per line, surrounding blanks trimmed;
// blank lines and lines starting with # are skipped. Pure.
std::vector<std::string> ParseEventIdsFile(std::string_view text);

}  // namespace replayd::replayctl
