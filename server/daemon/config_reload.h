// SIGHUP: the configuration read again and, when valid, applied without a
// restart. Only `sinks` and `routes` (with their retry policies) can change
// this way; a configuration that is invalid, whose sinks cannot be built, or
// that changes any other key is refused as a whole and the running one stays
// in force. Every reload is logged, counted and audited.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/config/config.h"
#include "server/store/replay_store.h"

namespace replayd {

class Metrics;

// What a reload from `live` to `next` would do: the keys it changes, and
// every reason to refuse it (empty when it may be applied).
struct ReloadDecision {
  std::vector<std::string> changed;
  std::vector<std::string> problems;
};
ReloadDecision DecideReload(const Config& live, const absl::StatusOr<Config>& next);

class ConfigReloader {
 public:
  // Makes `next` (already decided reloadable) the running configuration's
  // sinks and routes; an error refuses it with nothing changed.
  using Apply = std::function<absl::Status(const Config& next)>;

  // `live` is the configuration running now. `metrics` and `audit` (either
  // may be null) outlive this.
  ConfigReloader(Config live, Apply apply, Metrics* metrics, ReplayStore* audit);

  // Refuses, applies, or (nothing changed) leaves the configuration as it is;
  // returns the result counted: "applied", "unchanged" or "refused". Reloads
  // run one at a time; thread safe.
  std::string Reload(const absl::StatusOr<Config>& next);

 private:
  void Record(const std::string& result, const ReloadDecision& decision, const Config& config);

  std::mutex mu_;
  Config live_;  // guarded by mu_
  Apply apply_;
  Metrics* metrics_;
  ReplayStore* audit_;
};

}  // namespace replayd
