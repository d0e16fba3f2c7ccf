// demo_upstream: a steady upstream for replayd's demo and browser test. It
// publishes events for a few sources (keys, per-source sequence numbers)
// through POST /v1/events, optionally leaves a hole in the first source's
// sequence numbers, and scripts a downstream outage part-way through by
// switching the downstream test server's faults (POST /admin/faults).
//
// Each phase change is printed to stdout as one JSON line, e.g.
//   {"event":"outage_start","requested_at":"...","at":"2026-11-23T03:00:10.123456Z"}
// so that a test knows the exact script it ran. README.md in this folder.

#include <signal.h>

#include <httplib.h>
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace {

using nlohmann::json;

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

std::string Now() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
}

void Emit(json line) {
  line["at"] = Now();
  std::cout << line.dump() << std::endl;
}

// "http://host:port" -> client. Only plain HTTP (local demo and tests).
std::unique_ptr<httplib::Client> Client(const std::string& url) {
  auto client = std::make_unique<httplib::Client>(url);
  client->set_connection_timeout(2);
  client->set_read_timeout(10);
  return client;
}

bool SetFaults(httplib::Client& downstream, const json& faults) {
  auto res = downstream.Post("/admin/faults", faults.dump(), "application/json");
  if (!res || res->status != 200) {
    std::cerr << "demo_upstream: POST /admin/faults failed: "
              << (res ? absl::StrCat("HTTP ", res->status, " ", res->body)
                      : httplib::to_string(res.error()))
              << "\n";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"demo_upstream: a steady event stream with a scripted downstream outage"};
  std::string replayd = "http://127.0.0.1:7080";
  std::string downstream;
  std::string token;
  std::string sources_arg = "orders,billing";
  double rate = 5;
  double duration_s = 0;
  double outage_after_s = 60;
  double outage_for_s = 60;
  int outage_status = 503;
  int64_t hole_at = 0;
  int64_t hole_size = 5;
  app.add_option("--replayd", replayd, "replayd's HTTP base URL")->capture_default_str();
  app.add_option("--downstream", downstream,
                 "the downstream test server's base URL (empty: no outage)");
  app.add_option("--token", token, "publisher bearer token")->envname("REPLAYD_PUBLISH_TOKEN");
  app.add_option("--sources", sources_arg, "comma-separated sources")->capture_default_str();
  app.add_option("--rate", rate, "events per second per source")->capture_default_str();
  app.add_option("--duration", duration_s, "seconds to run; 0 = until SIGINT/SIGTERM")
      ->capture_default_str();
  app.add_option("--outage-after", outage_after_s, "seconds before the outage starts")
      ->capture_default_str();
  app.add_option("--outage-for", outage_for_s, "outage length in seconds; 0 = no outage")
      ->capture_default_str();
  app.add_option("--outage-status", outage_status, "HTTP status the downstream answers meanwhile")
      ->capture_default_str();
  app.add_option("--hole-at", hole_at,
                 "skip the first source's sequence numbers N..N+hole-size-1 (0 = no hole)")
      ->capture_default_str();
  app.add_option("--hole-size", hole_size, "how many sequence numbers to skip")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (rate <= 0) {
    std::cerr << "demo_upstream: --rate must be positive\n";
    return 2;
  }
  std::vector<std::string> sources = absl::StrSplit(sources_arg, ',', absl::SkipEmpty());
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  auto sink = Client(replayd);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  std::unique_ptr<httplib::Client> ds = downstream.empty() ? nullptr : Client(downstream);

  const auto start = std::chrono::steady_clock::now();
  const auto tick = std::chrono::duration<double>(1.0 / rate);
  const bool scripted_outage = ds != nullptr && outage_for_s > 0;
  enum class Phase { kBefore, kOutage, kAfter } phase = Phase::kBefore;
  std::vector<int64_t> next_sequence(sources.size(), 1);
  int64_t published = 0, rejected = 0, failed_batches = 0;
  Emit({{"event", "start"}, {"sources", sources}, {"rate", rate}});

  for (int64_t n = 0; !g_stop; ++n) {
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (duration_s > 0 && elapsed >= duration_s) break;
    // The fault switches some time between "requested_at" and "at".
    if (scripted_outage && phase == Phase::kBefore && elapsed >= outage_after_s) {
      std::string requested = Now();
      if (SetFaults(*ds, {{"status", outage_status}})) {
        Emit({{"event", "outage_start"}, {"status", outage_status}, {"requested_at", requested}});
      }
      phase = Phase::kOutage;
    }
    if (scripted_outage && phase == Phase::kOutage && elapsed >= outage_after_s + outage_for_s) {
      std::string requested = Now();
      if (SetFaults(*ds, json::object())) {
        Emit({{"event", "outage_end"}, {"requested_at", requested}});
      }
      phase = Phase::kAfter;
    }
    json events = json::array();
    for (size_t s = 0; s < sources.size(); ++s) {
      int64_t seq = next_sequence[s]++;
      if (s == 0 && hole_at > 0 && seq == hole_at) {
        Emit({{"event", "sequence_hole"},
              {"source", sources[s]},
              {"first", hole_at},
              {"last", hole_at + hole_size - 1}});
        seq = next_sequence[s] = hole_at + hole_size;
        ++next_sequence[s];
      }
      events.push_back({{"source", sources[s]},
                        {"event_id", absl::StrCat(sources[s], "-", seq)},
                        {"sequence", seq},
                        {"key", absl::StrCat("customer-", seq % 7)},
                        {"type", sources[s] == "billing" ? "invoice.created" : "order.placed"},
                        {"occurred_at", Now()},
                        {"payload", {{"n", seq}, {"amount_cents", 100 + (seq * 37) % 900}}}});
    }
    auto res =
        sink->Post("/v1/events", headers, json{{"events", events}}.dump(), "application/json");
    if (!res || res->status != 200) {
      ++failed_batches;
      std::cerr << "demo_upstream: publish failed: "
                << (res ? absl::StrCat("HTTP ", res->status, " ", res->body)
                        : httplib::to_string(res.error()))
                << "\n";
    } else {
      json answer = json::parse(res->body, nullptr, false);
      for (const auto& r : answer["results"]) {
        if (r.value("status", "") == "REJECTED")
          ++rejected;
        else
          ++published;
      }
    }
    std::this_thread::sleep_until(
        start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(tick * (n + 1)));
  }
  if (phase == Phase::kOutage) {
    SetFaults(*ds, json::object());
    Emit({{"event", "outage_end"}});
  }
  Emit({{"event", "done"},
        {"published", published},
        {"rejected", rejected},
        {"failed_batches", failed_batches}});
  return 0;
}
