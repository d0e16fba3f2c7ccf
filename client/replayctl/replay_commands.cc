#include "client/replayctl/replay_commands.h"
#include "client/replayctl/json_output.h"
#include "client/replayctl/plan_commands.h"
#include "client/replayctl/proto_time.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/common/time_format.h"

namespace replayd::replayctl {

namespace pb = replay::v1;

void Fail(int code) { throw CLI::RuntimeError(code); }

void UsageError(const std::string& message) {
  std::cerr << "replayctl: " << message << "\n";
  Fail(kExitUsage);
}

std::string ReadFlagFile(const char* flag, const std::string& path) {
  std::ifstream in(path);
  if (!in) UsageError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

client::ReplayClient Client(const CommonOptions& o) {
  return client::ReplayClient(o.ClientOptionsFor());
}

absl::Time ParseTimeFlag(const char* flag, const std::string& text, absl::Time now) {
  auto t = ParseTimeArg(text, now);
  if (!t.ok()) UsageError(absl::StrCat(flag, ": ", t.status().message()));
  return *t;
}

void ConfirmOrAbort(const CommonOptions& o, const std::string& summary, const std::string& question,
                    const std::string& aborted) {
  if (isatty(STDIN_FILENO) == 0) {
    std::cerr << "replayctl: not starting without confirmation: pass --yes\n";
    Fail(kExitAborted);
  }
  // Whoever answers must see what they confirm; stdout stays JSON only.
  if (o.json()) std::cerr << summary;
  std::cerr << question << " [y/N] " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  if (answer != "y" && answer != "Y" && answer != "yes") {
    std::cerr << "aborted: " << aborted << "\n";
    Fail(kExitAborted);
  }
}

namespace {

// Flags shared by dry-run and start.
struct RequestFlags {
  std::string from;
  std::string to;
  std::vector<std::string> sources;
  std::vector<std::string> outcomes;
  bool include_succeeded = false;
  double rate = 0;
  int burst = 0;
  bool allow_high_rate = false;
  bool verify_downstream = false;
  std::string reason;
  std::optional<int> breaker_consecutive_failures;
  std::optional<double> breaker_failure_ratio;
  std::optional<int> breaker_window;
  std::vector<std::string> keys;
  std::vector<std::string> types;
  std::vector<std::string> event_ids;
  std::string event_ids_file;
  std::string sink;
  std::optional<int> max_attempts;
  std::string retry_base;
  std::string retry_cap;
};

void AddRequestFlags(CLI::App* cmd, RequestFlags& f) {
  cmd->add_option("--from", f.from, "window start (RFC 3339, or relative: -6h, now)")->required();
  cmd->add_option("--to", f.to, "window end, exclusive (RFC 3339, or relative: -1h, now)")
      ->required();
  cmd->add_option("--source", f.sources, "only these sources (repeat, or comma-separated)")
      ->delimiter(',');
  cmd->add_option("--outcome", f.outcomes,
                  "outcomes to replay: failed, pending, retrying, succeeded, already_processed "
                  "(default failed,pending,retrying)")
      ->delimiter(',');
  cmd->add_flag("--include-succeeded", f.include_succeeded,
                "also resend delivered events (same idempotency keys)");
  cmd->add_option("--rate", f.rate, "events per second (default: the server's, 50)");
  cmd->add_option("--burst", f.burst, "token bucket burst (default: one second's worth)");
  cmd->add_flag("--allow-high-rate", f.allow_high_rate,
                "confirm a rate above the server's high-rate threshold");
  cmd->add_flag("--verify-downstream", f.verify_downstream,
                "ask the downstream's lookup before each delivery");
  cmd->add_option("--reason", f.reason, "why (recorded in the audit log)");
  cmd->add_option("--breaker-consecutive-failures", f.breaker_consecutive_failures,
                  "pause after this many failed deliveries in a row; 0 = off "
                  "(default: the server's replay.breaker)");
  cmd->add_option("--breaker-failure-ratio", f.breaker_failure_ratio,
                  "pause when this share of the last --breaker-window outcomes failed; 0 = off");
  cmd->add_option("--breaker-window", f.breaker_window,
                  "how many recent outcomes --breaker-failure-ratio looks at; 0 = off");
  cmd->add_option("--key", f.keys, "only events of this key (repeat for more)");
  cmd->add_option("--type", f.types, "only events of this type (repeat for more)");
  cmd->add_option("--event-id", f.event_ids, "only this event id (repeat for more)");
  cmd->add_option("--event-ids-file", f.event_ids_file,
                  "only the event ids in FILE: one per line, blank lines and # comments ignored");
  cmd->add_option("--sink", f.sink,
                  "deliver to this configured sink instead of each route's (live delivery keeps "
                  "its routes)");
  cmd->add_option("--max-attempts", f.max_attempts,
                  "this replay's attempts per event, 1-100 (default: the route's)");
  cmd->add_option("--retry-base", f.retry_base,
                  "this replay's first wait before a retry, e.g. 500ms (default: the route's)");
  cmd->add_option("--retry-cap", f.retry_cap,
                  "this replay's longest wait between attempts, e.g. 30s (default: the route's)");
}

// The request's fields a start sets whatever it replays: pacing, breaker, why.
pb::ReplayRequest StartOnlyRequest(const RequestFlags& f) {
  pb::ReplayRequest r;
  r.set_rate(f.rate);
  r.set_burst(f.burst);
  r.set_allow_high_rate(f.allow_high_rate);
  r.set_reason(f.reason);
  if (f.breaker_consecutive_failures) {
    r.mutable_breaker()->set_consecutive_failures(*f.breaker_consecutive_failures);
  }
  if (f.breaker_failure_ratio) r.mutable_breaker()->set_failure_ratio(*f.breaker_failure_ratio);
  if (f.breaker_window) r.mutable_breaker()->set_window(*f.breaker_window);
  return r;
}

pb::ReplayRequest BuildRequest(const RequestFlags& f) {
  pb::ReplayRequest r = StartOnlyRequest(f);
  absl::Time now = absl::Now();
  ToTimestamp(ParseTimeFlag("--from", f.from, now), r.mutable_from());
  ToTimestamp(ParseTimeFlag("--to", f.to, now), r.mutable_to());
  for (const auto& s : f.sources) {
    if (!s.empty()) r.add_sources(s);
  }
  for (const auto& o : f.outcomes) {
    pb::Outcome outcome;
    std::string upper = o;
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    if (!pb::Outcome_Parse(upper, &outcome) || outcome == pb::OUTCOME_UNSPECIFIED) {
      UsageError(
          absl::StrCat("--outcome: \"", o,
                       "\" is not failed, pending, retrying, succeeded or already_processed"));
    }
    r.add_outcomes(outcome);
  }
  r.set_include_succeeded(f.include_succeeded);
  r.set_verify_downstream(f.verify_downstream);
  for (const auto& k : f.keys) r.add_keys(k);
  for (const auto& t : f.types) r.add_types(t);
  for (const auto& id : f.event_ids) r.add_event_ids(id);
  if (!f.event_ids_file.empty()) {
    for (auto& id : ParseEventIdsFile(ReadFlagFile("--event-ids-file", f.event_ids_file))) {
      r.add_event_ids(std::move(id));
    }
  }
  r.set_sink(f.sink);
  if (f.max_attempts) r.mutable_retry()->set_max_attempts(*f.max_attempts);
  auto duration = [](const char* flag, const std::string& text, google::protobuf::Duration* out) {
    absl::Duration d;
    if (!absl::ParseDuration(text, &d)) {
      UsageError(absl::StrCat(flag, ": \"", text, "\" is not a duration (e.g. 500ms, 2s, 1m)"));
    }
    ToDuration(d, out);
  };
  if (!f.retry_base.empty())
    duration("--retry-base", f.retry_base, r.mutable_retry()->mutable_base());
  if (!f.retry_cap.empty()) duration("--retry-cap", f.retry_cap, r.mutable_retry()->mutable_cap());
  return r;
}

}  // namespace

std::vector<std::string> ParseEventIdsFile(std::string_view text) {
  std::vector<std::string> out;
  const absl::string_view all(text.data(), text.size());
  for (absl::string_view line : absl::StrSplit(all, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    out.emplace_back(line);
  }
  return out;
}

std::string OutcomeLower(int o) {
  std::string s = pb::Outcome_Name(static_cast<pb::Outcome>(o));
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

void PrintProgress(const CommonOptions& o, const pb::ReplayProgress& p) {
  if (o.json()) {
    std::cout << ToJson(p) << "\n";
  } else {
    std::cout << RenderProgress(p);
  }
}

int Watch(const CommonOptions& o, client::ReplayClient& c, const std::string& id) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  auto last = c.WatchProgress(id, [&](const pb::ReplayProgress& p) {
    if (o.json()) {
      std::cout << ToJson(p) << std::endl;
      return;
    }
    std::cerr << (tty ? "\r\033[K" : "") << RenderProgressBar(p) << (tty ? "" : "\n") << std::flush;
  });
  if (!o.json() && tty) std::cerr << "\n";
  if (!last.ok()) return ReportError(last.status());
  if (!o.json()) PrintProgress(o, *last);
  return last->state() == pb::REPLAY_COMPLETED ? kExitOk : kExitNotCompleted;
}

int ReportError(const absl::Status& status) {
  std::cerr << "replayctl: " << absl::StatusCodeToString(status.code()) << ": " << status.message()
            << "\n";
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded: return kExitUnreachable;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied: return kExitAuth;
    default: return kExitServerError;
  }
}

std::string StateName(pb::ReplayState state) {
  switch (state) {
    case pb::REPLAY_PENDING: return "pending";
    case pb::REPLAY_RUNNING: return "running";
    case pb::REPLAY_PAUSED: return "paused";
    case pb::REPLAY_CANCELLING: return "cancelling";
    case pb::REPLAY_CANCELLED: return "cancelled";
    case pb::REPLAY_COMPLETED: return "completed";
    case pb::REPLAY_FAILED: return "failed";
    default: return "unspecified";
  }
}

std::string RenderProgress(const pb::ReplayProgress& p) {
  std::string out = absl::StrCat(p.kind().empty() ? "replay" : p.kind(), " ", p.replay_id(), ": ",
                                 StateName(p.state()), "\n");
  absl::StrAppend(&out, "  window    [", FormatRfc3339(FromTimestamp(p.request().from())), ", ",
                  FormatRfc3339(FromTimestamp(p.request().to())), ")",
                  p.request().sources().empty()
                      ? " every source"
                      : absl::StrCat(" sources ", absl::StrJoin(p.request().sources(), ",")),
                  "\n");
  const pb::ReplayRequest& r = p.request();
  if (!r.keys().empty()) absl::StrAppend(&out, "  keys      ", absl::StrJoin(r.keys(), ","), "\n");
  if (!r.types().empty()) {
    absl::StrAppend(&out, "  types     ", absl::StrJoin(r.types(), ","), "\n");
  }
  if (!r.event_ids().empty()) absl::StrAppend(&out, "  event ids ", r.event_ids_size(), "\n");
  if (!r.sink().empty()) absl::StrAppend(&out, "  sink      ", r.sink(), "\n");
  absl::StrAppend(&out, "  total     ", p.total(), "\n  processed ", p.processed(),
                  "\n  delivered ", p.delivered(), "\n  skipped   ", p.skipped(), "\n  failed    ",
                  p.failed(), "\n");
  if (p.kind() == "compensate") {
    absl::StrAppend(&out, "  plan      ", p.plan_id(), ": ", p.changed_since_plan(),
                    " changed since the diff (of skipped: left alone)\n");
  } else if (!p.plan_id().empty()) {
    absl::StrAppend(&out, "  plan      ", p.plan_id(), ": ", p.changed_since_plan(),
                    " changed since (of skipped: delivered meanwhile, not sent again)\n");
  }
  if (p.held_by_key() > 0) {
    absl::StrAppend(&out, "  held      ", p.held_by_key(),
                    " (of skipped: strict keys behind an earlier undelivered event)\n");
  }
  absl::StrAppend(&out, "  rate      ", absl::StrFormat("%.1f/s", p.current_rate()), " (limit ",
                  p.request().rate(), "/s)  eta ", absl::StrFormat("%.0fs", p.eta_seconds()), "\n");
  if (p.has_cursor()) {
    absl::StrAppend(&out, "  cursor    ", FormatRfc3339(FromTimestamp(p.cursor())), "\n");
  }
  if (!p.last_error().empty()) absl::StrAppend(&out, "  last error ", p.last_error(), "\n");
  if (p.state() == pb::REPLAY_PAUSED) {
    absl::StrAppend(&out, "  PAUSED: nothing is sent until `replayctl resume ", p.replay_id(),
                    " --reason TEXT`\n");
  }
  absl::StrAppend(&out, "  created   ", FormatRfc3339(FromTimestamp(p.created_at())), " by ",
                  p.created_by(), "\n");
  return out;
}

std::string RenderProgressBar(const pb::ReplayProgress& p, int width) {
  double fraction = p.total() > 0 ? static_cast<double>(p.processed()) / p.total()
                                  : (client::IsTerminal(p.state()) ? 1.0 : 0.0);
  fraction = std::clamp(fraction, 0.0, 1.0);
  int filled = static_cast<int>(fraction * width + 0.5);
  return absl::StrFormat(
      "[%s%s] %3.0f%% %d/%d delivered %d skipped %d failed %d  %.1f/s  eta %.0fs  %s",
      std::string(filled, '#'), std::string(width - filled, '-'), fraction * 100, p.processed(),
      p.total(), p.delivered(), p.skipped(), p.failed(), p.current_rate(), p.eta_seconds(),
      StateName(p.state()));
}

std::string RenderDryRun(const pb::DryRunReport& d) {
  std::string out = "Dry run (nothing was sent downstream)\n";
  std::vector<std::string> reasons;
  for (const auto& s : d.skipped_by_reason())
    reasons.push_back(absl::StrCat(s.reason(), " ", s.count()));
  absl::StrAppend(&out, "  events in window  ", d.total(), "\n");
  absl::StrAppend(&out, "  would deliver     ", d.would_deliver(), "\n");
  absl::StrAppend(&out, "  would skip        ", d.would_skip(),
                  reasons.empty() ? "" : absl::StrCat(" (", absl::StrJoin(reasons, ", "), ")"),
                  "\n");
  std::vector<std::string> ranges;
  for (const auto& r : d.missing_ranges()) {
    ranges.push_back(r.first() == r.last()
                         ? absl::StrCat(r.source(), " ", r.first())
                         : absl::StrCat(r.source(), " ", r.first(), "-", r.last()));
  }
  absl::StrAppend(&out, "  missing upstream  ", d.missing(),
                  ranges.empty() ? "" : absl::StrCat(" (", absl::StrJoin(ranges, ", "), ")"), "\n");
  absl::StrAppend(&out, "  effective rate    ", d.effective_rate(), "/s, estimated ",
                  absl::StrFormat("%.1f", d.estimated_seconds()), "s\n");
  if (d.samples_size() > 0) {
    absl::StrAppend(&out, "  samples:\n");
    for (const auto& s : d.samples()) {
      absl::StrAppend(&out,
                      absl::StrFormat("    %-20s %s/%s  %s  %s  %s\n", s.category(), s.source(),
                                      s.event_id(), FormatRfc3339(FromTimestamp(s.ingested_at())),
                                      OutcomeLower(s.outcome()), s.detail()));
    }
  }
  for (const auto& w : d.warnings()) absl::StrAppend(&out, "  warning: ", w, "\n");
  if (!d.plan_id().empty()) {
    absl::StrAppend(&out, "Saved as plan ", d.plan_id(), " (expires ",
                    FormatRfc3339(FromTimestamp(d.expires_at())),
                    "). To replay exactly these events:\n  replayctl start --plan ", d.plan_id(),
                    "\n");
  }
  return out;
}

void RegisterReplayCommands(CLI::App& app, CommonOptions& o) {
  // dry-run
  {
    auto flags = std::make_shared<RequestFlags>();
    auto save_plan = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand("dry-run", "what a replay of a window would do (no delivery)");
    AddRequestFlags(cmd, *flags);
    cmd->add_flag("--save-plan", *save_plan,
                  "save the selection as a plan that `start --plan ID` replays exactly");
    cmd->callback([&o, flags, save_plan] {
      auto c = Client(o);
      pb::ReplayRequest request = BuildRequest(*flags);
      request.set_save_plan(*save_plan);
      auto report = c.DryRun(request);
      if (!report.ok()) Fail(ReportError(report.status()));
      if (o.json()) {
        std::cout << ToJson(*report) << "\n";
      } else {
        std::cout << RenderDryRun(*report);
      }
    });
  }
  // start
  {
    auto flags = std::make_shared<RequestFlags>();
    auto yes = std::make_shared<bool>(false);
    auto watch = std::make_shared<bool>(false);
    auto request_id = std::make_shared<std::string>();
    auto plan_id = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand("start", "start a replay (shows the dry run and asks first)");
    AddRequestFlags(cmd, *flags);
    // A plan carries its window: --from and --to are required without one.
    cmd->get_option("--from")->required(false);
    cmd->get_option("--to")->required(false);
    cmd->add_option("--plan", *plan_id,
                    "replay exactly the events of this saved plan (dry-run --save-plan); takes "
                    "no selection flags");
    cmd->add_flag("-y,--yes", *yes, "do not ask for confirmation");
    cmd->add_flag("-w,--watch", *watch, "watch the progress until the replay ends");
    cmd->add_option("--request-id", *request_id,
                    "idempotency id: starting again with the same id returns the same replay");
    cmd->callback([&o, cmd, flags, yes, watch, request_id, plan_id] {
      auto c = Client(o);
      pb::ReplayRequest request;
      std::string summary;
      int64_t to_deliver = 0;
      double rate = 0;
      if (!plan_id->empty()) {
        for (const char* selection :
             {"--from", "--to", "--source", "--outcome", "--include-succeeded",
              "--verify-downstream", "--key", "--type", "--event-id", "--event-ids-file", "--sink",
              "--max-attempts", "--retry-base", "--retry-cap"}) {
          if (cmd->count(selection) > 0) {
            UsageError(absl::StrCat(selection, ": the plan carries its selection"));
          }
        }
        auto plan = c.GetPlan(*plan_id);
        if (!plan.ok()) Fail(ReportError(plan.status()));
        summary = RenderPlan(*plan);
        to_deliver = plan->would_deliver();
        request = StartOnlyRequest(*flags);
        request.set_plan_id(*plan_id);
        rate = request.rate() > 0 ? request.rate() : plan->request().rate();
      } else {
        if (flags->from.empty()) UsageError("--from is required (or --plan ID)");
        if (flags->to.empty()) UsageError("--to is required (or --plan ID)");
        request = BuildRequest(*flags);
        auto report = c.DryRun(request);
        if (!report.ok()) Fail(ReportError(report.status()));
        summary = RenderDryRun(*report);
        to_deliver = report->would_deliver();
        rate = report->effective_rate();
      }
      if (!o.json()) std::cerr << summary;
      if (!*yes) {
        ConfirmOrAbort(o, summary,
                       absl::StrCat("Start the replay: deliver ", to_deliver, " events at ",
                                    rate > 0 ? absl::StrCat(rate, "/s") : "the default rate", "?"),
                       "nothing was started");
      }
      request.set_request_id(request_id->empty() ? client::NewRequestId() : *request_id);
      auto job = c.StartReplay(request);
      if (!job.ok()) Fail(ReportError(job.status()));
      if (!o.json()) std::cerr << "started replay " << job->replay_id() << "\n";
      if (*watch) {
        int code = Watch(o, c, job->replay_id());
        if (code != kExitOk) Fail(code);
        return;
      }
      PrintProgress(o, *job);
    });
  }
  // progress
  {
    auto id = std::make_shared<std::string>();
    auto watch = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand("progress", "a job's progress (replay, diff or compensate)");
    cmd->alias("status");
    cmd->add_option("replay_id", *id, "the job id (rp-, df- or cp-)")->required();
    cmd->add_flag("-w,--watch", *watch, "follow with a progress bar until the job ends");
    cmd->callback([&o, id, watch] {
      auto c = Client(o);
      if (*watch) {
        int code = Watch(o, c, *id);
        if (code != kExitOk) Fail(code);
        return;
      }
      auto p = c.GetProgress(*id);
      if (!p.ok()) Fail(ReportError(p.status()));
      PrintProgress(o, *p);
    });
    auto* watch_cmd = app.add_subcommand("watch", "progress --watch: follow a job until it ends");
    watch_cmd->add_option("replay_id", *id, "the job id (rp-, df- or cp-)")->required();
    watch_cmd->callback([&o, id] {
      auto c = Client(o);
      if (int code = Watch(o, c, *id); code != kExitOk) Fail(code);
    });
  }
  // cancel
  {
    auto id = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand("cancel", "stop a replay (in-flight deliveries finish)");
    cmd->add_option("replay_id", *id, "the replay id")->required();
    cmd->add_option("--reason", *reason, "why (recorded in the audit log)");
    cmd->callback([&o, id, reason] {
      auto c = Client(o);
      auto p = c.CancelReplay(*id, *reason);
      if (!p.ok()) Fail(ReportError(p.status()));
      PrintProgress(o, *p);
    });
  }
  // pause
  {
    auto id = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand(
        "pause", "pause a replay: in-flight deliveries finish, then nothing is sent until resume");
    cmd->add_option("replay_id", *id, "the replay id")->required();
    cmd->add_option("--reason", *reason, "why (recorded in the audit log)")->required();
    cmd->callback([&o, id, reason] {
      auto c = Client(o);
      auto p = c.PauseReplay(*id, *reason);
      if (!p.ok()) Fail(ReportError(p.status()));
      PrintProgress(o, *p);
    });
  }
  // resume
  {
    auto id = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    auto rate = std::make_shared<double>(0);
    auto allow_high_rate = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand(
        "resume", "resume a paused replay (events its circuit breaker left failed go first)");
    cmd->add_option("replay_id", *id, "the replay id")->required();
    cmd->add_option("--reason", *reason, "why (recorded in the audit log)")->required();
    cmd->add_option("--rate", *rate, "events per second from now on (default: unchanged)");
    cmd->add_flag("--allow-high-rate", *allow_high_rate,
                  "confirm a rate above the server's high-rate threshold");
    cmd->callback([&o, id, reason, rate, allow_high_rate] {
      auto c = Client(o);
      auto p = c.ResumeReplay(*id, *reason, *rate, *allow_high_rate);
      if (!p.ok()) Fail(ReportError(p.status()));
      PrintProgress(o, *p);
    });
  }
  // list
  {
    auto states = std::make_shared<std::vector<std::string>>();
    auto limit = std::make_shared<int>(20);
    auto* cmd = app.add_subcommand("list", "replay history, newest first");
    cmd->add_option("--state", *states,
                    "only these states: pending, running, paused, cancelling, cancelled, "
                    "completed, failed")
        ->delimiter(',');
    cmd->add_option("--limit", *limit, "at most this many (default 20)");
    cmd->callback([&o, states, limit] {
      std::vector<pb::ReplayState> wanted;
      for (const auto& s : *states) {
        pb::ReplayState state;
        std::string upper = "REPLAY_" + s;
        std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
        if (!pb::ReplayState_Parse(upper, &state))
          UsageError(absl::StrCat("--state: \"", s, "\" is not a replay state"));
        wanted.push_back(state);
      }
      auto c = Client(o);
      auto jobs = c.ListReplays(wanted, *limit);
      if (!jobs.ok()) Fail(ReportError(jobs.status()));
      if (o.json()) {
        pb::ListReplaysResponse response;
        for (const auto& p : *jobs) *response.add_replays() = p;
        std::cout << ToJson(response) << "\n";
        return;
      }
      std::cout << absl::StrFormat("%-19s %-10s %-21s %-21s %9s %9s %8s %7s  %s\n", "ID", "STATE",
                                   "FROM", "TO", "PROCESSED", "DELIVERED", "SKIPPED", "FAILED",
                                   "BY");
      for (const auto& p : *jobs) {
        std::cout << absl::StrFormat("%-19s %-10s %-21s %-21s %9d %9d %8d %7d  %s\n", p.replay_id(),
                                     StateName(p.state()),
                                     FormatRfc3339(FromTimestamp(p.request().from())),
                                     FormatRfc3339(FromTimestamp(p.request().to())), p.processed(),
                                     p.delivered(), p.skipped(), p.failed(), p.created_by());
      }
    });
  }
}

}  // namespace replayd::replayctl
