// Named spdlog loggers, text or JSON output, and secret redaction.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

// Debian's Abseil has its own string_view type: teach fmt (and so spdlog) to
// print it, and absl::Status as its ToString().
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  auto format(absl::string_view s, fmt::format_context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  auto format(const absl::Status& s, fmt::format_context& ctx) const {
    std::string text = s.ToString();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
  }
};

namespace replayd {

enum class LogFormat { kText, kJson };

// Configures every logger: format, level ("trace".."critical"). Call once at start-up.
absl::Status SetupLogging(LogFormat format, std::string_view level);

// The logger of one subsystem ("store", "ingest", "delivery", ...), created on first use.
std::shared_ptr<spdlog::logger> Logger(const std::string& name);

// A connection string with any password replaced by "***", for logs and errors.
// Handles URLs (postgresql://user:pw@host/db, ?password=) and key=value DSNs.
std::string RedactDsn(std::string_view dsn);

}  // namespace replayd
