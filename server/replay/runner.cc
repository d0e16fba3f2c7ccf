#include "server/replay/runner.h"

#include <unistd.h>

#include <random>
#include <vector>

#include "absl/strings/str_format.h"
#include "server/common/logging.h"
#include "server/replay/job_run.h"
#include "server/replay/limits.h"

namespace replayd {

std::string NewRunnerInstanceId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::random_device rd;
  return absl::StrFormat("%s:%d:%08x", host[0] ? host : "replayd", getpid(), rd());
}

struct ReplayRunner::Active {
  std::atomic<bool> cancel{false};
  std::atomic<bool> pause{false};
  std::atomic<bool> done{false};
  std::thread thread;
};

ReplayRunner::ReplayRunner(ReplayStore* store, DeliveryStore* delivery_store, Deliverer* deliverer,
                           RouteLookup routes, const Config* config, ReplayRunnerOptions options,
                           CompensationStore* compensations)
    : store_(store),
      delivery_store_(delivery_store),
      deliverer_(deliverer),
      compensations_(compensations),
      routes_(std::move(routes)),
      config_(config),
      options_(std::move(options)) {}

ReplayRunner::~ReplayRunner() { Stop(); }

void ReplayRunner::Start() {
  loop_ = std::thread([this] { Loop(); });
}

void ReplayRunner::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    shutdown_ = true;
  }
  cv_.notify_all();
  if (loop_.joinable()) loop_.join();
  std::lock_guard lock(mu_);
  for (auto& [id, active] : active_) {
    if (active->thread.joinable()) active->thread.join();
  }
  active_.clear();
}

void ReplayRunner::Wake() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void ReplayRunner::Cancel(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto it = active_.find(id); it != active_.end()) it->second->cancel = true;
}

void ReplayRunner::Pause(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto it = active_.find(id); it != active_.end()) it->second->pause = true;
}

TokenBucket* ReplayRunner::SinkBucket(const std::string& sink_name) {
  std::lock_guard lock(buckets_mu_);
  auto& bucket = sink_buckets_[sink_name];
  if (bucket == nullptr) {
    const SinkConfig* sink = FindSink(*config_, sink_name);
    double budget = sink != nullptr ? sink->replay_rate_budget : config_->replay.default_rate;
    bucket = std::make_unique<TokenBucket>(
        budget, BucketCapacity(budget, EffectiveBurst(budget, 0, 0)), options_.clock->Now());
  }
  return bucket.get();
}

void ReplayRunner::Reap() {
  for (auto it = active_.begin(); it != active_.end();) {
    if (it->second->done) {
      it->second->thread.join();
      it = active_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReplayRunner::Loop() {
  auto log = Logger("replay");
  std::unique_lock lock(mu_);
  while (!stopping_) {
    Reap();
    bool claimed = false;
    if (static_cast<int>(active_.size()) < options_.max_concurrent_jobs) {
      std::vector<std::string> exclude;
      for (const auto& [id, active] : active_) exclude.push_back(id);
      lock.unlock();
      auto job = store_->ClaimJob(options_.instance, options_.lease, exclude);
      lock.lock();
      if (!job.ok()) {
        log->warn("claiming replay jobs failed (will retry): {}", job.status().message());
      } else if (job->has_value() && !stopping_) {
        auto active = std::make_unique<Active>();
        Active* a = active.get();
        std::string id = (*job)->id;
        a->thread = std::thread([this, a, j = std::move(**job)]() mutable {
          JobRunEnv env{
              .store = store_,
              .delivery_store = delivery_store_,
              .deliverer = deliverer_,
              .routes = &routes_,
              .options = &options_,
              .sink_bucket = [this](const std::string& sink_name) { return SinkBucket(sink_name); },
              .shutdown = &shutdown_,
              .compensations = compensations_};
          JobRun run(env, std::move(j), &a->cancel, &a->pause);
          run.Run();
          a->done = true;
          cv_.notify_all();
        });
        active_.emplace(id, std::move(active));
        claimed = true;
      }
    }
    if (claimed) continue;
    const absl::Time poll_at = options_.clock->Now() + options_.poll_interval;
    while (!stopping_ && !wake_ && options_.clock->Now() < poll_at) {
      options_.clock->WaitUntil(cv_, lock, poll_at);
    }
    wake_ = false;
  }
}

}  // namespace replayd
