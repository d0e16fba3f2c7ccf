#include "client/replayctl/inspect_commands.h"
#include "client/replayctl/json_output.h"
#include "client/replayctl/proto_time.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "replay/v1/inspection.grpc.pb.h"
#include "server/common/time_format.h"

namespace replayd::replayctl {
namespace {

namespace pb = replay::v1;

constexpr const char* kGreen = "\033[32m";
constexpr const char* kCyan = "\033[36m";
constexpr const char* kYellow = "\033[33m";
constexpr const char* kRed = "\033[31m";
constexpr const char* kMagenta = "\033[35m";
constexpr const char* kBold = "\033[1m";
constexpr const char* kReset = "\033[0m";

// Longer runs of empty timeline buckets fold into one line.
constexpr int64_t kMaxEmptyRows = 2;

std::string Paint(bool color, const char* code, const std::string& text) {
  return color ? absl::StrCat(code, text, kReset) : text;
}

std::string Duration(int64_t seconds) {
  if (seconds < 120) return absl::StrCat(seconds, " s");
  if (seconds < 7200) return absl::StrCat(seconds / 60, " min");
  if (seconds < 172800) return absl::StrFormat("%.1f h", seconds / 3600.0);
  return absl::StrFormat("%.1f d", seconds / 86400.0);
}

struct Summed {
  int64_t delivered = 0;  // succeeded + already_processed
  int64_t pending = 0;    // pending + retrying
  int64_t failed = 0;
  int64_t total = 0;
  int64_t missing = 0;
};

// Options shared by timeline and gaps.
struct WindowArgs {
  std::string from = "-1h";
  std::string to = "now";
  std::string bucket;
  std::vector<std::string> sources;
  std::string output;
};

void AddWindowOptions(CLI::App* cmd, WindowArgs* args, bool own_output) {
  cmd->add_option("--from", args->from, "Start (RFC 3339 or relative: -6h, -2d)")
      ->capture_default_str();
  cmd->add_option("--to", args->to, "End, exclusive (RFC 3339, relative, now)")
      ->capture_default_str();
  cmd->add_option("--bucket", args->bucket, "Bucket width (30s, 5m, 1h); default automatic");
  cmd->add_option("--source", args->sources, "Only these sources (repeatable)");
  if (own_output) {
    cmd->add_option("-o,--output", args->output, "Output: text or json")
        ->check(CLI::IsMember({"text", "json"}));
  }
}

// Fills from/to/bucket/sources; throws CLI::ValidationError on bad input.
template <typename Request>
void FillWindow(const WindowArgs& args, Request* request) {
  absl::Time now = absl::Now();
  auto from = ParseTimeArg(args.from, now);
  if (!from.ok()) throw CLI::ValidationError("--from", std::string(from.status().message()));
  auto to = ParseTimeArg(args.to, now);
  if (!to.ok()) throw CLI::ValidationError("--to", std::string(to.status().message()));
  ToTimestamp(*from, request->mutable_from());
  ToTimestamp(*to, request->mutable_to());
  if (!args.bucket.empty()) {
    auto d = ParseDurationArg(args.bucket);
    if (!d.ok() || *d < absl::Seconds(1)) {
      throw CLI::ValidationError("--bucket", "want a duration of at least 1s, e.g. 30s, 5m, 1h");
    }
    request->set_bucket_seconds(absl::ToInt64Seconds(*d));
  }
  for (const std::string& s : args.sources) request->add_sources(s);
}

bool WantJson(const InspectEnv& env, const std::string& own) {
  const std::string& o = env.output != nullptr && own.empty() ? *env.output : own;
  return o == "json";
}

bool StdoutIsTerminal() { return isatty(STDOUT_FILENO) == 1 && std::getenv("NO_COLOR") == nullptr; }

void Fail(const InspectEnv& env, const grpc::Status& status) {
  int code = env.report_error ? env.report_error(status) : 1;
  if (!env.report_error) std::cerr << "error: " << status.error_message() << "\n";
  throw CLI::RuntimeError(code);
}

// When the hole's neighbours arrived: "between A and B", or "at T" when they
// share a timestamp.
std::string NeighboursText(const pb::SequenceGap& g) {
  std::string after = FormatRfc3339(FromTimestamp(g.after_ingested_at()));
  std::string before = FormatRfc3339(FromTimestamp(g.before_ingested_at()));
  if (after == before) return absl::StrCat("at ", after);
  return absl::StrCat("between ", after, " and ", before);
}

}  // namespace

std::string RenderTimeline(const pb::Timeline& timeline, bool color, int width) {
  std::map<int64_t, Summed> buckets;
  for (const pb::TimelineBucket& b : timeline.buckets()) {
    Summed& s = buckets[absl::ToUnixSeconds(FromTimestamp(b.start()))];
    s.delivered += b.counts().succeeded() + b.counts().already_processed();
    s.pending += b.counts().pending() + b.counts().retrying();
    s.failed += b.counts().failed();
    s.total += b.counts().total();
    s.missing += b.missing();
  }
  int64_t max_total = 1;
  for (const auto& [start, s] : buckets) max_total = std::max(max_total, s.total);
  const int64_t bucket = std::max<int64_t>(1, timeline.bucket_seconds());
  const char* time_format = bucket < 60 ? "%H:%M:%S" : bucket < 86400 ? "%m-%d %H:%M" : "%Y-%m-%d";

  std::string out =
      absl::StrCat("Timeline ", FormatRfc3339(FromTimestamp(timeline.from())), " .. ",
                   FormatRfc3339(FromTimestamp(timeline.to())), " (UTC), ", Duration(bucket),
                   " buckets\n", "  ", Paint(color, kGreen, "#"), " delivered  ",
                   Paint(color, kYellow, "~"), " pending/retrying  ", Paint(color, kRed, "X"),
                   " failed  ", Paint(color, kMagenta, "?"), " missing (sequence gap)\n");
  if (buckets.empty()) {
    absl::StrAppend(&out, "  no events in this window\n");
    return out;
  }
  auto label = [&](int64_t t) {
    return absl::FormatTime(time_format, absl::FromUnixSeconds(t), absl::UTCTimeZone());
  };
  // Quiet time shows: a run of up to kMaxEmptyRows empty buckets as empty
  // rows, a longer one folded into one line, so that the default hour does
  // not open with a screen of empty rows.
  auto empty_run = [&](int64_t from, int64_t to) {
    const int64_t n = (to - from) / bucket;
    if (n <= 0) return;
    if (n <= kMaxEmptyRows) {
      for (int64_t t = from; t < to; t += bucket) {
        absl::StrAppend(&out, "  ", label(t), " |", std::string(width + 3, ' '),
                        absl::StrFormat("%7d", 0), "\n");
      }
      return;
    }
    absl::StrAppend(&out, "  ... ", n, " empty buckets (", label(from), " .. ",
                    label(from + (n - 1) * bucket), ") ...\n");
  };
  int64_t next = absl::ToUnixSeconds(FromTimestamp(timeline.from()));
  next -= ((next % bucket) + bucket) % bucket;
  const int64_t end = absl::ToUnixSeconds(FromTimestamp(timeline.to()));
  for (const auto& [t, s] : buckets) {
    empty_run(next, t);
    auto cells = [&](int64_t n) {
      if (n == 0) return 0;
      return std::max(1, static_cast<int>(n * width / max_total));
    };
    int d = cells(s.delivered), p = cells(s.pending), f = cells(s.failed);
    std::string bar = absl::StrCat(Paint(color, kGreen, std::string(d, '#')),
                                   Paint(color, kYellow, std::string(p, '~')),
                                   Paint(color, kRed, std::string(f, 'X')));
    std::string pad(std::max(0, width + 3 - d - p - f), ' ');
    std::string notes;
    if (s.failed > 0)
      absl::StrAppend(&notes, "  ", Paint(color, kRed, absl::StrCat("failed ", s.failed)));
    if (s.pending > 0)
      absl::StrAppend(&notes, "  ", Paint(color, kYellow, absl::StrCat("pending ", s.pending)));
    if (s.missing > 0) {
      absl::StrAppend(&notes, "  ", Paint(color, kMagenta, absl::StrCat("? missing ", s.missing)));
    }
    absl::StrAppend(&out, "  ", label(t), " |", bar, pad, absl::StrFormat("%7d", s.total), notes,
                    "\n");
    next = t + bucket;
  }
  if (end > next) empty_run(next, next + (end - next + bucket - 1) / bucket * bucket);
  const pb::OutcomeCounts& t = timeline.totals();
  absl::StrAppend(&out, "Total ", t.total(), " events: ", t.succeeded() + t.already_processed(),
                  " delivered, ",
                  Paint(color, kYellow, absl::StrCat(t.pending() + t.retrying(), " pending")), ", ",
                  Paint(color, kRed, absl::StrCat(t.failed(), " failed")), "\n");
  return out;
}

std::string RenderGaps(const pb::Gaps& gaps, bool color) {
  std::string out = absl::StrCat("Window ", FormatRfc3339(FromTimestamp(gaps.from())), " .. ",
                                 FormatRfc3339(FromTimestamp(gaps.to())), " (UTC)\n");
  if (gaps.windows().empty()) {
    absl::StrAppend(&out, Paint(color, kGreen, "No failed or pending events: nothing to replay."),
                    "\n");
  } else {
    absl::StrAppend(
        &out,
        Paint(color, kBold, absl::StrCat("Suggested replay windows (", gaps.windows_size(), "):")),
        "\n");
    int i = 0;
    for (const pb::SuggestedWindow& w : gaps.windows()) {
      int64_t seconds = (FromTimestamp(w.to()) - FromTimestamp(w.from())) / absl::Seconds(1);
      absl::StrAppend(&out, "  ", ++i, ". ", FormatRfc3339(FromTimestamp(w.from())), " .. ",
                      FormatRfc3339(FromTimestamp(w.to())), " (", Duration(seconds),
                      ")  sources: ", absl::StrJoin(w.sources(), ", "), "\n     ",
                      Paint(color, kRed, absl::StrCat(w.failed(), " failed")), ", ", w.pending(),
                      " pending, ", w.retrying(), " retrying, ", w.missing(), " missing\n     ",
                      w.dry_run_command(), "\n");
    }
  }
  if (gaps.sequence_gaps().empty()) {
    absl::StrAppend(&out, "No holes in upstream sequence numbers.\n");
  } else {
    absl::StrAppend(&out,
                    Paint(color, kMagenta,
                          absl::StrCat("Missing events (", gaps.missing(),
                                       ", never received; ask the upstream):")),
                    "\n");
    for (const pb::SequenceGap& g : gaps.sequence_gaps()) {
      absl::StrAppend(
          &out, "  ", g.source(), "  sequence ", g.first_missing(),
          g.first_missing() == g.last_missing() ? "" : absl::StrCat("..", g.last_missing()), " (",
          g.last_missing() - g.first_missing() + 1, ")  ", NeighboursText(g), "\n");
    }
  }
  return out;
}

std::string RetryPolicyText(const pb::RetryPolicy& r) {
  auto duration = [](bool has, const google::protobuf::Duration& d) {
    return has ? absl::FormatDuration(FromDuration(d)) : std::string("-");
  };
  return absl::StrCat("max_attempts ", r.has_max_attempts() ? absl::StrCat(r.max_attempts()) : "-",
                      " base ", duration(r.has_base(), r.base()), " cap ",
                      duration(r.has_cap(), r.cap()));
}

std::string RenderTrace(const pb::EventTrace& trace) {
  const pb::StoredEvent& s = trace.event();
  const pb::Event& e = s.event();
  auto time = [](const pb::StoredEvent& ev, bool has, const google::protobuf::Timestamp& t) {
    (void)ev;
    return has ? FormatRfc3339(FromTimestamp(t)) : std::string("-");
  };
  std::string out =
      absl::StrCat("Event       ", e.source(), " / ", e.event_id(), "\n", "Outcome     ",
                   pb::Outcome_Name(s.outcome()), " after ", s.attempts(), " attempt(s)\n",
                   "Sequence    ", e.has_sequence() ? absl::StrCat(e.sequence()) : "-", "   key ",
                   e.key().empty() ? "-" : e.key(), "   type ", e.type().empty() ? "-" : e.type(),
                   "\n", "Ingested    ", time(s, s.has_ingested_at(), s.ingested_at()),
                   "   log position ", s.log_position(), "\n", "Processed   ",
                   time(s, s.has_processed_at(), s.processed_at()), "\n");
  if (!s.target_record_id().empty())
    absl::StrAppend(&out, "Record      ", s.target_record_id(), "\n");
  if (!trace.target_version().empty() || trace.has_target_updated_at()) {
    absl::StrAppend(&out, "Downstream  version ",
                    trace.target_version().empty() ? "-" : trace.target_version(), "   updated ",
                    time(s, trace.has_target_updated_at(), trace.target_updated_at()), "\n");
  }
  if (!s.last_error().empty()) absl::StrAppend(&out, "Last error  ", s.last_error(), "\n");
  if (trace.attempts().empty()) {
    absl::StrAppend(&out, "No delivery attempts recorded.\n");
    return out;
  }
  absl::StrAppend(&out, "Attempts:\n");
  for (const pb::DeliveryAttempt& a : trace.attempts()) {
    absl::StrAppend(
        &out,
        absl::StrFormat("  #%-3d %-24s %-12s %s %8.1f ms  %s  %s%s%s%s\n", a.attempt(), a.trigger(),
                        a.route(), FormatRfc3339(FromTimestamp(a.started_at())), a.duration_ms(),
                        a.http_status() ? absl::StrCat("HTTP ", a.http_status()) : "-",
                        pb::Outcome_Name(a.outcome()),
                        a.record_id().empty() ? "" : absl::StrCat("  record ", a.record_id()),
                        a.error().empty() ? "" : absl::StrCat("  error: ", a.error()),
                        a.worker().empty() ? "" : absl::StrCat("  by ", a.worker())));
    if (!a.sink().empty() || a.has_retry()) {
      absl::StrAppend(&out, "       sink ", a.sink().empty() ? "-" : a.sink(), "   retry ",
                      RetryPolicyText(a.retry()), "\n");
    }
  }
  return out;
}

void RegisterInspectCommands(CLI::App& app, InspectEnv env) {
  const bool own_output = env.output == nullptr;
  auto timeline_args = std::make_shared<WindowArgs>();
  CLI::App* timeline = app.add_subcommand(
      "timeline",
      "Events per time bucket by outcome: where failed, pending and missing events are");
  AddWindowOptions(timeline, timeline_args.get(), own_output);
  timeline->callback([env, timeline_args] {
    pb::TimelineRequest request;
    FillWindow(*timeline_args, &request);
    pb::Timeline response;
    grpc::ClientContext context;
    if (env.prepare_call) env.prepare_call(&context);
    grpc::Status status =
        pb::InspectionService::NewStub(env.channel())->GetTimeline(&context, request, &response);
    if (!status.ok()) Fail(env, status);
    std::cout << (WantJson(env, timeline_args->output)
                      ? ToJson(response) + "\n"
                      : RenderTimeline(response, StdoutIsTerminal()));
  });

  auto gaps_args = std::make_shared<WindowArgs>();
  CLI::App* gaps = app.add_subcommand(
      "gaps", "Suggested replay windows (with the dry-run command) and missing sequence numbers");
  AddWindowOptions(gaps, gaps_args.get(), own_output);
  gaps->callback([env, gaps_args] {
    pb::GapsRequest request;
    FillWindow(*gaps_args, &request);
    pb::Gaps response;
    grpc::ClientContext context;
    if (env.prepare_call) env.prepare_call(&context);
    grpc::Status status =
        pb::InspectionService::NewStub(env.channel())->GetGaps(&context, request, &response);
    if (!status.ok()) Fail(env, status);
    std::cout << (WantJson(env, gaps_args->output) ? ToJson(response) + "\n"
                                                   : RenderGaps(response, StdoutIsTerminal()));
  });

  struct TraceArgs {
    std::string source;
    std::string event_id;
    std::string output;
  };
  auto trace_args = std::make_shared<TraceArgs>();
  CLI::App* trace = app.add_subcommand("trace", "One event and every delivery attempt of it");
  trace->add_option("source", trace_args->source, "The event's source")->required();
  trace->add_option("event_id", trace_args->event_id, "The upstream's event id")->required();
  if (own_output) {
    trace->add_option("-o,--output", trace_args->output, "Output: text or json")
        ->check(CLI::IsMember({"text", "json"}));
  }
  trace->callback([env, trace_args] {
    pb::EventTraceRequest request;
    request.set_source(trace_args->source);
    request.set_event_id(trace_args->event_id);
    pb::EventTrace response;
    grpc::ClientContext context;
    if (env.prepare_call) env.prepare_call(&context);
    grpc::Status status =
        pb::InspectionService::NewStub(env.channel())->GetEventTrace(&context, request, &response);
    if (!status.ok()) Fail(env, status);
    std::cout << (WantJson(env, trace_args->output) ? ToJson(response) + "\n"
                                                    : RenderTrace(response));
  });
}

}  // namespace replayd::replayctl
