// The PostgreSQL table sink: inserts each event into a downstream
// table keyed by its idempotency key; an existing key answers like HTTP 409.
// Its lookup reads the same table, and its update overwrites a row's payload
// when the row's version is still the known one. When the table is in the log's own
// database, delivery writes it through DeliveryStore::DeliverToLogTable (one
// transaction with the log's update) and Deliver is not called. Thread safe.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/config/config.h"
#include "server/delivery/sink.h"
#include "server/store/delivery_table.h"

namespace replayd {

class PgTableSink final : public Sink {
 public:
  // `log_database_url` is used when the sink names no database_url.
  static absl::StatusOr<std::unique_ptr<PgTableSink>> Create(const SinkConfig& config,
                                                             const std::string& log_database_url);

  const std::string& name() const override { return name_; }
  DeliveryResult Deliver(const DeliveryRequest& request) override;
  bool HasLookup() const override { return true; }
  // The row: its record id, version, update time and payload (the envelope).
  LookupResult Lookup(const StoredEvent& event) override;
  bool HasUpdate() const override { return true; }
  // kPreconditionFailed when the row is at another version (its error names
  // it); kFinal when the key has no row.
  DeliveryResult Update(const DeliveryRequest& request,
                        const std::optional<std::string>& known_version) override;
  // The table when the sink names no database_url (it is the log's database).
  std::optional<std::string> LogDatabaseTable() const override { return log_table_; }

 private:
  PgTableSink(std::string name, std::unique_ptr<DeliveryTable> table,
              std::optional<std::string> log_table)
      : name_(std::move(name)), table_(std::move(table)), log_table_(std::move(log_table)) {}

  const std::string name_;
  std::unique_ptr<DeliveryTable> table_;
  const std::optional<std::string> log_table_;
};

}  // namespace replayd
