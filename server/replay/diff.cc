#include "server/replay/diff.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/time_format.h"
#include "server/delivery/http_sink.h"

namespace replayd {
namespace {

using json = nlohmann::json;

json ParseOrDiscarded(const std::string& text) {
  return json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// An HTTP downstream exposes the payload it was sent as its data; a table
// sink's row holds the whole envelope.
bool DataMatches(const StoredEvent& e, const std::string& data) {
  const json held = ParseOrDiscarded(data);
  if (held.is_discarded()) return false;
  const json payload = e.event.payload.empty() ? json() : ParseOrDiscarded(e.event.payload);
  if (!payload.is_discarded() && held == payload) return true;
  return held == ParseOrDiscarded(EnvelopeJson(e));
}

}  // namespace

DiffFinding DiffClassify(const StoredEvent& e, const std::optional<DownstreamRecord>& record) {
  const bool delivered = IsDelivered(e.outcome);
  if (!record.has_value()) {
    return {delivered ? DiffClass::kMissingDownstream : DiffClass::kUndelivered, ""};
  }
  if (!delivered) return {DiffClass::kUnrecorded, ""};
  if (record->version && !e.target_version.empty() && *record->version != e.target_version) {
    return {DiffClass::kDiverged,
            absl::StrCat("version ", *record->version, ", recorded ", e.target_version)};
  }
  if (record->updated_at && e.target_updated_at && *record->updated_at != *e.target_updated_at) {
    return {DiffClass::kDiverged, absl::StrCat("updated_at ", FormatRfc3339(*record->updated_at),
                                               ", recorded ", FormatRfc3339(*e.target_updated_at))};
  }
  if (record->data && !DataMatches(e, *record->data)) {
    return {DiffClass::kDiverged, "data differs from the payload sent"};
  }
  return {DiffClass::kInSync, ""};
}

CompensationEntry DiffEntry(const StoredEvent& e, const std::optional<DownstreamRecord>& record) {
  DiffFinding finding = DiffClassify(e, record);
  CompensationEntry entry;
  entry.position = e.position;
  entry.ingested_at = e.ingested_at;
  entry.source = e.event.source;
  entry.event_id = e.event.event_id;
  entry.diff_class = finding.diff_class;
  entry.action = DefaultAction(finding.diff_class);
  entry.log_outcome = e.outcome;
  if (record.has_value()) entry.downstream = {record->id, record->version, record->updated_at};
  entry.detail = std::move(finding.detail);
  return entry;
}

bool StillAsDiffSaw(const CompensationEntry& entry, const StoredEvent& now,
                    const std::optional<DownstreamRecord>& record) {
  const ObservedRecord& seen = entry.downstream;
  switch (entry.action) {
    case CompensationAction::kCreate:
      return IsDelivered(now.outcome) == IsDelivered(entry.log_outcome) && !record.has_value();
    case CompensationAction::kRecord: return !IsDelivered(now.outcome) && record.has_value();
    case CompensationAction::kOverwrite:
      if (!record.has_value()) return false;
      if (seen.version) return record->version == seen.version;
      if (seen.updated_at) return record->updated_at == seen.updated_at;
      return record->id == seen.id;
    case CompensationAction::kKeep:
    case CompensationAction::kNone: return true;
  }
  return true;
}

}  // namespace replayd
