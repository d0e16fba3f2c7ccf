#include "server/store/delivery_table.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "server/store/pg_pool.h"
#include "server/store/pg_types.h"

namespace replayd {

std::string DeliveryTableDdl(const std::string& table) {
  return absl::StrCat("CREATE TABLE IF NOT EXISTS ", table,
                      " (idempotency_key text PRIMARY KEY,"
                      " record_id text NOT NULL DEFAULT gen_random_uuid()::text,"
                      " payload jsonb NOT NULL,"
                      " created_at timestamptz NOT NULL DEFAULT now(),"
                      " version bigint NOT NULL DEFAULT 1,"
                      " updated_at timestamptz NOT NULL DEFAULT now())");
}

namespace {

// How many of the columns a table made before versions lacks.
constexpr const char* kMissingColumnsSql = R"sql(
SELECT 2 - count(*) FROM pg_attribute
 WHERE attrelid = to_regclass($1) AND attname IN ('version', 'updated_at')
   AND NOT attisdropped)sql";

// Adds them. Both defaults are stored once in the catalog, not written into
// every row: rows from before read version 1 and the time of this upgrade.
std::string DeliveryTableUpgradeSql(const std::string& table) {
  return absl::StrCat("ALTER TABLE ", table,
                      " ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 1,"
                      " ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now()");
}

// `write` (an INSERT or UPDATE of the row of key $1) and the row it leaves:
// (record_id, written, version as text, updated_at as epoch microseconds),
// the written row's or, when it wrote none, the key's row as it is.
std::string WriteAnswerSql(const std::string& table, const std::string& write) {
  const std::string row = absl::StrCat("version::text, ", EpochUs("updated_at"));
  return absl::StrCat("WITH w AS (", write, " RETURNING record_id, version, updated_at)",
                      " SELECT record_id, true, ", row, " FROM w",
                      " UNION ALL SELECT record_id, false, ", row, " FROM ", table,
                      " WHERE idempotency_key = $1 AND NOT EXISTS (SELECT 1 FROM w)");
}

// A row a write left: whether it wrote it, and the row as it is now.
struct WrittenRow {
  bool written = false;
  std::string record_id;
  std::string version;
  absl::Time updated_at;
};

// Runs a prepared write answering at most one row (record_id, written,
// version as text, updated_at as epoch microseconds) in a transaction of its own.
absl::StatusOr<std::optional<WrittenRow>> WriteRow(
    PgPool* pool, const std::string& name, const std::string& sql,
    const std::function<pqxx::result(pqxx::work&, const std::string&)>& exec) {
  std::optional<WrittenRow> found;
  absl::Status s = pool->Run(name, [&](PgPool::Lease& lease) {
    lease.Prepare(name, sql);
    pqxx::work tx(lease.conn());
    auto rows = exec(tx, name);
    tx.commit();
    if (rows.empty()) return;
    found = WrittenRow{rows[0][1].as<bool>(), rows[0][0].as<std::string>(),
                       rows[0][2].as<std::string>(),
                       TimeFromEpochUs(rows[0][3]).value_or(absl::UnixEpoch())};
  });
  if (!s.ok()) return s;
  return found;
}

}  // namespace

std::string DeliveryTableInsertSql(const std::string& table) {
  return WriteAnswerSql(table, absl::StrCat("INSERT INTO ", table,
                                            " (idempotency_key, payload) VALUES ($1, $2::jsonb)"
                                            " ON CONFLICT (idempotency_key) DO NOTHING"));
}

std::string DeliveryTableUpdateSql(const std::string& table) {
  return WriteAnswerSql(table, absl::StrCat("UPDATE ", table,
                                            " SET payload = $2::jsonb, version = version + 1,"
                                            " updated_at = now() WHERE idempotency_key = $1"
                                            " AND ($4 OR version::text = $3)"));
}

absl::Status CreateDeliveryTable(PgPool* pool, const std::string& table) {
  absl::Status s = pool->Run("delivery_table_create", [&](PgPool::Lease& lease) {
    pqxx::work tx(lease.conn());
    tx.exec0(DeliveryTableDdl(table));
    // ALTER TABLE locks the table even when it adds nothing: only when needed.
    if (tx.exec_params1(kMissingColumnsSql, table)[0].as<int>() > 0) {
      tx.exec0(DeliveryTableUpgradeSql(table));
    }
    tx.commit();
  });
  // Two daemons creating it at once: the loser sees a unique violation on the catalog.
  return s.ok() || absl::IsAlreadyExists(s) ? absl::OkStatus() : s;
}

DeliveryTable::DeliveryTable(std::string dsn, std::string table, int pool_size)
    : table_(std::move(table)), pool_(std::make_unique<PgPool>(std::move(dsn), pool_size)) {}

DeliveryTable::~DeliveryTable() = default;

absl::Status DeliveryTable::EnsureTable() {
  std::lock_guard lock(mu_);
  if (table_ready_) return absl::OkStatus();
  if (absl::Status s = CreateDeliveryTable(pool_.get(), table_); !s.ok()) return s;
  table_ready_ = true;
  return absl::OkStatus();
}

absl::StatusOr<DeliveryTable::InsertResult> DeliveryTable::Insert(
    const std::string& idempotency_key, const std::string& payload_json) {
  if (absl::Status s = EnsureTable(); !s.ok()) return s;
  InsertResult result;
  auto row = WriteRow(pool_.get(), "delivery_table_insert", DeliveryTableInsertSql(table_),
                      [&](pqxx::work& tx, const std::string& name) {
                        return tx.exec_prepared(name, idempotency_key, payload_json);
                      });
  if (!row.ok()) return row.status();
  if (*row) {
    result.created = (*row)->written;
    result.record_id = (*row)->record_id;
    result.version = (*row)->version;
    result.updated_at = (*row)->updated_at;
  }
  return result;
}

absl::StatusOr<std::optional<DeliveryTable::UpdateResult>> DeliveryTable::Update(
    const std::string& idempotency_key, const std::string& payload_json,
    const std::optional<std::string>& known_version) {
  if (absl::Status s = EnsureTable(); !s.ok()) return s;
  auto row = WriteRow(pool_.get(), "delivery_table_update", DeliveryTableUpdateSql(table_),
                      [&](pqxx::work& tx, const std::string& name) {
                        return tx.exec_prepared(name, idempotency_key, payload_json,
                                                known_version.value_or(""), !known_version);
                      });
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<UpdateResult>();
  return std::optional<UpdateResult>(
      UpdateResult{(*row)->written, (*row)->record_id, (*row)->version, (*row)->updated_at});
}

absl::StatusOr<std::optional<DeliveryTable::Row>> DeliveryTable::Lookup(
    const std::string& idempotency_key) {
  if (absl::Status s = EnsureTable(); !s.ok()) return s;
  std::optional<Row> found;
  const std::string name = "delivery_table_lookup";
  absl::Status s = pool_->Run(name, [&](PgPool::Lease& lease) {
    lease.Prepare(name, absl::StrCat("SELECT record_id, version, ", EpochUs("updated_at"),
                                     ", payload::text FROM ", table_,
                                     " WHERE idempotency_key = $1"));
    pqxx::read_transaction tx(lease.conn());
    auto rows = tx.exec_prepared(name, idempotency_key);
    if (rows.empty()) return;
    found = Row{rows[0][0].as<std::string>(), rows[0][1].as<int64_t>(),
                TimeFromEpochUs(rows[0][2]).value_or(absl::UnixEpoch()),
                rows[0][3].as<std::string>()};
  });
  if (!s.ok()) return s;
  return found;
}

}  // namespace replayd
