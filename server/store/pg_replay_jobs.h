// Creation of a job of the replays table, shared by every kind of job.
// Internal to store/.
#pragma once

#include <functional>
#include <string_view>

#include <pqxx/pqxx>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/store/pg_pool.h"
#include "server/store/replay_store.h"

namespace replayd {

// What a kind of job adds to its creation, inside the creating transaction.
struct JobCreationSteps {
  // Before the overlap check: a status that is not OK refuses the job with it.
  std::function<absl::Status(pqxx::work&)> check;
  // After the job's row is inserted, before the audit.
  std::function<void(pqxx::work&, const ReplayJob&)> then;
};

// Creates `job` and audits `audit`, serialised with every other creation:
// the job already created with the same request_id is returned as it is
// (*existed = true, nothing else done); FAILED_PRECONDITION when the window
// overlaps an unfinished job's; UNAVAILABLE when the database is.
absl::StatusOr<ReplayJob> CreateJobIn(PgPool& pool, std::string_view name, const ReplayJob& job,
                                      const AuditEntry& audit, bool* existed,
                                      const JobCreationSteps& steps = {});

}  // namespace replayd
