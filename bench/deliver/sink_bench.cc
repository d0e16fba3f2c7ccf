// The HTTP sink alone: replayd's HttpSink POSTs EVENTS envelopes to the
// downstream, WORKERS calls in flight, with no database, no claims and no
// records. What it reaches is the ceiling of live delivery through this sink
// on this machine; bench/deliver/run.sh prints it beside the full pipeline.
//
//   sink_bench --url URL [--events N] [--keys K] [--workers W]
//
// Prints one JSON object: calls, seconds, calls_per_s, cpu_us_per_call (this
// process's user + system time), failed.

#include <condition_variable>
#include <cstdio>
#include <mutex>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/deliver/process_cpu.h"
#include "server/config/config.h"
#include "server/delivery/http_sink.h"

namespace {

// The events the deliver bench ingests: same ids, keys and payload.
std::vector<replayd::StoredEvent> BenchEvents(int count, int keys) {
  std::vector<replayd::StoredEvent> events(count);
  const absl::Time now = absl::Now();
  for (int i = 0; i < count; ++i) {
    replayd::StoredEvent& e = events[i];
    e.position = i + 1;
    e.ingested_at = now;
    e.event.source = "bench";
    e.event.event_id = absl::StrCat("b", i);
    e.event.sequence = i;
    if (keys > 0) e.event.key = absl::StrCat("k", i % keys);
    e.event.payload = absl::StrCat(R"({"n": )", i, R"(, "note": "delivery benchmark"})");
  }
  return events;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"replayd's HTTP sink alone against a downstream"};
  std::string url;
  int count = 50000, keys = 1000, workers = 32;
  app.add_option("--url", url, "the downstream's create URL")->required();
  app.add_option("--events", count, "calls to make")->check(CLI::PositiveNumber);
  app.add_option("--keys", keys, "distinct keys in the envelopes (0: none)");
  app.add_option("--workers", workers, "calls in flight")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  replayd::SinkConfig config;
  config.name = "bench";
  config.url = url;
  config.max_in_flight = workers;
  auto sink = replayd::HttpSink::Create(config);
  if (!sink.ok()) {
    std::fprintf(stderr, "sink_bench: %s\n", std::string(sink.status().message()).c_str());
    return 2;
  }
  const std::vector<replayd::StoredEvent> events = BenchEvents(count, keys);

  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0, finished = 0, failed = 0;
  const double cpu0 = replayd::bench::ProcessCpuSeconds();
  const absl::Time start = absl::Now();
  for (const replayd::StoredEvent& event : events) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < workers; });
      ++in_flight;
    }
    replayd::DeliveryRequest request;
    request.event = &event;
    (*sink)->DeliverAsync(request, [&](replayd::DeliveryResult result) {
      std::lock_guard lock(mu);
      --in_flight;
      ++finished;
      if (result.kind != replayd::DeliveryResult::Kind::kSucceeded) ++failed;
      cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return finished == count; });
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = replayd::bench::ProcessCpuSeconds() - cpu0;
  std::printf(R"({"calls": %d, "seconds": %.3f, "calls_per_s": %.1f, "cpu_us_per_call": %.1f, )"
              R"("failed": %d})"
              "\n",
              count, seconds, count / seconds, cpu / count * 1e6, failed);
  return failed == 0 ? 0 : 1;
}
