#include "server/common/logging.h"

#include <mutex>
#include <regex>

#include "absl/strings/str_cat.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace replayd {
namespace {

std::mutex& SetupMutex() {
  static std::mutex mu;
  return mu;
}

// JSON lines for log collectors; %v is escaped by spdlog only for text, so the
// message is embedded via a JSON-safe pattern flag.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            std::string esc = absl::StrCat("\\u00", absl::Hex(c, absl::kZeroPad2));
            dest.append(std::string_view(esc));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

std::unique_ptr<spdlog::formatter> MakeFormatter(LogFormat format) {
  if (format == LogFormat::kJson) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","msg":"%*"})");
    return formatter;
  }
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  { formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v"); }
  return formatter;
}

LogFormat& CurrentFormat() {
  static LogFormat format = LogFormat::kText;
  return format;
}

}  // namespace

absl::Status SetupLogging(LogFormat format, std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level \"", std::string(level),
                     "\" (trace, debug, info, warn, error, critical)"));
  }
  std::lock_guard lock(SetupMutex());
  CurrentFormat() = format;
  spdlog::set_level(parsed);
  spdlog::apply_all([&](std::shared_ptr<spdlog::logger> l) {
    l->set_formatter(MakeFormatter(format));
    l->set_level(parsed);
  });
  return absl::OkStatus();
}

std::shared_ptr<spdlog::logger> Logger(const std::string& name) {
  std::lock_guard lock(SetupMutex());
  if (auto existing = spdlog::get(name)) return existing;
  auto logger =
      std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_formatter(MakeFormatter(CurrentFormat()));
  logger->set_level(spdlog::get_level());
  spdlog::register_logger(logger);
  return logger;
}

std::string RedactDsn(std::string_view dsn) {
  static const std::regex kUrlPassword(R"(^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?]*):[^@/?]*@)");
  static const std::regex kParamPassword(R"(((?:^|[?&\s])password\s*=\s*)('[^']*'|[^&\s]*))",
                                         std::regex::icase);
  std::string out = std::regex_replace(std::string(dsn), kUrlPassword, "$1:***@");
  return std::regex_replace(out, kParamPassword, "$1***");
}

}  // namespace replayd
