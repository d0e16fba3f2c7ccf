#include "server/ingest/ingester.h"

#include <algorithm>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace replayd {
namespace {

// (source, event_id), viewing the batch's own strings.
using EventKey = std::pair<std::string_view, std::string_view>;
struct EventKeyHash {
  size_t operator()(const EventKey& k) const {
    size_t h = std::hash<std::string_view>{}(k.first);
    return h ^
           (std::hash<std::string_view>{}(k.second) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  }
};

// The events at `index` (all of `events`, without a copy, when the index covers them).
absl::StatusOr<std::vector<bool>> AppendSubset(EventStore& store, absl::Time now,
                                               const std::vector<NewEvent>& events,
                                               const std::vector<size_t>& index) {
  if (index.size() == events.size()) return store.Append(now, events);
  std::vector<NewEvent> subset;
  subset.reserve(index.size());
  for (size_t i : index) subset.push_back(events[i]);
  return store.Append(now, subset);
}

void Record(const std::vector<size_t>& index, const std::vector<bool>& stored,
            std::vector<IngestResult>& results) {
  for (size_t j = 0; j < index.size(); ++j) {
    results[index[j]].status =
        stored[j] ? IngestResult::Status::kAccepted : IngestResult::Status::kDuplicate;
  }
}

}  // namespace

absl::StatusOr<std::vector<IngestResult>> Ingester::Ingest(const std::vector<NewEvent>& events) {
  if (absl::Status s = ValidateBatchSize(events.size(), limits_); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  std::vector<IngestResult> results(events.size());
  std::vector<size_t> to_store;  // indexes into `events`, in order
  std::unordered_set<EventKey, EventKeyHash> seen;
  seen.reserve(events.size());
  to_store.reserve(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    if (absl::Status s = ValidateFields(events[i], limits_, now); !s.ok()) {
      results[i] = {IngestResult::Status::kRejected, std::string(s.message())};
      continue;
    }
    // The same (source, event_id) twice in one batch: the first is the event,
    // the later ones are duplicates of it.
    if (!seen.insert({events[i].source, events[i].event_id}).second) {
      results[i] = {IngestResult::Status::kDuplicate, ""};
      continue;
    }
    to_store.push_back(i);
  }
  if (!to_store.empty()) {
    // The payloads' JSON syntax is left to the store (PostgreSQL's jsonb
    // input checks the whole batch in one pass); parsing them here is only
    // needed when the store refuses the batch.
    auto stored = AppendSubset(*store_, now, events, to_store);
    if (absl::IsInvalidArgument(stored.status())) {
      if (absl::Status s = StoreRefusedBatch(now, events, to_store, results); !s.ok()) return s;
    } else if (!stored.ok()) {
      return stored.status();
    } else {
      Record(to_store, *stored, results);
    }
  }
  if (observer_ != nullptr) observer_->OnIngested(events, results);
  return results;
}

absl::Status Ingester::StoreRefusedBatch(absl::Time now, const std::vector<NewEvent>& events,
                                         const std::vector<size_t>& to_store,
                                         std::vector<IngestResult>& results) {
  std::vector<size_t> parsed, alone;
  for (size_t i : to_store) (ValidatePayloadJson(events[i]).ok() ? parsed : alone).push_back(i);
  if (!parsed.empty()) {
    auto stored = AppendSubset(*store_, now, events, parsed);
    if (stored.ok()) {
      Record(parsed, *stored, results);
    } else if (absl::IsInvalidArgument(stored.status())) {
      // Refused again, for a reason the parser here does not see.
      alone.insert(alone.end(), parsed.begin(), parsed.end());
      std::sort(alone.begin(), alone.end());
    } else {
      return stored.status();
    }
  }
  // Each suspect alone, so that the database has the last word on every
  // event (e.g. a number beyond double range, which jsonb stores) and no
  // event's fate depends on the rest of its batch.
  for (size_t i : alone) {
    auto stored = store_->Append(now, {events[i]});
    if (stored.ok()) {
      Record({i}, *stored, results);
      continue;
    }
    if (!absl::IsInvalidArgument(stored.status())) return stored.status();
    if (absl::Status s = ValidatePayloadJson(events[i]); !s.ok()) {
      results[i] = {IngestResult::Status::kRejected, std::string(s.message())};
      continue;
    }
    std::string why(stored.status().message());
    why = why.substr(0, why.find("\nCONTEXT:"));  // the context repeats the row
    results[i] = {IngestResult::Status::kRejected, absl::StrCat("refused by the database: ", why)};
  }
  return absl::OkStatus();
}

}  // namespace replayd
