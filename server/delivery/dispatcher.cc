#include "server/delivery/dispatcher.h"

#include <unistd.h>

#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "server/common/logging.h"

namespace replayd {
namespace {

std::string DefaultOwner() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  std::random_device rd;
  return absl::StrCat(host, ":", getpid(), ":", absl::Hex(rd(), absl::kZeroPad8));
}

}  // namespace

std::vector<std::vector<StoredEvent>> GroupIntoChains(std::vector<StoredEvent> claimed) {
  std::sort(claimed.begin(), claimed.end(),
            [](const StoredEvent& a, const StoredEvent& b) { return a.position < b.position; });
  std::vector<std::vector<StoredEvent>> chains;
  std::map<std::pair<std::string, std::string>, size_t> by_key;
  for (StoredEvent& e : claimed) {
    if (e.event.key.empty()) {
      chains.push_back({std::move(e)});
      continue;
    }
    auto [it, inserted] = by_key.try_emplace({e.event.source, e.event.key}, chains.size());
    if (inserted) chains.emplace_back();
    chains[it->second].push_back(std::move(e));
  }
  return chains;
}

bool ContinueChain(Outcome outcome, bool strict_order) {
  switch (outcome) {
    case Outcome::kSucceeded:
    case Outcome::kAlreadyProcessed:
      return true;
    case Outcome::kFailed:
      return !strict_order;
    case Outcome::kPending:
    case Outcome::kRetrying:
      return false;
  }
  return false;
}

Dispatcher::Dispatcher(DeliveryStore* store, Deliverer* deliverer, DispatcherOptions options)
    : store_(store),
      deliverer_(deliverer),
      options_(std::move(options)),
      sources_(deliverer->RoutedSources()),
      strict_sources_(deliverer->StrictSources()),
      // Up to two claim batches in flight: the next claim runs while workers
      // still have a batch to deliver.
      capacity_(std::max(2 * options_.claim_batch, options_.workers)) {
  if (options_.owner.empty()) options_.owner = DefaultOwner();
}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  Logger("delivery")->info("dispatcher {} starting: {} deliveries at once, {} routed sources",
                           options_.owner, options_.workers, sources_.size());
  bool any_blocking = false;
  for (const std::string& source : sources_) {
    any_blocking = any_blocking || !deliverer_->RouteFor(source)->sink->NonBlocking();
  }
  if (any_blocking) {
    for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  }
  poller_ = std::thread([this] { PollLoop(); });
}

void Dispatcher::Stop() {
  std::deque<Work> unstarted;
  {
    std::lock_guard lock(mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
    unstarted.swap(queue_);
  }
  work_cv_.notify_all();
  poll_cv_.notify_all();
  poller_.join();
  for (auto& w : workers_) w.join();
  workers_.clear();
  {
    std::lock_guard lock(mu_);
    active_ -= static_cast<int>(blocking_queue_.size());
    for (Work& w : blocking_queue_) unstarted.push_back(std::move(w));
    blocking_queue_.clear();
  }
  for (const Work& w : unstarted) ReleaseRest(w);
  {
    // Calls in flight and records still being written call back into this
    // object.
    std::unique_lock lock(mu_);
    if (!poll_cv_.wait_for(lock, std::chrono::seconds(60), [&] { return in_flight_events_ == 0; })) {
      Logger("delivery")->error("{} deliveries still unrecorded at stop", in_flight_events_);
    }
  }
  // What was given back, and what a failed store call left behind.
  ReleaseGivenBack();
  if (absl::Status s = store_->ReleaseAll(options_.owner); !s.ok()) {
    Logger("delivery")->warn("releasing claims at stop failed (they expire by themselves): {}", s);
  }
  Logger("delivery")->info("dispatcher {} stopped", options_.owner);
}

bool Dispatcher::HasRoomToClaim() const {
  return capacity_ - in_flight_events_ >= options_.claim_batch / 2;
}

bool Dispatcher::SleepUnlessStopping(absl::Duration d) {
  std::unique_lock lock(mu_);
  return !poll_cv_.wait_for(lock, absl::ToChronoMicroseconds(d), [&] { return stopping_; });
}

void Dispatcher::PollLoop() {
  auto log = Logger("delivery");
  absl::Time next_heartbeat = absl::Now() + options_.claim_lease / 3;
  int64_t polls = 0, claimed_total = 0;
  absl::Duration claim_time;
  absl::Time next_summary = absl::Now() + absl::Seconds(5);
  absl::Time summary_start = absl::Now();
  for (;;) {
    int room;
    {
      std::unique_lock lock(mu_);
      // Claim again once there is room for half a batch, so that
      // workers never run dry while a claim is on its way.
      poll_cv_.wait_for(lock, absl::ToChronoMicroseconds(options_.poll_interval), [&] {
        return stopping_ || HasRoomToClaim();
      });
      if (stopping_) return;
      room = capacity_ - in_flight_events_;
    }
    ReleaseGivenBack();
    if (absl::Now() >= next_heartbeat) {
      if (absl::Status s = store_->ExtendClaims(options_.owner, options_.claim_lease); !s.ok()) {
        log->warn("extending claims failed: {}", s);
      }
      next_heartbeat = absl::Now() + options_.claim_lease / 3;
    }
    ClaimDueRequest request{options_.owner, options_.claim_lease,
                            std::min(room, options_.claim_batch), sources_, strict_sources_};
    absl::Time claim_start = absl::Now();
    auto claimed = store_->ClaimDue(request);
    claim_time += absl::Now() - claim_start;
    ++polls;
    if (claimed.ok()) claimed_total += static_cast<int64_t>(claimed->size());
    if (absl::Now() >= next_summary) {
      int in_flight, queued;
      {
        std::lock_guard lock(mu_);
        in_flight = in_flight_events_;
        queued = static_cast<int>(queue_.size());
      }
      const double busy = absl::ToDoubleSeconds(absl::Microseconds(call_busy_us_.exchange(0)));
      log->debug(
          "claims: {} polls, {} events claimed, {:.1f} ms per poll; calls in flight {:.0f}% of"
          " the workers;"
          " now {} in flight, {} chains queued",
          polls, claimed_total, polls > 0 ? absl::ToDoubleMilliseconds(claim_time) / polls : 0.0,
          100.0 * busy / (options_.workers * absl::ToDoubleSeconds(absl::Now() - summary_start)),
          in_flight, queued);
      summary_start = absl::Now();
      polls = 0;
      claimed_total = 0;
      claim_time = absl::ZeroDuration();
      next_summary = absl::Now() + absl::Seconds(5);
    }
    if (!claimed.ok()) {
      log->warn("claiming due events failed (will retry): {}", claimed.status());
      if (!SleepUnlessStopping(options_.poll_interval * 10)) return;
      continue;
    }
    if (claimed->empty()) {
      // Nothing claimable: wait for a chain to finish (it may unblock its
      // key's next event) or for the poll interval (new or due events).
      std::unique_lock lock(mu_);
      const int64_t seen = progress_;
      awaiting_progress_ = true;
      poll_cv_.wait_for(lock, absl::ToChronoMicroseconds(options_.poll_interval),
                        [&] { return stopping_ || progress_ != seen; });
      awaiting_progress_ = false;
      if (stopping_) return;
      continue;
    }
    size_t n = claimed->size();
    auto chains = GroupIntoChains(std::move(*claimed));
    {
      std::lock_guard lock(mu_);
      in_flight_events_ += static_cast<int>(n);
      for (auto& c : chains) {
        queue_.push_back(Work{std::make_shared<const Chain>(std::move(c)), 0});
      }
    }
    Pump();
  }
}

void Dispatcher::ReleaseGivenBack() {
  std::vector<int64_t> positions;
  {
    std::lock_guard lock(mu_);
    positions.swap(to_release_);
  }
  if (positions.empty()) return;
  if (absl::Status s = store_->Release(positions, options_.owner); !s.ok()) {
    Logger("delivery")->warn("releasing {} claims failed (will retry): {}", positions.size(), s);
    std::lock_guard lock(mu_);
    to_release_.insert(to_release_.end(), positions.begin(), positions.end());
  }
}

bool Dispatcher::Blocks(const Work& work) const {
  const Route* route = deliverer_->RouteFor((*work.chain)[work.next].event.source);
  return route != nullptr && !route->sink->NonBlocking();
}

void Dispatcher::Pump() {
  // Runs on whichever thread freed a slot or queued work (the poller, a
  // sink's thread, a record writer). Deliveries it starts may report at once
  // and call this dispatcher's Pump again: the outer loop picks their work up
  // instead. Per dispatcher, so that a thread pumping one never skips another.
  thread_local const Dispatcher* pumping = nullptr;
  if (pumping == this) return;
  const Dispatcher* outer = pumping;
  pumping = this;
  for (;;) {
    Work work;
    {
      std::lock_guard lock(mu_);
      if (stopping_ || queue_.empty() || active_ >= options_.workers) break;
      work = std::move(queue_.front());
      queue_.pop_front();
      ++active_;
      if (Blocks(work)) {
        blocking_queue_.push_back(std::move(work));
        work_cv_.notify_one();
        continue;
      }
    }
    DeliverNext(std::move(work));
  }
  pumping = outer;
}

void Dispatcher::WorkerLoop() {
  for (;;) {
    Work work;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !blocking_queue_.empty(); });
      if (stopping_) return;  // Stop() releases what is left
      work = std::move(blocking_queue_.front());
      blocking_queue_.pop_front();
    }
    DeliverNext(std::move(work));
  }
}

void Dispatcher::Finished(int n) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    const bool had_room = HasRoomToClaim();
    in_flight_events_ -= n;
    ++progress_;
    // Wake the poller only when it waits for this: one wake-up per finished
    // event would cost a context switch each.
    wake = stopping_ || awaiting_progress_ || (!had_room && HasRoomToClaim());
  }
  if (wake) poll_cv_.notify_one();
}

// What happens after one event of a chain: its record's commit and the
// worker's decision whether the chain goes on arrive in either order; the
// second one moves the chain on.
struct Dispatcher::Step {
  Work rest;                     // the chain from the following event
  bool proceed = false;          // set by the worker
  absl::Status recorded;         // set by the record's callback
  std::atomic<int> arrivals{0};
};

void Dispatcher::DeliverNext(Work work) {
  bool stopping;
  {
    std::lock_guard lock(mu_);
    stopping = stopping_;
  }
  if (work.release_only || stopping) {
    ReleaseRest(work);
    Reported();
    return;
  }
  const StoredEvent& event = (*work.chain)[work.next];
  DeliveryContext ctx;
  ctx.trigger = event.attempts > 0 ? "retry" : "live";
  ctx.claim_owner = options_.owner;
  auto step = std::make_shared<Step>();
  step->rest = Work{work.chain, work.next + 1};
  const absl::Time start = absl::Now();
  deliverer_->DeliverOneAsync(
      event, ctx,
      [this, step, work, start](absl::StatusOr<DeliveryReport> report) {
        call_busy_us_ += absl::ToInt64Microseconds(absl::Now() - start);
        OnReported(work, step, report);
        Reported();
      },
      [this, step](absl::Status s) {
        step->recorded = std::move(s);
        Finished(1);
        Arrive(step);
      });
}

void Dispatcher::OnReported(const Work& work, const std::shared_ptr<Step>& step,
                            const absl::StatusOr<DeliveryReport>& report) {
  if (!report.ok()) {
    const StoredEvent& event = (*work.chain)[work.next];
    Logger("delivery")->warn("{}/{}: delivery not recorded (it will be retried): {}",
                             event.event.source, event.event.event_id, report.status());
    ReleaseRest(work);  // this event and the rest of its chain
    return;
  }
  const Route* route = deliverer_->RouteFor((*work.chain)[work.next].event.source);
  const bool more = step->rest.next < step->rest.chain->size();
  step->proceed =
      more && ContinueChain(report->outcome, route != nullptr && route->strict_order);
  // The rest of the chain must wait behind the event that stopped it.
  if (more && !step->proceed) ReleaseRest(step->rest);
  Arrive(step);
}

void Dispatcher::Reported() {
  {
    std::lock_guard lock(mu_);
    --active_;
  }
  Pump();
}

void Dispatcher::Arrive(const std::shared_ptr<Step>& step) {
  if (step->arrivals.fetch_add(1, std::memory_order_acq_rel) == 0) return;
  if (!step->proceed) return;
  // The key's next event goes out only once this one's outcome is durable:
  // if the write failed, this event is delivered again later, and its
  // successor must not overtake it. Workers go on with other chains meanwhile.
  Work rest = step->rest;
  if (!step->recorded.ok()) {
    const StoredEvent& event = (*rest.chain)[rest.next - 1];
    Logger("delivery")->warn("{}/{}: recording the attempt failed; the rest of its key waits: {}",
                             event.event.source, event.event.event_id, step->recorded);
    rest.release_only = true;
  }
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      // First in line: the chain's key is held until it is through.
      queue_.push_front(std::move(rest));
      rest.chain = nullptr;
    }
  }
  if (rest.chain == nullptr) {
    Pump();
  } else {
    // Stopping: the workers may be gone; Stop() releases every claim left.
    Finished(static_cast<int>(rest.chain->size() - rest.next));
  }
}

void Dispatcher::ReleaseRest(const Work& work) {
  // Given back by the poller in one statement, before its next claim: the
  // threads that get here (a sink's, a record writer's) do not wait on the
  // database.
  const Chain& chain = *work.chain;
  {
    std::lock_guard lock(mu_);
    for (size_t i = work.next; i < chain.size(); ++i) to_release_.push_back(chain[i].position);
  }
  Finished(static_cast<int>(chain.size() - work.next));
}

}  // namespace replayd
