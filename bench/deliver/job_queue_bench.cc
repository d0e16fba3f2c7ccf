// The Postgres job queue the deliver bench compares live delivery with: WORKERS
// threads, each with its own connection and keep-alive HTTP connection, take
// one pending job at a time with FOR UPDATE SKIP LOCKED, POST the same
// envelope replayd sends (same headers), and record the attempt and the job's
// outcome in the same transaction, which holds the job's row lock across the
// call. No per-key order and no retries: it does less than replayd does.
//
//   job_queue_bench --database-url DSN --url URL [--workers W]
//
// The jobs are the rows of `job_queue` (the columns of `events`, see
// bench/deliver/run.sh); attempts go to `job_attempts`. Prints one JSON
// object: jobs, seconds, jobs_per_s, cpu_us_per_job (this process's user +
// system time), failed.
#include <curl/curl.h>

#include <atomic>
#include <cstdio>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/deliver/process_cpu.h"
#include "server/delivery/http_sink.h"
#include "server/delivery/sink.h"
#include "server/store/pg_types.h"

namespace {

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

std::string TakeSql() {
  return absl::StrCat("SELECT ", replayd::StoredEventColumns("j"),
                      " FROM job_queue j WHERE j.outcome = 'pending'"
                      " ORDER BY j.position LIMIT 1 FOR UPDATE SKIP LOCKED");
}

constexpr const char* kFinishSql = R"sql(
WITH attempt AS (
  INSERT INTO job_attempts (position, attempt, started_at, duration_ms, http_status, outcome)
  VALUES ($1, 1, $2, $3, $4, $5))
UPDATE job_queue SET outcome = $5, attempts = 1, processed_at = now() WHERE position = $1)sql";

struct Counts {
  std::atomic<int> jobs{0};
  std::atomic<int> failed{0};
};

// Takes and delivers jobs until none is pending.
void Work(const std::string& dsn, const std::string& url, Counts* counts) {
  pqxx::connection conn(dsn);
  conn.prepare("take", TakeSql());
  conn.prepare("finish", kFinishSql);
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Discard);
  for (;;) {
    pqxx::work tx(conn);
    const pqxx::result taken = tx.exec_prepared("take");
    if (taken.empty()) break;
    const replayd::StoredEvent event = replayd::StoredEventFromRow(taken[0]);
    const std::string body = replayd::EnvelopeJson(event);
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    headers = curl_slist_append(
        headers, absl::StrCat("Idempotency-Key: ", replayd::IdempotencyKey(event)).c_str());
    headers = curl_slist_append(headers, "X-Attempt: 1");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    const absl::Time start = absl::Now();
    const CURLcode code = curl_easy_perform(curl);
    const double duration_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    curl_slist_free_all(headers);
    long status = 0;
    if (code == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    const bool ok = status >= 200 && status < 300;
    if (!ok) ++counts->failed;
    tx.exec_prepared0("finish", event.position, replayd::PgTime(start), duration_ms,
                      static_cast<int>(status), ok ? "succeeded" : "failed");
    tx.commit();
    ++counts->jobs;
  }
  curl_easy_cleanup(curl);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"a Postgres job queue delivering the deliver bench's events"};
  std::string dsn, url;
  int workers = 32;
  app.add_option("--database-url", dsn, "the database holding job_queue")->required();
  app.add_option("--url", url, "the downstream's create URL")->required();
  app.add_option("--workers", workers, "worker threads, one connection each")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  Counts counts;
  std::atomic<int> errors{0};
  const double cpu0 = replayd::bench::ProcessCpuSeconds();
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&] {
      try {
        Work(dsn, url, &counts);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "job_queue_bench: %s\n", e.what());
        ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = replayd::bench::ProcessCpuSeconds() - cpu0;
  const int jobs = counts.jobs.load();
  std::printf(R"({"jobs": %d, "seconds": %.3f, "jobs_per_s": %.1f, "cpu_us_per_job": %.1f, )"
              R"("failed": %d})"
              "\n",
              jobs, seconds, jobs / seconds, jobs > 0 ? cpu / jobs * 1e6 : 0.0,
              counts.failed.load());
  return errors == 0 && counts.failed == 0 ? 0 : 1;
}
