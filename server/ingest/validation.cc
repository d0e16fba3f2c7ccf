#include "server/ingest/validation.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/source_name.h"
#include "server/common/time_format.h"

namespace replayd {
namespace {

// Printable: no ASCII control characters (UTF-8 bytes above 0x7f are allowed).
bool Printable(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

absl::Status CheckText(const char* field, std::string_view value, size_t max) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " bytes, over the limit of ", max));
  }
  if (!Printable(value)) {
    return absl::InvalidArgumentError(absl::StrCat(field, " contains control characters"));
  }
  return absl::OkStatus();
}

}  // namespace

int JsonNestingDepth(std::string_view text, int stop_above) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > stop_above) return stop_above + 1;
        }
        break;
      case ']':
      case '}': --depth; break;
      default: break;
    }
  }
  return deepest;
}

absl::Status NestingTooDeepError(int max) {
  return absl::InvalidArgumentError(
      absl::StrCat("payload nests deeper than the maximum of ", max, " levels"));
}

absl::Status ValidateFields(const NewEvent& e, const IngestLimits& limits, absl::Time now) {
  if (e.source.empty()) return absl::InvalidArgumentError("source is empty");
  if (absl::Status s = ValidateSourceName(e.source); !s.ok()) return s;
  if (e.event_id.empty()) return absl::InvalidArgumentError("event_id is empty");
  if (absl::Status s = CheckText("event_id", e.event_id, 256); !s.ok()) return s;
  if (absl::Status s = CheckText("key", e.key, 256); !s.ok()) return s;
  if (absl::Status s = CheckText("type", e.type, 128); !s.ok()) return s;
  if (e.occurred_at) {
    if (*e.occurred_at < absl::UnixEpoch()) {
      return absl::InvalidArgumentError("occurred_at is before 1970");
    }
    if (*e.occurred_at > now + limits.max_future_skew) {
      return absl::InvalidArgumentError(
          absl::StrCat("occurred_at ", FormatRfc3339(*e.occurred_at), " is too far in the future"));
    }
  }
  if (e.payload.empty()) return absl::InvalidArgumentError("payload is empty (want JSON)");
  if (static_cast<int64_t>(e.payload.size()) > limits.max_payload_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "payload is ", e.payload.size(), " bytes, over the limit of ", limits.max_payload_bytes));
  }
  if (JsonNestingDepth(e.payload, limits.max_payload_depth) > limits.max_payload_depth) {
    return NestingTooDeepError(limits.max_payload_depth);
  }
  if (e.payload.find("\\u0000") != std::string::npos) {
    return absl::InvalidArgumentError(
        "payload contains \\u0000, which PostgreSQL jsonb cannot store");
  }
  return absl::OkStatus();
}

absl::Status ValidatePayloadJson(const NewEvent& e) {
  if (!nlohmann::json::accept(e.payload)) {
    return absl::InvalidArgumentError("payload is not valid JSON");
  }
  return absl::OkStatus();
}

absl::Status ValidateEvent(const NewEvent& e, const IngestLimits& limits, absl::Time now) {
  if (absl::Status s = ValidateFields(e, limits, now); !s.ok()) return s;
  return ValidatePayloadJson(e);
}

absl::Status ValidateBatchSize(size_t size, const IngestLimits& limits) {
  if (size == 0) return absl::InvalidArgumentError("the batch holds no events");
  if (size > static_cast<size_t>(limits.max_batch)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the batch holds ", size, " events, over the maximum of ", limits.max_batch));
  }
  return absl::OkStatus();
}

}  // namespace replayd
