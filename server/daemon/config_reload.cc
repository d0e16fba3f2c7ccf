#include "server/daemon/config_reload.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/common/logging.h"
#include "server/common/metrics.h"

namespace replayd {

ReloadDecision DecideReload(const Config& live, const absl::StatusOr<Config>& next) {
  ReloadDecision d;
  if (!next.ok()) {
    // LoadConfig lists its problems one per line.
    for (absl::string_view line : absl::StrSplit(next.status().message(), '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (!line.empty()) d.problems.emplace_back(line);
    }
    return d;
  }
  d.problems = Validate(*next);
  for (const ConfigChange& change : DiffConfigs(live, *next)) {
    d.changed.push_back(change.key);
    if (!change.reloadable) {
      d.problems.push_back(
          absl::StrCat(change.key, " changed: it takes effect only when replayd restarts"));
    }
  }
  return d;
}

ConfigReloader::ConfigReloader(Config live, Apply apply, Metrics* metrics, ReplayStore* audit)
    : live_(std::move(live)), apply_(std::move(apply)), metrics_(metrics), audit_(audit) {}

std::string ConfigReloader::Reload(const absl::StatusOr<Config>& next) {
  auto log = Logger("config");
  std::lock_guard lock(mu_);
  ReloadDecision decision = DecideReload(live_, next);
  if (decision.problems.empty() && !decision.changed.empty()) {
    if (absl::Status s = apply_(*next); !s.ok()) decision.problems.emplace_back(s.message());
  }
  if (!decision.problems.empty()) {
    log->error("configuration reload refused ({} problem{}); the running configuration stays:",
               decision.problems.size(), decision.problems.size() == 1 ? "" : "s");
    for (const std::string& p : decision.problems) log->error("  {}", p);
    Record("refused", decision, live_);
    return "refused";
  }
  if (decision.changed.empty()) {
    log->info("configuration reloaded: nothing changed");
    Record("unchanged", decision, live_);
    return "unchanged";
  }
  live_ = *next;
  log->info("configuration reloaded: {} routes, {} sinks; changed: {}", live_.routes.size(),
            live_.sinks.size(), absl::StrJoin(decision.changed, ", "));
  Record("applied", decision, live_);
  return "applied";
}

void ConfigReloader::Record(const std::string& result, const ReloadDecision& decision,
                            const Config& config) {
  if (metrics_ != nullptr) metrics_->CountConfigReload(result);
  if (audit_ == nullptr) return;
  nlohmann::json routes = nlohmann::json::array();
  for (const RouteConfig& r : config.routes) routes.push_back(r.name);
  nlohmann::json sinks = nlohmann::json::array();
  for (const SinkConfig& s : config.sinks) sinks.push_back(s.name);
  nlohmann::json detail = {{"changed", decision.changed},
                           {"problems", decision.problems},
                           {"routes", routes},
                           {"sinks", sinks}};
  AuditEntry entry;
  entry.actor = "sighup";
  entry.action = "config_reload";
  entry.reason = result;
  entry.detail_json = detail.dump();
  if (absl::Status s = audit_->Audit(entry); !s.ok()) {
    Logger("config")->warn("auditing the configuration reload failed: {}", s.message());
  }
}

}  // namespace replayd
