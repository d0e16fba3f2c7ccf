// replayctl's saved plans: `plan show ID [--events]`, and the plan summary
// that `start --plan ID` shows before it asks.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "client/replayctl/common.h"
#include "replay/v1/replay.pb.h"

namespace replayd::replayctl {

// Adds `plan show` to `app`; it reads `options` when it runs. A failing
// subcommand throws CLI::RuntimeError(exit code).
void RegisterPlanCommands(CLI::App& app, CommonOptions& options);

// Renderers, pure.
std::string RenderPlan(const replay::v1::Plan& plan);
// One line: source, event id, decision.
std::string RenderPlanEvent(const replay::v1::PlanEvent& event);

}  // namespace replayd::replayctl
