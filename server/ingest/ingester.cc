#include "server/ingest/ingester.h"

#include <unordered_map>

#include "absl/strings/str_cat.h"

namespace replayd {

absl::StatusOr<std::vector<IngestResult>> Ingester::Ingest(const std::vector<NewEvent>& events) {
  if (absl::Status s = ValidateBatchSize(events.size(), limits_); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  std::vector<IngestResult> results(events.size());
  std::vector<NewEvent> to_store;
  std::vector<size_t> stored_index;  // to_store[i] is events[stored_index[i]]
  std::unordered_map<std::string, size_t> first_seen;
  to_store.reserve(events.size());
  stored_index.reserve(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    if (absl::Status s = ValidateEvent(events[i], limits_, now); !s.ok()) {
      results[i] = {IngestResult::Status::kRejected, std::string(s.message())};
      continue;
    }
    // The same (source, event_id) twice in one batch: the first is the event,
    // the later ones are duplicates of it.
    auto [it, inserted] =
        first_seen.emplace(absl::StrCat(events[i].source, "\n", events[i].event_id), i);
    if (!inserted) {
      results[i] = {IngestResult::Status::kDuplicate, ""};
      continue;
    }
    to_store.push_back(events[i]);
    stored_index.push_back(i);
  }
  if (!to_store.empty()) {
    auto stored = store_->Append(now, to_store);
    if (!stored.ok()) return stored.status();
    for (size_t j = 0; j < to_store.size(); ++j) {
      results[stored_index[j]].status =
          (*stored)[j] ? IngestResult::Status::kAccepted : IngestResult::Status::kDuplicate;
    }
  }
  if (observer_ != nullptr) observer_->OnIngested(events, results);
  return results;
}

}  // namespace replayd
