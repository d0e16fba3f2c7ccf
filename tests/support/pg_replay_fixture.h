// The Postgres side of replays for pg tests: a scratch database with its
// pool, partitions, replay and inspection stores, a dry runner whose only
// route is route_ (source "orders"), and the one-hour window from base_.
#pragma once

#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "server/common/clock.h"
#include "server/replay/dry_run.h"
#include "server/replay/limits.h"
#include "server/store/partitions.h"
#include "server/store/pg_inspection_store.h"
#include "server/store/pg_pool.h"
#include "server/store/pg_replay_store.h"
#include "tests/support/route_lookup.h"
#include "tests/support/scratch_database.h"

namespace replayd::testing {

class PgReplayFixture : public ::testing::Test {
 protected:
  // The window [base_, base_ + 1h), validated as a request made 3 hours in.
  ReplaySpec Spec(bool verify) {
    ReplayRequestInput in;
    in.from = base_;
    in.to = base_ + absl::Hours(1);
    in.verify_downstream = verify;
    return *ValidateReplayRequest(in, config_.replay, base_ + absl::Hours(3));
  }

  DryRunner Runner() {
    return DryRunner(&store_, &holes_, &partitions_, OnlyRoute("orders", &route_), &config_,
                     &clock_);
  }

  ScratchDatabase db_;
  PgPool pool_{db_.dsn(), 4};
  Partitions partitions_{&pool_};
  PgReplayStore store_{&pool_};
  PgInspectionStore holes_{&pool_};
  // Four hours before the current hour.
  const absl::Time base_ =
      absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) / 3600 * 3600) - absl::Hours(4);
  Route route_;
  Config config_;
  FakeClock clock_{absl::Now()};
};

}  // namespace replayd::testing
