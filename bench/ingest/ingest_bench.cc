// Load tool for the ingest benchmarks. The same rows, batch size and
// concurrency go through one of three paths, each batch acknowledged only
// once durable:
//   grpc  replay.v1.IngestService/Publish
//   http  POST /v1/events
//   copy  the baseline: raw COPY of the rows into the same schema
//         (event_keys and events), one transaction per batch.
// Prints one line: {"mode":..., "events":..., "seconds":..., "events_per_s":...}
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <tuple>

#include <CLI/CLI.hpp>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "replay/v1/ingest.grpc.pb.h"

namespace {

struct Options {
  std::string mode = "grpc";
  std::string address;  // host:port for grpc and http
  std::string dsn;      // for copy
  int events = 200000;
  int batch = 500;
  int concurrency = 8;
  std::string prefix = "bench";
};

std::string EventId(const Options& o, int i) { return absl::StrCat(o.prefix, "-", i); }
std::string Key(int i) { return absl::StrCat("customer-", i % 1000); }
std::string Payload(int i) {
  return absl::StrCat(R"({"order_id":)", i, R"(,"customer":"customer-)", i % 1000,
                      R"(","amount_cents":)", (i * 7919) % 100000,
                      R"(,"currency":"EUR","items":[{"sku":"SKU-)", i % 97,
                      R"(","qty":2},{"sku":"SKU-)", i % 89,
                      R"(","qty":1}],"note":"benchmark event with a realistic body size"})");
}

void RunGrpc(const Options& o, replay::v1::IngestService::Stub& stub, int first, int count) {
  replay::v1::PublishRequest request;
  for (int i = first; i < first + count; ++i) {
    auto* e = request.add_events();
    e->set_source("bench");
    e->set_event_id(EventId(o, i));
    e->set_sequence(i);
    e->set_key(Key(i));
    e->set_type("order.created");
    e->set_payload(Payload(i));
  }
  replay::v1::PublishResponse response;
  grpc::ClientContext ctx;
  grpc::Status status = stub.Publish(&ctx, request, &response);
  if (!status.ok()) throw std::runtime_error("Publish: " + status.error_message());
  for (const auto& r : response.results()) {
    if (r.status() != replay::v1::EventResult::ACCEPTED) throw std::runtime_error("not accepted");
  }
}

void RunHttp(const Options& o, httplib::Client& client, int first, int count) {
  nlohmann::json body = {{"events", nlohmann::json::array()}};
  for (int i = first; i < first + count; ++i) {
    body["events"].push_back({{"source", "bench"},
                              {"event_id", EventId(o, i)},
                              {"sequence", i},
                              {"key", Key(i)},
                              {"type", "order.created"},
                              {"payload", nlohmann::json::parse(Payload(i))}});
  }
  auto res = client.Post("/v1/events", body.dump(), "application/json");
  if (!res || res->status != 200) throw std::runtime_error("POST /v1/events failed");
}

void RunCopy(const Options& o, pqxx::connection& conn, int first, int count) {
  std::string now = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
  pqxx::work tx(conn);
  {
    pqxx::stream_to keys(tx, "event_keys",
                         std::vector<std::string>{"source", "event_id", "ingested_at"});
    for (int i = first; i < first + count; ++i) {
      keys << std::make_tuple(std::string("bench"), EventId(o, i), now);
    }
    keys.complete();
  }
  {
    pqxx::stream_to events(tx, "events",
                           std::vector<std::string>{"source", "event_id", "sequence", "key", "type",
                                                    "ingested_at", "next_attempt_at", "payload"});
    for (int i = first; i < first + count; ++i) {
      events << std::make_tuple(std::string("bench"), EventId(o, i), static_cast<int64_t>(i),
                                Key(i), std::string("order.created"), now, now, Payload(i));
    }
    events.complete();
  }
  tx.commit();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ingest benchmark load tool"};
  app.add_option("--mode", o.mode, "grpc, http or copy")
      ->check(CLI::IsMember({"grpc", "http", "copy"}));
  app.add_option("--address", o.address, "replayd host:port (gRPC or HTTP)");
  app.add_option("--dsn", o.dsn, "database for --mode copy");
  app.add_option("--events", o.events);
  app.add_option("--batch", o.batch);
  app.add_option("--concurrency", o.concurrency);
  app.add_option("--prefix", o.prefix, "event id prefix (unique per run)");
  CLI11_PARSE(app, argc, argv);

  std::atomic<int> next_batch{0};
  std::atomic<bool> failed{false};
  const int batches = (o.events + o.batch - 1) / o.batch;
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < o.concurrency; ++w) {
    workers.emplace_back([&] {
      try {
        // One connection per worker on every path, kept for the whole run.
        std::unique_ptr<pqxx::connection> conn;
        std::unique_ptr<httplib::Client> http;
        std::unique_ptr<replay::v1::IngestService::Stub> stub;
        if (o.mode == "copy") conn = std::make_unique<pqxx::connection>(o.dsn);
        if (o.mode == "grpc") {
          grpc::ChannelArguments args;
          args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // not shared with other workers
          stub = replay::v1::IngestService::NewStub(
              grpc::CreateCustomChannel(o.address, grpc::InsecureChannelCredentials(), args));
        }
        if (o.mode == "http") {
          auto colon = o.address.rfind(':');
          http = std::make_unique<httplib::Client>(o.address.substr(0, colon),
                                                   std::stoi(o.address.substr(colon + 1)));
          http->set_keep_alive(true);
          http->set_read_timeout(60, 0);
        }
        for (int b = next_batch++; b < batches && !failed; b = next_batch++) {
          int first = b * o.batch;
          int count = std::min(o.batch, o.events - first);
          if (o.mode == "grpc") RunGrpc(o, *stub, first, count);
          if (o.mode == "http") RunHttp(o, *http, first, count);
          if (o.mode == "copy") RunCopy(o, *conn, first, count);
        }
      } catch (const std::exception& e) {
        std::cerr << "ingest_bench: " << e.what() << "\n";
        failed = true;
      }
    });
  }
  for (auto& t : workers) t.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (failed) return 1;
  std::cout << nlohmann::json{{"mode", o.mode},
                              {"events", o.events},
                              {"seconds", seconds},
                              {"events_per_s", o.events / seconds}}
                   .dump()
            << std::endl;
  return 0;
}
