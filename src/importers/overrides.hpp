// `--set key=value` overrides given to `moesim import`: model fields the foreign file
// lacks (fairseq's vocabulary, a sequence length) and, for Megatron scripts, shell
// variables and argument values. Every key must be used by someone, so a typo is an error.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "src/importers/import_report.hpp"

namespace moesim::importers {

class Overrides {
 public:
  Overrides() = default;
  // Each item is "key=value"; a missing '=', an empty key or a repeated key is an InputError.
  explicit Overrides(const std::vector<std::string>& items);

  bool has(const std::string& key) const { return values_.count(key) > 0; }
  // The value, marking the key used; nullptr when absent.
  const std::string* get(const std::string& key);
  // Typed reads; a bad value is an InputError naming "--set" and the key.
  std::int64_t integer(const std::string& key, std::int64_t lo, std::int64_t hi);

  const std::map<std::string, std::string>& all() const { return values_; }
  void mark_used(const std::string& key) { used_.insert(key); }
  bool used(const std::string& key) const { return used_.count(key) > 0; }
  // Fails naming the first key nobody used; `expected` says which keys would have been.
  void finish(const std::string& expected) const;

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> used_;
};

// The keys every importer accepts, applied to the model after the importer ran.
inline constexpr const char* kModelOverrideKeys = "name, vocab, seq_len, max_positions";

// Applies name, vocab, seq_len and max_positions from `set` (reported as mapped).
void apply_model_overrides(ModelSpec& model, Overrides& set, ImportReport& report);

}  // namespace moesim::importers
