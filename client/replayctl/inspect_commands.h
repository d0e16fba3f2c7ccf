// replayctl's read-only views: `timeline`, `gaps` and `trace`, over
// replay.v1.InspectionService. Text for people (colour only on a terminal),
// `-o json` (proto JSON, field names as in the .proto) for scripts.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include "replay/v1/inspection.pb.h"

namespace replayd::replayctl {

// What the inspect subcommands need from replayctl's common options, read
// when a subcommand runs (after parsing).
struct InspectEnv {
  // A channel to the server named by the common options (address, TLS).
  std::function<std::shared_ptr<grpc::Channel>()> channel;
  // Adds the bearer token (and a deadline) to a call.
  std::function<void(grpc::ClientContext*)> prepare_call;
  // The common output option ("text" or "json"); null = each subcommand's own -o.
  const std::string* output = nullptr;
  // Prints a failed call's message to stderr and returns the exit code.
  std::function<int(const grpc::Status&)> report_error;
};

// Adds `timeline`, `gaps` and `trace` to `app`. A failing subcommand throws
// CLI::RuntimeError(exit code), which `app.exit(e)` turns into the exit code.
void RegisterInspectCommands(CLI::App& app, InspectEnv env);

// Renderers, pure (tested directly). `color` adds ANSI colours; `width` is the
// bar width in characters.
std::string RenderTimeline(const replay::v1::Timeline& timeline, bool color, int width = 50);
std::string RenderGaps(const replay::v1::Gaps& gaps, bool color);
std::string RenderTrace(const replay::v1::EventTrace& trace);
// "max_attempts 3 base 100ms cap 1s", "-" for each field not set.
std::string RetryPolicyText(const replay::v1::RetryPolicy& retry);

}  // namespace replayd::replayctl
