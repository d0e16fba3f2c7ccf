#include "server/config/schema.h"

#include <set>

#include "absl/strings/str_replace.h"
#include "server/common/time_format.h"

namespace replayd::schema {

std::string Alternatives(const std::vector<std::string>& words, const char* quote) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += i + 1 == words.size() ? " or " : ", ";
    absl::StrAppend(&out, quote, words[i], quote);
  }
  return out;
}

std::string ShowDuration(absl::Duration d) {
  // The largest exact unit, but "24h" and "60s" rather than "1d" and "1m".
  struct Unit {
    absl::Duration size;
    const char* suffix;
  };
  static const Unit kUnits[] = {{absl::Hours(24), "d"}, {absl::Hours(1), "h"}, {absl::Minutes(1), "m"},
                                {absl::Seconds(1), "s"}, {absl::Milliseconds(1), "ms"}};
  if (d == absl::ZeroDuration()) return "0s";
  for (const Unit& unit : kUnits) {
    absl::Duration rest;
    int64_t n = absl::IDivDuration(d, unit.size, &rest);
    bool whole_larger_unit = n == 1 && unit.size > absl::Seconds(1);
    if (rest == absl::ZeroDuration() && !whole_larger_unit) return absl::StrCat(n, unit.suffix);
  }
  return absl::FormatDuration(d);
}

std::string JoinPath(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

bool CheckKeys(const YAML::Node& node, const std::string& path, const std::vector<std::string>& known,
               Problems* problems) {
  if (!node.IsMap()) {
    problems->push_back(absl::StrCat(path, path.empty() ? "" : ": ", "expected a mapping"));
    return false;
  }
  std::set<std::string> names(known.begin(), known.end());
  for (const auto& item : node) {
    // YAML allows a mapping or a sequence as a key ("? [a, b]: 1"); as<> would throw.
    if (item.first.IsMap() || item.first.IsSequence()) {
      problems->push_back(absl::StrCat(path, path.empty() ? "" : ": ", "a key must be a name, not a ",
                                       item.first.IsMap() ? "mapping" : "sequence"));
      continue;
    }
    auto key = item.first.as<std::string>();
    if (!names.count(key)) {
      problems->push_back(absl::StrCat(path, path.empty() ? "" : ": ", "unknown key \"", key, "\""));
    }
  }
  return true;
}

bool Parse(const YAML::Node& node, absl::Duration* out, std::string* error) {
  std::string text;
  if (!Parse(node, &text, error)) return false;
  if (text.empty()) return true;
  auto d = ParseDurationArg(text);
  if (!d.ok()) {
    *error = std::string(d.status().message());
    return false;
  }
  *out = *d;
  return true;
}

namespace {

std::string Cell(const std::string& text) { return absl::StrReplaceAll(text, {{"|", "\\|"}}); }

std::string Code(const std::string& text) { return text.empty() ? "" : absl::StrCat("`", text, "`"); }

}  // namespace

std::string Markdown(const std::vector<KeyDoc>& rows) {
  std::string out =
      "| key | type | default | env, flag | rules | meaning |\n"
      "|---|---|---|---|---|---|\n";
  for (const KeyDoc& row : rows) {
    std::vector<std::string> origins;
    if (!row.env.empty()) origins.push_back(Code(row.env));
    if (!row.flag.empty()) origins.push_back(Code(row.flag));
    std::string default_value = row.default_value.empty() ? "—" : Code(row.default_value);
    absl::StrAppend(&out, "| ", Code(row.key), " | ", row.type, " | ", Cell(default_value), " | ",
                    absl::StrJoin(origins, ", "), " | ", Cell(absl::StrJoin(row.rules, "; ")), " | ",
                    Cell(row.meaning), " |\n");
  }
  return out;
}

}  // namespace replayd::schema
