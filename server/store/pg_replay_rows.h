// Rows of the replays table as ReplayJob, and outcome lists as parameters.
// Internal to store/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

#include "nlohmann/json.hpp"
#include "server/store/replay_store.h"

namespace replayd {

// The select list JobFromRow reads, in order, from the replays table.
std::string JobColumns();
ReplayJob JobFromRow(const pqxx::row& r);

// The elements of a JSON array column's text, each made by `element` from a
// JSON value; empty when the text is not a JSON array.
template <typename T, typename F>
std::vector<T> FromJsonArray(const std::string& json, F element) {
  std::vector<T> out;
  auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return out;
  for (const auto& e : parsed) out.push_back(element(e));
  return out;
}

// A column of names one a line (sources, outcomes) as a list; empty text is none.
std::vector<std::string> SplitLines(const std::string& text);

// The retry list as the retry_events column's JSON, and back.
std::string RetryEventsJson(const std::vector<RetryEvent>& retry);
std::vector<RetryEvent> RetryEventsFromJson(const std::string& json);

// A retry policy from its three nullable columns (count, microseconds,
// microseconds), and a duration as such a column.
RetrySettings RetrySettingsFromRow(const pqxx::field& max_attempts, const pqxx::field& base_us,
                                   const pqxx::field& cap_us);
std::optional<int64_t> MicrosOrNull(const std::optional<absl::Duration>& d);

// A text[] literal of the outcomes' names.
std::string OutcomeArray(const std::vector<Outcome>& outcomes);

// Writes `a` to replay_audit in `tx`.
void InsertAudit(pqxx::work& tx, const AuditEntry& a);

// Chunk numbers of a saved window leave room to split a chunk in this many.
inline constexpr int64_t kPlanChunkSplits = 1000000;

// The code of a plan decision in replay_plan_events, by name (nullopt for
// an unknown one).
std::optional<int> PlanDecisionCode(std::string_view name);

// The SQL condition selecting a window's events of table events: $1 from,
// $2 to, then text[] lists, each empty for every value: $3 sources, $4 keys,
// $5 types, $6 event ids.
const char* WindowPredicate();

}  // namespace replayd
