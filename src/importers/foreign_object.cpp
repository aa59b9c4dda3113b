// Typed reads over a foreign JSON object with used-key tracking.
#include "src/importers/foreign_object.hpp"

#include <cmath>
#include <sstream>
#include <utility>

#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"

namespace moesim::importers {

std::string to_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ForeignObject::ForeignObject(nlohmann::json object, std::string file, std::string prefix)
    : object_(std::move(object)), file_(std::move(file)), prefix_(std::move(prefix)) {
  if (!object_.is_object()) {
    std::string where = prefix_;
    if (!where.empty() && where.back() == '.') where.pop_back();
    throw InputError(file_, where, "expected an object (a dict of settings), got " + describe_value(object_));
  }
}

void ForeignObject::fail(const std::string& key, const std::string& expected) const {
  throw InputError(file_, field(key), expected);
}

bool ForeignObject::has(const std::string& key) const { return object_.contains(key); }

bool ForeignObject::has_value(const std::string& key) const {
  auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

const nlohmann::json* ForeignObject::find(const std::string& key) {
  auto it = object_.find(key);
  if (it == object_.end()) return nullptr;
  used_.insert(key);
  if (auto p = poisoned_.find(key); p != poisoned_.end()) fail(key, p->second);
  return &*it;
}

const nlohmann::json* ForeignObject::raw(const std::string& key) { return find(key); }

void ForeignObject::consume(const std::string& key) {
  if (object_.contains(key)) used_.insert(key);
}

void ForeignObject::poison(const std::string& key, const std::string& why) {
  if (!object_.contains(key)) object_[key] = nullptr;
  poisoned_[key] = why;
}

std::vector<std::string> ForeignObject::unread() const {
  std::vector<std::string> out;
  for (const auto& [key, value] : object_.items())
    if (!used_.count(key)) out.push_back(prefix_ + key);
  return out;
}

std::optional<std::int64_t> ForeignObject::opt_integer(const std::string& key, std::int64_t lo, std::int64_t hi) {
  const nlohmann::json* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  const std::string expected = "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  std::int64_t x = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
      fail(key, expected + ", got " + describe_value(*v));
    x = v->get<std::int64_t>();
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9.0e15) fail(key, expected + ", got " + describe_value(*v));
    x = static_cast<std::int64_t>(d);
  } else {
    fail(key, expected + ", got " + describe_value(*v));
  }
  if (x < lo || x > hi) fail(key, expected + ", got " + describe_value(*v));
  return x;
}

std::int64_t ForeignObject::integer(const std::string& key, std::int64_t lo, std::int64_t hi) {
  if (!has_value(key)) {
    if (poisoned_.count(key)) find(key);  // throws with the reason
    fail(key, has(key) ? "expected an integer, got null" : "required setting is missing");
  }
  return *opt_integer(key, lo, hi);
}

std::optional<double> ForeignObject::opt_number(const std::string& key, double lo, double hi) {
  const nlohmann::json* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  std::ostringstream expected;
  expected << "expected a number in [" << lo << ", " << hi << "]";
  if (!v->is_number()) fail(key, expected.str() + ", got " + describe_value(*v));
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) fail(key, expected.str() + ", got " + describe_value(*v));
  return d;
}

double ForeignObject::number(const std::string& key, double lo, double hi) {
  if (!has_value(key)) {
    if (poisoned_.count(key)) find(key);
    fail(key, has(key) ? "expected a number, got null" : "required setting is missing");
  }
  return *opt_number(key, lo, hi);
}

std::optional<bool> ForeignObject::opt_boolean(const std::string& key) {
  const nlohmann::json* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (v->is_boolean()) return v->get<bool>();
  // Foreign files write booleans as 0/1 (FasterTransformer's gpt_with_moe) or as words.
  if (v->is_number_integer() && (v->get<std::int64_t>() == 0 || v->get<std::int64_t>() == 1))
    return v->get<std::int64_t>() == 1;
  if (v->is_string()) {
    const std::string& s = v->get_ref<const std::string&>();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  fail(key, "expected true or false, got " + describe_value(*v));
}

bool ForeignObject::boolean(const std::string& key) {
  if (!has_value(key)) {
    if (poisoned_.count(key)) find(key);
    fail(key, has(key) ? "expected true or false, got null" : "required setting is missing");
  }
  return *opt_boolean(key);
}

std::optional<std::string> ForeignObject::opt_string(const std::string& key) {
  const nlohmann::json* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) fail(key, "expected a string, got " + describe_value(*v));
  return v->get<std::string>();
}

std::string ForeignObject::string(const std::string& key) {
  if (!has_value(key)) {
    if (poisoned_.count(key)) find(key);
    fail(key, has(key) ? "expected a string, got null" : "required setting is missing");
  }
  return *opt_string(key);
}

}  // namespace moesim::importers
