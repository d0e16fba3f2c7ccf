#include "server/delivery/pg_table_sink.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/delivery/http_sink.h"

namespace replayd {

absl::StatusOr<std::unique_ptr<PgTableSink>> PgTableSink::Create(
    const SinkConfig& config, const std::string& log_database_url) {
  if (config.table.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sink ", config.name, ": table is empty"));
  }
  const bool same_database = config.database_url.empty();
  std::string dsn = same_database ? log_database_url : config.database_url;
  return std::unique_ptr<PgTableSink>(new PgTableSink(
      config.name, std::make_unique<DeliveryTable>(dsn, config.table, config.max_in_flight),
      same_database ? std::optional<std::string>(config.table) : std::nullopt));
}

namespace {

// A table that could not be written, as a sink's answer.
DeliveryResult FailedWrite(const absl::Status& status, absl::Time start) {
  DeliveryResult result;
  result.duration = absl::Now() - start;
  result.kind = absl::IsUnavailable(status) ? DeliveryResult::Kind::kRetryable
                                            : DeliveryResult::Kind::kFinal;
  result.error = std::string(status.message());
  return result;
}

}  // namespace

DeliveryResult PgTableSink::Deliver(const DeliveryRequest& request) {
  absl::Time start = absl::Now();
  DeliveryResult result;
  auto inserted = table_->Insert(IdempotencyKey(*request.event), EnvelopeJson(*request.event));
  if (!inserted.ok()) return FailedWrite(inserted.status(), start);
  result.duration = absl::Now() - start;
  result.kind = inserted->created ? DeliveryResult::Kind::kSucceeded
                                  : DeliveryResult::Kind::kAlreadyProcessed;
  result.record_id = inserted->record_id;
  result.record_version = inserted->version;
  result.record_updated_at = inserted->updated_at;
  return result;
}

DeliveryResult PgTableSink::Update(const DeliveryRequest& request,
                                   const std::optional<std::string>& known_version) {
  absl::Time start = absl::Now();
  auto updated =
      table_->Update(IdempotencyKey(*request.event), EnvelopeJson(*request.event), known_version);
  if (!updated.ok()) return FailedWrite(updated.status(), start);
  DeliveryResult result;
  result.duration = absl::Now() - start;
  if (!updated->has_value()) {
    result.kind = DeliveryResult::Kind::kFinal;
    result.error = "no row with this idempotency key";
    return result;
  }
  const DeliveryTable::UpdateResult& row = **updated;
  result.record_id = row.record_id;
  result.record_version = row.version;
  result.record_updated_at = row.updated_at;
  result.kind = row.updated ? DeliveryResult::Kind::kSucceeded
                            : DeliveryResult::Kind::kPreconditionFailed;
  if (!row.updated) {
    result.error = absl::StrCat("the row is at version ", row.version, ", not ",
                                known_version.value_or(""));
  }
  return result;
}

LookupResult PgTableSink::Lookup(const StoredEvent& event) {
  auto row = table_->Lookup(IdempotencyKey(event));
  if (!row.ok()) return row.status();
  if (!row->has_value()) return std::optional<DownstreamRecord>();
  const DeliveryTable::Row& r = **row;
  return std::optional<DownstreamRecord>(
      DownstreamRecord{r.record_id, absl::StrCat(r.version), r.updated_at, r.payload});
}

}  // namespace replayd
