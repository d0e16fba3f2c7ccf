#include "server/delivery/http_sink.h"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "server/delivery/retry_policy.h"

namespace replayd {
namespace {

using json = nlohmann::json;

std::atomic<uint64_t> next_sink_id{1};

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// One easy handle per (thread, sink): curl keeps the connection alive between
// calls of the same thread.
struct HandleDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
CURL* ThreadHandle(uint64_t sink_id) {
  thread_local std::unordered_map<uint64_t, std::unique_ptr<CURL, HandleDeleter>> handles;
  auto& h = handles[sink_id];
  if (h == nullptr) {
    h.reset(curl_easy_init());
  } else {
    curl_easy_reset(h.get());  // keeps the connection cache
  }
  return h.get();
}

struct Response {
  std::string body;
  std::string record_id_header;
  std::string retry_after_header;
};

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  if (r->body.size() < (1 << 20)) r->body.append(data, size * n);
  return size * n;
}

size_t ReadHeader(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    if (name == "x-record-id") r->record_id_header = value;
    if (name == "retry-after") r->retry_after_header = value;
  }
  return size * n;
}

std::string TimeOrNull(const std::optional<absl::Time>& t) {
  return t ? json(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", *t, absl::UTCTimeZone())).dump()
           : "null";
}

// Called by curl before it sends a request on a connection. The first call
// sends the create call; a second one within the same transfer would be
// curl's silent re-send on a fresh connection after a reused one died
// without an answer, and the downstream may have committed the first. It is
// refused (CURLE_ABORTED_BY_CALLBACK), and the next attempt goes through
// check-then-act instead. The body itself is handed over with
// CURLOPT_POSTFIELDS, so headers and body leave in one send.
int RefuseResend(void* user, char* /*remote_ip*/, char* /*local_ip*/, int /*remote_port*/,
                 int /*local_port*/) {
  int* requests = static_cast<int*>(user);
  return ++*requests == 1 ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

struct CurlCall {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string error;
  Response response;
};

// Performs the request set up on `h`.
CurlCall Perform(CURL* h, const SinkConfig& config) {
  CurlCall call;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(config.connect_timeout)));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(config.timeout)));
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  // Below common server keep-alive timeouts, so an idle connection is not
  // reused just as the server closes it.
  curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, 2L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &call.response);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, ReadHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &call.response);
  call.code = curl_easy_perform(h);
  if (call.code == CURLE_OK) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &call.status);
  } else {
    call.error = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(call.code);
    if (call.code == CURLE_OPERATION_TIMEDOUT) call.error = absl::StrCat("timeout: ", call.error);
    if (call.code == CURLE_ABORTED_BY_CALLBACK || call.code == CURLE_GOT_NOTHING) {
      call.error = "connection closed with no response (the downstream may have the record)";
    }
  }
  return call;
}

}  // namespace

std::string EnvelopeJson(const StoredEvent& event) {
  const NewEvent& e = event.event;
  return absl::StrCat(
      "{\"source\":", json(e.source).dump(), ",\"event_id\":",
      json(e.event_id).dump(-1, ' ', false, json::error_handler_t::replace),
      ",\"sequence\":", e.sequence ? absl::StrCat(*e.sequence) : "null",
      ",\"key\":", e.key.empty() ? "null" : json(e.key).dump(-1, ' ', false, json::error_handler_t::replace),
      ",\"type\":", e.type.empty() ? "null" : json(e.type).dump(-1, ' ', false, json::error_handler_t::replace),
      ",\"occurred_at\":", TimeOrNull(e.occurred_at),
      ",\"ingested_at\":", TimeOrNull(event.ingested_at),
      // The log holds the payload as jsonb: its text is valid JSON already.
      ",\"payload\":", e.payload.empty() ? "null" : e.payload, "}");
}

std::string RecordIdFromBody(const std::string& body) {
  if (body.empty()) return "";
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "";
  auto it = j.find("id");
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return absl::StrCat(it->get<int64_t>());
  if (it->is_number()) return it->dump();
  return "";
}

absl::StatusOr<std::unique_ptr<HttpSink>> HttpSink::Create(const SinkConfig& config) {
  GlobalInit();
  for (const std::string* url : {&config.url, &config.lookup_url}) {
    if (url->empty() && url == &config.lookup_url) continue;
    CURLU* u = curl_url();
    CURLUcode rc = curl_url_set(u, CURLUPART_URL,
                                absl::StrReplaceAll(*url, {{"{idempotency_key}", "k"}}).c_str(), 0);
    char* scheme = nullptr;
    if (rc == CURLUE_OK) curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    bool ok = rc == CURLUE_OK && scheme != nullptr &&
              (std::strcmp(scheme, "http") == 0 || std::strcmp(scheme, "https") == 0);
    curl_free(scheme);
    curl_url_cleanup(u);
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("sink ", config.name, ": \"", *url, "\" is not a valid http(s) URL"));
    }
  }
  return std::unique_ptr<HttpSink>(new HttpSink(config));
}

HttpSink::HttpSink(SinkConfig config) : config_(std::move(config)), id_(next_sink_id++) {}

HttpSink::~HttpSink() = default;

DeliveryResult HttpSink::Deliver(const DeliveryRequest& request) {
  absl::Time start = absl::Now();
  const StoredEvent& event = *request.event;
  CURL* h = ThreadHandle(id_);
  std::string body = EnvelopeJson(event);
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");
  headers = curl_slist_append(headers, absl::StrCat("Idempotency-Key: ", IdempotencyKey(event)).c_str());
  headers = curl_slist_append(headers, absl::StrCat("X-Attempt: ", request.attempt).c_str());
  if (!request.replay_id.empty()) {
    headers = curl_slist_append(headers, absl::StrCat("X-Replay-Id: ", request.replay_id).c_str());
  }
  curl_easy_setopt(h, CURLOPT_URL, config_.url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
  int requests = 0;
  curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, RefuseResend);
  curl_easy_setopt(h, CURLOPT_PREREQDATA, &requests);
  CurlCall call = Perform(h, config_);
  curl_slist_free_all(headers);

  DeliveryResult result;
  result.duration = absl::Now() - start;
  if (call.code != CURLE_OK) {
    result.kind = DeliveryResult::Kind::kRetryable;
    result.error = call.error;
    return result;
  }
  result.http_status = static_cast<int>(call.status);
  result.kind = ClassifyHttpStatus(result.http_status.value());
  result.record_id = !call.response.record_id_header.empty()
                         ? call.response.record_id_header
                         : RecordIdFromBody(call.response.body);
  if (result.kind == DeliveryResult::Kind::kRetryable ||
      result.kind == DeliveryResult::Kind::kFinal) {
    std::string snippet = call.response.body.substr(0, 200);
    result.error = absl::StrCat("HTTP ", call.status, snippet.empty() ? "" : ": ", snippet);
    result.retry_after = ParseRetryAfter(call.response.retry_after_header, absl::Now());
  }
  return result;
}

absl::StatusOr<std::optional<std::string>> HttpSink::Lookup(const StoredEvent& event) {
  if (!HasLookup()) {
    return absl::UnimplementedError(absl::StrCat("sink ", config_.name, " has no lookup_url"));
  }
  CURL* h = ThreadHandle(id_);
  std::string key = IdempotencyKey(event);
  char* escaped = curl_easy_escape(h, key.data(), static_cast<int>(key.size()));
  std::string url = absl::StrReplaceAll(config_.lookup_url, {{"{idempotency_key}", escaped}});
  curl_free(escaped);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  CurlCall call = Perform(h, config_);
  if (call.code != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("lookup failed: ", call.error));
  }
  if (call.status == 404) return std::optional<std::string>();
  if (call.status == 200) {
    std::string id = !call.response.record_id_header.empty()
                         ? call.response.record_id_header
                         : RecordIdFromBody(call.response.body);
    // A 200 without an id still says the record exists.
    return std::optional<std::string>(id.empty() ? "(unknown)" : id);
  }
  return absl::UnavailableError(absl::StrCat("lookup failed: HTTP ", call.status));
}

}  // namespace replayd
