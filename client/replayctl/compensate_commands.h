// replayctl's diff and compensate: `diff` starts a diff job whose id is its
// compensation plan's; `compensate show|set|apply|list` review, change and
// apply plans. The jobs' progress, pause, resume and cancel are the replay
// commands'.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "client/replayctl/common.h"
#include "replay/v1/replay.pb.h"

namespace replayd::replayctl {

// Adds `diff` and `compensate` to `app`; they read `options` when they run.
// A failing subcommand throws CLI::RuntimeError(exit code).
void RegisterCompensateCommands(CLI::App& app, CommonOptions& options);

// Renderers, pure.
// What `diff` prints: the job (and plan) id and the exact next commands.
std::string RenderDiffStarted(const replay::v1::ReplayProgress& job);
// `compensate show`'s table: state, window, counts by class and action,
// upstream holes, samples, and what to do next.
std::string RenderCompensation(const replay::v1::Compensation& plan);
// What applying would do, entries by action: shown before apply asks.
std::string RenderApplySummary(const replay::v1::Compensation& plan);
// `compensate list`'s table, one plan a line with its counts by class.
std::string RenderCompensationList(const replay::v1::ListCompensationsResponse& list);
// One entry as a table line (tab-separated, the columns of the CSV).
std::string RenderEntryLine(const replay::v1::CompensationEntry& e);
// CSV (RFC 4180): the header line, and one line per entry, no newline at
// the end. Columns: source, event_id, class, action, log_outcome,
// record_id, record_version, result.
std::string EntryCsvHeader();
std::string RenderEntryCsv(const replay::v1::CompensationEntry& e);
// A plan's counts as CSV lines: class,action,count (header first).
std::string RenderCountsCsv(const replay::v1::Compensation& plan);

// The events of `compensate set --events-file`: one `source,event_id` per
// line, blanks around each trimmed; blank lines and lines starting with #
// are skipped. INVALID_ARGUMENT naming the first line that is not two
// non-empty fields. Pure.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseEventsFile(
    std::string_view text);

}  // namespace replayd::replayctl
