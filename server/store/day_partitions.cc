#include "server/store/day_partitions.h"

#include "absl/strings/str_cat.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

// $1 partition names: those that exist (retention may have dropped one).
constexpr const char* kExistingPartitionsName = "delivery_existing_partitions";
constexpr const char* kExistingPartitionsSql =
    "SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL";

}  // namespace

std::string OnPartition(const char* name, const std::string& partition) {
  return absl::StrCat(name, ":", partition);
}

absl::Status RunOnDays(PgPool* pool, const char* what, const std::vector<std::string>& partitions,
                       const DayWork& fn) {
  std::unordered_set<std::string> gone;
  for (int run = 0; run < 2; ++run) {
    bool dropped = false;
    absl::Status status = pool->Run(what, [&](PgPool::Lease& lease) {
      pqxx::work tx(lease.conn());
      if (run > 0) {
        lease.Prepare(kExistingPartitionsName, kExistingPartitionsSql);
        gone.insert(partitions.begin(), partitions.end());
        for (const auto& row : tx.exec_prepared(kExistingPartitionsName, PgTextArray(partitions))) {
          gone.erase(row[0].as<std::string>());
        }
      }
      try {
        fn(lease, tx, gone);
      } catch (const pqxx::undefined_table&) {
        dropped = true;
        return;  // rolled back
      }
      tx.commit();
    });
    if (!status.ok() || !dropped) return status;
  }
  return absl::AbortedError(absl::StrCat(what, ": a day partition was dropped while in use"));
}

}  // namespace replayd
