// PgReplayStore's audit read: the control actions of table replay_audit,
// newest first, filtered by replay and time, in keyset pages.
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/store/pg_replay_store.h"
#include "server/store/pg_types.h"

namespace replayd {
namespace {

constexpr const char* kListAuditName = "replay_list_audit";

// $1 replay id ('' = every replay), $2 since (NULL = no bound), $3 before id
// (0 = the newest page), $4 limit.
std::string ListAuditSql() {
  return absl::StrCat("SELECT id, actor, action, coalesce(replay_id, ''), reason, detail::text, ",
                      EpochUs("at"), R"sql(
  FROM replay_audit
 WHERE ($1 = '' OR replay_id = $1)
   AND ($2::timestamptz IS NULL OR at >= $2::timestamptz)
   AND ($3 <= 0 OR id < $3)
 ORDER BY id DESC
 LIMIT $4)sql");
}

}  // namespace

absl::StatusOr<std::vector<AuditEntry>> PgReplayStore::ListAudit(const AuditQuery& query) {
  std::optional<std::string> since;
  if (query.since) since = PgTime(*query.since);
  std::vector<AuditEntry> out;
  absl::Status status = pool_->Run(kListAuditName, [&](PgPool::Lease& l) {
    out.clear();
    pqxx::read_transaction tx(l.conn());
    auto rows =
        tx.exec_params(ListAuditSql(), query.replay_id, since, query.before_id, query.PageSize());
    for (const auto& r : rows) {
      AuditEntry a{r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
                   r[4].as<std::string>(), r[5].as<std::string>(), *TimeFromEpochUs(r[6]),
                   r[0].as<int64_t>()};
      out.push_back(std::move(a));
    }
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace replayd
