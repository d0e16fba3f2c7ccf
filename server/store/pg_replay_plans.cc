// PgReplayStore's saved plans (tables replay_plans and replay_plan_events):
// a plan's events go in chunks of parallel arrays, written from the dry run's
// stream (AddPlanEvents) or inside the database by the window's aggregate
// (AggregateWindow, which leaves the rest to FinishWindowPlan); a replay
// reads them back in window order, joined to the log, a page at a time.
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/store/pg_replay_rows.h"
#include "server/store/pg_replay_store.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// The decisions' codes in replay_plan_events.decisions: the index here.
constexpr std::string_view kDecisionNames[] = {"deliver",          "already_delivered",
                                               "found_downstream", "outcome_not_selected",
                                               "no_route",         "held_by_key"};
constexpr int kDecisionCount = sizeof(kDecisionNames) / sizeof(kDecisionNames[0]);

std::string DecisionName(int code) {
  return code >= 0 && code < kDecisionCount ? std::string(kDecisionNames[code]) : "unknown";
}

constexpr const char* kAddChunkName = "replay_plan_add_chunk";
constexpr const char* kAddChunkSql = R"sql(
INSERT INTO replay_plan_events (plan_id, chunk, until_us, ingested_at, positions, decisions)
VALUES ($1, $2, $3, $4::timestamptz[], $5::bigint[], $6::smallint[]))sql";

// A chunk far above kPlanChunkEvents (a burst of events in its slice of
// time) is split in sorted chunks of kPlanChunkEvents, numbered after it
// with a decision per event: reading one must not sort it whole for every
// page.
constexpr const char* kSplitChunkSql = R"sql(
WITH old AS (
  DELETE FROM replay_plan_events WHERE plan_id = $1 AND chunk = $2
  RETURNING ingested_at, positions, decisions, decision),
events AS (
  SELECT u.at, u.pos, coalesce(u.decision, old.decision) AS decision,
         (row_number() OVER (ORDER BY u.at, u.pos) - 1) / $3 AS part
    FROM old, unnest(old.ingested_at, old.positions, old.decisions) AS u(at, pos, decision))
INSERT INTO replay_plan_events (plan_id, chunk, until_us, ingested_at, positions, decisions)
SELECT $1, $2 + part, (extract(epoch FROM max(at)) * 1000000)::bigint + 1,
       array_agg(at ORDER BY at, pos), array_agg(pos ORDER BY at, pos),
       array_agg(decision ORDER BY at, pos)
  FROM events
 GROUP BY part)sql";

// The groups of a saved window's sources $2 with outcome $3 get decision $4.
constexpr const char* kRedecideSql = R"sql(
UPDATE replay_plan_events SET decision = $4
 WHERE plan_id = $1 AND source = ANY($2::text[]) AND outcome = $3)sql";

// The chunks that may hold events after a cursor ($2: its ingested_at in
// microseconds), in order.
constexpr const char* kChunksAfterName = "replay_plan_chunks_after";
constexpr const char* kChunksAfterSql = R"sql(
SELECT DISTINCT chunk FROM replay_plan_events
 WHERE plan_id = $1 AND until_us > $2 AND chunk > $3
 ORDER BY chunk
 LIMIT 16)sql";

// One chunk's planned events (all its rows') after a cursor ($3, $4; NULL =
// from the start), at most $5, in window order, joined to the log as it is
// now.
constexpr const char* kReadChunkName = "replay_plan_read_chunk";
std::string ReadChunkSql() {
  return absl::StrCat("SELECT ", StoredEventColumns("e"), ", u.decision, e.position IS NULL, ",
                      EpochUs("u.at"), ", u.pos", R"sql(
  FROM (SELECT u.at, u.pos, coalesce(u.decision, p.decision) AS decision
          FROM replay_plan_events p,
               unnest(p.ingested_at, p.positions, p.decisions) AS u(at, pos, decision)
         WHERE p.plan_id = $1 AND p.chunk = $2
           AND ($3::timestamptz IS NULL OR (u.at, u.pos) > ($3::timestamptz, $4))
         ORDER BY u.at, u.pos
         LIMIT $5) u
  LEFT JOIN events e ON e.ingested_at = u.at AND e.position = u.pos
 ORDER BY u.at, u.pos)sql");
}

constexpr const char* kGetPlanName = "replay_plan_get";
std::string GetPlanSql() {
  return absl::StrCat("SELECT id, request::text, counts::text, created_by, ", EpochUs("created_at"),
                      ", ", EpochUs("expires_at"), " FROM replay_plans WHERE id = $1");
}

std::string CountsJson(const std::map<std::string, int64_t>& counts) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [decision, count] : counts) out[decision] = count;
  return out.dump();
}

}  // namespace

std::optional<int> PlanDecisionCode(std::string_view name) {
  for (int i = 0; i < kDecisionCount; ++i) {
    if (kDecisionNames[i] == name) return i;
  }
  return std::nullopt;
}

absl::Status PgReplayStore::FinishWindowPlan(const WindowPlanSave& save,
                                             const std::vector<std::string>& sources,
                                             const std::map<int64_t, int64_t>& chunks) {
  // AggregateWindow gave every group its routed source's decision.
  std::vector<std::string> without_route;
  for (const std::string& source : sources) {
    if (!save.routed(source)) without_route.push_back(source);
  }
  std::vector<std::pair<Outcome, int>> redecide;  // outcome -> its decision without a route
  if (!without_route.empty()) {
    for (Outcome o : kOutcomes) {
      const std::string decision = save.decide(o, false);
      const std::optional<int> code = PlanDecisionCode(decision);
      if (!code) return absl::InvalidArgumentError(absl::StrCat("unknown decision ", decision));
      if (decision != save.decide(o, true)) redecide.push_back({o, *code});
    }
  }
  std::vector<int64_t> large;
  for (const auto& [chunk, events] : chunks) {
    if (events > 2 * kPlanChunkEvents) large.push_back(chunk);
  }
  if (redecide.empty() && large.empty()) return absl::OkStatus();
  return pool_->Run("replay_plan_finish_window", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    for (const auto& [outcome, code] : redecide) {
      tx.exec_params(kRedecideSql, save.plan_id, PgTextArray(without_route),
                     std::string(OutcomeName(outcome)), code);
    }
    // Split after the groups' decisions are final: a split chunk has a
    // decision per event.
    for (int64_t chunk : large)
      tx.exec_params(kSplitChunkSql, save.plan_id, chunk, kPlanChunkEvents);
    tx.commit();
  });
}

absl::Status PgReplayStore::AddPlanEvents(const std::string& plan_id, int64_t chunk,
                                          const std::vector<PlanEntry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  std::vector<std::string> times;
  std::vector<int64_t> positions;
  std::vector<int64_t> codes;
  times.reserve(entries.size());
  positions.reserve(entries.size());
  codes.reserve(entries.size());
  for (const PlanEntry& e : entries) {
    auto code = PlanDecisionCode(e.decision);
    if (!code) return absl::InvalidArgumentError(absl::StrCat("unknown decision ", e.decision));
    times.push_back(PgTime(e.ingested_at));
    positions.push_back(e.position);
    codes.push_back(*code);
  }
  // Events of the next chunk may share the last one's microsecond.
  const int64_t until_us = absl::ToUnixMicros(entries.back().ingested_at) + 1;
  return pool_->Run(kAddChunkName, [&](PgPool::Lease& l) {
    l.Prepare(kAddChunkName, kAddChunkSql);
    pqxx::work tx(l.conn());
    tx.exec_prepared(kAddChunkName, plan_id, chunk, until_us, PgTextArray(times),
                     PgBigintArray(positions), PgBigintArray(codes));
    tx.commit();
  });
}

absl::Status PgReplayStore::CreatePlan(const ReplayPlan& plan, const AuditEntry& audit) {
  return pool_->Run("replay_plan_create", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    tx.exec_params(
        "INSERT INTO replay_plans (id, request, counts, created_by, expires_at)"
        " VALUES ($1, $2::jsonb, $3::jsonb, $4, $5::timestamptz)",
        plan.id, plan.request_json, CountsJson(plan.counts), plan.created_by,
        PgTime(plan.expires_at));
    InsertAudit(tx, audit);
    // An expired plan cannot be started: its events are no longer needed.
    tx.exec(
        "DELETE FROM replay_plan_events e USING replay_plans p"
        " WHERE e.plan_id = p.id AND p.expires_at < now()");
    tx.commit();
  });
}

absl::Status PgReplayStore::DropPlanEvents(const std::string& plan_id) {
  return pool_->Run("replay_plan_drop_events", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    tx.exec_params("DELETE FROM replay_plan_events WHERE plan_id = $1", plan_id);
    tx.commit();
  });
}

absl::StatusOr<ReplayPlan> PgReplayStore::GetPlan(const std::string& id) {
  std::optional<ReplayPlan> out;
  absl::Status status = pool_->Run(kGetPlanName, [&](PgPool::Lease& l) {
    out.reset();
    l.Prepare(kGetPlanName, GetPlanSql());
    pqxx::read_transaction tx(l.conn());
    auto rows = tx.exec_prepared(kGetPlanName, id);
    if (rows.empty()) return;
    const auto& r = rows[0];
    ReplayPlan p;
    p.id = r[0].as<std::string>();
    p.request_json = r[1].as<std::string>();
    auto counts = nlohmann::json::parse(r[2].as<std::string>(), nullptr, false);
    if (counts.is_object()) {
      for (const auto& [decision, count] : counts.items()) {
        if (count.is_number_integer()) p.counts[decision] = count.get<int64_t>();
      }
    }
    p.created_by = r[3].as<std::string>();
    p.created_at = *TimeFromEpochUs(r[4]);
    p.expires_at = *TimeFromEpochUs(r[5]);
    out = std::move(p);
  });
  if (!status.ok()) return status;
  if (!out) return absl::NotFoundError(absl::StrCat("no plan with id \"", id, "\""));
  return *out;
}

absl::StatusOr<std::vector<PlannedEvent>> PgReplayStore::ReadPlanPage(
    const std::string& plan_id, const std::optional<ReplayCursor>& after, int limit) {
  std::vector<PlannedEvent> out;
  absl::Status status = pool_->Run(kReadChunkName, [&](PgPool::Lease& l) {
    out.clear();
    l.Prepare(kChunksAfterName, kChunksAfterSql);
    l.Prepare(kReadChunkName, ReadChunkSql());
    pqxx::read_transaction tx(l.conn());
    std::optional<ReplayCursor> cursor = after;
    int64_t last_chunk = std::numeric_limits<int64_t>::min();
    while (static_cast<int>(out.size()) < limit) {
      const int64_t cursor_us =
          cursor ? absl::ToUnixMicros(cursor->ingested_at) : std::numeric_limits<int64_t>::min();
      auto chunks = tx.exec_prepared(kChunksAfterName, plan_id, cursor_us, last_chunk);
      if (chunks.empty()) return;
      for (const auto& c : chunks) {
        last_chunk = c[0].as<int64_t>();
        // A chunk is done when it returns fewer rows than asked; rows of
        // events the log no longer holds still move the cursor.
        while (static_cast<int>(out.size()) < limit) {
          const int want = limit - static_cast<int>(out.size());
          std::optional<std::string> at;
          int64_t position = 0;
          if (cursor) {
            at = PgTime(cursor->ingested_at);
            position = cursor->position;
          }
          auto rows = tx.exec_prepared(kReadChunkName, plan_id, last_chunk, at, position, want);
          for (const auto& r : rows) {
            cursor = ReplayCursor{*TimeFromEpochUs(r[kStoredEventColumnCount + 2]),
                                  r[kStoredEventColumnCount + 3].as<int64_t>()};
            if (r[kStoredEventColumnCount + 1].as<bool>()) continue;
            out.push_back(
                {StoredEventFromRow(r), DecisionName(r[kStoredEventColumnCount].as<int>())});
          }
          if (static_cast<int>(rows.size()) < want) break;
        }
        if (static_cast<int>(out.size()) >= limit) return;
      }
    }
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace replayd
