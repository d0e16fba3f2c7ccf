// DiffClassify and the checks an apply makes before acting (StillAsDiffSaw):
// every row of the diff table in docs/design/compensate.md and its edges.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <tuple>

#include "server/delivery/http_sink.h"
#include "server/replay/diff.h"

namespace replayd {
namespace {

const absl::Time kDeliveredAt = absl::FromUnixSeconds(1'790'000'000);

StoredEvent Event(Outcome outcome, std::string version = "", std::optional<absl::Time> at = {}) {
  StoredEvent e;
  e.position = 7;
  e.ingested_at = absl::FromUnixSeconds(1'789'999'000);
  e.event.source = "orders";
  e.event.event_id = "o-7";
  e.event.payload = R"({"amount": 12, "items": ["a", "b"]})";
  e.outcome = outcome;
  e.target_record_id = "rec-7";
  e.target_version = std::move(version);
  e.target_updated_at = at;
  return e;
}

DownstreamRecord Record(std::optional<std::string> version = std::nullopt,
                        std::optional<absl::Time> at = std::nullopt,
                        std::optional<std::string> data = std::nullopt) {
  return DownstreamRecord{"rec-7", std::move(version), at, std::move(data)};
}

DiffClass ClassOf(const StoredEvent& e, const std::optional<DownstreamRecord>& r) {
  return DiffClassify(e, r).diff_class;
}

TEST(DiffClassify, DeliveredWithNoRecordIsMissingDownstream) {
  EXPECT_EQ(ClassOf(Event(Outcome::kSucceeded), std::nullopt), DiffClass::kMissingDownstream);
  EXPECT_EQ(ClassOf(Event(Outcome::kAlreadyProcessed), std::nullopt),
            DiffClass::kMissingDownstream);
}

TEST(DiffClassify, NotDeliveredWithARecordIsUnrecorded) {
  for (Outcome o : {Outcome::kFailed, Outcome::kPending, Outcome::kRetrying}) {
    EXPECT_EQ(ClassOf(Event(o), Record()), DiffClass::kUnrecorded) << OutcomeName(o);
  }
}

TEST(DiffClassify, NotDeliveredWithNoRecordIsUndelivered) {
  for (Outcome o : {Outcome::kFailed, Outcome::kPending, Outcome::kRetrying}) {
    EXPECT_EQ(ClassOf(Event(o), std::nullopt), DiffClass::kUndelivered) << OutcomeName(o);
  }
}

TEST(DiffClassify, UnrecordedIgnoresVersionAndData) {
  EXPECT_EQ(ClassOf(Event(Outcome::kFailed, "1"), Record("9", std::nullopt, R"({"x": 1})")),
            DiffClass::kUnrecorded);
}

TEST(DiffClassify, DeliveredAtTheRecordedVersionAndTimeIsInSync) {
  DiffFinding f =
      DiffClassify(Event(Outcome::kSucceeded, "1", kDeliveredAt), Record("1", kDeliveredAt));
  EXPECT_EQ(f.diff_class, DiffClass::kInSync);
  EXPECT_EQ(f.detail, "");
}

TEST(DiffClassify, AnotherVersionIsDivergedAndSaysWhich) {
  DiffFinding f =
      DiffClassify(Event(Outcome::kSucceeded, "1", kDeliveredAt), Record("3", kDeliveredAt));
  EXPECT_EQ(f.diff_class, DiffClass::kDiverged);
  EXPECT_EQ(f.detail, "version 3, recorded 1");
}

TEST(DiffClassify, AnotherUpdateTimeIsDiverged) {
  DiffFinding f = DiffClassify(Event(Outcome::kSucceeded, "", kDeliveredAt),
                               Record(std::nullopt, kDeliveredAt + absl::Seconds(5)));
  EXPECT_EQ(f.diff_class, DiffClass::kDiverged);
  EXPECT_EQ(f.detail, "updated_at 2026-09-21T14:13:25Z, recorded 2026-09-21T14:13:20Z");
}

TEST(DiffClassify, VersionAndTimeCountOnlyWhenBothSidesHaveThem) {
  // The log recorded none (a sink that answers without them).
  EXPECT_EQ(ClassOf(Event(Outcome::kSucceeded), Record("5", kDeliveredAt)), DiffClass::kInSync);
  // The downstream answers none.
  EXPECT_EQ(ClassOf(Event(Outcome::kSucceeded, "1", kDeliveredAt), Record()), DiffClass::kInSync);
}

TEST(DiffClassify, DataEqualToThePayloadAsJsonIsInSync) {
  // Other key order and spacing: compared parsed.
  EXPECT_EQ(ClassOf(Event(Outcome::kSucceeded, "1"),
                    Record("1", std::nullopt, R"({"items":["a","b"],"amount":12.0})")),
            DiffClass::kInSync);
}

TEST(DiffClassify, DataOtherThanThePayloadIsDiverged) {
  DiffFinding f = DiffClassify(Event(Outcome::kSucceeded, "1"),
                               Record("1", std::nullopt, R"({"amount": 13, "items": ["a", "b"]})"));
  EXPECT_EQ(f.diff_class, DiffClass::kDiverged);
  EXPECT_EQ(f.detail, "data differs from the payload sent");
}

TEST(DiffClassify, DataThatIsNotJsonIsDiverged) {
  EXPECT_EQ(ClassOf(Event(Outcome::kSucceeded), Record(std::nullopt, std::nullopt, "{")),
            DiffClass::kDiverged);
}

TEST(DiffClassify, ARowHoldingTheWholeEnvelopeIsInSync) {
  // The table sink's row is the envelope it was sent.
  StoredEvent e = Event(Outcome::kSucceeded, "1");
  EXPECT_EQ(ClassOf(e, Record("1", std::nullopt, EnvelopeJson(e))), DiffClass::kInSync);
}

TEST(DiffClassify, ARowWithAnEditedEnvelopeIsDiverged) {
  StoredEvent e = Event(Outcome::kSucceeded, "1");
  StoredEvent edited = e;
  edited.event.payload = R"({"amount": 99, "items": []})";
  EXPECT_EQ(ClassOf(e, Record("1", std::nullopt, EnvelopeJson(edited))), DiffClass::kDiverged);
}

TEST(DiffClassify, AVersionChangeIsReportedBeforeData) {
  EXPECT_EQ(DiffClassify(Event(Outcome::kSucceeded, "1"), Record("2", std::nullopt, "{}")).detail,
            "version 2, recorded 1");
}

TEST(DiffEntry, CarriesTheEventTheFindingAndTheRecordSeen) {
  StoredEvent e = Event(Outcome::kSucceeded, "1", kDeliveredAt);
  CompensationEntry entry = DiffEntry(e, Record("2", kDeliveredAt));
  using std::tuple;
  EXPECT_EQ(tuple(entry.position, entry.ingested_at, entry.source, entry.event_id),
            tuple(int64_t{7}, e.ingested_at, std::string("orders"), std::string("o-7")));
  EXPECT_EQ(tuple(entry.diff_class, entry.action, entry.log_outcome, entry.result),
            tuple(DiffClass::kDiverged, CompensationAction::kKeep, Outcome::kSucceeded,
                  CompensationResult::kPending));
  EXPECT_EQ(tuple(entry.downstream.id, entry.downstream.version, entry.downstream.updated_at),
            tuple(std::string("rec-7"), std::optional<std::string>("2"),
                  std::optional<absl::Time>(kDeliveredAt)));
  EXPECT_EQ(entry.detail, "version 2, recorded 1");
}

TEST(DiffEntry, ProposesTheDefaultActionOfEachClass) {
  EXPECT_EQ(DiffEntry(Event(Outcome::kSucceeded), std::nullopt).action,
            CompensationAction::kCreate);
  EXPECT_EQ(DiffEntry(Event(Outcome::kFailed), std::nullopt).action, CompensationAction::kCreate);
  EXPECT_EQ(DiffEntry(Event(Outcome::kFailed), Record()).action, CompensationAction::kRecord);
  EXPECT_EQ(DiffEntry(Event(Outcome::kSucceeded), Record()).action, CompensationAction::kNone);
  CompensationEntry missing = DiffEntry(Event(Outcome::kSucceeded), std::nullopt);
  EXPECT_EQ(missing.downstream.id, "");
  EXPECT_EQ(missing.downstream.version, std::nullopt);
}

CompensationEntry Entry(CompensationAction action, Outcome log_outcome, ObservedRecord seen = {}) {
  CompensationEntry entry;
  entry.action = action;
  entry.log_outcome = log_outcome;
  entry.downstream = std::move(seen);
  return entry;
}

TEST(StillAsDiffSaw, CreateWhileTheLogAndTheDownstreamAreUnchanged) {
  const CompensationEntry missing = Entry(CompensationAction::kCreate, Outcome::kSucceeded);
  EXPECT_TRUE(StillAsDiffSaw(missing, Event(Outcome::kAlreadyProcessed), std::nullopt));
  EXPECT_FALSE(StillAsDiffSaw(missing, Event(Outcome::kSucceeded), Record()));
  const CompensationEntry undelivered = Entry(CompensationAction::kCreate, Outcome::kFailed);
  EXPECT_TRUE(StillAsDiffSaw(undelivered, Event(Outcome::kRetrying), std::nullopt));
  // Delivered by a live retry since the diff.
  EXPECT_FALSE(StillAsDiffSaw(undelivered, Event(Outcome::kSucceeded), std::nullopt));
}

TEST(StillAsDiffSaw, RecordWhileNotDeliveredAndTheRecordIsThere) {
  const CompensationEntry unrecorded = Entry(CompensationAction::kRecord, Outcome::kFailed);
  EXPECT_TRUE(StillAsDiffSaw(unrecorded, Event(Outcome::kFailed), Record()));
  EXPECT_FALSE(StillAsDiffSaw(unrecorded, Event(Outcome::kSucceeded), Record()));
  EXPECT_FALSE(StillAsDiffSaw(unrecorded, Event(Outcome::kFailed), std::nullopt));
}

TEST(StillAsDiffSaw, OverwriteWhileTheRecordIsAtTheVersionSeen) {
  const CompensationEntry diverged =
      Entry(CompensationAction::kOverwrite, Outcome::kSucceeded, {"rec-7", "3", kDeliveredAt});
  EXPECT_TRUE(StillAsDiffSaw(diverged, Event(Outcome::kSucceeded), Record("3")));
  EXPECT_FALSE(StillAsDiffSaw(diverged, Event(Outcome::kSucceeded), Record("4")));
  EXPECT_FALSE(StillAsDiffSaw(diverged, Event(Outcome::kSucceeded), std::nullopt));
}

TEST(StillAsDiffSaw, OverwriteWithoutAVersionComparesTheUpdateTimeThenTheId) {
  const CompensationEntry timed = Entry(CompensationAction::kOverwrite, Outcome::kSucceeded,
                                        {"rec-7", std::nullopt, kDeliveredAt});
  EXPECT_TRUE(
      StillAsDiffSaw(timed, Event(Outcome::kSucceeded), Record(std::nullopt, kDeliveredAt)));
  EXPECT_FALSE(StillAsDiffSaw(timed, Event(Outcome::kSucceeded),
                              Record(std::nullopt, kDeliveredAt + absl::Seconds(1))));
  const CompensationEntry bare =
      Entry(CompensationAction::kOverwrite, Outcome::kSucceeded, {"rec-7"});
  EXPECT_TRUE(StillAsDiffSaw(bare, Event(Outcome::kSucceeded), Record()));
  EXPECT_FALSE(StillAsDiffSaw(bare, Event(Outcome::kSucceeded),
                              DownstreamRecord{"rec-8", std::nullopt, std::nullopt, std::nullopt}));
}

}  // namespace
}  // namespace replayd
