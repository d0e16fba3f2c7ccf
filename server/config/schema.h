// The building blocks of the configuration schema. A Section<T> lists the keys
// of one YAML mapping (the struct T); each key is declared once, with its
// meaning, environment variable and flag if any, and its bounds, and its type
// and default come from the struct field it names. Reading the file, applying
// the environment and flags, validating, and the reference table all walk the
// same declarations (the schema itself is in config.cc).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "server/config/config.h"
#include "yaml-cpp/yaml.h"

namespace replayd::schema {

using Problems = std::vector<std::string>;

// How a value is named in validation messages: "sinks[0] (api): " + "retry." + key.
struct Where {
  std::string item;        // "" outside lists, "sinks[0] (api): " inside one
  std::string key_prefix;  // "" at the top, "ingest." or "retry." inside a mapping
  std::string Of(const std::string& key) const { return absl::StrCat(item, key_prefix, key); }
  // A key of the same mapping, named inside a message about another one.
  std::string Sibling(const std::string& key) const { return absl::StrCat(key_prefix, key); }
};

// "text or json", "publisher, viewer or operator".
std::string Alternatives(const std::vector<std::string>& words, const char* quote = "");
// "500ms", "60s", "10m", "24h", "7d": the largest unit that is exact.
std::string ShowDuration(absl::Duration d);
// "path.key", or "key" at the top.
std::string JoinPath(const std::string& path, const std::string& key);
// Reports keys of `node` that are not in `known`; false when `node` is not a mapping.
bool CheckKeys(const YAML::Node& node, const std::string& path, const std::vector<std::string>& known,
               Problems* problems);

// What each field type is called, how it is read, and how it is shown.
template <typename V>
struct Value;

template <>
struct Value<std::string> {
  static constexpr const char* kType = "string";
  static constexpr const char* kExpected = "a string";
  static std::string Show(const std::string& v) { return v; }
};
template <>
struct Value<bool> {
  static constexpr const char* kType = "boolean";
  static constexpr const char* kExpected = "true or false";
  static std::string Show(bool v) { return v ? "true" : "false"; }
};
// Every integer width is read and shown alike.
template <typename Int>
struct IntegerValue {
  static constexpr const char* kType = "integer";
  static constexpr const char* kExpected = "an integer";
  static std::string Show(Int v) { return absl::StrCat(v); }
};
template <>
struct Value<int> : IntegerValue<int> {};
template <>
struct Value<int64_t> : IntegerValue<int64_t> {};
template <>
struct Value<double> {
  static constexpr const char* kType = "number";
  static constexpr const char* kExpected = "a number";
  static std::string Show(double v) { return absl::StrCat(v); }
};
template <>
struct Value<std::vector<std::string>> {
  static constexpr const char* kType = "list of strings";
  static constexpr const char* kExpected = "a list of strings";
  static std::string Show(const std::vector<std::string>& v) {
    return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
  }
};
template <>
struct Value<absl::Duration> {
  static constexpr const char* kType = "duration";
  static std::string Show(absl::Duration d) { return ShowDuration(d); }
};

// Parses one value; false with `error` set ("expected an integer") on a mismatch.
template <typename V>
bool Parse(const YAML::Node& node, V* out, std::string* error) {
  try {
    *out = node.as<V>();
    return true;
  } catch (const YAML::Exception&) {
    *error = absl::StrCat("expected ", Value<V>::kExpected);
    return false;
  }
}
// Durations: "500ms", "30s", "7d"; an empty string leaves the default.
bool Parse(const YAML::Node& node, absl::Duration* out, std::string* error);

// One row of the reference table.
struct KeyDoc {
  std::string key;  // "sinks[].lookup_url"
  std::string type;
  std::string default_value;  // empty when there is none
  std::string env;
  std::string flag;
  std::vector<std::string> rules;  // "> 0", "`text` or `json`"
  std::string meaning;
};

// Renders rows as a Markdown table.
std::string Markdown(const std::vector<KeyDoc>& rows);

// One key (or nested mapping, or list) of a Section<T>.
template <typename T>
class Field {
 public:
  virtual ~Field() = default;
  virtual const std::string& name() const = 0;
  virtual void Read(const YAML::Node& node, const std::string& path, T* out, Problems* problems) const = 0;
  // Applies the key's environment variable, then its flag (from `flags`, by key).
  virtual void Override(const ConfigOverrides& /*flags*/, const std::string& /*key_prefix*/, T* /*out*/,
                        Problems* /*problems*/) const {}
  virtual void Check(const T& value, const Where& where, Problems* problems) const = 0;
  virtual void Document(const T& defaults, const std::string& prefix, std::vector<KeyDoc>* rows) const = 0;
  virtual void Flags(const std::string& /*prefix*/, std::vector<ConfigFlag>* /*flags*/) const {}
};

// A scalar or list-of-strings key, V T::*member.
template <typename T, typename V>
class Key : public Field<T> {
 public:
  Key(std::string name, V T::*member, std::string meaning)
      : name_(std::move(name)), member_(member), meaning_(std::move(meaning)) {}

  const std::string& name() const override { return name_; }

  Key& Env(std::string env) {
    env_ = std::move(env);
    return *this;
  }
  Key& Flag(std::string flag) {
    flag_ = std::move(flag);
    return *this;
  }
  // Its value never appears in a message.
  Key& Secret() {
    secret_ = true;
    rules_.push_back("secret, never logged");
    return *this;
  }
  // Checked only on values for which `applies` holds ("type `http`").
  Key& OnlyWhen(std::function<bool(const T&)> applies, std::string doc) {
    applies_ = std::move(applies);
    applies_doc_ = std::move(doc);
    return *this;
  }
  // Must not be empty; the message names the environment variable if there is one.
  Key& Required() {
    required_ = true;
    return Rule("required", [this](const T&, const V& v, const Where& w, Problems* p) {
      if (!v.empty()) return;
      p->push_back(absl::StrCat(w.Of(name_), " is empty",
                                env_.empty() ? "" : absl::StrCat(": set it in the file or ", env_)));
    });
  }
  Key& Positive() {
    return Rule("> 0", [this](const T&, const V& v, const Where& w, Problems* p) {
      if (v > V{}) return;
      if constexpr (std::is_same_v<V, absl::Duration>) {
        p->push_back(absl::StrCat(w.Of(name_), " must be positive"));
      } else {
        p->push_back(absl::StrCat(w.Of(name_), " must be greater than 0 (got ", v, ")"));
      }
    });
  }
  Key& AtLeast(V min) {
    return Rule(absl::StrCat("≥ ", Value<V>::Show(min)),
                [this, min](const T&, const V& v, const Where& w, Problems* p) {
                  if (v >= min) return;
                  p->push_back(absl::StrCat(w.Of(name_), " must be at least ", Value<V>::Show(min),
                                            " (got ", Value<V>::Show(v), ")"));
                });
  }
  Key& AtMost(V max) {
    return Rule(absl::StrCat("≤ ", Value<V>::Show(max)),
                [this, max](const T&, const V& v, const Where& w, Problems* p) {
                  if (v <= max) return;
                  p->push_back(absl::StrCat(w.Of(name_), " must be at most ", Value<V>::Show(max),
                                            " (got ", Value<V>::Show(v), ")"));
                });
  }
  // At least the sibling key `other` (or, with NotAbove, at most).
  Key& NotBelow(V T::*other, std::string other_name) {
    return Rule(absl::StrCat("≥ `", other_name, "`"),
                [this, other, other_name](const T& t, const V& v, const Where& w, Problems* p) {
                  if (v >= t.*other) return;
                  p->push_back(absl::StrCat(w.Of(name_), " must be at least ", w.Sibling(other_name)));
                });
  }
  Key& NotAbove(V T::*other, std::string other_name) {
    return Rule(absl::StrCat("≤ `", other_name, "`"),
                [this, other, other_name](const T& t, const V& v, const Where& w, Problems* p) {
                  if (v <= t.*other) return;
                  p->push_back(absl::StrCat(w.Of(name_), " must not exceed ", w.Sibling(other_name)));
                });
  }
  // Both set or both empty.
  Key& Together(V T::*other, std::string other_name) {
    return Rule(absl::StrCat("set together with `", other_name, "`"),
                [this, other, other_name](const T& t, const V& v, const Where& w, Problems* p) {
                  if (v.empty() == (t.*other).empty()) return;
                  p->push_back(absl::StrCat(w.Of(name_), " and ", w.Sibling(other_name), " go together"));
                });
  }
  // Set only when `other` is set too.
  Key& Needs(V T::*other, std::string other_name) {
    return Rule(absl::StrCat("needs `", other_name, "`"),
                [this, other, other_name](const T& t, const V& v, const Where& w, Problems* p) {
                  if (v.empty() || !(t.*other).empty()) return;
                  p->push_back(absl::StrCat(w.Of(name_), " needs ", w.Sibling(other_name)));
                });
  }
  Key& MinLength(size_t n) {
    return Rule(absl::StrCat("≥ ", n, " characters"),
                [this, n](const T&, const V& v, const Where& w, Problems* p) {
                  if (v.size() >= n) return;
                  p->push_back(absl::StrCat(w.Of(name_), " must be at least ", n, " characters"));
                });
  }
  Key& OneOf(std::vector<std::string> allowed) {
    return Rule(Alternatives(allowed, "`"), [this, allowed](const T&, const V& v, const Where& w, Problems* p) {
      for (const auto& a : allowed) {
        if (v == a) return;
      }
      p->push_back(absl::StrCat(Quoted(w, v), " must be ", Alternatives(allowed)));
    });
  }
  // `valid` decides; the message is `key "value" <problem>`. With empty_ok an
  // empty value is fine (an optional key).
  Key& Format(std::function<bool(const V&)> valid, std::string doc, std::string problem,
              bool empty_ok = false) {
    return Rule(std::move(doc), [this, valid, problem, empty_ok](const T&, const V& v, const Where& w,
                                                                   Problems* p) {
      if ((empty_ok && v.empty()) || valid(v)) return;
      p->push_back(absl::StrCat(Quoted(w, v), " ", problem));
    });
  }
  // For a list of strings: each element passes `check` (its message is used as is).
  Key& Each(std::function<absl::Status(const std::string&)> check, std::string doc) {
    return Rule(std::move(doc), [check](const T&, const V& v, const Where& w, Problems* p) {
      for (const auto& element : v) {
        if (absl::Status s = check(element); !s.ok()) p->push_back(absl::StrCat(w.item, s.message()));
      }
    });
  }

  void Read(const YAML::Node& node, const std::string& path, T* out, Problems* problems) const override {
    const YAML::Node value = node[name_];
    if (!value.IsDefined() || value.IsNull()) return;
    std::string error;
    if (!Parse(value, &(out->*member_), &error)) {
      problems->push_back(absl::StrCat(JoinPath(path, name_), ": ", error));
    }
  }

  void Override(const ConfigOverrides& flags, const std::string& key_prefix, T* out,
                Problems* problems) const override {
    if (!env_.empty()) {
      if (const char* v = std::getenv(env_.c_str()); v != nullptr && *v != '\0') Set(env_, v, out, problems);
    }
    if (flag_.empty()) return;
    if (auto it = flags.find(key_prefix + name_); it != flags.end() && !it->second.empty()) {
      Set(flag_, it->second, out, problems);
    }
  }

  void Check(const T& value, const Where& where, Problems* problems) const override {
    if (applies_ && !applies_(value)) return;
    for (const auto& check : checks_) check(value, value.*member_, where, problems);
  }

  void Document(const T& defaults, const std::string& prefix, std::vector<KeyDoc>* rows) const override {
    KeyDoc row;
    row.key = prefix + name_;
    row.type = Value<V>::kType;
    if (!required_) row.default_value = Value<V>::Show(defaults.*member_);
    row.env = env_;
    row.flag = flag_;
    if (!applies_doc_.empty()) row.rules.push_back(absl::StrCat("checked when ", applies_doc_));
    row.rules.insert(row.rules.end(), rules_.begin(), rules_.end());
    row.meaning = meaning_;
    rows->push_back(std::move(row));
  }

  void Flags(const std::string& prefix, std::vector<ConfigFlag>* flags) const override {
    if (flag_.empty()) return;
    std::string help = absl::StrCat(prefix, name_, ": ", meaning_);
    if (!rules_.empty()) absl::StrAppend(&help, " (", absl::StrJoin(rules_, "; "), ")");
    flags->push_back({flag_, prefix + name_, help});
  }

 private:
  using Check_ = std::function<void(const T&, const V&, const Where&, Problems*)>;

  Key& Rule(std::string doc, Check_ check) {
    rules_.push_back(std::move(doc));
    checks_.push_back(std::move(check));
    return *this;
  }
  std::string Quoted(const Where& w, const V& v) const {
    if (secret_) return w.Of(name_);
    return absl::StrCat(w.Of(name_), " \"", Value<V>::Show(v), "\"");
  }
  void Set(const std::string& origin, const std::string& text, T* out, Problems* problems) const {
    std::string error;
    if (!Parse(YAML::Node(text), &(out->*member_), &error)) {
      problems->push_back(absl::StrCat(origin, ": ", error));
    }
  }

  std::string name_;
  V T::*member_;
  std::string meaning_;
  std::string env_;
  std::string flag_;
  bool secret_ = false;
  bool required_ = false;
  std::function<bool(const T&)> applies_;
  std::string applies_doc_;
  std::vector<std::string> rules_;
  std::vector<Check_> checks_;
};

// A key whose YAML string names one of an enum's values.
template <typename T, typename E>
class EnumKey : public Field<T> {
 public:
  EnumKey(std::string name, E T::*member, std::vector<std::pair<std::string, E>> names, std::string meaning)
      : name_(std::move(name)), member_(member), names_(std::move(names)), meaning_(std::move(meaning)) {}

  const std::string& name() const override { return name_; }

  void Read(const YAML::Node& node, const std::string& path, T* out, Problems* problems) const override {
    const YAML::Node value = node[name_];
    if (!value.IsDefined() || value.IsNull()) return;
    std::string text;
    std::string error;
    if (!Parse(value, &text, &error)) {
      problems->push_back(absl::StrCat(JoinPath(path, name_), ": ", error));
      return;
    }
    for (const auto& [word, e] : names_) {
      if (word == text) {
        out->*member_ = e;
        return;
      }
    }
    problems->push_back(
        absl::StrCat(JoinPath(path, name_), ": \"", text, "\" must be ", Alternatives(Words())));
  }

  void Check(const T&, const Where&, Problems*) const override {}

  void Document(const T& defaults, const std::string& prefix, std::vector<KeyDoc>* rows) const override {
    KeyDoc row;
    row.key = prefix + name_;
    row.type = "string";
    for (const auto& [word, e] : names_) {
      if (e == defaults.*member_) row.default_value = word;
    }
    row.rules.push_back(Alternatives(Words(), "`"));
    row.meaning = meaning_;
    rows->push_back(std::move(row));
  }

 private:
  std::vector<std::string> Words() const {
    std::vector<std::string> words;
    for (const auto& [word, e] : names_) words.push_back(word);
    return words;
  }

  std::string name_;
  E T::*member_;
  std::vector<std::pair<std::string, E>> names_;
  std::string meaning_;
};

// The keys of one mapping, in declaration order.
template <typename T>
class Section {
 public:
  template <typename V>
  Key<T, V>& Add(std::string name, V T::*member, std::string meaning) {
    auto key = std::make_unique<Key<T, V>>(std::move(name), member, std::move(meaning));
    Key<T, V>& ref = *key;
    fields_.push_back(std::move(key));
    return ref;
  }
  template <typename E>
  void AddEnum(std::string name, E T::*member, std::vector<std::pair<std::string, E>> names,
               std::string meaning) {
    fields_.push_back(std::make_unique<EnumKey<T, E>>(std::move(name), member, std::move(names),
                                                      std::move(meaning)));
  }
  // A nested mapping ("ingest", "retry"): its keys are documented as "ingest.max_batch".
  template <typename S>
  void AddSection(std::string name, S T::*member, const Section<S>* section);
  // A list of mappings ("sinks"): its keys are documented as "sinks[].url";
  // `label` names an element in messages ("sinks[0] (api): ...").
  template <typename S>
  void AddList(std::string name, std::vector<S> T::*member, const Section<S>* section,
               std::string S::*label, std::string meaning);

  void Read(const YAML::Node& node, const std::string& path, T* out, Problems* problems) const {
    std::vector<std::string> known;
    for (const auto& f : fields_) known.push_back(f->name());
    if (!CheckKeys(node, path, known, problems)) return;
    for (const auto& f : fields_) f->Read(node, path, out, problems);
  }
  void Override(const ConfigOverrides& flags, const std::string& key_prefix, T* out, Problems* problems) const {
    for (const auto& f : fields_) f->Override(flags, key_prefix, out, problems);
  }
  void Check(const T& value, const Where& where, Problems* problems) const {
    for (const auto& f : fields_) f->Check(value, where, problems);
  }
  void Document(const T& defaults, const std::string& prefix, std::vector<KeyDoc>* rows) const {
    for (const auto& f : fields_) f->Document(defaults, prefix, rows);
  }
  void Flags(const std::string& prefix, std::vector<ConfigFlag>* flags) const {
    for (const auto& f : fields_) f->Flags(prefix, flags);
  }

 private:
  std::vector<std::unique_ptr<Field<T>>> fields_;
};

template <typename T, typename S>
class SectionKey : public Field<T> {
 public:
  SectionKey(std::string name, S T::*member, const Section<S>* section)
      : name_(std::move(name)), member_(member), section_(section) {}

  const std::string& name() const override { return name_; }
  void Read(const YAML::Node& node, const std::string& path, T* out, Problems* problems) const override {
    const YAML::Node value = node[name_];
    if (!value.IsDefined()) return;
    section_->Read(value, JoinPath(path, name_), &(out->*member_), problems);
  }
  void Override(const ConfigOverrides& flags, const std::string& key_prefix, T* out,
                Problems* problems) const override {
    section_->Override(flags, absl::StrCat(key_prefix, name_, "."), &(out->*member_), problems);
  }
  void Check(const T& value, const Where& where, Problems* problems) const override {
    section_->Check(value.*member_, Where{where.item, absl::StrCat(where.key_prefix, name_, ".")}, problems);
  }
  void Document(const T& defaults, const std::string& prefix, std::vector<KeyDoc>* rows) const override {
    section_->Document(defaults.*member_, absl::StrCat(prefix, name_, "."), rows);
  }
  void Flags(const std::string& prefix, std::vector<ConfigFlag>* flags) const override {
    section_->Flags(absl::StrCat(prefix, name_, "."), flags);
  }

 private:
  std::string name_;
  S T::*member_;
  const Section<S>* section_;
};

template <typename T, typename S>
class ListKey : public Field<T> {
 public:
  ListKey(std::string name, std::vector<S> T::*member, const Section<S>* section, std::string S::*label,
          std::string meaning)
      : name_(std::move(name)), member_(member), section_(section), label_(label), meaning_(std::move(meaning)) {}

  const std::string& name() const override { return name_; }
  void Read(const YAML::Node& node, const std::string& path, T* out, Problems* problems) const override {
    const YAML::Node value = node[name_];
    if (!value.IsDefined()) return;
    if (!value.IsSequence()) {
      problems->push_back(absl::StrCat(JoinPath(path, name_), ": expected a list"));
      return;
    }
    for (size_t i = 0; i < value.size(); ++i) {
      S element;
      section_->Read(value[i], absl::StrCat(JoinPath(path, name_), "[", i, "]"), &element, problems);
      (out->*member_).push_back(std::move(element));
    }
  }
  void Check(const T& value, const Where& where, Problems* problems) const override {
    const std::vector<S>& list = value.*member_;
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string& label = list[i].*label_;
      std::string item = absl::StrCat(where.key_prefix, name_, "[", i, "]",
                                      label.empty() ? "" : absl::StrCat(" (", label, ")"), ": ");
      section_->Check(list[i], Where{item, ""}, problems);
    }
  }
  void Document(const T&, const std::string& prefix, std::vector<KeyDoc>* rows) const override {
    KeyDoc row;
    row.key = absl::StrCat(prefix, name_, "[]");
    row.type = "list";
    row.default_value = "[]";
    row.meaning = meaning_;
    rows->push_back(std::move(row));
    section_->Document(S{}, absl::StrCat(prefix, name_, "[]."), rows);
  }

 private:
  std::string name_;
  std::vector<S> T::*member_;
  const Section<S>* section_;
  std::string S::*label_;
  std::string meaning_;
};

template <typename T>
template <typename S>
void Section<T>::AddSection(std::string name, S T::*member, const Section<S>* section) {
  fields_.push_back(std::make_unique<SectionKey<T, S>>(std::move(name), member, section));
}

template <typename T>
template <typename S>
void Section<T>::AddList(std::string name, std::vector<S> T::*member, const Section<S>* section,
                         std::string S::*label, std::string meaning) {
  fields_.push_back(
      std::make_unique<ListKey<T, S>>(std::move(name), member, section, label, std::move(meaning)));
}

}  // namespace replayd::schema
