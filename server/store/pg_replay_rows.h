// Rows of the replays table as ReplayJob, and outcome lists as parameters.
// Internal to store/.
#pragma once

#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "server/store/replay_store.h"

namespace replayd {

// The select list JobFromRow reads, in order, from the replays table.
std::string JobColumns();
ReplayJob JobFromRow(const pqxx::row& r);

// The retry list as the retry_events column's JSON, and back.
std::string RetryEventsJson(const std::vector<RetryEvent>& retry);
std::vector<RetryEvent> RetryEventsFromJson(const std::string& json);

// A text[] literal of the outcomes' names.
std::string OutcomeArray(const std::vector<Outcome>& outcomes);

// Writes `a` to replay_audit in `tx`.
void InsertAudit(pqxx::work& tx, const AuditEntry& a);

// The SQL condition selecting a window's events of table events: $1 from,
// $2 to, $3 sources (text[], empty = every source).
const char* WindowPredicate();

}  // namespace replayd
