// A closed enum's spelling: one table of (value, name) pairs serves both
// directions, so a name and its parse cannot disagree.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>

namespace replayd {

template <typename E>
using NamedValue = std::pair<E, std::string_view>;

// The name of `value`; every value of the enum is in `table`.
template <typename E, size_t N>
constexpr std::string_view NameIn(const NamedValue<E> (&table)[N], E value) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return {};
}

// The value named `name` exactly, or nullopt.
template <typename E, size_t N>
constexpr std::optional<E> ParseIn(const NamedValue<E> (&table)[N], std::string_view name) {
  for (const auto& [v, n] : table) {
    if (n == name) return v;
  }
  return std::nullopt;
}

}  // namespace replayd
