// MoE layer patterns: regularity detection and a tiny list-expression evaluator.
#include "src/importers/layer_pattern.hpp"

#include <cstdint>
#include <variant>

#include "src/core/error.hpp"

namespace moesim::importers {

MoeLayers moe_layers_from_pattern(const std::vector<bool>& is_moe) {
  std::vector<int> idx;
  for (std::size_t i = 0; i < is_moe.size(); ++i)
    if (is_moe[i]) idx.push_back(static_cast<int>(i));
  MoeLayers out;
  if (idx.size() < 2) {
    out.list = idx;
    return out;
  }
  const int every = idx[1] - idx[0];
  bool regular = true;
  for (std::size_t i = 1; i < idx.size(); ++i) regular = regular && idx[i] - idx[i - 1] == every;
  // Regular only if the stride would not name another layer after the last MoE one.
  regular = regular && idx.back() + every >= static_cast<int>(is_moe.size());
  if (regular) {
    out.every = every;
    out.offset = idx[0];
  } else {
    out.list = idx;
  }
  return out;
}

namespace {

// A value of the expression language: an integer or a list of integers.
using Value = std::variant<std::int64_t, std::vector<std::int64_t>>;

constexpr int kMaxDepth = 64;
constexpr std::int64_t kMaxInt = INT64_C(1) << 20;

class ListExpr {
 public:
  ListExpr(std::string_view s, std::size_t max_len, const std::string& file, const std::string& field)
      : s_(s), max_len_(max_len), file_(file), field_(field) {}

  Value parse() {
    Value v = sum(0);
    skip();
    if (pos_ < s_.size()) fail("unexpected text");
    return v;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(file_, field_,
                     "expected a layer list expression like ([0]+[1]*23): " + what + " at character " + std::to_string(pos_));
  }

 private:
  void skip() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool eat(char c) {
    skip();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Value sum(int depth) {
    Value v = product(depth);
    while (eat('+')) v = add(v, product(depth));
    return v;
  }

  Value product(int depth) {
    Value v = atom(depth);
    while (eat('*')) v = mul(v, atom(depth));
    return v;
  }

  Value atom(int depth) {
    if (depth > kMaxDepth) fail("nesting too deep");
    skip();
    if (pos_ >= s_.size()) fail("unexpected end");
    if (eat('(')) {
      Value v = sum(depth + 1);
      if (!eat(')')) fail("expected ')'");
      return v;
    }
    if (eat('[')) {
      std::vector<std::int64_t> list;
      if (eat(']')) return list;
      for (;;) {
        Value item = sum(depth + 1);
        if (!std::holds_alternative<std::int64_t>(item)) fail("expected integers inside a list");
        list.push_back(std::get<std::int64_t>(item));
        if (list.size() > max_len_) fail("list longer than " + std::to_string(max_len_));
        if (eat(']')) return list;
        if (!eat(',')) fail("expected ',' or ']'");
        if (eat(']')) return list;
      }
    }
    std::int64_t x = 0;
    const std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      x = x * 10 + (s_[pos_] - '0');
      if (x > kMaxInt) fail("number too large");
      ++pos_;
    }
    if (pos_ == start) fail("expected a number, a list or '('");
    return x;
  }

  Value add(const Value& a, const Value& b) {
    if (std::holds_alternative<std::int64_t>(a) && std::holds_alternative<std::int64_t>(b)) {
      const std::int64_t r = std::get<std::int64_t>(a) + std::get<std::int64_t>(b);
      if (r > kMaxInt) fail("number too large");
      return r;
    }
    if (std::holds_alternative<std::int64_t>(a) || std::holds_alternative<std::int64_t>(b))
      fail("cannot add a number and a list");
    std::vector<std::int64_t> r = std::get<std::vector<std::int64_t>>(a);
    const auto& tail = std::get<std::vector<std::int64_t>>(b);
    if (r.size() + tail.size() > max_len_) fail("list longer than " + std::to_string(max_len_));
    r.insert(r.end(), tail.begin(), tail.end());
    return r;
  }

  Value mul(const Value& a, const Value& b) {
    const bool ai = std::holds_alternative<std::int64_t>(a), bi = std::holds_alternative<std::int64_t>(b);
    if (ai && bi) {
      const std::int64_t x = std::get<std::int64_t>(a), y = std::get<std::int64_t>(b);
      if (x != 0 && y > kMaxInt / x) fail("number too large");
      return x * y;
    }
    if (!ai && !bi) fail("cannot multiply two lists");
    const auto& list = ai ? std::get<std::vector<std::int64_t>>(b) : std::get<std::vector<std::int64_t>>(a);
    const std::int64_t n = ai ? std::get<std::int64_t>(a) : std::get<std::int64_t>(b);
    if (!list.empty() && static_cast<std::uint64_t>(n) * list.size() > max_len_)
      fail("list longer than " + std::to_string(max_len_));
    std::vector<std::int64_t> r;
    for (std::int64_t i = 0; i < n; ++i) r.insert(r.end(), list.begin(), list.end());
    return r;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  std::size_t max_len_;
  const std::string& file_;
  const std::string& field_;
};

}  // namespace

std::vector<bool> eval_layer_list_expression(std::string_view expr, std::size_t max_len, const std::string& file,
                                             const std::string& field) {
  ListExpr p(expr, max_len, file, field);
  Value v = p.parse();
  if (!std::holds_alternative<std::vector<std::int64_t>>(v)) p.fail("the result is a number, not a list");
  std::vector<bool> out;
  for (std::int64_t x : std::get<std::vector<std::int64_t>>(v)) {
    if (x != 0 && x != 1) p.fail("expected only 0 and 1 in the list, got " + std::to_string(x));
    out.push_back(x == 1);
  }
  return out;
}

}  // namespace moesim::importers
