// Lenient reading of one object from a foreign file (a HF config.json, a fairseq cfg
// dict, Megatron arguments, an INI section turned into JSON): typed, range-checked
// reads that name the file and the field on error, but unknown keys are only listed
// (ignored()) for the import report, never fatal, unlike moesim's own ObjectReader.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moesim::importers {

// A foreign value as text for messages and the report; bytes that are not UTF-8 (a
// foreign file may hold any) become U+FFFD instead of failing.
std::string to_text(const nlohmann::json& value);

class ForeignObject {
 public:
  // `prefix` is prepended to field names in messages ("gpt." -> "gpt.head_num").
  ForeignObject(nlohmann::json object, std::string file, std::string prefix = "");

  // Present (a null value counts as present).
  bool has(const std::string& key) const;
  // Present and not null.
  bool has_value(const std::string& key) const;

  // Required values: missing or null is an error.
  std::int64_t integer(const std::string& key, std::int64_t lo, std::int64_t hi);
  double number(const std::string& key, double lo, double hi);
  bool boolean(const std::string& key);
  std::string string(const std::string& key);

  // Optional values: absent or null give nullopt.
  std::optional<std::int64_t> opt_integer(const std::string& key, std::int64_t lo, std::int64_t hi);
  std::optional<double> opt_number(const std::string& key, double lo, double hi);
  std::optional<bool> opt_boolean(const std::string& key);
  std::optional<std::string> opt_string(const std::string& key);

  // The raw value (marks it used); nullptr when absent.
  const nlohmann::json* raw(const std::string& key);
  // Marks a key as read without using its value (it is then not listed as ignored).
  void consume(const std::string& key);

  // A key whose value could not be known (an unresolved shell variable): reading it
  // fails with `why` instead of the value.
  void poison(const std::string& key, const std::string& why);

  // Keys nobody read, in sorted order.
  std::vector<std::string> unread() const;

  std::string field(const std::string& key) const { return prefix_ + key; }
  const std::string& file() const { return file_; }
  [[noreturn]] void fail(const std::string& key, const std::string& expected) const;

 private:
  const nlohmann::json* find(const std::string& key);

  nlohmann::json object_;
  std::string file_;
  std::string prefix_;
  std::set<std::string> used_;
  std::map<std::string, std::string> poisoned_;
};

}  // namespace moesim::importers
