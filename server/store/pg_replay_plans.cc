// PgReplayStore's saved plans (tables replay_plans and replay_plan_events):
// a plan's events go in chunks of parallel arrays, written from the dry run's
// stream (AddPlanEvents) or inside the database by one INSERT ... SELECT
// over the window (AddPlanWindow); a replay reads them back in window order,
// joined to the log, a page at a time.
#include <algorithm>
#include <cstdint>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/store/pg_replay_rows.h"
#include "server/store/pg_replay_store.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// The decisions' codes in replay_plan_events.decisions: the index here.
constexpr std::string_view kDecisionNames[] = {"deliver",  "already_delivered",
                                               "found_downstream", "outcome_not_selected",
                                               "no_route", "held_by_key"};
constexpr int kDecisionCount = sizeof(kDecisionNames) / sizeof(kDecisionNames[0]);

std::optional<int> DecisionCode(std::string_view name) {
  for (int i = 0; i < kDecisionCount; ++i) {
    if (kDecisionNames[i] == name) return i;
  }
  return std::nullopt;
}

std::string DecisionName(int code) {
  return code >= 0 && code < kDecisionCount ? std::string(kDecisionNames[code]) : "unknown";
}

constexpr const char* kAddChunkName = "replay_plan_add_chunk";
constexpr const char* kAddChunkSql = R"sql(
INSERT INTO replay_plan_events (plan_id, chunk, until_us, ingested_at, positions, decisions)
VALUES ($1, $2, $3, $4::timestamptz[], $5::bigint[], $6::smallint[]))sql";

// Chunk numbers of a saved window leave room to split a chunk in this many.
constexpr int64_t kChunkSplits = 1000000;

// The decision code of an event of the window from its source and outcome,
// per `rules`: NULL for a pair without a rule (an event that arrived after
// the dry run's aggregate). The source is checked once, then the outcome in
// the order the rules first name it, so that an event of the most common
// outcome (when the rules list it first) costs one comparison after the
// source's: a CASE on two short columns costs far less per row than a join.
std::string DecisionCaseSql(const std::vector<PlanRule>& rules, pqxx::transaction_base& tx) {
  std::set<std::string> sources;
  std::vector<Outcome> outcomes;  // as the rules first name them
  std::map<Outcome, std::map<int, std::set<std::string>>> by_outcome;  // code -> sources
  for (const PlanRule& r : rules) {
    sources.insert(r.source);
    if (by_outcome.find(r.outcome) == by_outcome.end()) outcomes.push_back(r.outcome);
    by_outcome[r.outcome][*DecisionCode(r.decision)].insert(r.source);
  }
  auto any_of = [&](const std::set<std::string>& names) {
    return absl::StrCat("source = ANY(", tx.quote(PgTextArray({names.begin(), names.end()})),
                        "::text[])");
  };
  std::string sql = absl::StrCat("CASE WHEN ", any_of(sources), " THEN CASE outcome");
  for (Outcome outcome : outcomes) {
    const auto& codes = by_outcome[outcome];
    absl::StrAppend(&sql, " WHEN ", tx.quote(std::string(OutcomeName(outcome))), " THEN ");
    if (codes.size() == 1 && codes.begin()->second == sources) {
      absl::StrAppend(&sql, codes.begin()->first);  // the same for every source
      continue;
    }
    absl::StrAppend(&sql, "CASE");
    for (const auto& [code, names] : codes) {
      absl::StrAppend(&sql, " WHEN ", any_of(names), " THEN ", code);
    }
    absl::StrAppend(&sql, " END");
  }
  return absl::StrCat(sql, " END END");
}

// Every event of a slice of the window ($1 from, $2 to, $3 to $6 its
// filters: WindowPredicate) with a decision (`decision_case`), chunk by
// chunk: chunks $11 to $12 (numbered from 0) of $10 microseconds of
// ingested_at from the window's start ($9, in microseconds), chunk k from
// $8[k + 1] to $8[k + 2] (exact times). Each chunk is one aggregate over a
// bitmap scan of the primary key's range: no hash of every row by its chunk.
// A chunk's events are before its until_us and after every earlier chunk's.
// An event without a rule stays in its chunk with a NULL decision, which no
// reader returns: filtering it out would evaluate the CASE a second time for
// every row. Returns each chunk's number and size, its count of NULL
// decisions, then its count of each of `codes` but the last (the last is
// what remains).
std::string AddWindowSql(const std::string& decision_case, const std::vector<int>& codes) {
  std::string counts = "cardinality(array_positions(decisions, NULL::smallint))";
  for (size_t i = 0; i + 1 < codes.size(); ++i) {
    absl::StrAppend(&counts, ", cardinality(array_positions(decisions, ", codes[i],
                    "::smallint))");
  }
  return absl::StrCat(R"sql(
INSERT INTO replay_plan_events (plan_id, chunk, until_us, ingested_at, positions, decisions)
SELECT $7, k * )sql",
                      kChunkSplits, R"sql(, $9::bigint + (k + 1) * $10::bigint,
       c.at, c.pos, c.decision
  FROM generate_series($11::bigint, $12::bigint) k,
       LATERAL (SELECT array_agg(ingested_at) AS at, array_agg(position) AS pos,
                       array_agg(()sql",
                      decision_case, R"sql()::smallint) AS decision
                  FROM events
                 WHERE ingested_at >= ($8::timestamptz[])[k + 1]
                   AND ingested_at < ($8::timestamptz[])[k + 2]
                   AND )sql",
                      WindowPredicate(), R"sql() c
 WHERE c.pos IS NOT NULL
RETURNING chunk, cardinality(positions), )sql",
                      counts);
}

// A chunk far above kPlanChunkEvents (a burst of events in its slice of
// time) is split in sorted chunks of kPlanChunkEvents, numbered after it:
// reading one must not sort it whole for every page.
constexpr const char* kSplitChunkSql = R"sql(
WITH old AS (
  DELETE FROM replay_plan_events WHERE plan_id = $1 AND chunk = $2
  RETURNING ingested_at, positions, decisions),
events AS (
  SELECT u.at, u.pos, u.decision,
         (row_number() OVER (ORDER BY u.at, u.pos) - 1) / $3 AS part
    FROM old, unnest(old.ingested_at, old.positions, old.decisions) AS u(at, pos, decision))
INSERT INTO replay_plan_events (plan_id, chunk, until_us, ingested_at, positions, decisions)
SELECT $1, $2 + part, (extract(epoch FROM max(at)) * 1000000)::bigint + 1,
       array_agg(at ORDER BY at, pos), array_agg(pos ORDER BY at, pos),
       array_agg(decision ORDER BY at, pos)
  FROM events
 GROUP BY part)sql";

// Settings of the statement that saves a slice of a window: each chunk read
// by a bitmap scan of its range of the primary key (a plan that guesses the
// chunk's size may pick a scan of the whole partition per chunk, or an index
// scan that costs more per row), no JIT. Its commit does not wait for its
// WAL to be flushed: the plan's own commit (CreatePlan) flushes it.
constexpr const char* kAddWindowSettings =
    "SET LOCAL jit = off; SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off;"
    " SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL synchronous_commit = off";

// A window is saved in this many slices of time side by side, each on its
// own connection (as the dry run's aggregate reads it).
constexpr int kAddWindowConnections = 3;

// The chunks that may hold events after a cursor ($2: its ingested_at in
// microseconds), in order.
constexpr const char* kChunksAfterName = "replay_plan_chunks_after";
constexpr const char* kChunksAfterSql = R"sql(
SELECT chunk FROM replay_plan_events
 WHERE plan_id = $1 AND until_us > $2 AND chunk > $3
 ORDER BY chunk
 LIMIT 16)sql";

// One chunk's planned events (not those with a NULL decision) after a cursor
// ($3, $4; NULL = from the start), at most $5, in window order, joined to the
// log as it is now.
constexpr const char* kReadChunkName = "replay_plan_read_chunk";
std::string ReadChunkSql() {
  return absl::StrCat("SELECT ", StoredEventColumns("e"), ", u.decision, e.position IS NULL, ",
                      EpochUs("u.at"), ", u.pos", R"sql(
  FROM (SELECT u.at, u.pos, u.decision
          FROM replay_plan_events p,
               unnest(p.ingested_at, p.positions, p.decisions) AS u(at, pos, decision)
         WHERE p.plan_id = $1 AND p.chunk = $2 AND u.decision IS NOT NULL
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
    auto code = DecisionCode(e.decision);
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

absl::StatusOr<std::map<std::string, int64_t>> PgReplayStore::AddPlanWindow(
    const std::string& plan_id, const ReplayWindow& window, const std::vector<PlanRule>& rules,
    int64_t expected) {
  for (const PlanRule& r : rules) {
    if (!DecisionCode(r.decision)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown decision ", r.decision));
    }
  }
  if (rules.empty()) return std::map<std::string, int64_t>{};
  // Chunks are equal slices of time sized for kPlanChunkEvents on average;
  // the connections take whole chunks each.
  const int64_t span_us = std::max<int64_t>(1, absl::ToInt64Microseconds(window.to - window.from));
  const int64_t chunk_us = std::max<int64_t>(
      1, static_cast<int64_t>(static_cast<double>(span_us) * kPlanChunkEvents /
                              static_cast<double>(std::max<int64_t>(expected, 1))));
  const int64_t chunks = (span_us + chunk_us - 1) / chunk_us;
  const int64_t slices = std::min<int64_t>(kAddWindowConnections, chunks);
  std::vector<std::string> bounds;  // where each chunk starts, then the window's end
  for (int64_t k = 0; k < chunks; ++k) {
    bounds.push_back(PgTime(window.from + absl::Microseconds(k * chunk_us)));
  }
  bounds.push_back(PgTime(window.to));
  const std::string chunk_bounds = PgTextArray(bounds);
  std::set<int> used;
  for (const PlanRule& r : rules) used.insert(*DecisionCode(r.decision));
  const std::vector<int> codes(used.begin(), used.end());
  std::mutex mu;
  std::map<std::string, int64_t> counts;
  auto save_slice = [&](int64_t i) {
    const int64_t first = chunks * i / slices;
    const int64_t end = chunks * (i + 1) / slices;
    const absl::Time from = window.from + absl::Microseconds(first * chunk_us);
    const absl::Time to =
        i + 1 == slices ? window.to : window.from + absl::Microseconds(end * chunk_us);
    return pool_->Run("replay_plan_add_window", [&](PgPool::Lease& l) {
      std::map<std::string, int64_t> slice_counts;
      pqxx::work tx(l.conn());
      tx.exec(kAddWindowSettings);
      auto rows = tx.exec_params(AddWindowSql(DecisionCaseSql(rules, tx), codes), PgTime(from),
                                 PgTime(to), PgTextArray(window.sources), PgTextArray(window.keys),
                                 PgTextArray(window.types), PgTextArray(window.event_ids),
                                 plan_id, chunk_bounds, absl::ToUnixMicros(window.from), chunk_us,
                                 first, end - 1);
      for (const auto& r : rows) {
        int64_t rest = r[1].as<int64_t>() - r[2].as<int64_t>();
        for (size_t k = 0; k < codes.size(); ++k) {
          const int64_t n =
              k + 1 < codes.size() ? r[static_cast<int>(3 + k)].as<int64_t>() : rest;
          rest -= n;
          if (n > 0) slice_counts[DecisionName(codes[k])] += n;
        }
        if (r[1].as<int64_t>() > 2 * kPlanChunkEvents) {
          tx.exec_params(kSplitChunkSql, plan_id, r[0].as<int64_t>(), kPlanChunkEvents);
        }
      }
      tx.commit();
      std::lock_guard lock(mu);
      for (const auto& [decision, n] : slice_counts) counts[decision] += n;
    });
  };
  std::vector<std::future<absl::Status>> helpers;
  for (int64_t i = 1; i < slices; ++i) {
    helpers.push_back(std::async(std::launch::async, save_slice, i));
  }
  absl::Status status = save_slice(0);
  for (auto& h : helpers) status.Update(h.get());
  if (!status.ok()) return status;
  return counts;
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
      const int64_t cursor_us = cursor ? absl::ToUnixMicros(cursor->ingested_at)
                                       : std::numeric_limits<int64_t>::min();
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
            out.push_back({StoredEventFromRow(r),
                           DecisionName(r[kStoredEventColumnCount].as<int>())});
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
