// PgCompensationStore: plans and their entries. Entries are written a batch
// per statement (a JSON array expanded by jsonb_to_recordset, replacing the
// entries of the same positions), read in window order by keyset pages, and
// joined to the log as it is now for the apply job.
#include "server/store/pg_compensation_store.h"

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/store/pg_replay_jobs.h"
#include "server/store/pg_replay_rows.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// A plan's row with its jobs': p the plan, d its diff job, a its apply job.
constexpr const char* kPlanJoin = R"sql(
  FROM compensation_plans p
  LEFT JOIN replays d ON d.id = p.id
  LEFT JOIN replays a ON a.id = p.apply_job_id)sql";

// CompensationState's name from the jobs' states.
constexpr const char* kPlanStateSql = R"sql(CASE
  WHEN p.apply_job_id IS NOT NULL THEN
    CASE WHEN a.state IN ('completed', 'failed', 'cancelled') THEN 'applied' ELSE 'applying' END
  WHEN d.state = 'completed' THEN 'ready'
  WHEN d.state IN ('pending', 'running', 'paused', 'cancelling') THEN 'diffing'
  ELSE 'failed' END)sql";

// The columns PlanFromRow reads, then the diff job's state ('' without one)
// and whether the plan expired.
std::string PlanColumns() {
  return absl::StrCat("p.id, ", EpochUs("p.window_from"), ", ", EpochUs("p.window_to"),
                      ", array_to_string(p.sources, E'\\n'), p.holes::text,"
                      " coalesce(p.apply_job_id, ''), p.created_by, ",
                      EpochUs("p.created_at"), ", ", EpochUs("p.expires_at"), ", ", kPlanStateSql,
                      ", coalesce(d.state, ''), p.expires_at < now()");
}
constexpr int kStateColumn = 9;
constexpr int kDiffStateColumn = 10;
constexpr int kExpiredColumn = 11;

std::string SelectPlans(const std::string& where) {
  return absl::StrCat("SELECT ", PlanColumns(), kPlanJoin, " WHERE ", where);
}

std::string HolesJson(const std::vector<UpstreamHole>& holes) {
  nlohmann::json out = nlohmann::json::array();
  for (const UpstreamHole& h : holes) {
    out.push_back({{"source", h.source}, {"first", h.first}, {"last", h.last}});
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<UpstreamHole> HolesFromJson(const std::string& json) {
  return FromJsonArray<UpstreamHole>(json, [](const nlohmann::json& h) {
    return UpstreamHole{h.value("source", std::string()), h.value("first", int64_t{0}),
                        h.value("last", int64_t{0})};
  });
}

CompensationPlan PlanFromRow(const pqxx::row& r) {
  CompensationPlan p;
  p.id = r[0].as<std::string>();
  p.from = *TimeFromEpochUs(r[1]);
  p.to = *TimeFromEpochUs(r[2]);
  p.sources = SplitLines(r[3].as<std::string>());
  p.holes = HolesFromJson(r[4].as<std::string>());
  p.apply_job_id = r[5].as<std::string>();
  p.created_by = r[6].as<std::string>();
  p.created_at = *TimeFromEpochUs(r[7]);
  p.expires_at = *TimeFromEpochUs(r[8]);
  p.state = ParseIn(kCompensationStateNames, r[kStateColumn].as<std::string>())
                .value_or(CompensationState::kFailed);
  return p;
}

// Fills in the counts by (class, action) of `plans`, by one GROUP BY.
void ReadCounts(pqxx::transaction_base& tx, std::vector<CompensationPlan>& plans) {
  if (plans.empty()) return;
  std::vector<std::string> ids;
  std::map<std::string, CompensationPlan*> by_id;
  for (CompensationPlan& p : plans) {
    ids.push_back(p.id);
    by_id[p.id] = &p;
  }
  auto rows = tx.exec_params(
      "SELECT plan_id, class, action, count(*) FROM compensation_entries"
      " WHERE plan_id = ANY($1::text[]) GROUP BY plan_id, class, action",
      PgTextArray(ids));
  for (const auto& r : rows) {
    auto c = ParseDiffClass(r[1].as<std::string>());
    auto a = ParseCompensationAction(r[2].as<std::string>());
    if (c && a) by_id[r[0].as<std::string>()]->counts[{*c, *a}] = r[3].as<int64_t>();
  }
}

// The select list EntryFromRow reads from compensation_entries aliased c.
std::string EntryColumns() {
  return absl::StrCat("c.position, ", EpochUs("c.ingested_at"),
                      ", c.source, c.event_id, c.class, c.action, c.log_outcome,"
                      " coalesce(c.record_id, ''), c.record_version, ",
                      EpochUs("c.record_updated_at"), ", c.detail, c.result");
}
constexpr int kEntryColumnCount = 12;

// An entry from EntryColumns starting at column `at`.
CompensationEntry EntryFromRow(const pqxx::row& r, int at) {
  CompensationEntry e;
  e.position = r[at].as<int64_t>();
  e.ingested_at = *TimeFromEpochUs(r[at + 1]);
  e.source = r[at + 2].as<std::string>();
  e.event_id = r[at + 3].as<std::string>();
  e.diff_class = ParseDiffClass(r[at + 4].as<std::string>()).value_or(DiffClass::kInSync);
  e.action =
      ParseCompensationAction(r[at + 5].as<std::string>()).value_or(CompensationAction::kNone);
  e.log_outcome = ParseOutcome(r[at + 6].as<std::string>()).value_or(Outcome::kPending);
  e.downstream.id = r[at + 7].as<std::string>();
  if (!r[at + 8].is_null()) e.downstream.version = r[at + 8].as<std::string>();
  e.downstream.updated_at = TimeFromEpochUs(r[at + 9]);
  e.detail = r[at + 10].as<std::string>();
  e.result =
      ParseCompensationResult(r[at + 11].as<std::string>()).value_or(CompensationResult::kPending);
  return e;
}

// A keyset cursor as parameters: from the start of the window without one.
std::pair<std::string, int64_t> AfterParams(const std::optional<ReplayCursor>& after) {
  if (!after) return {"-infinity", std::numeric_limits<int64_t>::min()};
  return {PgTime(after->ingested_at), after->position};
}

// `columns` of plan $1's entries after a log key ($2, $3) in window order,
// at most $4; of class $5 when `one_class`.
std::string EntriesAfterSql(const std::string& columns, bool one_class) {
  return absl::StrCat("SELECT ", columns, " FROM compensation_entries c WHERE c.plan_id = $1",
                      one_class ? " AND c.class = $5" : "",
                      " AND (c.ingested_at, c.position) > ($2::timestamptz, $3)"
                      " ORDER BY c.ingested_at, c.position LIMIT $4");
}

// A page of every class's entries (EntriesAfterSql) with each entry's event as the log holds
// it now (NULL columns when it no longer does), then whether it does not.
std::string ReadApplySql() {
  return absl::StrCat("SELECT ", StoredEventColumns("e"), ", ", EntryColumns(),
                      ", e.position IS NULL FROM (", EntriesAfterSql("c.*", false), ") c",
                      " LEFT JOIN events e ON e.ingested_at = c.ingested_at"
                      " AND e.position = c.position ORDER BY c.ingested_at, c.position");
}
constexpr const char* kReadApplyName = "compensation_read_apply";

constexpr const char* kSaveEntriesName = "compensation_save_entries";
constexpr const char* kSaveEntriesSql = R"sql(
INSERT INTO compensation_entries AS c
       (plan_id, position, ingested_at, source, event_id, class, action, log_outcome,
        record_id, record_version, record_updated_at, detail, result)
SELECT $1, x.position, x.ingested_at, x.source, x.event_id, x.class, x.action, x.log_outcome,
       x.record_id, x.record_version, x.record_updated_at, x.detail, x.result
  FROM jsonb_to_recordset($2::jsonb) AS x(
       position bigint, ingested_at timestamptz, source text, event_id text, class text,
       action text, log_outcome text, record_id text, record_version text,
       record_updated_at timestamptz, detail text, result text)
ON CONFLICT (plan_id, position) DO UPDATE SET
       ingested_at = excluded.ingested_at, source = excluded.source,
       event_id = excluded.event_id, class = excluded.class, action = excluded.action,
       log_outcome = excluded.log_outcome, record_id = excluded.record_id,
       record_version = excluded.record_version, record_updated_at = excluded.record_updated_at,
       detail = excluded.detail, result = excluded.result)sql";

std::string EntriesJson(const std::vector<CompensationEntry>& entries) {
  nlohmann::json out = nlohmann::json::array();
  for (const CompensationEntry& e : entries) {
    nlohmann::json row = {{"position", e.position},
                          {"ingested_at", PgTime(e.ingested_at)},
                          {"source", PgText(e.source)},
                          {"event_id", PgText(e.event_id)},
                          {"class", std::string(DiffClassName(e.diff_class))},
                          {"action", std::string(CompensationActionName(e.action))},
                          {"log_outcome", std::string(OutcomeName(e.log_outcome))},
                          {"record_id", nullptr},
                          {"record_version", nullptr},
                          {"record_updated_at", nullptr},
                          {"detail", PgText(e.detail)},
                          {"result", std::string(CompensationResultName(e.result))}};
    if (!e.downstream.id.empty()) row["record_id"] = PgText(e.downstream.id);
    if (e.downstream.version) row["record_version"] = PgText(*e.downstream.version);
    if (e.downstream.updated_at) row["record_updated_at"] = PgTime(*e.downstream.updated_at);
    out.push_back(std::move(row));
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Locks plan `id`'s row for a change (SetActions, CreateApply) and reads it.
std::optional<pqxx::row> LockPlan(pqxx::work& tx, const std::string& id) {
  auto rows = tx.exec_params(SelectPlans("p.id = $1 FOR UPDATE OF p"), id);
  if (rows.empty()) return std::nullopt;
  return rows[0];
}

absl::Status UnknownPlan(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("no compensation plan with id \"", id, "\""));
}

// Why plan `row` cannot be applied, or OK when it can.
absl::Status ApplyRefusal(const pqxx::row& row) {
  const CompensationPlan p = PlanFromRow(row);
  const std::string diff_state = row[kDiffStateColumn].as<std::string>();
  switch (p.state) {
    case CompensationState::kApplying:
      return absl::FailedPreconditionError(
          absl::StrCat("plan ", p.id, " is already being applied by job ", p.apply_job_id));
    case CompensationState::kApplied:
      return absl::FailedPreconditionError(
          absl::StrCat("plan ", p.id, " was already applied by job ", p.apply_job_id));
    case CompensationState::kDiffing:
      return absl::FailedPreconditionError(absl::StrCat(
          "plan ", p.id, " is still diffing (", diff_state, "): wait for its diff to complete"));
    case CompensationState::kFailed:
      return absl::FailedPreconditionError(
          absl::StrCat("plan ", p.id, " cannot be applied: its diff ",
                       diff_state.empty() ? "job is gone" : absl::StrCat("ended ", diff_state)));
    case CompensationState::kReady: break;
  }
  if (row[kExpiredColumn].as<bool>()) {
    return absl::FailedPreconditionError(
        absl::StrCat("plan ", p.id, " expired at ", PgTime(p.expires_at), ": run a new diff"));
  }
  return absl::OkStatus();
}

}  // namespace

PgCompensationStore::PgCompensationStore(PgPool* pool) : pool_(pool) {}

absl::StatusOr<ReplayJob> PgCompensationStore::CreateDiff(const ReplayJob& job,
                                                          const CompensationPlan& plan,
                                                          const AuditEntry& audit, bool* existed) {
  ReplayJob diff = job;
  diff.spec.kind = ReplayKind::kDiff;
  JobCreationSteps steps;
  steps.then = [&](pqxx::work& tx, const ReplayJob& created) {
    tx.exec_params(
        "INSERT INTO compensation_plans (id, window_from, window_to, sources, holes,"
        " created_by, expires_at)"
        " VALUES ($1, $2::timestamptz, $3::timestamptz, $4::text[], $5::jsonb, $6,"
        " $7::timestamptz)",
        created.id, PgTime(plan.from), PgTime(plan.to), PgTextArray(plan.sources),
        HolesJson(plan.holes), created.created_by, PgTime(plan.expires_at));
  };
  return CreateJobIn(*pool_, "compensation_create_diff", diff, audit, existed, steps);
}

absl::Status PgCompensationStore::SaveEntries(const std::string& plan_id,
                                              const std::vector<CompensationEntry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  const std::string json = EntriesJson(entries);
  return pool_->Run(kSaveEntriesName, [&](PgPool::Lease& l) {
    l.Prepare(kSaveEntriesName, kSaveEntriesSql);
    pqxx::work tx(l.conn());
    tx.exec_prepared(kSaveEntriesName, plan_id, json);
    tx.commit();
  });
}

namespace {

// Plan `plan_id`, with its counts when `counts` (a GROUP BY over its entries).
absl::StatusOr<CompensationPlan> ReadPlan(PgPool& pool, const std::string& plan_id, bool counts) {
  std::vector<CompensationPlan> out;
  absl::Status status = pool.Run("compensation_get_plan", [&](PgPool::Lease& l) {
    out.clear();
    pqxx::read_transaction tx(l.conn());
    for (const auto& r : tx.exec_params(SelectPlans("p.id = $1"), plan_id)) {
      out.push_back(PlanFromRow(r));
    }
    if (counts) ReadCounts(tx, out);
  });
  if (!status.ok()) return status;
  if (out.empty()) return UnknownPlan(plan_id);
  return out[0];
}

}  // namespace

absl::StatusOr<CompensationPlan> PgCompensationStore::GetPlan(const std::string& plan_id) {
  return ReadPlan(*pool_, plan_id, /*counts=*/true);
}

absl::StatusOr<std::vector<CompensationPlan>> PgCompensationStore::ListPlans(int limit) {
  std::vector<CompensationPlan> out;
  absl::Status status = pool_->Run("compensation_list_plans", [&](PgPool::Lease& l) {
    out.clear();
    pqxx::read_transaction tx(l.conn());
    for (const auto& r :
         tx.exec_params(SelectPlans("TRUE ORDER BY p.created_at DESC, p.id LIMIT $1"),
                        limit <= 0 ? 20 : limit)) {
      out.push_back(PlanFromRow(r));
    }
    ReadCounts(tx, out);
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<CompensationEntry>> PgCompensationStore::ReadEntries(
    const std::string& plan_id, const EntryQuery& query) {
  std::vector<CompensationEntry> out;
  const auto [at, position] = AfterParams(query.after);
  absl::Status status = pool_->Run("compensation_read_entries", [&](PgPool::Lease& l) {
    out.clear();
    pqxx::read_transaction tx(l.conn());
    pqxx::result rows =
        query.diff_class
            ? tx.exec_params(EntriesAfterSql(EntryColumns(), true), plan_id, at, position,
                             query.limit, std::string(DiffClassName(*query.diff_class)))
            : tx.exec_params(EntriesAfterSql(EntryColumns(), false), plan_id, at, position,
                             query.limit);
    for (const auto& r : rows) out.push_back(EntryFromRow(r, 0));
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<CompensationItem>> PgCompensationStore::ReadApplyPage(
    const std::string& plan_id, const std::optional<ReplayCursor>& after, int limit) {
  std::vector<CompensationItem> out;
  absl::Status status = pool_->Run(kReadApplyName, [&](PgPool::Lease& l) {
    out.clear();
    l.Prepare(kReadApplyName, ReadApplySql());
    pqxx::read_transaction tx(l.conn());
    std::optional<ReplayCursor> cursor = after;
    // Entries whose event the log no longer holds still move the cursor.
    while (static_cast<int>(out.size()) < limit) {
      const int want = limit - static_cast<int>(out.size());
      const auto [at, position] = AfterParams(cursor);
      auto rows = tx.exec_prepared(kReadApplyName, plan_id, at, position, want);
      for (const auto& r : rows) {
        CompensationEntry entry = EntryFromRow(r, kStoredEventColumnCount);
        cursor = ReplayCursor{entry.ingested_at, entry.position};
        if (r[kStoredEventColumnCount + kEntryColumnCount].as<bool>()) continue;
        out.push_back({std::move(entry), StoredEventFromRow(r)});
      }
      if (static_cast<int>(rows.size()) < want) return;
    }
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<int64_t> PgCompensationStore::SetActions(const std::string& plan_id,
                                                        const ActionChange& change,
                                                        const AuditEntry& audit) {
  if (change.diff_class.has_value() == !change.events.empty()) {
    return absl::InvalidArgumentError("change the actions of either a class or listed events");
  }
  const std::string action(CompensationActionName(change.action));
  if (change.diff_class && !ActionAllowed(*change.diff_class, change.action)) {
    return absl::InvalidArgumentError(absl::StrCat("class ",
                                                   std::string(DiffClassName(*change.diff_class)),
                                                   " does not allow action ", action));
  }
  std::vector<std::string> sources;
  std::vector<std::string> event_ids;
  for (const auto& [source, event_id] : change.events) {
    sources.push_back(source);
    event_ids.push_back(event_id);
  }
  int64_t changed = 0;
  absl::Status refused;
  absl::Status status = pool_->Run("compensation_set_actions", [&](PgPool::Lease& l) {
    changed = 0;
    refused = absl::OkStatus();
    pqxx::work tx(l.conn());
    auto plan = LockPlan(tx, plan_id);
    if (!plan) {
      refused = UnknownPlan(plan_id);
      return;
    }
    const std::string state = (*plan)[kStateColumn].as<std::string>();
    if (state != "ready") {
      refused = absl::FailedPreconditionError(
          absl::StrCat("plan ", plan_id, " is ", state, ": actions change only while it is ready"));
      return;
    }
    if (change.diff_class) {
      changed = tx.exec_params(
                      "UPDATE compensation_entries SET action = $3"
                      " WHERE plan_id = $1 AND class = $2 AND action <> $3",
                      plan_id, std::string(DiffClassName(*change.diff_class)), action)
                    .affected_rows();
    } else {
      const std::string listed = " FROM unnest($2::text[], $3::text[]) AS l(source, event_id)";
      auto found =
          tx.exec_params(absl::StrCat("SELECT l.source, l.event_id, c.class", listed,
                                      " LEFT JOIN compensation_entries c ON c.plan_id = $1"
                                      " AND c.source = l.source AND c.event_id = l.event_id"),
                         plan_id, PgTextArray(sources), PgTextArray(event_ids));
      for (const auto& r : found) {
        const std::string event = absl::StrCat(r[0].as<std::string>(), "/", r[1].as<std::string>());
        if (r[2].is_null()) {
          refused =
              absl::InvalidArgumentError(absl::StrCat("plan ", plan_id, " holds no event ", event));
          return;
        }
        const std::string diff_class = r[2].as<std::string>();
        if (!ActionAllowed(*ParseDiffClass(diff_class), change.action)) {
          refused = absl::InvalidArgumentError(absl::StrCat(
              "event ", event, " is ", diff_class, ", which does not allow action ", action));
          return;
        }
      }
      changed = tx.exec_params(absl::StrCat("UPDATE compensation_entries c SET action = $4", listed,
                                            " WHERE c.plan_id = $1 AND c.source = l.source"
                                            " AND c.event_id = l.event_id AND c.action <> $4"),
                               plan_id, PgTextArray(sources), PgTextArray(event_ids), action)
                    .affected_rows();
    }
    InsertAudit(tx, audit);
    tx.commit();
  });
  if (!status.ok()) return status;
  if (!refused.ok()) return refused;
  return changed;
}

absl::StatusOr<ReplayJob> PgCompensationStore::CreateApply(const ReplayJob& job,
                                                           const AuditEntry& audit, bool* existed) {
  const std::string& plan_id = job.spec.plan_id;
  // A plan's window and sources never change: read before the creation.
  auto plan = ReadPlan(*pool_, plan_id, /*counts=*/false);
  if (!plan.ok()) return plan.status();
  ReplayJob apply = job;
  apply.spec.kind = ReplayKind::kCompensate;
  apply.spec.window.from = plan->from;
  apply.spec.window.to = plan->to;
  apply.spec.window.sources = plan->sources;
  JobCreationSteps steps;
  steps.check = [&](pqxx::work& tx) {
    auto row = LockPlan(tx, plan_id);
    return row ? ApplyRefusal(*row) : UnknownPlan(plan_id);
  };
  steps.then = [&](pqxx::work& tx, const ReplayJob& created) {
    tx.exec_params("UPDATE compensation_plans SET apply_job_id = $2 WHERE id = $1", plan_id,
                   created.id);
  };
  return CreateJobIn(*pool_, "compensation_create_apply", apply, audit, existed, steps);
}

absl::Status PgCompensationStore::SetResults(const std::string& plan_id,
                                             const std::vector<EntryResult>& results) {
  if (results.empty()) return absl::OkStatus();
  // The last result given for a position wins.
  std::map<int64_t, CompensationResult> by_position(results.begin(), results.end());
  std::vector<int64_t> positions;
  std::vector<std::string> names;
  for (const auto& [position, result] : by_position) {
    positions.push_back(position);
    names.emplace_back(CompensationResultName(result));
  }
  std::optional<int64_t> missing;
  absl::Status status = pool_->Run("compensation_set_results", [&](PgPool::Lease& l) {
    pqxx::work tx(l.conn());
    auto rows = tx.exec_params(
        "UPDATE compensation_entries c SET result = r.result"
        "  FROM unnest($2::bigint[], $3::text[]) AS r(position, result)"
        " WHERE c.plan_id = $1 AND c.position = r.position"
        " RETURNING c.position",
        plan_id, PgBigintArray(positions), PgTextArray(names));
    if (rows.size() == positions.size()) {
      tx.commit();
      return;
    }
    std::set<int64_t> found;
    for (const auto& r : rows) found.insert(r[0].as<int64_t>());
    for (int64_t p : positions) {
      if (found.count(p) == 0) {
        missing = p;
        break;
      }
    }
    // Rolled back: nothing written.
  });
  if (!status.ok()) return status;
  if (missing) {
    return absl::NotFoundError(
        absl::StrCat("plan ", plan_id, " holds no entry at position ", *missing));
  }
  return absl::OkStatus();
}

}  // namespace replayd
