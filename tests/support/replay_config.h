// The daemon configuration of the replay e2e tests.
#pragma once

#include <string>

#include "absl/strings/str_cat.h"

namespace replayd::testing {

// Delivery off, so that published events stay pending and a replay has work;
// one sink `down` at `records_url` with a replay rate budget of 1000 events/s,
// and the route `orders` from source orders to it. `extra_yaml` follows.
inline std::string ReplayOnlyConfig(const std::string& records_url,
                                    const std::string& extra_yaml = "") {
  return absl::StrCat(R"(
delivery:
  enabled: false
sinks:
  - name: down
    url: )", records_url, R"(
    replay_rate_budget: 1000
routes:
  - name: orders
    sources: [orders]
    sink: down
)", extra_yaml);
}

}  // namespace replayd::testing
