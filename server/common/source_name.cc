#include "server/common/source_name.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace replayd {
namespace {

constexpr size_t kMaxSourceName = 64;
constexpr size_t kMaxEchoed = 80;

bool SourceNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

}  // namespace

bool IsValidSourceName(std::string_view name) {
  if (name.empty() || name.size() > kMaxSourceName) return false;
  for (char c : name) {
    if (!SourceNameChar(c)) return false;
  }
  return true;
}

absl::Status ValidateSourceName(std::string_view name) {
  if (IsValidSourceName(name)) return absl::OkStatus();
  std::string_view head = name.substr(0, kMaxEchoed);
  std::string echoed = absl::CHexEscape(absl::string_view(head.data(), head.size()));
  if (name.size() > kMaxEchoed) echoed += "...";
  return absl::InvalidArgumentError(
      absl::StrCat("source \"", echoed, "\" does not match [a-z0-9_.-]{1,64}"));
}

}  // namespace replayd
