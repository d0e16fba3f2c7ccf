#include "server/delivery/dispatcher.h"

#include <unistd.h>

#include <algorithm>
#include <limits>
#include <random>
#include <unordered_set>

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

// Pauses, in poll intervals: before a key whose event another worker holds
// is tried again; after a failed read or claim; before an event whose
// attempt was not recorded is tried again.
constexpr int kBusyWaits = 4;
constexpr int kBackOffWaits = 10;
constexpr int kRetryWaits = 20;
// Pages of undelivered events the once-a-second rescan reads at most.
constexpr int kRescanPages = 8;

}  // namespace

absl::Duration HeartbeatInterval(absl::Duration claim_lease) { return claim_lease / 4; }

Dispatcher::Dispatcher(DeliveryStore* store, Deliverer* deliverer, DispatcherOptions options)
    : store_(store),
      deliverer_(deliverer),
      options_(std::move(options)),
      sources_(deliverer->RoutedSources()),
      strict_sources_(deliverer->StrictSources()),
      // Up to two batches held: the next read and claim run while workers
      // still have a batch to deliver.
      capacity_(static_cast<size_t>(std::max(2 * options_.claim_batch, options_.workers))),
      // A batch, or enough to keep every worker busy between claims if that
      // is more: a daemon does not claim keys it cannot start soon, which
      // leaves them to the other daemons on the log.
      claim_budget_(static_cast<size_t>(std::max(options_.claim_batch, 4 * options_.workers))),
      queues_(strict_sources_) {
  if (options_.owner.empty()) options_.owner = DefaultOwner();
}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  Logger("delivery")
      ->info(
          "dispatcher {} starting: {} deliveries at once, {} routed sources; claim lease {}, "
          "renewed every {}",
          options_.owner, options_.workers, sources_.size(),
          absl::FormatDuration(options_.claim_lease),
          absl::FormatDuration(HeartbeatInterval(options_.claim_lease)));
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
  {
    std::lock_guard lock(mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  work_cv_.notify_all();
  poll_cv_.notify_all();
  poller_.join();
  for (auto& w : workers_) w.join();
  workers_.clear();
  {
    // Handed to the workers but never started: ReleaseAll gives them back.
    std::unique_lock lock(mu_);
    active_ -= static_cast<int>(blocking_queue_.size());
    unfinished_ -= static_cast<int>(blocking_queue_.size());
    blocking_queue_.clear();
    // Calls in flight and records still being written call back into this
    // object: it must outlive them.
    for (absl::Duration waited; !WaitUntil(lock, Now() + absl::Seconds(10), [&] {
           return unfinished_ == 0 && active_ == 0 && callbacks_ == 0;
         });) {
      waited += absl::Seconds(10);
      Logger("delivery")
          ->warn("stopping: {} deliveries still unrecorded after {}", unfinished_,
                 absl::FormatDuration(waited));
    }
  }
  ReleaseGivenBack();
  if (absl::Status s = store_->ReleaseAll(options_.owner); !s.ok()) {
    Logger("delivery")->warn("releasing claims at stop failed (they expire by themselves): {}", s);
  }
  Logger("delivery")->info("dispatcher {} stopped", options_.owner);
}

bool Dispatcher::PollerHasWork() const {
  const size_t half_batch = static_cast<size_t>(std::max(1, options_.claim_batch / 2));
  const bool room = queues_.size() + half_batch <= capacity_;
  const bool claimable =
      2 * queues_.holding() <= claim_budget_ && queues_.size() > queues_.holding();
  const absl::Time now = Now();
  return claim_wanted_ || (room && now >= read_again_at_) || (claimable && now >= claim_again_at_);
}

bool Dispatcher::SleepUnlessStopping(absl::Duration d) {
  std::unique_lock lock(mu_);
  return !WaitUntil(lock, Now() + d, [&] { return stopping_; });
}

void Dispatcher::PollLoop() {
  auto log = Logger("delivery");
  const absl::Duration heartbeat_interval = HeartbeatInterval(options_.claim_lease);
  absl::Time next_heartbeat = Now() + heartbeat_interval;
  int64_t polls = 0, claimed_total = 0;
  absl::Duration claim_time;
  absl::Time next_summary = Now() + absl::Seconds(5);
  absl::Time summary_start = Now();
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // Read again once there is room for half a batch, so that workers
      // never run dry while a read is on its way; otherwise every poll
      // interval, for new events and retries coming due.
      WaitUntil(lock, Now() + options_.poll_interval, [&] { return stopping_ || PollerHasWork(); });
      if (stopping_) return;
    }
    ReleaseGivenBack();
    if (Now() >= next_heartbeat) {
      if (absl::Status s = store_->ExtendClaims(options_.owner, options_.claim_lease); !s.ok()) {
        log->warn("extending claims failed: {}", s);
      }
      next_heartbeat = Now() + heartbeat_interval;
    }
    const absl::Time claim_start = Now();
    const bool scanned = Scan(claim_start);
    CheckParked();
    const int claimed = ClaimQueued();
    claim_time += Now() - claim_start;
    ++polls;
    Pump();
    claimed_total += std::max(claimed, 0);
    if (!scanned || claimed < 0) {
      // The database is unreachable or failing: do not hammer it.
      if (!SleepUnlessStopping(kBackOffWaits * options_.poll_interval)) return;
    }
    if (Now() >= next_summary) {
      size_t held;
      int64_t cursor;
      {
        std::lock_guard lock(mu_);
        held = queues_.size();
        cursor = cursor_;
      }
      const double busy = absl::ToDoubleSeconds(absl::Microseconds(call_busy_us_.exchange(0)));
      log->debug(
          "claims: {} polls, {} events claimed, {:.1f} ms per poll; calls in flight {:.0f}% of"
          " the workers; {} events held, cursor at {}",
          polls, claimed_total, polls > 0 ? absl::ToDoubleMilliseconds(claim_time) / polls : 0.0,
          100.0 * busy / (options_.workers * absl::ToDoubleSeconds(Now() - summary_start)), held,
          cursor);
      summary_start = Now();
      polls = 0;
      claimed_total = 0;
      claim_time = absl::ZeroDuration();
      next_summary = Now() + absl::Seconds(5);
    }
  }
}

bool Dispatcher::Scan(absl::Time now) {
  int64_t after;
  int limit;
  bool rescan;
  size_t held;
  {
    std::lock_guard lock(mu_);
    after = cursor_;
    held = queues_.size();
    limit = now < read_again_at_ || held >= capacity_
                ? 0
                : static_cast<int>(std::min<size_t>(capacity_ - held, options_.claim_batch));
    rescan = now >= next_rescan_;
    if (rescan) next_rescan_ = now + absl::Seconds(1);
  }
  auto log = Logger("delivery");
  if (limit > 0) {
    auto found = store_->ScanUndelivered(sources_, after, limit);
    if (!found.ok()) {
      log->warn("reading undelivered events failed (will retry): {}", found.status());
      return false;
    }
    std::lock_guard lock(mu_);
    for (const UndeliveredEvent& e : *found) {
      queues_.Add(e, now);
      cursor_ = std::max(cursor_, e.ref.position);
    }
    // At the end of the log: look again after the poll interval.
    if (static_cast<int>(found->size()) < limit) read_again_at_ = now + options_.poll_interval;
  }
  if (!rescan) return true;
  // The cursor passes positions whose ingest had not committed yet: find
  // them among the undelivered events below it, a few pages a second (the
  // events of parked keys stay there until a replay and may be many). The
  // same read tells which held events another worker settled meanwhile.
  const int page = static_cast<int>(held) + std::max(options_.claim_batch, 1);
  for (int pages = 0; pages < kRescanPages; ++pages) {
    int64_t from;
    {
      std::lock_guard lock(mu_);
      from = rescan_from_;
    }
    auto again = store_->ScanUndelivered(sources_, from, page);
    if (!again.ok()) {
      log->warn("reading undelivered events failed (will retry): {}", again.status());
      return false;
    }
    std::lock_guard lock(mu_);
    int late = 0;
    for (const UndeliveredEvent& e : *again) {
      if (e.ref.position <= cursor_ && queues_.Add(e, now)) ++late;
    }
    if (late > 0) log->debug("{} events found below the cursor (committed late)", late);
    // The page holds every undelivered event after `from` up to its last
    // one, or all of them when it is not full.
    const bool last =
        static_cast<int>(again->size()) < page || again->back().ref.position >= cursor_;
    const int64_t through = last ? std::numeric_limits<int64_t>::max() : again->back().ref.position;
    if (int gone = queues_.ClaimAgainIfGone(*again, from, through); gone > 0) {
      log->debug("{} held events are no longer undelivered: claiming them to see why", gone);
      claim_again_at_ = absl::InfinitePast();
    }
    rescan_from_ = last ? 0 : through;
    if (last) break;
  }
  return true;
}

int Dispatcher::ClaimQueued() {
  const absl::Time now = Now();
  std::vector<EventRef> refs;
  {
    std::lock_guard lock(mu_);
    claim_wanted_ = false;
    const size_t holding = queues_.holding();
    const size_t limit = std::min(static_cast<size_t>(std::max(options_.claim_batch, 1)),
                                  holding < claim_budget_ ? claim_budget_ - holding : 0);
    if (limit > 0) refs = queues_.ToClaim(now, limit);
    // Nothing more to claim for now (keys wait on retries or on others'
    // claims): look again after the poll interval.
    claim_again_at_ = refs.size() < limit ? now + options_.poll_interval : absl::InfinitePast();
    // Claimed again (a claim renews the owner's own): a give-back still
    // queued must not delete the claim this takes.
    if (!to_release_.empty()) {
      std::unordered_set<int64_t> taking;
      for (const EventRef& r : refs) taking.insert(r.position);
      std::erase_if(to_release_, [&](int64_t p) { return taking.count(p) > 0; });
    }
  }
  if (refs.empty()) return 0;
  auto results = store_->Claim(refs, options_.owner, options_.claim_lease, strict_sources_);
  if (!results.ok()) {
    Logger("delivery")
        ->warn("claiming {} events failed (will retry): {}", refs.size(), results.status());
    return -1;
  }
  int claimed = 0;
  int64_t busy = 0;
  for (const ClaimResult& r : *results) {
    claimed += r.state == ClaimResult::State::kClaimed;
    busy += r.state == ClaimResult::State::kBusy;
  }
  if (busy > 0) NoteClaimWait(busy);
  std::lock_guard lock(mu_);
  // A key whose event another worker holds is tried again a little later.
  std::vector<int64_t> released =
      queues_.Claimed(refs, std::move(*results), Now(), kBusyWaits * options_.poll_interval);
  to_release_.insert(to_release_.end(), released.begin(), released.end());
  return claimed;
}

void Dispatcher::NoteClaimWait(int64_t events) {
  if (DeliveryObserver* observer = deliverer_->observer()) observer->OnClaimWait(events);
  // Once per lease at most: a dead daemon's claims make every poll wait.
  waiting_since_claim_log_ += events;
  if (Now() < next_claim_wait_log_) return;
  Logger("delivery")
      ->warn(
          "{} claim attempts found events claimed by another daemon; they are taken over when "
          "its claims expire (claim_lease {})",
          waiting_since_claim_log_, absl::FormatDuration(options_.claim_lease));
  waiting_since_claim_log_ = 0;
  next_claim_wait_log_ = Now() + options_.claim_lease;
}

void Dispatcher::CheckParked() {
  std::vector<EventRef> blockers;
  {
    std::lock_guard lock(mu_);
    if (Now() < next_parked_check_) return;
    next_parked_check_ = Now() + absl::Seconds(1);
    blockers = queues_.Blockers();
  }
  if (blockers.empty()) return;
  auto failed = store_->StillFailed(blockers);
  if (!failed.ok()) {
    Logger("delivery")->warn("checking parked keys failed (will retry): {}", failed.status());
    return;
  }
  std::lock_guard lock(mu_);
  // The parked keys' events were let go: read the log again from their
  // blockers on (what is held already is not added twice).
  for (int64_t position : queues_.Unpark(*failed)) {
    cursor_ = std::min(cursor_, position - 1);
    read_again_at_ = absl::InfinitePast();
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

bool Dispatcher::Blocks(const StoredEvent& event) const {
  std::shared_ptr<const Route> route = deliverer_->RouteFor(event.event.source);
  return route != nullptr && !route->sink->NonBlocking();
}

void Dispatcher::Pump() {
  // Runs on whichever thread freed a slot or claimed events (the poller, a
  // sink's thread, a record writer). Deliveries it starts may report at once
  // and call this dispatcher's Pump again: the outer loop picks their work up
  // instead. Per dispatcher, so that a thread pumping one never skips another.
  thread_local const Dispatcher* pumping = nullptr;
  if (pumping == this) return;
  const Dispatcher* outer = pumping;
  pumping = this;
  for (;;) {
    std::shared_ptr<const StoredEvent> event;
    {
      std::lock_guard lock(mu_);
      if (stopping_ || active_ >= options_.workers) break;
      std::optional<StoredEvent> next = queues_.NextToStart();
      if (!next) break;
      ++active_;
      ++unfinished_;
      event = std::make_shared<const StoredEvent>(std::move(*next));
      if (Blocks(*event)) {
        blocking_queue_.push_back(std::move(event));
        work_cv_.notify_one();
        continue;
      }
    }
    Deliver(std::move(event));
  }
  pumping = outer;
}

void Dispatcher::WorkerLoop() {
  for (;;) {
    std::shared_ptr<const StoredEvent> event;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !blocking_queue_.empty(); });
      if (stopping_) return;  // Stop() counts off what is left
      event = std::move(blocking_queue_.front());
      blocking_queue_.pop_front();
    }
    Deliver(std::move(event));
  }
}

// One started event: its report and its record's commit arrive in either
// order; the second one ends it. A failed report has no record after it.
struct Dispatcher::Step {
  std::shared_ptr<const StoredEvent> event;
  std::optional<Outcome> outcome;  // set by an OK report
  absl::Status recorded;           // set by the record's callback
  std::atomic<int> arrivals{0};
};

void Dispatcher::EnterCallback() {
  std::lock_guard lock(mu_);
  ++callbacks_;
}

void Dispatcher::LeaveCallback() {
  // Notified under the lock: once it is released, Stop() may return and this
  // object go away.
  std::lock_guard lock(mu_);
  if (--callbacks_ == 0 && stopping_) poll_cv_.notify_all();
}

void Dispatcher::Deliver(std::shared_ptr<const StoredEvent> event) {
  DeliveryContext ctx;
  ctx.trigger = event->attempts > 0 ? "retry" : "live";
  ctx.claim_owner = options_.owner;
  auto step = std::make_shared<Step>();
  step->event = event;
  const absl::Time start = Now();
  deliverer_->DeliverOneAsync(
      *event, ctx,
      [this, step, start](absl::StatusOr<DeliveryReport> report) {
        EnterCallback();
        call_busy_us_ += absl::ToInt64Microseconds(Now() - start);
        if (report.ok()) {
          step->outcome = report->outcome;
          Arrive(step);
        } else {
          Logger("delivery")
              ->warn("{}/{}: delivery not recorded (it will be retried): {}",
                     step->event->event.source, step->event->event.event_id, report.status());
          End(step);
        }
        Reported();
        LeaveCallback();
      },
      [this, step](absl::Status s) {
        EnterCallback();
        step->recorded = std::move(s);
        Arrive(step);
        LeaveCallback();
      });
}

void Dispatcher::Arrive(const std::shared_ptr<Step>& step) {
  if (step->arrivals.fetch_add(1, std::memory_order_acq_rel) == 1) End(step);
}

void Dispatcher::End(const std::shared_ptr<Step>& step) {
  const StoredEvent& event = *step->event;
  KeyQueues::Ending ending;
  // The key's next event goes out only once this one's outcome is durable:
  // if the write failed (or the claim was lost), this event is delivered
  // again later, and its successor must not overtake it.
  ending.recorded = step->outcome.has_value() && step->recorded.ok();
  ending.outcome = step->outcome.value_or(Outcome::kPending);
  if (step->outcome && !step->recorded.ok()) {
    Logger("delivery")
        ->warn("{}/{}: the attempt was not recorded; the rest of its key waits: {}",
               event.event.source, event.event.event_id, step->recorded);
  }
  bool wake;
  {
    std::lock_guard lock(mu_);
    const bool had_work = PollerHasWork();
    std::vector<int64_t> released = queues_.Finished({event.position, event.ingested_at}, ending,
                                                     Now(), kRetryWaits * options_.poll_interval);
    to_release_.insert(to_release_.end(), released.begin(), released.end());
    if (ending.recorded && ending.outcome == Outcome::kRetrying) claim_wanted_ = true;
    --unfinished_;
    // Wake the poller only when this gives it work: one wake-up per
    // finished event would cost a context switch each.
    wake = stopping_ || (!had_work && PollerHasWork());
  }
  if (wake) poll_cv_.notify_all();
  Pump();
}

void Dispatcher::Reported() {
  {
    std::lock_guard lock(mu_);
    --active_;
  }
  Pump();
}

}  // namespace replayd
