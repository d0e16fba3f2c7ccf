#include "server/delivery/http_sink.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "server/common/await.h"
#include "server/delivery/retry_policy.h"

namespace replayd {
namespace http_sink_internal {

using json = nlohmann::json;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Response {
  std::string body;  // at most kMaxAnswerBody bytes and one more chunk
  RecordHeaders record_headers;
  std::string retry_after_header;
};

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  if (r->body.size() <= kMaxAnswerBody) r->body.append(data, size * n);
  return size * n;
}

size_t ReadHeader(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  absl::string_view line(data, size * n);
  auto colon = line.find(':');
  if (colon != absl::string_view::npos) {
    const absl::string_view name = line.substr(0, colon);
    RecordHeaders& h = r->record_headers;
    std::string* keep = absl::EqualsIgnoreCase(name, "x-record-id")     ? &h.record_id
                        : absl::EqualsIgnoreCase(name, "etag")          ? &h.etag
                        : absl::EqualsIgnoreCase(name, "last-modified") ? &h.last_modified
                        : absl::EqualsIgnoreCase(name, "retry-after")   ? &r->retry_after_header
                                                                        : nullptr;
    if (keep != nullptr) *keep = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return size * n;
}

// The record id of a 2xx answer: header first, then the body's "id".
std::string RecordIdOf(const Response& response) {
  return !response.record_headers.record_id.empty() ? response.record_headers.record_id
                                                    : RecordIdFromBody(response.body);
}

// A JSON id (string or number) as text; "" for any other value.
std::string IdText(const json& id) {
  if (id.is_string()) return id.get<std::string>();
  if (id.is_number_integer()) return absl::StrCat(id.get<int64_t>());
  if (id.is_number()) return id.dump();
  return "";
}

// Whether `text` nests arrays and objects at most `limit` deep (strings
// skipped): the JSON library recurses once per level when it writes a value
// out, so a deep answer must be refused before it is parsed.
bool NestingWithin(absl::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > limit) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

// The version an ETag names: a strong tag's text without its quotes. A weak
// tag (W/"...") cannot be a precondition (If-Match compares strongly).
std::optional<std::string> VersionFromEtag(absl::string_view etag) {
  if (etag.empty() || absl::StartsWith(etag, "W/")) return std::nullopt;
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
    etag = etag.substr(1, etag.size() - 2);
  }
  return std::string(etag);
}

std::optional<absl::Time> TimeFromHttpDate(const std::string& value) {
  absl::Time at;
  std::string err;
  if (value.empty() ||
      !absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", value, absl::UTCTimeZone(), &at, &err)) {
    return std::nullopt;
  }
  return at;
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

// One request in flight: what curl reads and writes while it runs, and whom
// to tell when it ends.
struct Transfer {
  CURL* easy = nullptr;  // back to the loop's pool once finished
  std::string body;      // empty for a lookup (GET)
  curl_slist* headers = nullptr;
  int requests = 0;  // RefuseResend's count
  char errbuf[CURL_ERROR_SIZE] = {0};
  Response response;
  absl::Time start;
  Sink::DeliverDone deliver_done;  // exactly one of the two is set
  Sink::LookupDone lookup_done;
  bool update = false;  // a PUT of update_url: its answers are classified as an update's

  ~Transfer() {
    curl_slist_free_all(headers);
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
};

// Every transfer of the sink runs on one thread, on one curl multi handle:
// its connection cache keeps connections alive between transfers, and one
// poll() serves every connection, instead of a thread and a poll per call.
// Submit() may be called from any thread, the loop's own included.
class Loop {
 public:
  // At most `max_in_flight` calls at once; the rest wait in order, and their
  // timeouts start only when they are handed to curl (curl's own connection
  // cap would start them while they wait).
  explicit Loop(int max_in_flight)
      : multi_(curl_multi_init()), max_in_flight_(static_cast<size_t>(std::max(1, max_in_flight))) {
    // Connections kept alive for reuse (curl's default follows the number of
    // handles added, which drops as transfers end).
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(max_in_flight_));
    thread_ = std::thread([this] { Run(); });
  }

  ~Loop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    curl_multi_wakeup(multi_);
    thread_.join();
    // Submitted after the loop ended: never sent.
    for (auto& t : submitted_) Finish(std::move(t), CURLE_FAILED_INIT);
    for (CURL* easy : idle_) curl_easy_cleanup(easy);
    curl_multi_cleanup(multi_);
  }

  void Submit(std::unique_ptr<Transfer> t) {
    bool first;
    {
      std::lock_guard lock(mu_);
      first = submitted_.empty();
      submitted_.push_back(std::move(t));
    }
    // The loop takes every submitted transfer when it wakes: one wake-up
    // serves the ones submitted before it looks.
    if (first && std::this_thread::get_id() != thread_.get_id()) curl_multi_wakeup(multi_);
  }

  // An easy handle to set up a transfer on (pooled: set-up allocations are
  // kept between transfers). Null when curl cannot make one.
  CURL* Handle() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        CURL* easy = idle_.back();
        idle_.pop_back();
        return easy;
      }
    }
    return curl_easy_init();
  }

 private:
  void Run() {
    std::vector<std::unique_ptr<Transfer>> batch;
    for (;;) {
      bool stopping;
      {
        std::lock_guard lock(mu_);
        batch.swap(submitted_);
        stopping = stopping_;
      }
      for (auto& t : batch) waiting_.push_back(std::move(t));
      batch.clear();
      while (!waiting_.empty() && running_.size() < max_in_flight_) {
        std::unique_ptr<Transfer> t = std::move(waiting_.front());
        waiting_.pop_front();
        t->start = absl::Now();
        if (t->easy == nullptr || curl_multi_add_handle(multi_, t->easy) != CURLM_OK) {
          Finish(std::move(t), CURLE_FAILED_INIT);
          continue;
        }
        CURL* easy = t->easy;
        running_.emplace(easy, std::move(t));
      }
      if (stopping && running_.empty() && waiting_.empty()) return;
      int still_running = 0;
      curl_multi_perform(multi_, &still_running);
      int left = 0;
      bool finished = false;
      while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL* easy = msg->easy_handle;
        const CURLcode code = msg->data.result;
        curl_multi_remove_handle(multi_, easy);
        auto done = running_.extract(easy);
        Finish(std::move(done.mapped()), code);
        finished = true;
      }
      // Callbacks above may have submitted more, or freed room for what
      // waits: look again at once.
      if (finished && !waiting_.empty()) continue;
      {
        std::lock_guard lock(mu_);
        if (!submitted_.empty()) continue;
      }
      curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
  }

  void Finish(std::unique_ptr<Transfer> t, CURLcode code);

  CURLM* const multi_;
  const size_t max_in_flight_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Transfer>> submitted_;
  std::vector<CURL*> idle_;
  bool stopping_ = false;
  // Loop thread only.
  std::deque<std::unique_ptr<Transfer>> waiting_;
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> running_;
};

// The transfer's outcome as the sinks report it.
struct CurlCall {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string error;
};

CurlCall CallOf(CURL* easy, CURLcode code, const char* errbuf) {
  CurlCall call;
  call.code = code;
  if (code == CURLE_OK) {
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &call.status);
    return call;
  }
  call.error = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(code);
  if (code == CURLE_OPERATION_TIMEDOUT) call.error = absl::StrCat("timeout: ", call.error);
  if (code == CURLE_ABORTED_BY_CALLBACK || code == CURLE_GOT_NOTHING) {
    call.error = "connection closed with no response (the downstream may have the record)";
  }
  return call;
}

// An update's answer: 412 says the record changed since the known version,
// and 409 has no meaning of its own there.
DeliveryResult::Kind ClassifyUpdateStatus(int status) {
  if (status == 412) return DeliveryResult::Kind::kPreconditionFailed;
  if (status == 409) return DeliveryResult::Kind::kFinal;
  return ClassifyHttpStatus(status);
}

DeliveryResult DeliveryResultOf(const CurlCall& call, const Response& response, absl::Time start,
                                bool update) {
  DeliveryResult result;
  result.duration = absl::Now() - start;
  if (call.code != CURLE_OK) {
    result.kind = DeliveryResult::Kind::kRetryable;
    result.error = call.error;
    return result;
  }
  result.http_status = static_cast<int>(call.status);
  result.kind = update ? ClassifyUpdateStatus(*result.http_status)
                       : ClassifyHttpStatus(*result.http_status);
  result.record_id = RecordIdOf(response);
  if (result.kind == DeliveryResult::Kind::kSucceeded ||
      result.kind == DeliveryResult::Kind::kAlreadyProcessed) {
    // The record's version, when the answer tells it; a body that does not
    // parse takes nothing away from a create that succeeded.
    if (auto record = DownstreamRecordFromAnswer(response.body, response.record_headers);
        record.ok()) {
      result.record_version = record->version;
      result.record_updated_at = record->updated_at;
    }
  }
  if (result.kind == DeliveryResult::Kind::kRetryable ||
      result.kind == DeliveryResult::Kind::kFinal ||
      result.kind == DeliveryResult::Kind::kPreconditionFailed) {
    std::string snippet = response.body.substr(0, 200);
    result.error = absl::StrCat("HTTP ", call.status, snippet.empty() ? "" : ": ", snippet);
    result.retry_after = ParseRetryAfter(response.retry_after_header, absl::Now());
  }
  return result;
}

LookupResult LookupResultOf(const CurlCall& call, const Response& response) {
  if (call.code != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("lookup failed: ", call.error));
  }
  if (call.status == 404) return std::optional<DownstreamRecord>();
  if (call.status == 200) {
    auto record = DownstreamRecordFromAnswer(response.body, response.record_headers);
    if (!record.ok()) {
      return absl::UnavailableError(absl::StrCat("lookup failed: ", record.status().message()));
    }
    return std::optional<DownstreamRecord>(*std::move(record));
  }
  return absl::UnavailableError(absl::StrCat("lookup failed: HTTP ", call.status));
}

void Loop::Finish(std::unique_ptr<Transfer> t, CURLcode code) {
  const CurlCall call = CallOf(t->easy, code, t->errbuf);
  if (t->easy != nullptr) {
    curl_easy_reset(t->easy);
    std::lock_guard lock(mu_);
    idle_.push_back(t->easy);
    t->easy = nullptr;
  }
  if (t->deliver_done) {
    t->deliver_done(DeliveryResultOf(call, t->response, t->start, t->update));
  } else {
    t->lookup_done(LookupResultOf(call, t->response));
  }
}

}  // namespace http_sink_internal

using http_sink_internal::json;
using http_sink_internal::Transfer;

std::string EnvelopeJson(const StoredEvent& event) {
  const NewEvent& e = event.event;
  return absl::StrCat(
      "{\"source\":", json(e.source).dump(),
      ",\"event_id\":", json(e.event_id).dump(-1, ' ', false, json::error_handler_t::replace),
      ",\"sequence\":", e.sequence ? absl::StrCat(*e.sequence) : "null", ",\"key\":",
      e.key.empty() ? "null" : json(e.key).dump(-1, ' ', false, json::error_handler_t::replace),
      ",\"type\":",
      e.type.empty() ? "null" : json(e.type).dump(-1, ' ', false, json::error_handler_t::replace),
      ",\"occurred_at\":", http_sink_internal::TimeOrNull(e.occurred_at),
      ",\"ingested_at\":", http_sink_internal::TimeOrNull(event.ingested_at),
      // The log holds the payload as jsonb: its text is valid JSON already.
      ",\"payload\":", e.payload.empty() ? "null" : e.payload, "}");
}

std::string RecordIdFromBody(const std::string& body) {
  if (body.empty()) return "";
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "";
  auto it = j.find("id");
  return it == j.end() ? "" : http_sink_internal::IdText(*it);
}

absl::StatusOr<DownstreamRecord> DownstreamRecordFromAnswer(const std::string& body,
                                                            const RecordHeaders& headers) {
  using http_sink_internal::IdText;
  DownstreamRecord record;
  record.id = headers.record_id;
  record.version = http_sink_internal::VersionFromEtag(headers.etag);
  record.updated_at = http_sink_internal::TimeFromHttpDate(headers.last_modified);
  if (body.size() > kMaxAnswerBody) {
    return absl::UnavailableError(
        absl::StrCat("the answer's body is larger than ", kMaxAnswerBody, " bytes"));
  }
  const bool blank = absl::StripAsciiWhitespace(body).empty();
  const json j = blank || !http_sink_internal::NestingWithin(body, kMaxAnswerNesting)
                     ? json()
                     : json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (blank || (!j.is_object() && !record.id.empty())) {
    // No body, or one beside an X-Record-Id header that says no more.
    if (record.id.empty()) record.id = "(unknown)";  // a 200 still says it exists
    return record;
  }
  if (!j.is_object()) {
    return absl::UnavailableError(absl::StrCat("the answer's body is not a JSON object (at most ",
                                               kMaxAnswerNesting, " levels deep): ",
                                               body.substr(0, 100)));
  }
  auto field = [&](const char* name) -> const json* {
    auto it = j.find(name);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto malformed = [](const char* name, const char* want) {
    return absl::UnavailableError(absl::StrCat("the answer's \"", name, "\" is not ", want));
  };
  if (const json* id = field("id"); id != nullptr && record.id.empty()) {
    record.id = IdText(*id);
    if (record.id.empty()) return malformed("id", "a string or a number");
  }
  if (record.id.empty()) record.id = "(unknown)";
  if (const json* version = field("version")) {
    if (!version->is_string() && !version->is_number_integer()) {
      return malformed("version", "a string or an integer");
    }
    record.version = IdText(*version);
  }
  if (const json* updated_at = field("updated_at")) {
    absl::Time at;
    std::string err;
    if (!updated_at->is_string() ||
        !absl::ParseTime(absl::RFC3339_full, updated_at->get<std::string>(), &at, &err)) {
      return malformed("updated_at", "an RFC 3339 time");
    }
    record.updated_at = at;
  }
  if (const json* data = field("data")) {
    if (!data->is_object()) return malformed("data", "a JSON object");
    record.data = data->dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return record;
}

absl::StatusOr<std::unique_ptr<HttpSink>> HttpSink::Create(const SinkConfig& config,
                                                           const Clock* clock) {
  http_sink_internal::GlobalInit();
  for (const std::string* url : {&config.url, &config.lookup_url, &config.update_url}) {
    if (url->empty() && url != &config.url) continue;
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
  auto security = LoadOutboundSecurity(config);
  if (!security.ok()) return security.status();
  return std::unique_ptr<HttpSink>(new HttpSink(config, *std::move(security), clock));
}

HttpSink::HttpSink(SinkConfig config, OutboundSecurity security, const Clock* clock)
    : config_(std::move(config)),
      security_(std::move(security)),
      clock_(clock),
      loop_(std::make_unique<http_sink_internal::Loop>(config_.max_in_flight)) {}

HttpSink::~HttpSink() = default;

std::unique_ptr<Transfer> HttpSink::NewTransfer(const std::string& url) const {
  auto t = std::make_unique<Transfer>();
  t->easy = loop_->Handle();
  CURL* h = t->easy;
  if (h == nullptr) return t;                     // the loop finishes it as failed
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());  // curl keeps a copy
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(config_.connect_timeout)));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(config_.timeout)));
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  // Below common server keep-alive timeouts, so an idle connection is not
  // reused just as the server closes it.
  curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, 2L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_sink_internal::WriteBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t->response);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, http_sink_internal::ReadHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t->response);
  if (!config_.tls.ca_file.empty())
    curl_easy_setopt(h, CURLOPT_CAINFO, config_.tls.ca_file.c_str());
  if (!config_.tls.cert_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, config_.tls.cert_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEY, config_.tls.key_file.c_str());
  }
  for (const std::string& header : security_.headers) {
    t->headers = curl_slist_append(t->headers, header.c_str());
  }
  return t;
}

std::string HttpSink::KeyUrl(const std::string& pattern, const StoredEvent& event) const {
  std::string key = IdempotencyKey(event);
  char* escaped = curl_easy_escape(nullptr, key.data(), static_cast<int>(key.size()));
  std::string url = absl::StrReplaceAll(pattern, {{"{idempotency_key}", escaped}});
  curl_free(escaped);
  return url;
}

std::unique_ptr<Transfer> HttpSink::EnvelopeCall(const std::string& url,
                                                 const DeliveryRequest& request,
                                                 const std::string& extra_header) const {
  const StoredEvent& event = *request.event;
  auto t = NewTransfer(url);
  t->body = EnvelopeJson(event);
  curl_slist* headers = t->headers;
  if (!extra_header.empty()) headers = curl_slist_append(headers, extra_header.c_str());
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");
  headers =
      curl_slist_append(headers, absl::StrCat("Idempotency-Key: ", IdempotencyKey(event)).c_str());
  headers = curl_slist_append(headers, absl::StrCat("X-Attempt: ", request.attempt).c_str());
  if (!request.replay_id.empty()) {
    headers = curl_slist_append(headers, absl::StrCat("X-Replay-Id: ", request.replay_id).c_str());
  }
  if (!security_.signing_keys.empty()) {
    // The same id on every attempt, so the downstream can recognise a retry.
    const std::string id = IdempotencyKey(event);
    const int64_t timestamp = absl::ToUnixSeconds(clock_->Now());
    headers = curl_slist_append(headers, absl::StrCat("webhook-id: ", id).c_str());
    headers = curl_slist_append(headers, absl::StrCat("webhook-timestamp: ", timestamp).c_str());
    headers = curl_slist_append(
        headers, absl::StrCat("webhook-signature: ",
                              WebhookSignature(security_.signing_keys, id, timestamp, t->body))
                     .c_str());
  }
  t->headers = headers;
  CURL* h = t->easy;
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->body.size()));
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, t->body.data());
  curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, http_sink_internal::RefuseResend);
  curl_easy_setopt(h, CURLOPT_PREREQDATA, &t->requests);
  return t;
}

void HttpSink::DeliverAsync(const DeliveryRequest& request, DeliverDone done) {
  auto t = EnvelopeCall(config_.url, request, "");
  t->deliver_done = std::move(done);
  loop_->Submit(std::move(t));
}

DeliveryResult HttpSink::Update(const DeliveryRequest& request,
                                const std::optional<std::string>& known_version) {
  DeliveryResult refused;
  refused.kind = DeliveryResult::Kind::kFinal;
  if (!HasUpdate()) {
    refused.error = absl::StrCat("sink ", config_.name, " has no update_url");
    return refused;
  }
  std::string if_match;
  if (known_version) {
    // An entity tag's characters only: a version read from a downstream's
    // answer must not end the header or start another.
    const bool tag = std::all_of(known_version->begin(), known_version->end(),
                                 [](char c) { return c > 0x20 && c < 0x7f && c != '"'; });
    if (!tag) {
      refused.error = "the known version cannot be sent as an entity tag in If-Match";
      return refused;
    }
    if_match = absl::StrCat("If-Match: \"", *known_version, "\"");
  }
  return Await<DeliveryResult>([&](DeliverDone done) {
    auto t = EnvelopeCall(KeyUrl(config_.update_url, *request.event), request, if_match);
    curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, "PUT");
    t->update = true;
    t->deliver_done = std::move(done);
    loop_->Submit(std::move(t));
  });
}

void HttpSink::LookupAsync(const StoredEvent& event, LookupDone done) {
  if (!HasLookup()) {
    done(absl::UnimplementedError(absl::StrCat("sink ", config_.name, " has no lookup_url")));
    return;
  }
  auto t = NewTransfer(KeyUrl(config_.lookup_url, event));
  curl_easy_setopt(t->easy, CURLOPT_HTTPGET, 1L);
  if (t->headers != nullptr) curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
  t->lookup_done = std::move(done);
  loop_->Submit(std::move(t));
}

DeliveryResult HttpSink::Deliver(const DeliveryRequest& request) {
  return Await<DeliveryResult>([&](DeliverDone done) { DeliverAsync(request, std::move(done)); });
}

LookupResult HttpSink::Lookup(const StoredEvent& event) {
  return Await<LookupResult>([&](LookupDone done) { LookupAsync(event, std::move(done)); });
}

}  // namespace replayd
