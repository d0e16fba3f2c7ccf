// downstream_server: a real HTTP downstream for replayd's e2e tests and
// benchmarks. It creates records on POST /records (idempotently by the
// Idempotency-Key header, or not), answers lookups on GET /records/{key},
// updates records on PUT /records/{key} under an If-Match version, records
// every request it sees, injects faults (error status, hang,
// commit-then-drop, latency) switched at run time over /admin/faults, and
// lets a test drop or edit records behind replayd's back.
// README.md in this folder documents the flags and endpoints.

#include <arpa/inet.h>
#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace replayd::testing {
namespace {

using json = nlohmann::json;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr char kJsonType[] = "application/json";

enum class Mode { kIdempotent, kNonIdempotent };

// Microseconds since the epoch that never go backwards: the system clock read
// once, advanced by the steady clock.
int64_t EpochMicros() {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  static const auto system_start = std::chrono::system_clock::now();
  static const auto steady_start = std::chrono::steady_clock::now();
  return duration_cast<microseconds>(system_start.time_since_epoch() +
                                     (std::chrono::steady_clock::now() - steady_start))
      .count();
}

// `micros` since the epoch as RFC 3339 UTC with microseconds.
std::string Rfc3339(int64_t micros) {
  const std::time_t seconds = static_cast<std::time_t>(micros / 1'000'000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  const size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof(text) - n, ".%06lldZ",
                static_cast<long long>(micros % 1'000'000));
  return text;
}

// Serializes without throwing on invalid UTF-8 that a client put in a header.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

void ReplyJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), kJsonType);
}

void ReplyError(httplib::Response& res, int status, std::string message) {
  ReplyJson(res, status, {{"error", std::move(message)}});
}

// The fault set posted to /admin/faults. Faults act on the create path only.
struct Faults {
  int status = 0;  // 0 = no injected status.
  std::optional<int64_t> retry_after_s;
  int64_t hang_ms = 0;
  int64_t latency_ms = 0;
  bool commit_then_drop = false;
  // Percentage of create requests the set applies to, each drawn at random;
  // none = every request.
  std::optional<int64_t> percent;
  std::optional<int64_t> count;     // Create requests left; none = no limit.
  std::optional<SteadyTime> until;  // None = until cleared.

  bool Empty() const { return status == 0 && hang_ms == 0 && latency_ms == 0 && !commit_then_drop; }
};

json FaultsToJson(const Faults& faults, SteadyTime now) {
  json out = {{"active", !faults.Empty()}};
  if (faults.Empty()) return out;
  if (faults.status != 0) out["status"] = faults.status;
  if (faults.retry_after_s) out["retry_after_s"] = *faults.retry_after_s;
  if (faults.hang_ms > 0) out["hang_ms"] = faults.hang_ms;
  if (faults.latency_ms > 0) out["latency_ms"] = faults.latency_ms;
  if (faults.commit_then_drop) out["commit_then_drop"] = true;
  if (faults.percent) out["percent"] = *faults.percent;
  if (faults.count) out["count"] = *faults.count;
  if (faults.until) {
    out["for_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(*faults.until - now).count();
  }
  return out;
}

// Reads optional integer field `name` into `out` if present; false (with
// `error` set) when it is not an integer within [min, max].
bool ReadInt(const json& body, const char* name, int64_t min, int64_t max,
             std::optional<int64_t>* out, std::string* error) {
  const auto it = body.find(name);
  if (it == body.end()) return true;
  if (!it->is_number_integer() || it->get<int64_t>() < min || it->get<int64_t>() > max) {
    *error = std::string(name) + " must be an integer in [" + std::to_string(min) + ", " +
             std::to_string(max) + "]";
    return false;
  }
  *out = it->get<int64_t>();
  return true;
}

// Parses a /admin/faults body. Unknown fields are rejected so that a typo in
// a test does not silently inject nothing.
std::optional<Faults> ParseFaults(const std::string& body, SteadyTime now, std::string* error) {
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    *error = "body must be a JSON object";
    return std::nullopt;
  }
  static const char* const kKnown[] = {"status",     "retry_after_s",    "for_ms", "hang_ms",
                                       "latency_ms", "commit_then_drop", "count",  "percent"};
  for (const auto& [name, value] : parsed.items()) {
    if (std::find(std::begin(kKnown), std::end(kKnown), name) == std::end(kKnown)) {
      *error = "unknown field: " + name;
      return std::nullopt;
    }
  }
  constexpr int64_t kMaxMs = 24 * 3600 * 1000;
  std::optional<int64_t> status, retry_after_s, for_ms, hang_ms, latency_ms, count, percent;
  if (!ReadInt(parsed, "status", 100, 599, &status, error) ||
      !ReadInt(parsed, "retry_after_s", 0, 86400, &retry_after_s, error) ||
      !ReadInt(parsed, "for_ms", 0, kMaxMs, &for_ms, error) ||
      !ReadInt(parsed, "hang_ms", 0, kMaxMs, &hang_ms, error) ||
      !ReadInt(parsed, "latency_ms", 0, kMaxMs, &latency_ms, error) ||
      !ReadInt(parsed, "count", 1, std::numeric_limits<int64_t>::max(), &count, error) ||
      !ReadInt(parsed, "percent", 1, 100, &percent, error)) {
    return std::nullopt;
  }
  Faults faults;
  faults.status = static_cast<int>(status.value_or(0));
  faults.retry_after_s = retry_after_s;
  faults.hang_ms = hang_ms.value_or(0);
  faults.latency_ms = latency_ms.value_or(0);
  faults.count = count;
  faults.percent = percent;
  if (for_ms) faults.until = now + std::chrono::milliseconds(*for_ms);
  if (const auto it = parsed.find("commit_then_drop"); it != parsed.end()) {
    if (!it->is_boolean()) {
      *error = "commit_then_drop must be a boolean";
      return std::nullopt;
    }
    faults.commit_then_drop = it->get<bool>();
  }
  if (faults.retry_after_s && faults.status == 0) {
    *error = "retry_after_s needs status";
    return std::nullopt;
  }
  if (faults.percent && faults.Empty()) {
    *error = "percent needs a fault to apply";
    return std::nullopt;
  }
  return faults;
}

// One POST /records as it arrived and how it was answered.
struct CreateRequest {
  int64_t seq = 0;
  int64_t arrival_us = 0;
  std::string key;  // The envelope's key; empty when the body was invalid.
  std::string idempotency_key;
  std::optional<int64_t> attempt;
  std::optional<std::string> replay_id;
  int status = 0;  // 0 until answered; stays 0 when the connection was dropped.
  std::string record_id;
  bool dropped = false;
};

json ToJson(const CreateRequest& request) {
  return {{"seq", request.seq},
          {"key", request.key},
          {"idempotency_key", request.idempotency_key},
          {"attempt", request.attempt ? json(*request.attempt) : json()},
          {"replay_id", request.replay_id ? json(*request.replay_id) : json()},
          {"arrival_us", request.arrival_us},
          {"status", request.status},
          {"record_id", request.record_id.empty() ? json() : json(request.record_id)},
          {"dropped", request.dropped}};
}

// One lookup or update (PUT) as it arrived and how it was answered.
struct Lookup {
  int64_t seq = 0;
  int64_t arrival_us = 0;
  std::string idempotency_key;
  int status = 0;
  std::string if_match;  // updates only; empty when absent
};

json ToJson(const Lookup& lookup) {
  json out = {{"seq", lookup.seq},
              {"idempotency_key", lookup.idempotency_key},
              {"arrival_us", lookup.arrival_us},
              {"status", lookup.status}};
  if (!lookup.if_match.empty()) out["if_match"] = lookup.if_match;
  return out;
}

// A record as the downstream holds it. `version` counts its writes (1 when
// created); `data` is the envelope's payload as last written.
struct Record {
  std::string id;
  int64_t version = 1;
  int64_t updated_us = 0;
  json data;
};

// The record as lookups, updates and the create path's answers show it.
json ToJson(const Record& record) {
  return {{"id", record.id},
          {"version", std::to_string(record.version)},
          {"updated_at", Rfc3339(record.updated_us)},
          {"data", record.data}};
}

// The strong ETag, and If-Match value, of a record's version.
std::string Etag(const Record& record) { return "\"" + std::to_string(record.version) + "\""; }

// Serializes entry by entry: a json array of a benchmark's hundreds of
// thousands of requests would cost about a kilobyte per entry.
template <typename Entries>
std::string JsonArray(const Entries& entries) {
  std::string out = "[";
  for (const auto& entry : entries) {
    if (out.size() > 1) out += ',';
    out += Dump(ToJson(entry));
  }
  out += ']';
  return out;
}

// A create request admitted by Downstream::Admit: where its log entry is and
// which faults apply to it.
struct Admission {
  uint64_t generation = 0;
  size_t index = 0;
  Faults faults;
};

struct Outcome {
  int status = 0;
  std::string record_id;
  std::optional<Record> record;  // the record created or found
};

// The downstream's records, request log and fault state. Thread safe.
class Downstream {
 public:
  Downstream(Mode mode, uint64_t seed) : mode_(mode), random_(seed) {}

  // Logs the arrival of a create request and, when the faults apply to it,
  // consumes one use of them.
  Admission Admit(CreateRequest request) {
    const SteadyTime now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    request.seq = static_cast<int64_t>(requests_.size()) + 1;
    requests_.push_back(std::move(request));
    Admission admission{generation_, requests_.size() - 1, {}};
    if (faults_.until && *faults_.until <= now) faults_ = {};
    if (faults_.Empty()) return admission;
    if (faults_.percent &&
        std::uniform_int_distribution<int64_t>(1, 100)(random_) > *faults_.percent) {
      return admission;
    }
    admission.faults = faults_;
    if (faults_.count && --*faults_.count == 0) faults_ = {};
    return admission;
  }

  // Answers an admitted request. `rejected_status` != 0 answers that status
  // without creating anything; otherwise the record is created (201) or, in
  // idempotent mode, found (409). `dropped` logs that no answer will be sent.
  // A request admitted before a reset answers 503 and leaves no trace.
  Outcome Complete(const Admission& admission, int rejected_status, bool dropped,
                   const json& data = json()) {
    std::lock_guard lock(mutex_);
    if (admission.generation != generation_) return {503, "", std::nullopt};
    CreateRequest& request = requests_[admission.index];
    Outcome outcome{rejected_status, "", std::nullopt};
    if (rejected_status == 0) outcome = CreateLocked(request.idempotency_key, data);
    request.status = dropped ? 0 : outcome.status;
    request.record_id = outcome.record_id;
    request.dropped = dropped;
    return outcome;
  }

  // Returns the first record created for `idempotency_key`.
  std::optional<Record> Find(std::string idempotency_key) {
    const int64_t arrival_us = EpochMicros();
    std::lock_guard lock(mutex_);
    const auto it = records_by_key_.find(idempotency_key);
    lookups_.push_back({static_cast<int64_t>(lookups_.size()) + 1, arrival_us,
                        std::move(idempotency_key), it == records_by_key_.end() ? 404 : 200, ""});
    if (it == records_by_key_.end()) return std::nullopt;
    return it->second;
  }

  // Overwrites the record's data, unless `if_match` (when not empty) names
  // another version than its own: 200 and the record, 404 without one, 412
  // when the version differs.
  std::pair<int, std::optional<Record>> Update(std::string idempotency_key, std::string if_match,
                                               const json& data) {
    const int64_t arrival_us = EpochMicros();
    std::lock_guard lock(mutex_);
    const auto it = records_by_key_.find(idempotency_key);
    int status = 200;
    if (it == records_by_key_.end()) {
      status = 404;
    } else if (!if_match.empty() && if_match != "*" && if_match != Etag(it->second)) {
      status = 412;
    }
    updates_.push_back({static_cast<int64_t>(updates_.size()) + 1, arrival_us,
                        std::move(idempotency_key), status, std::move(if_match)});
    if (status == 404) return {status, std::nullopt};
    if (status == 200) WriteLocked(it->second, data);
    return {status, it->second};
  }

  // Changes a record as someone downstream would: a new version, and `data`
  // when given. Nullopt when there is no record.
  std::optional<Record> Edit(const std::string& idempotency_key, const std::optional<json>& data) {
    std::lock_guard lock(mutex_);
    const auto it = records_by_key_.find(idempotency_key);
    if (it == records_by_key_.end()) return std::nullopt;
    ++edits_;
    WriteLocked(it->second, data ? *data : it->second.data);
    return it->second;
  }

  // Forgets the records of `keys` (a restore from an older backup); returns
  // how many there were.
  int64_t Drop(const std::vector<std::string>& keys) {
    std::lock_guard lock(mutex_);
    int64_t dropped = 0;
    for (const std::string& key : keys) dropped += records_by_key_.erase(key);
    dropped_ += dropped;
    return dropped;
  }

  // Sleeps for `ms` unless Stop() is called; returns false if it was.
  bool SleepUnlessStopped(int64_t ms) {
    std::unique_lock lock(mutex_);
    return !stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopped_; });
  }

  void Stop() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
    }
    stop_cv_.notify_all();
  }

  void SetFaults(Faults faults) {
    std::lock_guard lock(mutex_);
    faults_ = std::move(faults);
  }

  json FaultsJson() {
    const SteadyTime now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    if (faults_.until && *faults_.until <= now) faults_ = {};
    return FaultsToJson(faults_, now);
  }

  std::string RequestsJson() {
    std::lock_guard lock(mutex_);
    return JsonArray(requests_);
  }

  std::string LookupsJson() {
    std::lock_guard lock(mutex_);
    return JsonArray(lookups_);
  }

  std::string UpdatesJson() {
    std::lock_guard lock(mutex_);
    return JsonArray(updates_);
  }

  json StatsJson() {
    std::lock_guard lock(mutex_);
    return {{"requests", requests_.size()},
            {"records", records_},
            {"distinct_keys", records_by_key_.size()},
            {"duplicates", records_ - dropped_ - static_cast<int64_t>(records_by_key_.size())},
            {"lookups", lookups_.size()},
            {"updates", updates_.size()},
            {"edits", edits_},
            {"dropped", dropped_}};
  }

  // Forgets every record, request, lookup and fault.
  void Reset() {
    std::lock_guard lock(mutex_);
    ++generation_;
    requests_.clear();
    lookups_.clear();
    updates_.clear();
    records_by_key_.clear();
    records_ = 0;
    edits_ = 0;
    dropped_ = 0;
    faults_ = {};
  }

 private:
  Outcome CreateLocked(const std::string& idempotency_key, const json& data) {
    if (mode_ == Mode::kIdempotent) {
      const auto it = records_by_key_.find(idempotency_key);
      if (it != records_by_key_.end()) return {409, it->second.id, it->second};
    }
    Record record{"rec-" + std::to_string(++records_), 1, EpochMicros(), data};
    records_by_key_.try_emplace(idempotency_key, record);
    return {201, record.id, record};
  }

  static void WriteLocked(Record& record, const json& data) {
    ++record.version;
    record.updated_us = EpochMicros();
    record.data = data;
  }

  const Mode mode_;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopped_ = false;
  uint64_t generation_ = 0;
  std::deque<CreateRequest> requests_;
  std::deque<Lookup> lookups_;
  std::deque<Lookup> updates_;
  // First record per idempotency key; in non-idempotent mode later creates
  // of a key add records (counted as duplicates) but not entries.
  std::unordered_map<std::string, Record> records_by_key_;
  int64_t records_ = 0;
  int64_t edits_ = 0;
  int64_t dropped_ = 0;
  Faults faults_;
  std::mt19937_64 random_;  // Draws which requests a `percent` applies to.
};

// The address of `fd`'s local end, or of its peer.
std::optional<std::pair<std::string, int>> SocketAddress(int fd, bool peer) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  auto* raw = reinterpret_cast<sockaddr*>(&address);
  if ((peer ? getpeername(fd, raw, &length) : getsockname(fd, raw, &length)) != 0) {
    return std::nullopt;
  }
  char host[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return std::pair<std::string, int>(host, ntohs(in->sin_port));
  }
  if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return std::pair<std::string, int>(host, ntohs(in6->sin6_port));
  }
  return std::nullopt;
}

// Calls `visit(fd, peer_host, peer_port)` for every accepted connection on
// `local_port`. httplib 0.11 does not hand its socket to a handler, so a
// connection is found among this process's open descriptors by its addresses.
void ForEachConnection(int local_port,
                       const std::function<void(int, const std::string&, int)>& visit) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", error)) {
    const std::string name = entry.path().filename().string();
    int fd = -1;
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc()) {
      continue;
    }
    const auto local = SocketAddress(fd, /*peer=*/false);
    if (!local || local->second != local_port) continue;
    if (const auto remote = SocketAddress(fd, /*peer=*/true)) {
      visit(fd, remote->first, remote->second);
    }
  }
}

// The socket that `req` arrived on, or -1.
int ConnectionOf(const httplib::Request& req) {
  int found = -1;
  ForEachConnection(req.local_port, [&](int fd, const std::string& host, int port) {
    if (port == req.remote_port && host == req.remote_addr) {
      found = fd;
    }
  });
  return found;
}

std::optional<int64_t> ParseInt(const std::string& text) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

// A replayd envelope's key (empty when the key is null) and payload.
struct Envelope {
  std::string key;
  json payload;
};

// Checks that `body` is a replayd envelope and returns it, or nullopt with
// `error` set.
std::optional<Envelope> ParseEnvelope(const std::string& body, std::string* error) {
  const json envelope = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!envelope.is_object()) {
    *error = "body must be a JSON object";
    return std::nullopt;
  }
  static const char* const kFields[] = {"source", "event_id",    "sequence",    "key",
                                        "type",   "occurred_at", "ingested_at", "payload"};
  for (const char* field : kFields) {
    if (!envelope.contains(field)) {
      *error = std::string("envelope lacks field ") + field;
      return std::nullopt;
    }
  }
  const json& key = envelope["key"];
  return Envelope{key.is_string() ? key.get<std::string>() : key.is_null() ? "" : Dump(key),
                  envelope["payload"]};
}

void HandleCreate(Downstream& downstream, Mode mode, const httplib::Request& req,
                  httplib::Response& res) {
  CreateRequest request;
  request.arrival_us = EpochMicros();
  request.idempotency_key = req.get_header_value("Idempotency-Key");
  if (req.has_header("X-Attempt")) {
    request.attempt = ParseInt(req.get_header_value("X-Attempt"));
  }
  if (req.has_header("X-Replay-Id")) {
    request.replay_id = req.get_header_value("X-Replay-Id");
  }
  std::string invalid;
  const std::optional<Envelope> envelope = ParseEnvelope(req.body, &invalid);
  if (envelope) request.key = envelope->key;
  if (invalid.empty() && mode == Mode::kIdempotent && request.idempotency_key.empty()) {
    invalid = "missing Idempotency-Key header";
  }

  const Admission admission = downstream.Admit(std::move(request));
  const Faults& faults = admission.faults;
  if (faults.latency_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(faults.latency_ms));
  }
  if (faults.hang_ms > 0 && !downstream.SleepUnlessStopped(faults.hang_ms)) {
    downstream.Complete(admission, 503, /*dropped=*/false);
    ReplyError(res, 503, "shutting down");
    return;
  }
  if (!invalid.empty()) {
    downstream.Complete(admission, 400, /*dropped=*/false);
    ReplyError(res, 400, invalid);
    return;
  }
  if (faults.status != 0) {
    downstream.Complete(admission, faults.status, /*dropped=*/false);
    if (faults.retry_after_s) {
      res.set_header("Retry-After", std::to_string(*faults.retry_after_s));
    }
    ReplyError(res, faults.status, "injected fault");
    return;
  }
  const int connection = faults.commit_then_drop ? ConnectionOf(req) : -1;
  if (faults.commit_then_drop && connection < 0) {
    downstream.Complete(admission, 500, /*dropped=*/false);
    ReplyError(res, 500, "commit_then_drop: connection socket not found");
    return;
  }
  const Outcome outcome =
      downstream.Complete(admission, 0, /*dropped=*/connection >= 0, envelope->payload);
  if (connection >= 0 && !outcome.record_id.empty()) {
    // The record is committed; the caller sees the connection close with no
    // response at all. httplib's own write of `res` then fails and it closes
    // the socket.
    shutdown(connection, SHUT_RDWR);
    return;
  }
  if (outcome.record_id.empty()) {
    ReplyError(res, outcome.status, "reset while in flight");
    return;
  }
  res.status = outcome.status;
  res.set_header("X-Record-Id", outcome.record_id);
  json body = ToJson(*outcome.record);
  body.erase("data");
  res.set_content(Dump(body), kJsonType);
}

void HandleUpdate(Downstream& downstream, const httplib::Request& req, httplib::Response& res) {
  std::string invalid;
  const std::optional<Envelope> envelope = ParseEnvelope(req.body, &invalid);
  if (!envelope) {
    ReplyError(res, 400, invalid);
    return;
  }
  const auto [status, record] =
      downstream.Update(req.matches[1].str(), req.get_header_value("If-Match"), envelope->payload);
  if (!record) {
    ReplyError(res, status, "no record");
    return;
  }
  res.set_header("ETag", Etag(*record));
  ReplyJson(res, status, status == 200 ? ToJson(*record)
                                       : json{{"error", "version changed"},
                                              {"version", std::to_string(record->version)}});
}

// POST /admin/drop {"keys": [...]} and POST /admin/edit {"key": K, "data"?: {...}}.
void RegisterRecordAdmin(httplib::Server& server, Downstream& downstream) {
  server.Post("/admin/drop", [&downstream](const httplib::Request& req, httplib::Response& res) {
    const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    const auto keys = body.is_object() ? body.find("keys") : body.end();
    std::vector<std::string> dropping;
    if (body.is_object() && keys != body.end() && keys->is_array()) {
      for (const json& key : *keys) {
        if (key.is_string()) dropping.push_back(key.get<std::string>());
      }
    }
    if (!body.is_object() || keys == body.end() || !keys->is_array() ||
        dropping.size() != keys->size()) {
      ReplyError(res, 400, "body must be {\"keys\": [idempotency keys]}");
      return;
    }
    ReplyJson(res, 200, {{"dropped", downstream.Drop(dropping)}});
  });
  server.Post("/admin/edit", [&downstream](const httplib::Request& req, httplib::Response& res) {
    const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    const auto key = body.is_object() ? body.find("key") : body.end();
    const auto data = body.is_object() ? body.find("data") : body.end();
    if (!body.is_object() || key == body.end() || !key->is_string() ||
        (data != body.end() && !data->is_object())) {
      ReplyError(res, 400, "body must be {\"key\": idempotency key, \"data\"?: object}");
      return;
    }
    const auto record = downstream.Edit(
        key->get<std::string>(), data == body.end() ? std::nullopt : std::optional<json>(*data));
    if (!record) {
      ReplyError(res, 404, "no record");
      return;
    }
    ReplyJson(res, 200, ToJson(*record));
  });
}

void RegisterRoutes(httplib::Server& server, Downstream& downstream, Mode mode) {
  // The create path first: httplib tries the patterns in order.
  server.Post("/records", [&downstream, mode](const httplib::Request& req, httplib::Response& res) {
    HandleCreate(downstream, mode, req, res);
  });
  server.Get("/records/(.+)", [&downstream](const httplib::Request& req, httplib::Response& res) {
    if (const auto record = downstream.Find(req.matches[1].str())) {
      res.set_header("ETag", Etag(*record));
      ReplyJson(res, 200, ToJson(*record));
    } else {
      ReplyError(res, 404, "no record");
    }
  });
  server.Put("/records/(.+)", [&downstream](const httplib::Request& req, httplib::Response& res) {
    HandleUpdate(downstream, req, res);
  });
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  server.Get("/admin/faults", [&downstream](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, 200, downstream.FaultsJson());
  });
  server.Post("/admin/faults", [&downstream](const httplib::Request& req, httplib::Response& res) {
    std::string error;
    auto faults = ParseFaults(req.body, std::chrono::steady_clock::now(), &error);
    if (!faults) {
      ReplyError(res, 400, error);
      return;
    }
    downstream.SetFaults(std::move(*faults));
    ReplyJson(res, 200, downstream.FaultsJson());
  });
  server.Delete("/admin/faults", [&downstream](const httplib::Request&, httplib::Response& res) {
    downstream.SetFaults({});
    ReplyJson(res, 200, downstream.FaultsJson());
  });
  server.Get("/admin/requests", [&downstream](const httplib::Request&, httplib::Response& res) {
    res.set_content(downstream.RequestsJson(), kJsonType);
  });
  server.Get("/admin/lookups", [&downstream](const httplib::Request&, httplib::Response& res) {
    res.set_content(downstream.LookupsJson(), kJsonType);
  });
  server.Get("/admin/updates", [&downstream](const httplib::Request&, httplib::Response& res) {
    res.set_content(downstream.UpdatesJson(), kJsonType);
  });
  RegisterRecordAdmin(server, downstream);
  server.Get("/admin/stats", [&downstream](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, 200, downstream.StatsJson());
  });
  server.Post("/admin/reset", [&downstream](const httplib::Request&, httplib::Response& res) {
    downstream.Reset();
    ReplyJson(res, 200, downstream.StatsJson());
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                  std::exception_ptr) { ReplyError(res, 500, "internal error"); });
}

class HttpServer : public httplib::Server {
 public:
  // httplib 0.11 listens with a backlog of 5, so a client opening dozens of
  // connections at once would see SYN retransmits; Linux lets listen() be
  // called again to widen it.
  void WidenListenBacklog() { ::listen(svr_sock_, SOMAXCONN); }
};

// Writes `port` to `path` atomically, so a reader never sees a partial file.
bool WritePortFile(const std::string& path, int port) {
  const std::string temp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(temp, std::ios::trunc);
    out << port << "\n";
    if (!out.flush()) return false;
  }
  return std::rename(temp.c_str(), path.c_str()) == 0;
}

int Run(int argc, char** argv) {
  CLI::App app{"HTTP downstream test server for replayd e2e tests and benchmarks"};
  std::string listen = "127.0.0.1:0";
  std::string mode_name = "idempotent";
  std::string port_file;
  int threads = 32;
  std::optional<uint64_t> seed;
  app.add_option("--listen", listen, "HOST:PORT to listen on; port 0 picks one")
      ->capture_default_str();
  app.add_option("--mode", mode_name, "Whether Idempotency-Key deduplicates")
      ->check(CLI::IsMember({"idempotent", "non-idempotent"}))
      ->capture_default_str();
  app.add_option("--port-file", port_file, "Write the bound port here once listening");
  app.add_option("--threads", threads, "Worker threads; each serves one connection at a time")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--seed", seed, "Seed of the draws of a fault set's percent; default random");
  CLI11_PARSE(app, argc, argv);

  const size_t colon = listen.rfind(':');
  const std::optional<int64_t> port =
      colon == std::string::npos ? std::nullopt : ParseInt(listen.substr(colon + 1));
  if (!port || *port < 0 || *port > 65535) {
    std::cerr << "--listen must be HOST:PORT, got " << listen << "\n";
    return 2;
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const Mode mode = mode_name == "idempotent" ? Mode::kIdempotent : Mode::kNonIdempotent;

  // Signals are taken by sigwait below; block them before any thread starts
  // so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A client that goes away mid-response must not kill the server.
  signal(SIGPIPE, SIG_IGN);
  EpochMicros();

  Downstream downstream(mode, seed ? *seed : std::random_device{}());
  HttpServer server;
  server.new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  // httplib's default also sets SO_REUSEPORT, which would let a second server
  // share a fixed port instead of failing to bind.
  server.set_socket_options([](socket_t sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(1'000'000'000);
  RegisterRoutes(server, downstream, mode);

  const int bound_port = *port == 0
                             ? server.bind_to_any_port(host)
                             : (server.bind_to_port(host, *port) ? static_cast<int>(*port) : -1);
  if (bound_port <= 0) {
    std::cerr << "cannot listen on " << listen << "\n";
    return 1;
  }
  server.WidenListenBacklog();
  if (!port_file.empty() && !WritePortFile(port_file, bound_port)) {
    std::cerr << "cannot write port file " << port_file << "\n";
    return 1;
  }
  const bool ipv6 = host.find(':') != std::string::npos;
  std::cout << "listening on " << (ipv6 ? "[" + host + "]" : host) << ":" << bound_port
            << std::endl;

  std::atomic<bool> stopping = false;
  std::atomic<bool> listener_done = false;
  std::thread listener([&] {
    server.listen_after_bind();
    listener_done = true;
    // Wakes the sigwait below if the server stopped on its own.
    if (!stopping) kill(getpid(), SIGTERM);
  });
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  const bool failed = listener_done.load();
  stopping = true;
  downstream.Stop();
  while (!server.is_running() && !listener_done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  server.stop();
  // Idle keep-alive connections would otherwise hold their worker threads,
  // and so the exit, until httplib's keep-alive timeout.
  ForEachConnection(bound_port, [](int fd, const std::string&, int) { shutdown(fd, SHUT_RDWR); });
  listener.join();
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace replayd::testing

int main(int argc, char** argv) { return replayd::testing::Run(argc, argv); }
