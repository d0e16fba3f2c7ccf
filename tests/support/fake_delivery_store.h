// An in-memory DeliveryStore for unit tests of the dispatcher, the deliverer
// and the replay runner: an event log with outcomes, claims with owners and
// leases (timed by the Clock it is given), a record of every attempt, and the
// reads the dispatcher makes. Asynchronous records are written, and their
// callbacks called, on a writer thread of its own; a test can hold them back
// (PauseRecords) or make them fail. Thread safe. DeliverToLogTable is not
// modelled (UNIMPLEMENTED).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/clock.h"
#include "server/store/delivery_store.h"
#include "tests/support/locked.h"

namespace replayd::testing {

class FakeDeliveryStore final : public DeliveryStore {
 public:
  explicit FakeDeliveryStore(const Clock* clock = &SystemClock::Get())
      : clock_(clock), writer_([this] { WriteLoop(); }) {}

  ~FakeDeliveryStore() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      records_paused_ = false;
    }
    cv_.notify_all();
    writer_.join();
  }

  // --- Test set-up and inspection ---

  // Appends an event to the log (pending, ingested now) and returns it.
  StoredEvent Append(const std::string& source, const std::string& event_id,
                     const std::string& key = "") {
    NewEvent e;
    e.source = source;
    e.event_id = event_id;
    e.key = key;
    e.payload = "{}";
    return Append(std::move(e));
  }
  StoredEvent Append(NewEvent event) {
    std::lock_guard lock(mu_);
    StoredEvent row;
    row.position = ++last_position_;
    row.event = std::move(event);
    row.ingested_at = clock_->Now();
    rows_[row.position].event = row;
    return row;
  }

  // Sets an event's outcome by hand (e.g. a replay delivered a failed event).
  void SetOutcome(int64_t position, Outcome outcome) {
    std::lock_guard lock(mu_);
    StoredEvent& e = rows_.at(position).event;
    e.outcome = outcome;
    if (outcome != Outcome::kRetrying) e.next_attempt_at.reset();
  }

  // Sets what the log recorded of an event's downstream record at its last
  // delivery.
  void SetRecorded(int64_t position, const std::string& record_id, const std::string& version,
                   std::optional<absl::Time> updated_at = std::nullopt) {
    std::lock_guard lock(mu_);
    StoredEvent& e = rows_.at(position).event;
    e.target_record_id = record_id;
    e.target_version = version;
    e.target_updated_at = updated_at;
  }

  // Makes `owner` hold a claim on the event for `lease` (another daemon or a
  // replay taking it).
  void HoldClaim(int64_t position, const std::string& owner, absl::Duration lease) {
    std::lock_guard lock(mu_);
    rows_.at(position).claim = Hold{owner, clock_->Now() + lease};
  }
  // Drops whatever claim the event has.
  void DropClaim(int64_t position) {
    std::lock_guard lock(mu_);
    rows_.at(position).claim.reset();
  }

  StoredEvent Event(int64_t position) const {
    std::lock_guard lock(mu_);
    return rows_.at(position).event;
  }
  // Who holds the event's claim (expired or not); nullopt: nobody.
  std::optional<std::string> ClaimOwner(int64_t position) const {
    std::lock_guard lock(mu_);
    const auto& claim = rows_.at(position).claim;
    return claim ? std::optional<std::string>(claim->owner) : std::nullopt;
  }
  // How many claims `owner` holds; every owner's when empty.
  int ClaimCount(const std::string& owner = "") const {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& [position, row] : rows_) {
      n += row.claim && (owner.empty() || row.claim->owner == owner);
    }
    return n;
  }
  // Every recorded attempt, in the order recorded; of one event when
  // `position` is given.
  std::vector<AttemptRecord> Attempts(std::optional<int64_t> position = std::nullopt) const {
    std::lock_guard lock(mu_);
    std::vector<AttemptRecord> out;
    for (const AttemptRecord& a : attempts_) {
      if (!position || a.event_position == *position) out.push_back(a);
    }
    return out;
  }

  // While paused, asynchronous records wait unwritten and their callbacks
  // uncalled.
  void PauseRecords() { WriteLocked(mu_, records_paused_, true); }
  void ResumeRecords() {
    WriteLocked(mu_, records_paused_, false);
    cv_.notify_all();
  }
  // Asynchronous records waiting (paused or not yet written).
  int PendingRecords() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(queue_.size());
  }
  // Every record fails with `error` (nothing written) until set back to OK.
  void SetRecordError(absl::Status error) {
    std::lock_guard lock(mu_);
    record_error_ = std::move(error);
  }
  // Waits (in real time) until the event's outcome is `outcome`.
  bool WaitForOutcome(int64_t position, Outcome outcome,
                      absl::Duration timeout = absl::Seconds(5)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return rows_.at(position).event.outcome == outcome; });
  }
  // Waits (in real time) until `n` attempts are recorded.
  bool WaitForAttempts(size_t n, absl::Duration timeout = absl::Seconds(5)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return attempts_.size() >= n; });
  }
  // Calls of Claim (one per batch) and TryClaim, and of ReleaseAll, so far.
  int claim_calls() const { return ReadLocked(mu_, claim_calls_); }
  int release_all_calls() const { return ReadLocked(mu_, release_all_calls_); }
  // Records that failed with the SetRecordError error.
  int failed_records() const { return ReadLocked(mu_, failed_records_); }

  // --- DeliveryStore ---

  absl::StatusOr<std::vector<UndeliveredEvent>> ScanUndelivered(
      const std::vector<std::string>& sources, int64_t after_position, int limit) override {
    std::lock_guard lock(mu_);
    const absl::Time now = clock_->Now();
    std::vector<UndeliveredEvent> out;
    for (auto it = rows_.upper_bound(after_position);
         it != rows_.end() && static_cast<int>(out.size()) < limit; ++it) {
      const StoredEvent& e = it->second.event;
      if (!Undelivered(e) || !Contains(sources, e.event.source)) continue;
      UndeliveredEvent u;
      u.ref = {e.position, e.ingested_at};
      u.source = e.event.source;
      u.key = e.event.key;
      if (e.next_attempt_at && *e.next_attempt_at > now) u.due_in = *e.next_attempt_at - now;
      out.push_back(std::move(u));
    }
    return out;
  }

  absl::StatusOr<std::vector<ClaimResult>> Claim(
      const std::vector<EventRef>& events, const std::string& owner, absl::Duration lease,
      const std::vector<std::string>& strict_sources) override {
    std::lock_guard lock(mu_);
    ++claim_calls_;
    const absl::Time now = clock_->Now();
    std::vector<ClaimResult> out;
    for (const EventRef& ref : events) {
      ClaimResult r;
      auto it = rows_.find(ref.position);
      if (it == rows_.end()) {
        r.state = ClaimResult::State::kSettled;
        out.push_back(std::move(r));
        continue;
      }
      Row& row = it->second;
      if (HeldByOther(row, owner, now)) {
        r.state = ClaimResult::State::kBusy;
        out.push_back(std::move(r));
        continue;
      }
      r.event = row.event;
      const StoredEvent& e = row.event;
      std::optional<EventRef> blocker;
      if (Contains(strict_sources, e.event.source)) blocker = EarlierFailure(e);
      if (!Undelivered(e)) {
        r.state = ClaimResult::State::kSettled;
      } else if (e.next_attempt_at && *e.next_attempt_at > now) {
        r.state = ClaimResult::State::kNotDue;
        r.due_in = *e.next_attempt_at - now;
      } else if (blocker) {
        r.state = ClaimResult::State::kBehindFailure;
        r.blocker = *blocker;
      } else {
        r.state = ClaimResult::State::kClaimed;
      }
      if (r.state == ClaimResult::State::kClaimed) {
        row.claim = Hold{owner, now + lease};
      } else if (row.claim && row.claim->owner == owner) {
        row.claim.reset();
      }
      out.push_back(std::move(r));
    }
    return out;
  }

  absl::StatusOr<std::vector<int64_t>> StillFailed(const std::vector<EventRef>& events) override {
    std::lock_guard lock(mu_);
    std::vector<int64_t> out;
    for (const EventRef& ref : events) {
      auto it = rows_.find(ref.position);
      if (it != rows_.end() && it->second.event.outcome == Outcome::kFailed) {
        out.push_back(ref.position);
      }
    }
    return out;
  }

  absl::StatusOr<std::optional<StoredEvent>> TryClaim(int64_t position, absl::Time,
                                                      const std::string& owner,
                                                      absl::Duration lease) override {
    std::lock_guard lock(mu_);
    ++claim_calls_;
    auto it = rows_.find(position);
    if (it == rows_.end()) return absl::NotFoundError(absl::StrCat("no event at ", position));
    const absl::Time now = clock_->Now();
    if (HeldByOther(it->second, owner, now)) return std::optional<StoredEvent>();
    it->second.claim = Hold{owner, now + lease};
    return std::optional<StoredEvent>(it->second.event);
  }

  absl::Status Release(const std::vector<int64_t>& positions, const std::string& owner) override {
    std::lock_guard lock(mu_);
    for (int64_t p : positions) {
      auto it = rows_.find(p);
      if (it != rows_.end() && it->second.claim && it->second.claim->owner == owner) {
        it->second.claim.reset();
      }
    }
    return absl::OkStatus();
  }

  absl::Status ExtendClaims(const std::string& owner, absl::Duration lease) override {
    std::lock_guard lock(mu_);
    const absl::Time now = clock_->Now();
    for (auto& [position, row] : rows_) {
      if (row.claim && row.claim->owner == owner) row.claim->expires_at = now + lease;
    }
    return absl::OkStatus();
  }

  absl::Status ReleaseAll(const std::string& owner) override {
    std::lock_guard lock(mu_);
    ++release_all_calls_;
    for (auto& [position, row] : rows_) {
      if (row.claim && row.claim->owner == owner) row.claim.reset();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<bool> RecordAttempt(const AttemptRecord& attempt, const OutcomeUpdate& update,
                                     const std::string& owner) override {
    std::lock_guard lock(mu_);
    return Write(attempt, update, owner);
  }

  void RecordAttemptAsync(const AttemptRecord& attempt, const OutcomeUpdate& update,
                          const std::string& owner, RecordDone done) override {
    {
      std::lock_guard lock(mu_);
      queue_.push_back({attempt, update, owner, std::move(done)});
    }
    cv_.notify_all();
  }

  absl::StatusOr<LogTableDelivery> DeliverToLogTable(const std::string&, const std::string&,
                                                     const std::string&, const AttemptRecord&,
                                                     const std::string&) override {
    return absl::UnimplementedError("FakeDeliveryStore has no log-database tables");
  }

  absl::StatusOr<EventTrace> GetTrace(const std::string& source,
                                      const std::string& event_id) override {
    std::lock_guard lock(mu_);
    for (const auto& [position, row] : rows_) {
      if (row.event.event.source != source || row.event.event.event_id != event_id) continue;
      EventTrace trace{row.event, {}};
      for (const AttemptRecord& a : attempts_) {
        if (a.event_position == position) trace.attempts.push_back(a);
      }
      return trace;
    }
    return absl::NotFoundError(absl::StrCat(source, "/", event_id, " is not in the log"));
  }

 private:
  struct Hold {
    std::string owner;
    absl::Time expires_at;
  };
  struct Row {
    StoredEvent event;
    std::optional<Hold> claim;
  };
  struct PendingRecord {
    AttemptRecord attempt;
    OutcomeUpdate update;
    std::string owner;
    RecordDone done;
  };

  static bool Contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  }
  static bool Undelivered(const StoredEvent& e) {
    return e.outcome == Outcome::kPending || e.outcome == Outcome::kRetrying;
  }
  static bool HeldByOther(const Row& row, const std::string& owner, absl::Time now) {
    return row.claim && row.claim->owner != owner && row.claim->expires_at > now;
  }

  // The earliest failed event of `e`'s key before it (mu_ held).
  std::optional<EventRef> EarlierFailure(const StoredEvent& e) const {
    if (e.event.key.empty()) return std::nullopt;
    for (const auto& [position, row] : rows_) {
      if (position >= e.position) break;
      const StoredEvent& other = row.event;
      if (other.outcome == Outcome::kFailed && other.event.source == e.event.source &&
          other.event.key == e.event.key) {
        return EventRef{position, other.ingested_at};
      }
    }
    return std::nullopt;
  }

  // RecordAttempt's write (mu_ held).
  absl::StatusOr<bool> Write(AttemptRecord attempt, const OutcomeUpdate& update,
                             const std::string& owner) {
    if (!record_error_.ok()) {
      ++failed_records_;
      return record_error_;
    }
    attempt.worker = owner;
    attempts_.push_back(attempt);
    cv_.notify_all();
    auto it = rows_.find(attempt.event_position);
    if (it == rows_.end()) return absl::NotFoundError("no such event");
    Row& row = it->second;
    if (!row.claim || row.claim->owner != owner) return false;
    StoredEvent& e = row.event;
    const absl::Time now = clock_->Now();
    e.outcome = update.outcome;
    e.attempts = attempt.attempt;
    e.last_error = update.last_error;
    if (!update.target_record_id.empty()) e.target_record_id = update.target_record_id;
    if (!update.target_version.empty()) e.target_version = update.target_version;
    if (update.target_updated_at) e.target_updated_at = update.target_updated_at;
    if (update.outcome == Outcome::kRetrying) {
      e.next_attempt_at = now + update.retry_delay;
    } else {
      e.next_attempt_at.reset();
      if (update.outcome != Outcome::kPending) e.processed_at = now;
    }
    row.claim.reset();
    return true;
  }

  void WriteLoop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || (!records_paused_ && !queue_.empty()); });
      if (queue_.empty()) return;  // stopping, every record written
      PendingRecord next = std::move(queue_.front());
      queue_.pop_front();
      absl::StatusOr<bool> held = Write(next.attempt, next.update, next.owner);
      lock.unlock();
      next.done(std::move(held));
      lock.lock();
    }
  }

  const Clock* clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Row> rows_;
  int64_t last_position_ = 0;
  std::vector<AttemptRecord> attempts_;
  std::deque<PendingRecord> queue_;
  bool records_paused_ = false;
  absl::Status record_error_;
  int claim_calls_ = 0;
  int release_all_calls_ = 0;
  int failed_records_ = 0;
  bool stopping_ = false;
  std::thread writer_;  // last: started once the rest is set up
};

}  // namespace replayd::testing
