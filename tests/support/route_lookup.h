// A RouteLookup for tests that route one source: `route` (not owned, it
// outlives the lookup) for `source`, nullptr for every other source.
#pragma once

#include <memory>
#include <string>

#include "server/replay/dry_run.h"

namespace replayd::testing {

inline RouteLookup OnlyRoute(std::string source, const Route* route) {
  return [source = std::move(source), route](const std::string& s) {
    return s == source ? std::shared_ptr<const Route>(std::shared_ptr<const Route>(), route)
                       : nullptr;
  };
}

}  // namespace replayd::testing
