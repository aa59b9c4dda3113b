// Strict JSON object reader used by every moesim spec loader.
#include "src/core/json_reader.hpp"

#include <cmath>
#include <fstream>
#include <sstream>

namespace moesim {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "", "cannot open the file for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(path, "", "cannot read the file");
  return parse_json_text(ss.str(), path);
}

nlohmann::json parse_json_text(std::string_view text, const std::string& source) {
  try {
    // No exceptions from the callback, no comments: plain JSON only.
    return nlohmann::json::parse(text.begin(), text.end(), nullptr, true, false);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(source, "", "not valid JSON (syntax error at byte " + std::to_string(e.byte) + ")");
  } catch (const nlohmann::json::exception&) {
    // e.g. out_of_range 406: a number literal beyond double's range ("1e+3000").
    throw InputError(source, "", "not valid JSON (a number is out of range)");
  }
}

std::string describe_value(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  const char* kind = v.is_null() ? "null" : v.is_boolean() ? "a boolean" : v.is_string() ? "a string"
                     : v.is_array() ? "an array" : v.is_object() ? "an object" : "a number";
  if (v.is_number()) return s;
  return std::string(kind) + " " + s;
}

ObjectReader::ObjectReader(const nlohmann::json& object, std::string file, std::string path)
    : object_(object), file_(std::move(file)), path_(std::move(path)) {
  if (!object_.is_object())
    throw InputError(file_, path_, "expected a JSON object, got " + describe_value(object_));
}

std::string ObjectReader::field(std::string_view key) const {
  // An empty key ("": 1 is valid JSON) must still show as a field in messages.
  std::string k = key.empty() ? std::string("\"\"") : std::string(key);
  return path_.empty() ? k : path_ + "." + k;
}

void ObjectReader::fail(std::string_view key, const std::string& expected) const {
  throw InputError(file_, field(key), expected);
}

bool ObjectReader::has(std::string_view key) const { return object_.contains(key); }

const nlohmann::json& ObjectReader::get(std::string_view key) {
  auto it = object_.find(key);
  if (it == object_.end()) fail(key, "required field is missing");
  used_.emplace(key);
  return *it;
}

const nlohmann::json& ObjectReader::raw(std::string_view key) { return get(key); }

std::int64_t ObjectReader::integer(std::string_view key, std::int64_t lo, std::int64_t hi) {
  const nlohmann::json& v = get(key);
  std::string expected = "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  std::int64_t x = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
      fail(key, expected + ", got " + describe_value(v));
    x = v.get<std::int64_t>();
  } else if (v.is_number_float()) {
    double d = v.get<double>();
    // 2e8-style integral doubles are accepted; fractions are not.
    if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9.0e15)
      fail(key, expected + ", got " + describe_value(v));
    x = static_cast<std::int64_t>(d);
  } else {
    fail(key, expected + ", got " + describe_value(v));
  }
  if (x < lo || x > hi) fail(key, expected + ", got " + describe_value(v));
  return x;
}

std::int64_t ObjectReader::integer_or(std::string_view key, std::int64_t fallback, std::int64_t lo, std::int64_t hi) {
  return has(key) ? integer(key, lo, hi) : fallback;
}

double ObjectReader::number(std::string_view key, double lo, double hi) {
  const nlohmann::json& v = get(key);
  std::ostringstream expected;
  expected << "expected a number in [" << lo << ", " << hi << "]";
  if (!v.is_number()) fail(key, expected.str() + ", got " + describe_value(v));
  double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) fail(key, expected.str() + ", got " + describe_value(v));
  return d;
}

double ObjectReader::number_or(std::string_view key, double fallback, double lo, double hi) {
  return has(key) ? number(key, lo, hi) : fallback;
}

std::optional<double> ObjectReader::nullable_number(std::string_view key, double lo, double hi) {
  if (!has(key)) return std::nullopt;
  if (object_.at(key).is_null()) {
    used_.emplace(key);
    return std::nullopt;
  }
  return number(key, lo, hi);
}

bool ObjectReader::boolean(std::string_view key) {
  const nlohmann::json& v = get(key);
  if (!v.is_boolean()) fail(key, "expected true or false, got " + describe_value(v));
  return v.get<bool>();
}

bool ObjectReader::boolean_or(std::string_view key, bool fallback) { return has(key) ? boolean(key) : fallback; }

std::string ObjectReader::string(std::string_view key) {
  const nlohmann::json& v = get(key);
  if (!v.is_string()) fail(key, "expected a string, got " + describe_value(v));
  return v.get<std::string>();
}

std::string ObjectReader::string_or(std::string_view key, std::string fallback) {
  return has(key) ? string(key) : std::move(fallback);
}

double ObjectReader::quantity(std::string_view key, Dimension dim) {
  const nlohmann::json& v = get(key);
  std::string expected = "expected " + std::string(unit_example(dim));
  if (!v.is_string()) fail(key, expected + ", got " + describe_value(v));
  auto q = parse_quantity(v.get_ref<const std::string&>(), dim);
  if (!q) fail(key, expected + ", got " + describe_value(v));
  return *q;
}

ObjectReader ObjectReader::object(std::string_view key) {
  const nlohmann::json& v = get(key);
  if (!v.is_object()) fail(key, "expected a JSON object, got " + describe_value(v));
  return ObjectReader(v, file_, field(key));
}

void ObjectReader::finish() const {
  for (const auto& [key, value] : object_.items()) {
    if (!used_.contains(key)) throw InputError(file_, field(key), "unknown field");
  }
}

}  // namespace moesim
