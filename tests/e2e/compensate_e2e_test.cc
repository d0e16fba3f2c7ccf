// Diff and compensate through the real replayd, replayctl and downstream: a
// window of 1,000 delivered events with 10 upstream sequence holes, of which
// the downstream then lost 40 (a restored backup) and had 25 edited, and 15
// more that it committed while the log recorded them failed (the answer to
// their only attempt was lost). The diff finds exactly those; an apply with
// the default actions creates each lost record once, records the 15 without
// a create call and leaves the edited alone; a second diff keeps only the
// edited; an overwrite sends them through the update path; a third diff
// finds the window in sync. Once for the HTTP sink and once for the
// PostgreSQL table sink. And an apply killed with kill -9 resumes and ends
// completed without creating any key twice.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "server/store/delivery_table.h"
#include "tests/support/events.h"
#include "tests/support/processes.h"
#include "tests/support/scratch_database.h"
#include "tests/support/wait.h"

namespace replayd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr int kEvents = 1000;
// The last kUnrecorded events are published while the downstream loses its
// answers: they are committed there and recorded failed.
constexpr int kUnrecorded = 15;

// Event i ("e<i>") carries upstream sequence Sequence(i): numbering from 1
// that skips one number before events 50, 150, ..., 950, ten holes.
int64_t Sequence(int i) { return i + 1 + (i + 50) / 100; }
constexpr int kHoles = 10;

std::string Key(int i) { return absl::StrCat("orders:e", i); }

// The records the downstream loses (40) and the ones edited there (25):
// disjoint, all among the events delivered first.
bool Lost(int i) { return i % 25 == 3; }
bool Edited(int i) { return i % 40 == 11; }

std::set<std::string> KeysWhere(bool (*pick)(int)) {
  std::set<std::string> keys;
  for (int i = 0; i < kEvents - kUnrecorded; ++i) {
    if (pick(i)) keys.insert(Key(i));
  }
  return keys;
}
std::set<std::string> UnrecordedKeys() {
  std::set<std::string> keys;
  for (int i = kEvents - kUnrecorded; i < kEvents; ++i) keys.insert(Key(i));
  return keys;
}

// The counts in `now` above those in `then`, per key (none where equal).
std::map<std::string, int> Minus(const std::map<std::string, int>& now,
                                 const std::map<std::string, int>& then) {
  std::map<std::string, int> out;
  for (const auto& [key, n] : now) {
    auto it = then.find(key);
    const int more = n - (it == then.end() ? 0 : it->second);
    if (more != 0) out[key] = more;
  }
  return out;
}

// Writes replayd made downstream per idempotency key: create calls (for the
// table, rows inserted) and updates.
struct Writes {
  std::map<std::string, int> creates;
  std::map<std::string, int> updates;

  // What happened since `before`.
  Writes Since(const Writes& before) const {
    return {Minus(creates, before.creates), Minus(updates, before.updates)};
  }
};

std::map<std::string, int> OncePerKey(const std::set<std::string>& keys) {
  std::map<std::string, int> out;
  for (const std::string& key : keys) out[key] = 1;
  return out;
}

// What the scenario needs of a downstream: the sink's configuration, changes
// made behind replayd's back, and the writes replayd made.
class Downstream {
 public:
  virtual ~Downstream() = default;
  // The sink `down` as a YAML flow mapping.
  virtual std::string SinkYaml() const = 0;
  // From LoseAnswers() to Answer(), every create commits downstream and
  // replayd sees it fail.
  virtual void LoseAnswers() = 0;
  virtual void Answer() = 0;
  // Forgets the records of `keys`, as a restore from an older backup would.
  virtual void Drop(const std::set<std::string>& keys) = 0;
  // Changes the records of `keys` by hand: a new version and other data.
  virtual void Edit(const std::set<std::string>& keys) = 0;
  virtual Writes Written() = 0;
};

// The downstream test server; commit_then_drop loses the answers.
class HttpDownstream final : public Downstream {
 public:
  explicit HttpDownstream(const std::string& mode = "idempotent") : server_(mode) {}

  std::string SinkYaml() const override {
    return absl::StrCat("{name: down, url: '", server_.records_url(), "', lookup_url: '",
                        server_.lookup_url(), "', update_url: '", server_.lookup_url(),
                        "', replay_rate_budget: 5000}");
  }
  void LoseAnswers() override { server_.SetFaults({{"commit_then_drop", true}}); }
  void Answer() override { server_.ClearFaults(); }
  void Drop(const std::set<std::string>& keys) override {
    server_.Drop(std::vector<std::string>(keys.begin(), keys.end()));
  }
  void Edit(const std::set<std::string>& keys) override {
    for (const std::string& key : keys) server_.Edit(key, {{"edited", true}});
  }
  Writes Written() override {
    Writes w;
    for (const json& r : server_.Requests()) ++w.creates[r["idempotency_key"].get<std::string>()];
    for (const json& u : server_.Updates()) {
      if (u["status"] == 200) ++w.updates[u["idempotency_key"].get<std::string>()];
    }
    return w;
  }
  testing::DownstreamServer& server() { return server_; }

 private:
  testing::DownstreamServer server_;
};

// A table `downstream` in the test's own database, written by the table
// sink in the log's transaction. A trigger logs every row inserted (the
// sink's insert of a key that has a row inserts none) and every update;
// while answers are lost, an insert commits its row on a connection of its
// own (dblink) and then fails.
class TableDownstream final : public Downstream {
 public:
  explicit TableDownstream(const testing::ScratchDatabase& db) : db_(db) {
    db_.Exec(DeliveryTableDdl("downstream"));
    db_.Exec("CREATE EXTENSION IF NOT EXISTS dblink");
    db_.Exec(
        "CREATE TABLE downstream_writes (seq bigserial PRIMARY KEY, idempotency_key text,"
        " op text)");
    db_.Exec("CREATE TABLE downstream_faults (lose_answers boolean NOT NULL)");
    db_.Exec("INSERT INTO downstream_faults VALUES (false)");
    db_.Exec(absl::StrCat(R"sql(
CREATE FUNCTION downstream_lose_answer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('downstream.committing', true), '') <> 'on'
     AND (SELECT lose_answers FROM downstream_faults) THEN
    PERFORM dblink_exec(')sql",
                          db_.dsn(), R"sql(', format(
      'SET downstream.committing = on; INSERT INTO downstream (idempotency_key, payload)'
      ' VALUES (%L, %L)', NEW.idempotency_key, NEW.payload));
    RAISE EXCEPTION 'the answer was lost after the commit';
  END IF;
  RETURN NEW;
END $$)sql"));
    db_.Exec(R"sql(
CREATE FUNCTION downstream_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO downstream_writes (idempotency_key, op) VALUES (NEW.idempotency_key, lower(TG_OP));
  RETURN NEW;
END $$)sql");
    db_.Exec(
        "CREATE TRIGGER downstream_lose_answer BEFORE INSERT ON downstream"
        " FOR EACH ROW EXECUTE FUNCTION downstream_lose_answer()");
    db_.Exec(
        "CREATE TRIGGER downstream_written AFTER INSERT OR UPDATE ON downstream"
        " FOR EACH ROW EXECUTE FUNCTION downstream_written()");
  }

  std::string SinkYaml() const override {
    return "{name: down, type: postgres, table: downstream, replay_rate_budget: 5000}";
  }
  void LoseAnswers() override { db_.Exec("UPDATE downstream_faults SET lose_answers = true"); }
  void Answer() override { db_.Exec("UPDATE downstream_faults SET lose_answers = false"); }
  void Drop(const std::set<std::string>& keys) override {
    db_.Exec(absl::StrCat("DELETE FROM downstream WHERE idempotency_key IN (", Quoted(keys), ")"));
  }
  void Edit(const std::set<std::string>& keys) override {
    db_.Exec(
        absl::StrCat("UPDATE downstream SET version = version + 1, updated_at = clock_timestamp(),"
                     " payload = jsonb_set(payload, '{payload,edited}', 'true')"
                     " WHERE idempotency_key IN (",
                     Quoted(keys), ")"));
  }
  Writes Written() override {
    Writes w;
    const json rows = json::parse(
        db_.QueryText("SELECT coalesce(json_agg(json_build_array(idempotency_key, op)), '[]')"
                      " FROM downstream_writes"));
    for (const json& row : rows) {
      ++(row[1] == "insert" ? w.creates : w.updates)[row[0].get<std::string>()];
    }
    return w;
  }

 private:
  static std::string Quoted(const std::set<std::string>& keys) {
    return absl::StrJoin(keys, ", ", [](std::string* out, const std::string& key) {
      absl::StrAppend(out, "'", key, "'");
    });
  }

  const testing::ScratchDatabase& db_;
};

// The daemon's configuration: live delivery with one attempt per event, so
// a lost answer is a failure at once, and replay rates high enough that the
// scenario's diffs take a second.
std::string DaemonYaml(const Downstream& downstream) {
  return absl::StrCat(R"(
delivery:
  enabled: true
  poll_interval: 20ms
sinks:
  - )",
                      downstream.SinkYaml(), R"(
routes:
  - {name: orders, sources: [orders], sink: down,
     retry: {max_attempts: 1, base_delay: 10ms, max_delay: 10ms}}
replay: {high_rate_threshold: 5000, max_rate: 5000}
)");
}

// Events `first` to `first + count - 1` of source orders with their
// upstream sequence numbers.
replay::v1::PublishRequest Events(int first, int count) {
  replay::v1::PublishRequest request = testing::NumberedBatch({.first = first, .count = count});
  for (int i = 0; i < count; ++i) request.mutable_events(i)->set_sequence(Sequence(first + i));
  return request;
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

// The last line of NDJSON output, parsed (null when there is none).
json LastLine(const std::string& out) {
  json last;
  for (const auto& line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    last = json::parse(std::string(line), nullptr, false);
  }
  return last;
}

// How many events a plan holds by class (missing_upstream: the holes).
using ClassCounts = std::map<std::string, int64_t>;

ClassCounts Counts(int64_t in_sync, int64_t missing_downstream, int64_t diverged,
                   int64_t unrecorded) {
  return {{"in_sync", in_sync},   {"missing_downstream", missing_downstream},
          {"diverged", diverged}, {"unrecorded", unrecorded},
          {"undelivered", 0},     {"missing_upstream", kHoles}};
}

// What a diff found: its plan and the counts by class.
struct Diff {
  std::string plan_id;
  ClassCounts counts;
};

testing::CommandResult Ctl(const testing::DaemonProcess& daemon,
                           const std::vector<std::string>& args) {
  return testing::RunReplayctl(args, {{"REPLAYCTL_SERVER", daemon.grpc_address()}});
}

// A diff of [from, to) to its end: its plan and counts.
void RunDiff(const testing::DaemonProcess& daemon, absl::Time from, absl::Time to, Diff* diff) {
  testing::CommandResult run = Ctl(daemon, {"diff", "--from", Rfc3339(from), "--to", Rfc3339(to),
                                            "--rate", "4000", "--watch", "-o", "json"});
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  const json last = LastLine(run.out);
  ASSERT_EQ(last["state"], "REPLAY_COMPLETED") << run.out;
  diff->plan_id = last["replay_id"];
  testing::CommandResult show = Ctl(daemon, {"compensate", "show", diff->plan_id, "-o", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  const json plan = json::parse(show.out);
  diff->counts = Counts(0, 0, 0, 0);
  for (const json& c : plan["counts"]) {
    diff->counts[c["diff_class"]] += std::stoll(c["count"].get<std::string>());
  }
  diff->counts["missing_upstream"] = std::stoll(plan["missing_upstream"].get<std::string>());
}

// The idempotency keys of the plan's entries of class `diff_class`.
std::set<std::string> EntryKeys(const testing::DaemonProcess& daemon, const std::string& plan_id,
                                const std::string& diff_class) {
  testing::CommandResult run =
      Ctl(daemon, {"compensate", "show", plan_id, "--class", diff_class, "-o", "json"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  std::set<std::string> keys;
  for (const auto& line : absl::StrSplit(run.out, '\n', absl::SkipEmpty())) {
    const json entry = json::parse(std::string(line));
    keys.insert(absl::StrCat(entry["source"].get<std::string>(), ":",
                             entry["event_id"].get<std::string>()));
  }
  return keys;
}

// Starts the apply of `plan_id` with `flags` (its rate; --watch to wait for
// its end); `progress` is the last progress printed.
void ApplyPlan(const testing::DaemonProcess& daemon, const std::string& plan_id,
               const std::vector<std::string>& flags, json* progress) {
  std::vector<std::string> args = {
      "compensate", "apply", plan_id, "--reason", "repair the downstream", "--yes", "-o", "json"};
  args.insert(args.end(), flags.begin(), flags.end());
  testing::CommandResult run = Ctl(daemon, args);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  *progress = LastLine(run.out);
}

// The scenario on one downstream, run a stage at a time: each test asks for
// the stage whose outcome it checks, and the stages before it run once.
class Scenario {
 public:
  enum class Stage {
    kNone,
    kDiverged,
    kFirstDiff,
    kDefaultApply,
    kSecondDiff,
    kOverwrite,
    kThirdDiff
  };

  explicit Scenario(const std::string& sink) {
    downstream_ = sink == "http" ? std::unique_ptr<Downstream>(std::make_unique<HttpDownstream>())
                                 : std::make_unique<TableDownstream>(db_);
    daemon_ = std::make_unique<testing::DaemonProcess>(db_.dsn(), DaemonYaml(*downstream_));
  }

  // Runs the stages up to `stage` that have not run. Fails the test (fatally)
  // when one fails, or failed for an earlier test.
  void Reach(Stage stage) {
    while (reached_ < stage) {
      ASSERT_FALSE(broken_) << "an earlier stage of this scenario failed";
      broken_ = true;
      const Stage next = static_cast<Stage>(static_cast<int>(reached_) + 1);
      Run(next);
      if (::testing::Test::HasFatalFailure()) return;
      broken_ = false;
      reached_ = next;
    }
  }

  const Diff& first_diff() const { return first_diff_; }
  const Diff& second_diff() const { return second_diff_; }
  const Diff& third_diff() const { return third_diff_; }
  const json& default_apply() const { return default_apply_; }
  const json& overwrite() const { return overwrite_; }
  const Writes& default_apply_writes() const { return default_apply_writes_; }
  const Writes& overwrite_writes() const { return overwrite_writes_; }
  const testing::DaemonProcess& daemon() const { return *daemon_; }

  int64_t Count(const std::string& where) const {
    return db_.QueryInt(absl::StrCat("SELECT count(*) FROM events WHERE ", where));
  }

 private:
  void Run(Stage stage) {
    switch (stage) {
      case Stage::kNone: return;
      case Stage::kDiverged: return Diverge();
      case Stage::kFirstDiff: return RunDiff(*daemon_, from_, to_, &first_diff_);
      case Stage::kDefaultApply:
        return Apply(first_diff_.plan_id, &default_apply_, &default_apply_writes_);
      case Stage::kSecondDiff: return RunDiff(*daemon_, from_, to_, &second_diff_);
      case Stage::kOverwrite: return Overwrite();
      case Stage::kThirdDiff: return RunDiff(*daemon_, from_, to_, &third_diff_);
    }
  }

  // Delivers the 1,000 events, the last 15 with their answers lost, then
  // changes the downstream behind replayd's back.
  void Diverge() {
    daemon_->Start();
    ASSERT_NE(daemon_->grpc_port(), 0);
    from_ = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) - 1);
    const int first_batch = kEvents - kUnrecorded;
    testing::PublishAccepted(daemon_->grpc_address(), Events(0, first_batch), {.batch = 500});
    ASSERT_TRUE(testing::PollUntil([&] { return Count("outcome = 'succeeded'") == first_batch; },
                                   absl::Seconds(60)))
        << "succeeded " << Count("outcome = 'succeeded'");
    downstream_->LoseAnswers();
    testing::PublishAccepted(daemon_->grpc_address(), Events(first_batch, kUnrecorded));
    const bool failed = testing::PollUntil(
        [&] { return Count("outcome = 'failed'") == kUnrecorded; }, absl::Seconds(60));
    downstream_->Answer();
    ASSERT_TRUE(failed) << "failed " << Count("outcome = 'failed'");
    to_ = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) + 1);
    // Every event has its record downstream, the 15 too.
    ASSERT_EQ(downstream_->Written().creates.size(), static_cast<size_t>(kEvents));
    downstream_->Drop(KeysWhere(Lost));
    downstream_->Edit(KeysWhere(Edited));
  }

  void Apply(const std::string& plan_id, json* progress, Writes* writes) {
    const Writes before = downstream_->Written();
    ApplyPlan(*daemon_, plan_id, {"--rate", "4000", "--watch"}, progress);
    *writes = downstream_->Written().Since(before);
  }

  void Overwrite() {
    testing::CommandResult set =
        Ctl(*daemon_, {"compensate", "set", second_diff_.plan_id, "--class", "diverged", "--action",
                       "overwrite", "--reason", "the upstream wins"});
    ASSERT_EQ(set.exit_code, 0) << set.err;
    Apply(second_diff_.plan_id, &overwrite_, &overwrite_writes_);
  }

  testing::ScratchDatabase db_;
  std::unique_ptr<Downstream> downstream_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
  Stage reached_ = Stage::kNone;
  bool broken_ = false;
  absl::Time from_;
  absl::Time to_;
  Diff first_diff_;
  Diff second_diff_;
  Diff third_diff_;
  json default_apply_;
  json overwrite_;
  Writes default_apply_writes_;
  Writes overwrite_writes_;
};

using Stage = Scenario::Stage;

// The tests of one sink share its scenario (the binary is one CTest entry).
class CompensateE2eTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void TearDownTestSuite() { scenarios_.clear(); }

  Scenario& At(Stage stage) {
    std::unique_ptr<Scenario>& scenario = scenarios_[GetParam()];
    if (scenario == nullptr) scenario = std::make_unique<Scenario>(GetParam());
    scenario->Reach(stage);
    return *scenario;
  }

  static std::map<std::string, std::unique_ptr<Scenario>> scenarios_;
};
std::map<std::string, std::unique_ptr<Scenario>> CompensateE2eTest::scenarios_;

TEST_P(CompensateE2eTest, TheDiffCountsEachWayTheDownstreamDivergedExactly) {
  Scenario& s = At(Stage::kFirstDiff);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(s.first_diff().counts, Counts(920, 40, 25, 15));
}

TEST_P(CompensateE2eTest, TheDiffListsExactlyTheEventsOfEachClass) {
  Scenario& s = At(Stage::kFirstDiff);
  ASSERT_FALSE(HasFatalFailure());
  const std::string& plan = s.first_diff().plan_id;
  EXPECT_EQ(EntryKeys(s.daemon(), plan, "missing_downstream"), KeysWhere(Lost));
  EXPECT_EQ(EntryKeys(s.daemon(), plan, "diverged"), KeysWhere(Edited));
  EXPECT_EQ(EntryKeys(s.daemon(), plan, "unrecorded"), UnrecordedKeys());
}

TEST_P(CompensateE2eTest, ApplyWithDefaultsCreatesEachLostRecordOnce) {
  Scenario& s = At(Stage::kDefaultApply);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(s.default_apply()["state"], "REPLAY_COMPLETED") << s.default_apply();
  EXPECT_EQ(s.default_apply_writes().creates, OncePerKey(KeysWhere(Lost)));
  EXPECT_EQ(s.default_apply()["delivered"], "55");  // 40 created, 15 recorded
  EXPECT_EQ(s.default_apply()["failed"], "0");
}

TEST_P(CompensateE2eTest, ApplyWithDefaultsRecordsTheUnrecordedWithoutACreateCall) {
  Scenario& s = At(Stage::kDefaultApply);
  ASSERT_FALSE(HasFatalFailure());
  for (const std::string& key : UnrecordedKeys()) {
    EXPECT_EQ(s.default_apply_writes().creates.count(key), 0u) << key;
  }
  // Recorded with the record the downstream committed.
  const std::string unrecorded_ids =
      absl::StrJoin(UnrecordedKeys(), ", ", [](std::string* out, const std::string& key) {
        absl::StrAppend(out, "'", key.substr(key.find(':') + 1), "'");
      });
  EXPECT_EQ(s.Count(absl::StrCat("event_id IN (", unrecorded_ids,
                                 ") AND outcome = 'already_processed' AND target_record_id <> ''")),
            kUnrecorded);
}

TEST_P(CompensateE2eTest, ApplyWithDefaultsLeavesTheEditedRecordsAlone) {
  Scenario& s = At(Stage::kDefaultApply);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_TRUE(s.default_apply_writes().updates.empty());
  for (const std::string& key : KeysWhere(Edited)) {
    EXPECT_EQ(s.default_apply_writes().creates.count(key), 0u) << key;
  }
}

TEST_P(CompensateE2eTest, ASecondDiffFindsOnlyTheKeptDiverged) {
  Scenario& s = At(Stage::kSecondDiff);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(s.second_diff().counts, Counts(975, 0, 25, 0));
  EXPECT_NE(s.second_diff().plan_id, s.first_diff().plan_id);
}

TEST_P(CompensateE2eTest, OverwriteSendsTheDivergedThroughTheUpdatePath) {
  Scenario& s = At(Stage::kOverwrite);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(s.overwrite()["state"], "REPLAY_COMPLETED") << s.overwrite();
  EXPECT_EQ(s.overwrite_writes().updates, OncePerKey(KeysWhere(Edited)));
  EXPECT_TRUE(s.overwrite_writes().creates.empty());
  EXPECT_EQ(s.overwrite()["delivered"], "25");
}

TEST_P(CompensateE2eTest, AThirdDiffFindsTheWindowInSync) {
  Scenario& s = At(Stage::kThirdDiff);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(s.third_diff().counts, Counts(kEvents, 0, 0, 0));
}

TEST_P(CompensateE2eTest, TraceShowsTheTriggerOfTheCompensation) {
  Scenario& s = At(Stage::kOverwrite);
  ASSERT_FALSE(HasFatalFailure());
  testing::CommandResult created = Ctl(s.daemon(), {"trace", "orders", "e3"});  // lost
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr(absl::StrCat("compensate:", s.first_diff().plan_id)));
  testing::CommandResult overwritten = Ctl(s.daemon(), {"trace", "orders", "e11"});  // edited
  ASSERT_EQ(overwritten.exit_code, 0) << overwritten.err;
  EXPECT_THAT(overwritten.out, HasSubstr(absl::StrCat("compensate:", s.second_diff().plan_id)));
}

// An apply at 20 events/s killed with kill -9 after its first creates: the
// restarted daemon takes the job over and ends it completed, and each lost
// record is created exactly once (this downstream does not deduplicate: a
// second create of a key would make a second record).
TEST(CompensateKillE2eTest, AnApplyKilledMidwayResumesAndCreatesEachLostRecordOnce) {
  constexpr int kDelivered = 200;
  constexpr int kLost = 100;
  testing::ScratchDatabase db;
  HttpDownstream downstream("non-idempotent");
  testing::DaemonProcess daemon(db.dsn(), DaemonYaml(downstream));
  daemon.Start();
  ASSERT_NE(daemon.grpc_port(), 0);
  const absl::Time from = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) - 1);
  testing::PublishAccepted(daemon.grpc_address(), Events(0, kDelivered));
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        return db.QueryInt("SELECT count(*) FROM events WHERE outcome = 'succeeded'") == kDelivered;
      },
      absl::Seconds(60)));
  const absl::Time to = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) + 1);
  std::set<std::string> lost;
  for (int i = 0; i < kLost; ++i) lost.insert(Key(i));
  downstream.Drop(lost);
  Diff diff;
  RunDiff(daemon, from, to, &diff);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(diff.counts["missing_downstream"], kLost);

  const Writes before = downstream.Written();
  json started;
  ApplyPlan(daemon, diff.plan_id, {"--rate", "20"}, &started);
  ASSERT_FALSE(HasFatalFailure());
  const std::string job_id = started["replay_id"];
  ASSERT_TRUE(testing::PollUntil(
      [&] { return downstream.Written().Since(before).creates.size() >= 20; }, absl::Seconds(30)));
  daemon.KillHard();
  EXPECT_LT(downstream.Written().Since(before).creates.size(), static_cast<size_t>(kLost));
  daemon.Restart();

  json progress;
  EXPECT_TRUE(testing::PollUntil(
      [&] {
        testing::CommandResult status = Ctl(daemon, {"status", job_id, "-o", "json"});
        progress = json::parse(status.out, nullptr, false);
        return progress.is_object() && progress["state"] != "REPLAY_RUNNING" &&
               progress["state"] != "REPLAY_PENDING";
      },
      absl::Seconds(90)))
      << progress;
  EXPECT_EQ(progress["state"], "REPLAY_COMPLETED") << progress;
  EXPECT_EQ(progress["failed"], "0");
  EXPECT_EQ(downstream.Written().Since(before).creates, OncePerKey(lost));
  EXPECT_EQ(downstream.server().Stats()["duplicates"], 0);
}

INSTANTIATE_TEST_SUITE_P(Sinks, CompensateE2eTest, ::testing::Values("http", "table"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace replayd
