#include "server/delivery/key_queues.h"

#include <algorithm>
#include <unordered_set>

#include "absl/strings/str_cat.h"

namespace replayd {
namespace {

// Events without a key are each a queue of their own.
std::string KeyId(const std::string& source, const std::string& key, int64_t position) {
  if (key.empty()) return absl::StrCat("\x1e", position);
  return absl::StrCat(source, "\x1f", key);
}

}  // namespace

KeyQueues::KeyQueues(const std::vector<std::string>& strict_sources)
    : strict_sources_(strict_sources) {}

bool KeyQueues::Add(const UndeliveredEvent& event, absl::Time now) {
  const int64_t position = event.ref.position;
  if (key_of_.count(position) > 0) return false;
  std::string id = KeyId(event.source, event.key, position);
  auto [k, created] = keys_.try_emplace(id);
  Key& key = k->second;
  if (created) {
    key.strict = !event.key.empty() && std::find(strict_sources_.begin(), strict_sources_.end(),
                                                 event.source) != strict_sources_.end();
  }
  if (key.parked_behind) return false;
  // Usually last; an event whose ingest committed late goes before the
  // key's later events, though never before the one being delivered.
  auto at = key.events.end();
  if (!key.events.empty() && key.events.back().ref.position > position) {
    at = std::find_if(key.events.begin(), key.events.end(),
                      [&](const Entry& e) { return e.ref.position > position; });
    if (key.running && at == key.events.begin()) ++at;
  }
  key.events.insert(at, Entry{event.ref, now + event.due_in, std::nullopt});
  key_of_.emplace(position, std::move(id));
  return true;
}

std::vector<EventRef> KeyQueues::ToClaim(absl::Time now, size_t limit) const {
  // Each key's run of claimable events, oldest keys first, whole runs: two
  // daemons reading the same log then claim different keys (the second one
  // finds the first one's keys busy and takes the next ones) instead of the
  // first one taking the first events of every key.
  std::vector<std::vector<EventRef>> runs;
  for (const auto& [id, key] : keys_) {
    if (key.parked_behind || key.wait_until > now) continue;
    std::vector<EventRef> run;
    for (size_t i = key.running ? 1 : 0; i < key.events.size(); ++i) {
      const Entry& e = key.events[i];
      if (e.claimed) continue;
      if (e.due > now) break;  // a retry not yet due holds back the rest
      run.push_back(e.ref);
    }
    if (!run.empty()) runs.push_back(std::move(run));
  }
  std::sort(runs.begin(), runs.end(),
            [](const auto& a, const auto& b) { return a.front().position < b.front().position; });
  std::vector<EventRef> refs;
  for (const auto& run : runs) {
    for (const EventRef& r : run) {
      if (refs.size() == limit) break;
      refs.push_back(r);
    }
  }
  std::sort(refs.begin(), refs.end(),
            [](const EventRef& a, const EventRef& b) { return a.position < b.position; });
  return refs;
}

std::deque<KeyQueues::Entry>::iterator KeyQueues::Find(Key& key, int64_t position) {
  return std::find_if(key.events.begin(), key.events.end(),
                      [&](const Entry& e) { return e.ref.position == position; });
}

std::vector<int64_t> KeyQueues::Claimed(const std::vector<EventRef>& refs,
                                        std::vector<ClaimResult> results, absl::Time now,
                                        absl::Duration busy_wait) {
  std::vector<int64_t> released;
  std::unordered_set<std::string> touched;
  for (size_t i = 0; i < refs.size() && i < results.size(); ++i) {
    const int64_t position = refs[i].position;
    ClaimResult& r = results[i];
    auto known = key_of_.find(position);
    auto k = known == key_of_.end() ? keys_.end() : keys_.find(known->second);
    auto entry = k == keys_.end() ? std::deque<Entry>::iterator() : Find(k->second, position);
    if (k == keys_.end() || entry == k->second.events.end()) {
      if (r.state == ClaimResult::State::kClaimed) released.push_back(position);
      continue;
    }
    Key& key = k->second;
    touched.insert(k->first);
    switch (r.state) {
      case ClaimResult::State::kClaimed:
        entry->claimed = std::move(r.event);
        ++holding_;
        break;
      case ClaimResult::State::kBusy: key.wait_until = now + busy_wait; break;
      case ClaimResult::State::kNotDue: entry->due = now + r.due_in; break;
      case ClaimResult::State::kSettled:
        // Delivered or failed by another worker. A failure on a strict
        // route parks the key just as one of ours would.
        key.events.erase(entry);
        key_of_.erase(position);
        if (key.strict && r.event.outcome == Outcome::kFailed) Park(key, refs[i]);
        break;
      case ClaimResult::State::kBehindFailure: Park(key, r.blocker); break;
    }
  }
  for (const std::string& id : touched) Settle(id, &released);
  return released;
}

void KeyQueues::Park(Key& key, const EventRef& blocker) {
  if (!key.parked_behind || blocker.position < key.parked_behind->position) {
    key.parked_behind = blocker;
  }
}

void KeyQueues::UnclaimLater(Key& key, std::vector<int64_t>* released) {
  for (size_t i = 1; i < key.events.size(); ++i) {
    Entry& e = key.events[i];
    if (!e.claimed) continue;
    released->push_back(e.ref.position);
    e.claimed.reset();
    --holding_;
  }
}

void KeyQueues::Settle(const std::string& id, std::vector<int64_t>* released) {
  auto k = keys_.find(id);
  if (k == keys_.end()) return;
  Key& key = k->second;
  if (key.parked_behind) {
    // Let go of every event but the one being delivered.
    for (size_t i = key.events.size(); i-- > (key.running ? 1 : 0);) {
      const Entry& e = key.events[i];
      if (e.claimed) {
        released->push_back(e.ref.position);
        --holding_;
      }
      key_of_.erase(e.ref.position);
      key.events.erase(key.events.begin() + static_cast<std::ptrdiff_t>(i));
    }
    return;  // kept, empty, to remember the park
  }
  if (key.running) return;
  if (key.events.empty()) {
    keys_.erase(k);
    return;
  }
  if (key.events.front().claimed) {
    ready_.push_back(id);
  } else {
    // The first event waits (a retry, another worker's claim): the later
    // ones must not be held from others meanwhile (a replay may want them).
    UnclaimLater(key, released);
  }
}

std::optional<StoredEvent> KeyQueues::NextToStart() {
  while (!ready_.empty()) {
    const std::string id = std::move(ready_.front());
    ready_.pop_front();
    auto k = keys_.find(id);
    if (k == keys_.end()) continue;
    Key& key = k->second;
    if (key.running || key.parked_behind || key.events.empty() || !key.events.front().claimed) {
      continue;  // started already, or changed since it was queued
    }
    key.running = true;
    StoredEvent event = std::move(*key.events.front().claimed);
    key.events.front().claimed.reset();
    return event;
  }
  return std::nullopt;
}

std::vector<int64_t> KeyQueues::Finished(const EventRef& ref, const Ending& ending, absl::Time now,
                                         absl::Duration retry_wait) {
  std::vector<int64_t> released;
  auto known = key_of_.find(ref.position);
  if (known == key_of_.end()) return released;
  const std::string id = known->second;
  Key& key = keys_[id];
  key.running = false;
  if (key.events.empty() || key.events.front().ref.position != ref.position) return released;
  --holding_;
  Entry& front = key.events.front();
  const bool done = ending.recorded && (ending.outcome == Outcome::kSucceeded ||
                                        ending.outcome == Outcome::kAlreadyProcessed ||
                                        ending.outcome == Outcome::kFailed);
  if (done) {
    key.events.pop_front();
    key_of_.erase(ref.position);
    if (ending.outcome == Outcome::kFailed && key.strict) Park(key, ref);
  } else if (ending.recorded && ending.outcome == Outcome::kRetrying) {
    // Claimed again at once: the claim reads when the retry is due.
    front.due = now;
  } else {
    // Nothing durable happened (or a pending event was left alone): the
    // event stays first and is tried again after a pause.
    front.due = now + retry_wait;
  }
  Settle(id, &released);
  return released;
}

int KeyQueues::ClaimAgainIfGone(const std::vector<UndeliveredEvent>& undelivered, int64_t after,
                                int64_t through) {
  std::unordered_set<int64_t> still;
  for (const UndeliveredEvent& e : undelivered) still.insert(e.ref.position);
  int gone = 0;
  for (auto& [id, key] : keys_) {
    for (size_t i = key.running ? 1 : 0; i < key.events.size(); ++i) {
      Entry& e = key.events[i];
      const int64_t position = e.ref.position;
      if (e.claimed || position <= after || position > through || still.count(position) > 0 ||
          e.due == absl::InfinitePast()) {
        continue;
      }
      e.due = absl::InfinitePast();
      ++gone;
    }
  }
  return gone;
}

std::vector<EventRef> KeyQueues::Blockers() const {
  std::vector<EventRef> blockers;
  for (const auto& [id, key] : keys_) {
    if (key.parked_behind) blockers.push_back(*key.parked_behind);
  }
  return blockers;
}

std::vector<int64_t> KeyQueues::Unpark(const std::vector<int64_t>& still_failed) {
  const std::unordered_set<int64_t> failed(still_failed.begin(), still_failed.end());
  std::vector<int64_t> resume_at;
  std::vector<std::string> unparked;
  for (auto& [id, key] : keys_) {
    if (key.parked_behind && failed.count(key.parked_behind->position) == 0) {
      resume_at.push_back(key.parked_behind->position);
      key.parked_behind.reset();
      unparked.push_back(id);
    }
  }
  std::vector<int64_t> released;  // nothing is claimed in a parked key
  for (const std::string& id : unparked) Settle(id, &released);
  return resume_at;
}

}  // namespace replayd
