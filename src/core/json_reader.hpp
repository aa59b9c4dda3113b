// Strict reading of moesim's own JSON files: typed, range-checked fields, unknown
// keys rejected, every error an InputError naming the file and the dotted field.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/core/error.hpp"
#include "src/core/units.hpp"

namespace moesim {

// Reads a JSON file (or text) into a document; a missing file or a syntax error
// is an InputError naming the file (and the byte offset for syntax errors).
nlohmann::json read_json_file(const std::string& path);
nlohmann::json parse_json_text(std::string_view text, const std::string& source);

// Reads one JSON object. Each accessor marks its key as used; finish() rejects
// the keys nobody asked for. Integer accessors reject fractions, booleans and
// values outside [lo, hi].
class ObjectReader {
 public:
  ObjectReader(const nlohmann::json& object, std::string file, std::string path = "");

  bool has(std::string_view key) const;

  std::int64_t integer(std::string_view key, std::int64_t lo, std::int64_t hi);
  std::int64_t integer_or(std::string_view key, std::int64_t fallback, std::int64_t lo, std::int64_t hi);
  double number(std::string_view key, double lo, double hi);
  double number_or(std::string_view key, double fallback, double lo, double hi);
  // A number or null; null (and absence) give nullopt.
  std::optional<double> nullable_number(std::string_view key, double lo, double hi);
  bool boolean(std::string_view key);
  bool boolean_or(std::string_view key, bool fallback);
  std::string string(std::string_view key);
  std::string string_or(std::string_view key, std::string fallback);
  // A quantity with a unit ("80GiB"); bare numbers are rejected so units stay explicit.
  double quantity(std::string_view key, Dimension dim);

  // One of the listed names, mapped to its value.
  template <class E, std::size_t N>
  E choice(std::string_view key, const std::pair<std::string_view, E> (&options)[N]);
  template <class E, std::size_t N>
  E choice_or(std::string_view key, E fallback, const std::pair<std::string_view, E> (&options)[N]);

  ObjectReader object(std::string_view key);
  const nlohmann::json& raw(std::string_view key);  // marks the key used; caller validates

  // Fails on any key not read, naming the first one (in sorted order).
  void finish() const;

  std::string field(std::string_view key) const;  // dotted path for messages
  const std::string& file() const { return file_; }
  [[noreturn]] void fail(std::string_view key, const std::string& expected) const;

 private:
  const nlohmann::json& get(std::string_view key);

  const nlohmann::json& object_;
  std::string file_;
  std::string path_;
  std::set<std::string, std::less<>> used_;
};

// A short rendering of a JSON value for messages ("got -3", "got \"abc\"").
std::string describe_value(const nlohmann::json& value);

// The name of an enum value in a name table (as used by choice()), or "?".
template <class E, std::size_t N>
const char* name_of(E value, const std::pair<std::string_view, E> (&table)[N]) {
  for (const auto& [name, v] : table)
    if (v == value) return name.data();
  return "?";
}

template <class E, std::size_t N>
E ObjectReader::choice(std::string_view key, const std::pair<std::string_view, E> (&options)[N]) {
  const nlohmann::json& v = get(key);
  std::string expected = "expected one of ";
  for (std::size_t i = 0; i < N; ++i) expected += (i ? ", " : "") + std::string(options[i].first);
  if (!v.is_string()) fail(key, expected + ", got " + describe_value(v));
  const auto& s = v.get_ref<const std::string&>();
  for (const auto& [name, value] : options)
    if (name == s) return value;
  fail(key, expected + ", got " + describe_value(v));
}

template <class E, std::size_t N>
E ObjectReader::choice_or(std::string_view key, E fallback, const std::pair<std::string_view, E> (&options)[N]) {
  if (!has(key)) return fallback;
  return choice(key, options);
}

}  // namespace moesim
