// Times ReplayService/DryRun over a window against the raw SQL aggregate over
// the same rows (SELECT outcome, count(*) ... GROUP BY outcome), alternating
// the two for several rounds after a warm-up, and prints one JSON object with
// the medians.
#include <algorithm>
#include <chrono>
#include <iostream>

#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "absl/time/time.h"
#include "replay/v1/replay.grpc.pb.h"

namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dry run vs raw SQL aggregate"};
  std::string address, dsn, from, to;
  int rounds = 5;
  app.add_option("--address", address)->required();
  app.add_option("--dsn", dsn)->required();
  app.add_option("--from", from, "RFC 3339")->required();
  app.add_option("--to", to, "RFC 3339")->required();
  app.add_option("--rounds", rounds);
  CLI11_PARSE(app, argc, argv);

  absl::Time f, t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, from, &f, &err) ||
      !absl::ParseTime(absl::RFC3339_full, to, &t, &err)) {
    std::cerr << "bad time: " << err << "\n";
    return 2;
  }
  replay::v1::ReplayRequest request;
  request.mutable_from()->set_seconds(absl::ToUnixSeconds(f));
  request.mutable_to()->set_seconds(absl::ToUnixSeconds(t));
  auto stub = replay::v1::ReplayService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  pqxx::connection conn(dsn);
  const std::string sql = "SELECT outcome, count(*) FROM events WHERE ingested_at >= '" + from +
                          "'::timestamptz AND ingested_at < '" + to +
                          "'::timestamptz GROUP BY outcome";

  int64_t sql_total = 0;
  replay::v1::DryRunReport report;
  auto dry_run = [&] {
    auto start = std::chrono::steady_clock::now();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
    grpc::Status s = stub->DryRun(&ctx, request, &report);
    if (!s.ok()) {
      std::cerr << "DryRun: " << s.error_message() << "\n";
      std::exit(1);
    }
    return Seconds(start);
  };
  auto aggregate = [&] {
    auto start = std::chrono::steady_clock::now();
    pqxx::nontransaction tx(conn);
    sql_total = 0;
    for (const auto& row : tx.exec(sql)) sql_total += row[1].as<int64_t>();
    return Seconds(start);
  };
  dry_run();
  aggregate();
  std::vector<double> dry, raw;
  for (int i = 0; i < rounds; ++i) {
    if (i % 2 == 0) {
      dry.push_back(dry_run());
      raw.push_back(aggregate());
    } else {
      raw.push_back(aggregate());
      dry.push_back(dry_run());
    }
    std::cerr << "round " << i + 1 << ": dry run " << dry.back() << " s, SQL aggregate "
              << raw.back() << " s\n";
  }
  nlohmann::json out = {{"dryrun_s", Median(dry)},
                        {"sql_s", Median(raw)},
                        {"window_events", sql_total},
                        {"dryrun_total", report.total()},
                        {"would_deliver", report.would_deliver()},
                        {"would_skip", report.would_skip()},
                        {"missing", report.missing()},
                        {"missing_ranges", report.missing_ranges_size()}};
  std::cout << out.dump() << "\n";
  return report.total() == sql_total ? 0 : 1;
}
