// The daemon's Prometheus metrics: one registry and its metric families,
// behind plain methods so that the code counting things never includes
// prometheus-cpp. Served as text by the HTTP port's /metrics route.
//
//   replayd_ingested_events_total{source,result}        counter  result: accepted|duplicate|rejected
//   replayd_deliveries_total{route,outcome}             counter  outcome: the event's outcome after the attempt
//   replayd_delivery_duration_seconds{route}            histogram
//   replayd_backlog_events{outcome}                     gauge    pending|retrying, polled from the log
//   replayd_replay_events_total{result}                 counter  delivered|skipped|failed
//   replayd_replay_pauses_total{cause}                  counter  cause: breaker|operator
//   replayd_replay_processed_events{replay_id}          gauge    running replays only
//   replayd_replay_planned_events{replay_id}            gauge    running replays only
//   replayd_replays{state}                              gauge    polled
//   replayd_rate_limiter_waits_total{limiter}           counter  limiter: replay|sink:<name>
//   replayd_rate_limiter_wait_seconds_total{limiter}    counter
//
// Thread safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace prometheus {
class Registry;
}

namespace replayd {

class Metrics {
 public:
  Metrics();
  ~Metrics();

  void CountIngested(const std::string& source, std::string_view result, int64_t n = 1);
  void CountDelivery(const std::string& route, std::string_view outcome, double seconds);
  void SetBacklog(int64_t pending, int64_t retrying);
  void CountReplayEvents(std::string_view result, int64_t n = 1);
  void CountReplayPause(std::string_view cause);
  // Running replays' progress; RetainReplayProgress drops every replay not in `live`.
  void SetReplayProgress(const std::string& replay_id, int64_t processed, int64_t planned);
  void RetainReplayProgress(const std::map<std::string, bool>& live);
  void SetReplayStates(const std::map<std::string, int64_t>& count_by_state);
  void CountRateLimiterWait(const std::string& limiter, double seconds);

  // The Prometheus text exposition format (version 0.0.4).
  std::string Serialize() const;

  prometheus::Registry& registry();

 private:
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> f_;
  std::mutex mu_;
  std::map<std::string, bool> replay_ids_;
};

}  // namespace replayd
