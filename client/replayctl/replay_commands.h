// replayctl's replay subcommands: dry-run, start, progress (also status),
// watch, pause, resume, cancel, list; they take the id of any job (replay,
// diff or compensate). And what the other job commands share with them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/time/time.h"
#include "client/replayctl/common.h"
#include "replay/v1/replay.pb.h"

namespace replayd::replayctl {

// Adds the subcommands to `app`; they read `options` when they run. A
// failing subcommand throws CLI::RuntimeError(exit code).
void RegisterReplayCommands(CLI::App& app, CommonOptions& options);

// Throws CLI::RuntimeError(code): how a failing subcommand ends.
[[noreturn]] void Fail(int code);
// Prints "replayctl: <message>" and fails with kExitUsage.
[[noreturn]] void UsageError(const std::string& message);
// The whole text of the file a flag names, or a usage error naming `flag`.
std::string ReadFlagFile(const char* flag, const std::string& path);
// A client for the server and credentials of `o`.
client::ReplayClient Client(const CommonOptions& o);
// An RFC 3339 or relative time flag, or a usage error naming `flag`.
absl::Time ParseTimeFlag(const char* flag, const std::string& text, absl::Time now);
// Asks `question` [y/N] on a terminal (showing `summary` again with -o
// json: stdout stays JSON only); fails with kExitAborted, saying
// "aborted: <aborted>", unless the answer is yes, and without a terminal.
void ConfirmOrAbort(const CommonOptions& o, const std::string& summary, const std::string& question,
                    const std::string& aborted);
// A job's progress: text, or one JSON object.
void PrintProgress(const CommonOptions& o, const replay::v1::ReplayProgress& p);
// Watches a job until it ends. Text: a bar redrawn on a terminal, a line per
// update otherwise, on stderr, then the final progress on stdout. JSON: one
// progress object per update on stdout (NDJSON), the last one final. Returns
// the exit code for the final state.
int Watch(const CommonOptions& o, client::ReplayClient& c, const std::string& id);

// Renderers, pure.
std::string RenderDryRun(const replay::v1::DryRunReport& report);
// A job's progress, its kind first ("replay rp-1: running").
std::string RenderProgress(const replay::v1::ReplayProgress& p);
std::string RenderProgressBar(const replay::v1::ReplayProgress& p, int width = 30);
std::string StateName(replay::v1::ReplayState state);  // "running", ...
std::string OutcomeLower(int outcome);                 // "failed", ...

// The ids of an --event-ids-file: one per line, surrounding blanks trimmed;
// blank lines and lines starting with # are skipped. Pure.
std::vector<std::string> ParseEventIdsFile(std::string_view text);

}  // namespace replayd::replayctl
