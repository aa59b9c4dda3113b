// Parsing and typed reading of `--set key=value` overrides.
#include "src/importers/overrides.hpp"

#include <charconv>

#include "src/core/error.hpp"
#include "src/model/model_json.hpp"

namespace moesim::importers {
namespace {
const std::string kSource = "--set";
}  // namespace

Overrides::Overrides(const std::vector<std::string>& items) {
  for (const std::string& item : items) {
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw InputError(kSource, item, "expected key=value, got '" + item + "'");
    std::string key = item.substr(0, eq);
    if (values_.count(key)) throw InputError(kSource, key, "given twice");
    values_[key] = item.substr(eq + 1);
  }
}

const std::string* Overrides::get(const std::string& key) {
  auto it = values_.find(key);
  if (it == values_.end()) return nullptr;
  used_.insert(key);
  return &it->second;
}

std::int64_t Overrides::integer(const std::string& key, std::int64_t lo, std::int64_t hi) {
  const std::string* v = get(key);
  const std::string expected = "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (!v) throw InputError(kSource, key, expected + ", got nothing");
  std::int64_t x = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
  if (v->empty() || ec != std::errc() || end != v->data() + v->size() || x < lo || x > hi)
    throw InputError(kSource, key, expected + ", got '" + *v + "'");
  return x;
}

void Overrides::finish(const std::string& expected) const {
  for (const auto& [key, value] : values_)
    if (!used_.count(key)) throw InputError(kSource, key, "not used by this import: expected " + expected);
}

void apply_model_overrides(ModelSpec& m, Overrides& set, ImportReport& report) {
  using L = ModelLimits;
  if (const std::string* name = set.get("name")) {
    if (name->empty()) throw InputError(kSource, "name", "expected a non-empty name");
    m.name = *name;
    report.map("--set name=" + *name, "name");
  }
  if (set.has("vocab")) {
    m.vocab = set.integer("vocab", 1, L::max_vocab);
    report.map("--set vocab=" + std::to_string(m.vocab), "vocab");
  }
  if (set.has("seq_len")) {
    m.seq_len = set.integer("seq_len", 1, L::max_seq);
    report.map("--set seq_len=" + std::to_string(m.seq_len), "seq_len");
  }
  if (set.has("max_positions")) {
    m.max_positions = set.integer("max_positions", 1, L::max_seq);
    report.map("--set max_positions=" + std::to_string(m.max_positions), "max_positions");
  }
}

}  // namespace moesim::importers
