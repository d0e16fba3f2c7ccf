// A Sink for unit tests: records every call in order (create, lookup and
// update), answers each with the outcome scripted for its event's
// idempotency key, and counts how many calls
// run at once (overall and per ordering key). Calls can be held at a gate, so
// that a test sees what is in flight. Thread safe; blocking (NonBlocking() is
// false), so the dispatcher calls it from its worker threads.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/delivery/sink.h"
#include "tests/support/locked.h"

namespace replayd::testing {

class FakeSink final : public Sink {
 public:
  // One call of the create path, the lookup or the update path, in the
  // order they began.
  struct Call {
    std::string idempotency_key;  // "<source>:<event_id>"
    std::string key;              // the event's ordering key
    int64_t position = 0;
    int attempt = 0;  // 0 for a lookup
    std::string replay_id;
    bool lookup = false;
    bool update = false;
    std::optional<std::string> known_version = std::nullopt;  // an update's precondition
  };

  explicit FakeSink(std::string name = "fake") : name_(std::move(name)) {}

  static DeliveryResult Succeeded(std::string record_id = "") {
    DeliveryResult r;
    r.kind = DeliveryResult::Kind::kSucceeded;
    r.http_status = 201;
    r.record_id = std::move(record_id);
    return r;
  }
  static DeliveryResult Retryable(int http_status = 503) {
    return Failed(DeliveryResult::Kind::kRetryable, http_status);
  }
  static DeliveryResult Final(int http_status = 422) {
    return Failed(DeliveryResult::Kind::kFinal, http_status);
  }

  // The answers to the create calls for `idempotency_key`, one per call in
  // order; the last one repeats. Keys without a script get the default
  // (Succeeded with record id "rec-<idempotency key>").
  void Script(const std::string& idempotency_key, std::vector<DeliveryResult> answers) {
    std::lock_guard lock(mu_);
    scripts_[idempotency_key] = std::deque<DeliveryResult>(answers.begin(), answers.end());
  }
  void SetDefault(DeliveryResult answer) {
    std::lock_guard lock(mu_);
    default_ = std::move(answer);
  }

  // Turns the lookup on; every lookup answers `answer` unless scripted per key.
  void EnableLookup(LookupResult answer = std::optional<DownstreamRecord>()) {
    std::lock_guard lock(mu_);
    has_lookup_ = true;
    default_lookup_ = std::move(answer);
  }
  void ScriptLookup(const std::string& idempotency_key, LookupResult answer) {
    std::lock_guard lock(mu_);
    has_lookup_ = true;
    lookups_[idempotency_key] = std::move(answer);
  }

  // Turns the update path on; every update answers `answer`.
  void EnableUpdate(DeliveryResult answer) {
    std::lock_guard lock(mu_);
    has_update_ = true;
    default_update_ = std::move(answer);
  }

  // While closed, create calls wait at the gate (after being counted as
  // started and in flight) until it opens.
  void CloseGate() { WriteLocked(mu_, gate_open_, false); }
  void OpenGate() {
    WriteLocked(mu_, gate_open_, true);
    cv_.notify_all();
  }

  // Waits (in real time, at most `timeout`) until `n` create calls are in
  // flight at once; false on timeout.
  bool WaitForInFlight(int n, absl::Duration timeout = absl::Seconds(5)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return in_flight_ >= n; });
  }
  // Waits until `n` create calls have finished; false on timeout.
  bool WaitForDeliveries(int n, absl::Duration timeout = absl::Seconds(5)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return finished_ >= n; });
  }

  std::vector<Call> calls() const { return ReadLocked(mu_, calls_); }
  // The create calls only, in the order they began.
  std::vector<Call> deliveries() const {
    std::lock_guard lock(mu_);
    std::vector<Call> out;
    for (const Call& c : calls_) {
      if (!c.lookup && !c.update) out.push_back(c);
    }
    return out;
  }
  // The update calls only, in the order they began.
  std::vector<Call> updates() const {
    std::lock_guard lock(mu_);
    std::vector<Call> out;
    for (const Call& c : calls_) {
      if (c.update) out.push_back(c);
    }
    return out;
  }
  int lookup_count() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(
        std::count_if(calls_.begin(), calls_.end(), [](const Call& c) { return c.lookup; }));
  }
  int in_flight() const { return ReadLocked(mu_, in_flight_); }
  // The most create calls in flight at once, overall and for any one
  // non-empty ordering key.
  int max_in_flight() const { return ReadLocked(mu_, max_in_flight_); }
  int max_in_flight_per_key() const { return ReadLocked(mu_, max_per_key_); }

  const std::string& name() const override { return name_; }

  DeliveryResult Deliver(const DeliveryRequest& request) override {
    const StoredEvent& event = *request.event;
    const std::string idempotency_key = IdempotencyKey(event);
    std::unique_lock lock(mu_);
    calls_.push_back({idempotency_key, event.event.key, event.position, request.attempt,
                      request.replay_id, false});
    max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    const std::string key_id = event.event.source + "\x1f" + event.event.key;
    if (!event.event.key.empty()) max_per_key_ = std::max(max_per_key_, ++per_key_[key_id]);
    cv_.notify_all();
    cv_.wait(lock, [&] { return gate_open_; });
    DeliveryResult answer = default_;
    if (auto it = scripts_.find(idempotency_key); it != scripts_.end() && !it->second.empty()) {
      answer = it->second.front();
      if (it->second.size() > 1) it->second.pop_front();
    } else if (answer.kind == DeliveryResult::Kind::kSucceeded && answer.record_id.empty()) {
      answer.record_id = "rec-" + idempotency_key;
    }
    --in_flight_;
    if (!event.event.key.empty()) --per_key_[key_id];
    ++finished_;
    cv_.notify_all();
    return answer;
  }

  bool HasLookup() const override {
    std::lock_guard lock(mu_);
    return has_lookup_;
  }

  LookupResult Lookup(const StoredEvent& event) override {
    const std::string idempotency_key = IdempotencyKey(event);
    std::lock_guard lock(mu_);
    if (!has_lookup_) return absl::UnimplementedError("fake sink has no lookup");
    calls_.push_back({idempotency_key, event.event.key, event.position, 0, "", true});
    auto it = lookups_.find(idempotency_key);
    return it != lookups_.end() ? it->second : default_lookup_;
  }

  bool HasUpdate() const override {
    std::lock_guard lock(mu_);
    return has_update_;
  }

  DeliveryResult Update(const DeliveryRequest& request,
                        const std::optional<std::string>& known_version) override {
    const StoredEvent& event = *request.event;
    const std::string idempotency_key = IdempotencyKey(event);
    std::lock_guard lock(mu_);
    if (!has_update_) return Sink::Update(request, known_version);
    calls_.push_back({idempotency_key, event.event.key, event.position, request.attempt,
                      request.replay_id, false, true, known_version});
    return default_update_;
  }

 private:
  // A failed call's answer: `kind`, with the error "HTTP <http_status>".
  static DeliveryResult Failed(DeliveryResult::Kind kind, int http_status) {
    DeliveryResult r;
    r.kind = kind;
    r.http_status = http_status;
    r.error = "HTTP " + std::to_string(http_status);
    return r;
  }

  const std::string name_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::deque<DeliveryResult>> scripts_;
  DeliveryResult default_ = Succeeded();
  bool has_lookup_ = false;
  LookupResult default_lookup_ = std::optional<DownstreamRecord>();
  std::map<std::string, LookupResult> lookups_;
  bool has_update_ = false;
  DeliveryResult default_update_;
  bool gate_open_ = true;
  std::vector<Call> calls_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  int finished_ = 0;
  std::map<std::string, int> per_key_;
  int max_per_key_ = 0;
};

}  // namespace replayd::testing
