// Statements on the day partitions of the log, which they name directly
// (DayPartitionOf): the names they are prepared under, and transactions that
// carry on when retention drops a day they use. Internal to store/.
#pragma once

#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include <pqxx/pqxx>

#include "absl/status/status.h"
#include "server/store/partitions.h"
#include "server/store/pg_pool.h"

namespace replayd {

// The name a statement on one day partition is prepared under.
std::string OnPartition(const char* name, const std::string& partition);

// Runs `fn` in one transaction and commits what it did. `fn` reaches day
// partitions by name, and a day may have been dropped by retention since its
// events were read: `fn` runs first told that none of `partitions` is gone;
// if a statement then meets a dropped one (undefined_table), the transaction
// rolls back and `fn` runs again, told which are gone, so it leaves them out
// instead of failing. `fn` sets its results anew on each run. ABORTED when a
// day is dropped during the second run too.
using DayWork = std::function<void(PgPool::Lease& lease, pqxx::work& tx,
                                   const std::unordered_set<std::string>& gone)>;
absl::Status RunOnDays(PgPool* pool, const char* what, const std::vector<std::string>& partitions,
                       const DayWork& fn);

}  // namespace replayd
