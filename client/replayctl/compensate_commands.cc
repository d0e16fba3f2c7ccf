#include "client/replayctl/compensate_commands.h"

#include <iostream>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/replayctl/json_output.h"
#include "client/replayctl/proto_time.h"
#include "client/replayctl/replay_commands.h"
#include "server/common/time_format.h"

namespace replayd::replayctl {
namespace {

namespace pb = replay::v1;

std::string WindowText(const pb::Compensation& p) {
  return absl::StrCat("[", FormatRfc3339(FromTimestamp(p.from())), ", ",
                      FormatRfc3339(FromTimestamp(p.to())), ") sources ",
                      absl::StrJoin(p.sources(), ","));
}

// The entries of each class, over every action.
std::map<std::string, int64_t> CountsByClass(const pb::Compensation& p) {
  std::map<std::string, int64_t> out;
  for (const auto& c : p.counts()) out[c.diff_class()] += c.count();
  return out;
}

// The entries of each action, over every class.
std::map<std::string, int64_t> CountsByAction(const pb::Compensation& p) {
  std::map<std::string, int64_t> out;
  for (const auto& c : p.counts()) out[c.action()] += c.count();
  return out;
}

std::string HolesText(const pb::Compensation& p) {
  std::vector<std::string> ranges;
  for (const auto& r : p.holes()) {
    ranges.push_back(r.first() == r.last()
                         ? absl::StrCat(r.source(), " ", r.first())
                         : absl::StrCat(r.source(), " ", r.first(), "-", r.last()));
  }
  return ranges.empty() ? "" : absl::StrCat(" (", absl::StrJoin(ranges, ", "), ")");
}

std::string RecordText(const pb::CompensationEntry& e) {
  if (e.record_id().empty()) return "-";
  return e.record_version().empty() ? e.record_id()
                                    : absl::StrCat(e.record_id(), "@", e.record_version());
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// The entry's columns, as the CSV and the table lines give them.
std::vector<std::string> EntryColumns(const pb::CompensationEntry& e) {
  return {
      e.source(),    e.event_id(),       e.diff_class(), e.action(), OutcomeLower(e.log_outcome()),
      e.record_id(), e.record_version(), e.result()};
}

pb::Compensation ShowOrFail(client::ReplayClient& c, const std::string& id) {
  auto plan = c.GetCompensation(id);
  if (!plan.ok()) Fail(ReportError(plan.status()));
  return *std::move(plan);
}

}  // namespace

std::string RenderDiffStarted(const pb::ReplayProgress& job) {
  const std::string& id = job.replay_id();
  return absl::StrCat("diff ", id, ": ", StateName(job.state()), ", ", job.total(),
                      " events to compare (nothing is sent downstream)\n",
                      "Its plan has the same id. Next:\n", "  replayctl progress ", id,
                      " --watch\n", "  replayctl compensate show ", id, "\n",
                      "  replayctl compensate apply ", id, " --reason TEXT\n");
}

std::string RenderCompensation(const pb::Compensation& p) {
  std::string out =
      absl::StrCat("plan ", p.plan_id(), ": ", p.state(), p.expired() ? " (EXPIRED)" : "", "\n");
  absl::StrAppend(&out, "  window     ", WindowText(p), "\n");
  absl::StrAppend(&out, "  created    ", FormatRfc3339(FromTimestamp(p.created_at())), " by ",
                  p.created_by(), ", expires ", FormatRfc3339(FromTimestamp(p.expires_at())), "\n");
  if (!p.apply_job_id().empty()) absl::StrAppend(&out, "  apply job  ", p.apply_job_id(), "\n");
  absl::StrAppend(&out, absl::StrFormat("  %-20s %-10s %9s\n", "CLASS", "ACTION", "ENTRIES"));
  for (const auto& c : p.counts()) {
    absl::StrAppend(&out,
                    absl::StrFormat("  %-20s %-10s %9d\n", c.diff_class(), c.action(), c.count()));
  }
  absl::StrAppend(
      &out, absl::StrFormat("  %-20s %-10s %9d", "missing_upstream", "-", p.missing_upstream()),
      HolesText(p), "\n");
  if (p.samples_size() > 0) {
    absl::StrAppend(&out, "  samples:\n");
    for (const auto& s : p.samples()) {
      absl::StrAppend(&out, absl::StrFormat("    %-20s %s/%s  %s  log %s  downstream %s%s\n",
                                            s.diff_class(), s.source(), s.event_id(),
                                            FormatRfc3339(FromTimestamp(s.ingested_at())),
                                            OutcomeLower(s.log_outcome()), RecordText(s),
                                            s.detail().empty() ? "" : "  " + s.detail()));
    }
  }
  if (p.state() == "ready" && !p.expired()) {
    absl::StrAppend(&out, "Next: change actions, then apply:\n  replayctl compensate set ",
                    p.plan_id(), " --class diverged --action overwrite --reason TEXT\n",
                    "  replayctl compensate apply ", p.plan_id(), " --reason TEXT\n");
  }
  return out;
}

std::string RenderApplySummary(const pb::Compensation& p) {
  std::string out =
      absl::StrCat("Apply plan ", p.plan_id(), " (", p.state(), "), window ", WindowText(p), "\n");
  for (const auto& [action, count] : CountsByAction(p)) {
    absl::StrAppend(&out, absl::StrFormat("  %-10s %9d\n", action, count));
  }
  return out;
}

std::string RenderCompensationList(const pb::ListCompensationsResponse& list) {
  std::string out = absl::StrFormat("%-19s %-9s %-21s %-21s %-12s %s\n", "ID", "STATE", "FROM",
                                    "TO", "BY", "ENTRIES BY CLASS");
  for (const auto& p : list.plans()) {
    std::vector<std::string> counts;
    for (const auto& [diff_class, count] : CountsByClass(p)) {
      counts.push_back(absl::StrCat(diff_class, " ", count));
    }
    if (p.missing_upstream() > 0)
      counts.push_back(absl::StrCat("missing_upstream ", p.missing_upstream()));
    absl::StrAppend(&out, absl::StrFormat("%-19s %-9s %-21s %-21s %-12s %s\n", p.plan_id(),
                                          p.expired() ? "expired" : p.state(),
                                          FormatRfc3339(FromTimestamp(p.from())),
                                          FormatRfc3339(FromTimestamp(p.to())), p.created_by(),
                                          absl::StrJoin(counts, ", ")));
  }
  return out;
}

std::string RenderEntryLine(const pb::CompensationEntry& e) {
  return absl::StrJoin(EntryColumns(e), "\t");
}

std::string EntryCsvHeader() {
  return "source,event_id,class,action,log_outcome,record_id,record_version,result";
}

std::string RenderEntryCsv(const pb::CompensationEntry& e) {
  std::vector<std::string> fields;
  for (const std::string& f : EntryColumns(e)) fields.push_back(CsvField(f));
  return absl::StrJoin(fields, ",");
}

std::string RenderCountsCsv(const pb::Compensation& p) {
  std::string out = "class,action,count\n";
  for (const auto& c : p.counts()) {
    absl::StrAppend(&out, c.diff_class(), ",", c.action(), ",", c.count(), "\n");
  }
  absl::StrAppend(&out, "missing_upstream,,", p.missing_upstream(), "\n");
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseEventsFile(
    std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (fields.size() != 2 || absl::StripAsciiWhitespace(fields[0]).empty() ||
        absl::StripAsciiWhitespace(fields[1]).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", number, ": \"", std::string(line), "\" is not source,event_id"));
    }
    out.emplace_back(std::string(absl::StripAsciiWhitespace(fields[0])),
                     std::string(absl::StripAsciiWhitespace(fields[1])));
  }
  return out;
}

void RegisterCompensateCommands(CLI::App& app, CommonOptions& o) {
  // diff
  {
    struct Flags {
      std::string from, to, reason, request_id;
      std::vector<std::string> sources;
      double rate = 0;
      int burst = 0;
      bool allow_high_rate = false;
      bool watch = false;
    };
    auto f = std::make_shared<Flags>();
    auto* cmd = app.add_subcommand(
        "diff",
        "compare a window with the downstream and propose a change per event (sends nothing)");
    cmd->add_option("--from", f->from, "window start (RFC 3339, or relative: -6h, now)")
        ->required();
    cmd->add_option("--to", f->to, "window end, exclusive (RFC 3339, or relative: -1h, now)")
        ->required();
    cmd->add_option("--source", f->sources,
                    "only these sources (repeat, or comma-separated; default every routed source)")
        ->delimiter(',');
    cmd->add_option("--rate", f->rate, "lookups per second (default: the server's replay rate)");
    cmd->add_option("--burst", f->burst, "token bucket burst (default: one second's worth)");
    cmd->add_flag("--allow-high-rate", f->allow_high_rate,
                  "confirm a rate above the server's high-rate threshold");
    cmd->add_option("--reason", f->reason, "why (recorded in the audit log)");
    cmd->add_option("--request-id", f->request_id,
                    "idempotency id: the same id returns the same diff");
    cmd->add_flag("-w,--watch", f->watch, "watch the progress until the diff ends");
    cmd->callback([&o, f] {
      pb::DiffRequest r;
      absl::Time now = absl::Now();
      ToTimestamp(ParseTimeFlag("--from", f->from, now), r.mutable_from());
      ToTimestamp(ParseTimeFlag("--to", f->to, now), r.mutable_to());
      for (const auto& s : f->sources) {
        if (!s.empty()) r.add_sources(s);
      }
      r.set_rate(f->rate);
      r.set_burst(f->burst);
      r.set_allow_high_rate(f->allow_high_rate);
      r.set_reason(f->reason);
      r.set_request_id(f->request_id);
      auto c = Client(o);
      auto job = c.StartDiff(r);
      if (!job.ok()) Fail(ReportError(job.status()));
      if (o.json()) {
        if (!f->watch) std::cout << ToJson(*job) << "\n";
      } else {
        std::cout << RenderDiffStarted(*job) << std::flush;
      }
      if (f->watch) {
        if (int code = Watch(o, c, job->replay_id()); code != kExitOk) Fail(code);
      }
    });
  }

  auto* compensate = app.add_subcommand(
      "compensate", "review, change and apply the compensation plan a diff proposed");
  compensate->require_subcommand(1);
  // compensate show
  {
    auto id = std::make_shared<std::string>();
    auto diff_class = std::make_shared<std::string>();
    auto format = std::make_shared<std::string>();
    auto entries = std::make_shared<bool>(false);
    auto* show = compensate->add_subcommand(
        "show", "a plan's state, counts by class and action, holes and samples; or its entries");
    show->add_option("plan_id", *id, "the plan id (the diff's id)")->required();
    show->add_option("--class", *diff_class,
                     "list the entries of this class: in_sync, missing_downstream, unrecorded, "
                     "diverged, undelivered");
    show->add_flag("--entries", *entries, "list every entry of the plan");
    show->add_option("-o,--output", *format, "table (default), json or csv")
        ->check(CLI::IsMember({"table", "text", "json", "csv"}));
    show->callback([&o, id, diff_class, format, entries] {
      std::string out = format->empty() ? (o.json() ? "json" : "table") : *format;
      auto c = Client(o);
      pb::Compensation plan = ShowOrFail(c, *id);
      if (diff_class->empty() && !*entries) {
        if (out == "json") {
          std::cout << ToJson(plan) << "\n";
        } else if (out == "csv") {
          std::cout << RenderCountsCsv(plan);
        } else {
          std::cout << RenderCompensation(plan);
        }
        return;
      }
      // One entry a line: NDJSON, CSV or tab-separated after the plan's table.
      if (out == "csv") std::cout << EntryCsvHeader() << "\n";
      if (out == "table" || out == "text") {
        std::cout << RenderCompensation(plan)
                  << absl::StrJoin({"SOURCE", "EVENT_ID", "CLASS", "ACTION", "LOG_OUTCOME",
                                    "RECORD_ID", "RECORD_VERSION", "RESULT"},
                                   "\t")
                  << "\n";
      }
      absl::Status s =
          c.ListCompensationEntries(*id, *diff_class, [&out](const pb::CompensationEntry& e) {
            std::cout << (out == "json"  ? ToJson(e)
                          : out == "csv" ? RenderEntryCsv(e)
                                         : RenderEntryLine(e))
                      << "\n";
          });
      if (!s.ok()) Fail(ReportError(s));
    });
  }
  // compensate set
  {
    auto id = std::make_shared<std::string>();
    auto diff_class = std::make_shared<std::string>();
    auto events_file = std::make_shared<std::string>();
    auto action = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    auto* set = compensate->add_subcommand(
        "set", "change the action of a class's entries, or of the events in a file (audited)");
    set->add_option("plan_id", *id, "the plan id")->required();
    auto* by_class = set->add_option("--class", *diff_class, "every entry of this class");
    auto* by_file = set->add_option(
        "--events-file", *events_file,
        "the events in FILE: one source,event_id a line; blank lines and # comments ignored");
    by_class->excludes(by_file);
    by_file->excludes(by_class);
    set->add_option("--action", *action,
                    "none, create, record, keep or overwrite (a class allows its own or keep; "
                    "diverged also overwrite)")
        ->required();
    set->add_option("--reason", *reason, "why (recorded in the audit log)")->required();
    set->callback([&o, id, diff_class, events_file, action, reason] {
      pb::SetCompensationActionsRequest r;
      r.set_plan_id(*id);
      r.set_action(*action);
      r.set_reason(*reason);
      if (!events_file->empty()) {
        auto events = ParseEventsFile(ReadFlagFile("--events-file", *events_file));
        if (!events.ok()) UsageError(absl::StrCat("--events-file: ", events.status().message()));
        if (events->empty()) UsageError("--events-file: lists no event");
        for (const auto& [source, event_id] : *events) {
          pb::EventRef* e = r.add_events();
          e->set_source(source);
          e->set_event_id(event_id);
        }
      } else if (diff_class->empty()) {
        UsageError("--class or --events-file is required");
      } else {
        r.set_diff_class(*diff_class);
      }
      auto c = Client(o);
      auto changed = c.SetCompensationActions(r);
      if (!changed.ok()) Fail(ReportError(changed.status()));
      if (o.json()) {
        std::cout << ToJson(*changed) << "\n";
        return;
      }
      std::cout << changed->changed() << " entries set to " << *action << "\n"
                << RenderCompensation(changed->plan());
    });
  }
  // compensate apply
  {
    auto id = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    auto rate = std::make_shared<double>(0);
    auto burst = std::make_shared<int>(0);
    auto allow_high_rate = std::make_shared<bool>(false);
    auto yes = std::make_shared<bool>(false);
    auto watch = std::make_shared<bool>(false);
    auto request_id = std::make_shared<std::string>();
    auto* apply = compensate->add_subcommand(
        "apply", "apply a ready plan as a job (shows the actions and asks first)");
    apply->add_option("plan_id", *id, "the plan id")->required();
    apply->add_option("--reason", *reason, "why (recorded in the audit log)")->required();
    apply->add_option("--rate", *rate, "events per second (default: the server's replay rate)");
    apply->add_option("--burst", *burst, "token bucket burst (default: one second's worth)");
    apply->add_flag("--allow-high-rate", *allow_high_rate,
                    "confirm a rate above the server's high-rate threshold");
    apply->add_flag("-y,--yes", *yes, "do not ask for confirmation");
    apply->add_flag("-w,--watch", *watch, "watch the progress until the apply ends");
    apply->add_option("--request-id", *request_id,
                      "idempotency id: applying again with the same id returns the same job");
    apply->callback([&o, id, reason, rate, burst, allow_high_rate, yes, watch, request_id] {
      auto c = Client(o);
      pb::Compensation plan = ShowOrFail(c, *id);
      const std::string summary = RenderApplySummary(plan);
      if (!o.json()) std::cerr << summary;
      if (!*yes) {
        int64_t to_act_on = 0;
        for (const auto& n : plan.counts()) {
          if (n.action() != "keep" && n.action() != "none") to_act_on += n.count();
        }
        ConfirmOrAbort(
            o, summary,
            absl::StrCat("Apply: act on ", to_act_on, " entries at ",
                         *rate > 0 ? absl::StrCat(*rate, "/s") : "the default rate", "?"),
            "nothing was applied");
      }
      pb::ApplyCompensationRequest r;
      r.set_plan_id(*id);
      r.set_reason(*reason);
      r.set_rate(*rate);
      r.set_burst(*burst);
      r.set_allow_high_rate(*allow_high_rate);
      r.set_request_id(request_id->empty() ? client::NewRequestId() : *request_id);
      auto job = c.ApplyCompensation(r);
      if (!job.ok()) Fail(ReportError(job.status()));
      if (!o.json()) std::cerr << "started apply " << job->replay_id() << "\n";
      if (*watch) {
        if (int code = Watch(o, c, job->replay_id()); code != kExitOk) Fail(code);
        return;
      }
      PrintProgress(o, *job);
    });
  }
  // compensate list
  {
    auto limit = std::make_shared<int>(20);
    auto* list = compensate->add_subcommand("list", "compensation plans, newest first");
    list->add_option("--limit", *limit, "at most this many (default 20)");
    list->callback([&o, limit] {
      auto c = Client(o);
      auto plans = c.ListCompensations(*limit);
      if (!plans.ok()) Fail(ReportError(plans.status()));
      std::cout << (o.json() ? ToJson(*plans) + "\n" : RenderCompensationList(*plans));
    });
  }
}

}  // namespace replayd::replayctl
