#include "server/store/pg_replay_rows.h"

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/store/pg_types.h"

namespace replayd {
std::vector<std::string> SplitLines(const std::string& text) {
  if (text.empty()) return {};
  return absl::StrSplit(text, '\n');
}

std::string JobColumns() {
  return absl::StrJoin({std::string("id"),
                        std::string("coalesce(request_id, '')"),
                        std::string("state"),
                        EpochUs("window_from"),
                        EpochUs("window_to"),
                        std::string("array_to_string(sources, E'\\n')"),
                        std::string("array_to_string(outcomes, E'\\n')"),
                        std::string("include_succeeded"),
                        std::string("verify_downstream"),
                        std::string("rate"),
                        std::string("burst"),
                        std::string("allow_high_rate"),
                        std::string("reason"),
                        std::string("created_by"),
                        EpochUs("created_at"),
                        EpochUs("started_at"),
                        EpochUs("finished_at"),
                        std::string("total"),
                        std::string("processed"),
                        std::string("delivered"),
                        std::string("skipped"),
                        std::string("failed"),
                        std::string("current_rate"),
                        EpochUs("cursor_ingested_at"),
                        std::string("cursor_position"),
                        std::string("last_error"),
                        std::string("coalesce(owner, '')"),
                        EpochUs("lease_until"),
                        std::string("cancel_reason"),
                        std::string("held_by_key"),
                        std::string("retry_events::text"),
                        std::string("breaker_consecutive_failures"),
                        std::string("breaker_failure_ratio"),
                        std::string("breaker_window"),
                        std::string("coalesce(plan_id, '')"),
                        std::string("changed_since_plan"),
                        std::string("array_to_string(keys, E'\\n')"),
                        std::string("array_to_string(types, E'\\n')"),
                        std::string("array_to_string(event_ids, E'\\n')"),
                        std::string("sink"),
                        std::string("retry_max_attempts"),
                        std::string("retry_base_us"),
                        std::string("retry_cap_us"),
                        std::string("kind")},
                       ", ");
}

ReplayJob JobFromRow(const pqxx::row& r) {
  ReplayJob j;
  j.id = r[0].as<std::string>();
  j.request_id = r[1].as<std::string>();
  j.state = ParseReplayState(r[2].as<std::string>()).value_or(ReplayState::kFailed);
  j.spec.window.from = *TimeFromEpochUs(r[3]);
  j.spec.window.to = *TimeFromEpochUs(r[4]);
  j.spec.window.sources = SplitLines(r[5].as<std::string>());
  for (const auto& name : SplitLines(r[6].as<std::string>())) {
    if (auto o = ParseOutcome(name)) j.spec.outcomes.push_back(*o);
  }
  j.spec.include_succeeded = r[7].as<bool>();
  j.spec.verify_downstream = r[8].as<bool>();
  j.spec.rate = r[9].as<double>();
  j.spec.burst = r[10].as<int>();
  j.spec.allow_high_rate = r[11].as<bool>();
  j.spec.reason = r[12].as<std::string>();
  j.created_by = r[13].as<std::string>();
  j.created_at = *TimeFromEpochUs(r[14]);
  j.started_at = TimeFromEpochUs(r[15]);
  j.finished_at = TimeFromEpochUs(r[16]);
  j.counters.total = r[17].as<int64_t>();
  j.counters.processed = r[18].as<int64_t>();
  j.counters.delivered = r[19].as<int64_t>();
  j.counters.skipped = r[20].as<int64_t>();
  j.counters.failed = r[21].as<int64_t>();
  j.current_rate = r[22].as<double>();
  if (!r[23].is_null() && !r[24].is_null()) {
    j.cursor = ReplayCursor{*TimeFromEpochUs(r[23]), r[24].as<int64_t>()};
  }
  j.last_error = r[25].as<std::string>();
  j.owner = r[26].as<std::string>();
  j.lease_until = TimeFromEpochUs(r[27]);
  j.cancel_reason = r[28].as<std::string>();
  j.counters.held_by_key = r[29].as<int64_t>();
  j.retry = RetryEventsFromJson(r[30].as<std::string>());
  j.spec.breaker.consecutive_failures = r[31].as<int>();
  j.spec.breaker.failure_ratio = r[32].as<double>();
  j.spec.breaker.window = r[33].as<int>();
  j.spec.plan_id = r[34].as<std::string>();
  j.counters.changed_since_plan = r[35].as<int64_t>();
  j.spec.window.keys = SplitLines(r[36].as<std::string>());
  j.spec.window.types = SplitLines(r[37].as<std::string>());
  j.spec.window.event_ids = SplitLines(r[38].as<std::string>());
  j.spec.sink = r[39].as<std::string>();
  j.spec.retry = RetrySettingsFromRow(r[40], r[41], r[42]);
  j.spec.kind = ParseReplayKind(r[43].as<std::string>()).value_or(ReplayKind::kReplay);
  return j;
}

std::string RetryEventsJson(const std::vector<RetryEvent>& retry) {
  nlohmann::json out = nlohmann::json::array();
  for (const RetryEvent& e : retry) {
    out.push_back({{"position", e.position},
                   {"ingested_at_us", absl::ToUnixMicros(e.ingested_at)},
                   {"source", e.source},
                   {"key", e.key}});
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<RetryEvent> RetryEventsFromJson(const std::string& json) {
  return FromJsonArray<RetryEvent>(json, [](const nlohmann::json& e) {
    return RetryEvent{e.value("position", int64_t{0}),
                      absl::FromUnixMicros(e.value("ingested_at_us", int64_t{0})),
                      e.value("source", std::string()), e.value("key", std::string())};
  });
}

void InsertAudit(pqxx::work& tx, const AuditEntry& a) {
  tx.exec_params(
      "INSERT INTO replay_audit (actor, action, replay_id, reason, detail)"
      " VALUES ($1, $2, NULLIF($3, ''), $4, $5::jsonb)",
      a.actor, a.action, a.replay_id, a.reason, a.detail_json.empty() ? "{}" : a.detail_json);
}

RetrySettings RetrySettingsFromRow(const pqxx::field& max_attempts, const pqxx::field& base_us,
                                   const pqxx::field& cap_us) {
  RetrySettings out;
  if (!max_attempts.is_null()) out.max_attempts = max_attempts.as<int>();
  if (!base_us.is_null()) out.base_delay = absl::Microseconds(base_us.as<int64_t>());
  if (!cap_us.is_null()) out.max_delay = absl::Microseconds(cap_us.as<int64_t>());
  return out;
}

std::optional<int64_t> MicrosOrNull(const std::optional<absl::Duration>& d) {
  if (!d) return std::nullopt;
  return absl::ToInt64Microseconds(*d);
}

std::string OutcomeArray(const std::vector<Outcome>& outcomes) {
  std::vector<std::string> names;
  for (Outcome o : outcomes) names.emplace_back(OutcomeName(o));
  return PgTextArray(names);
}

}  // namespace replayd
