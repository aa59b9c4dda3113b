// A recursive-descent parser for Python literals with a depth limit; every read is
// bounds-checked so that any byte string gives a value or an InputError.
#include "src/importers/python_literal.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>

#include "src/core/error.hpp"

namespace moesim::importers {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_ident(char c) { return is_ident_start(c) || is_digit(c); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  // Lone surrogates and out-of-range code points cannot be UTF-8: U+FFFD stands in.
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  Parser(std::string_view text, std::size_t pos, const std::string& source, std::size_t base)
      : s_(text), pos_(pos), source_(source), base_(base) {}

  nlohmann::json value(int depth) {
    if (depth > kMaxLiteralDepth) fail("nesting deeper than " + std::to_string(kMaxLiteralDepth) + " levels");
    skip_space();
    if (at_end()) fail("expected a value, got the end of the text");
    const char c = s_[pos_];
    if (c == '{') return dict(depth);
    if (c == '[') return sequence(depth, ']');
    if (c == '(') return sequence(depth, ')');
    if (c == '\'' || c == '"') return string_literal(false);
    if (is_digit(c) || c == '-' || c == '+' || c == '.') return number();
    if (is_ident_start(c)) return name();
    fail(std::string("unexpected character '") + printable(c) + "'");
  }

  void skip_space() {
    while (!at_end() && is_space(s_[pos_])) ++pos_;
  }
  bool at_end() const { return pos_ >= s_.size(); }
  std::size_t pos() const { return pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(source_, "", "not a Python literal: " + what + " at byte " + std::to_string(base_ + pos_));
  }

 private:
  static std::string printable(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) return std::string(1, c);
    static const char* hex = "0123456789abcdef";
    return std::string("\\x") + hex[u >> 4] + hex[u & 0xF];
  }

  nlohmann::json dict(int depth) {
    ++pos_;  // '{'
    nlohmann::json out = nlohmann::json::object();
    for (;;) {
      skip_space();
      if (at_end()) fail("unterminated dict (expected '}')");
      if (s_[pos_] == '}') {
        ++pos_;
        return out;
      }
      nlohmann::json key = value(depth + 1);
      skip_space();
      if (at_end() || s_[pos_] != ':') fail("expected ':' after a dict key");
      ++pos_;
      nlohmann::json v = value(depth + 1);
      // Keys print as their repr; a later duplicate wins, as in Python.
      out[key.is_string() ? key.get<std::string>()
                          : key.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)] = std::move(v);
      skip_space();
      if (at_end()) fail("unterminated dict (expected '}')");
      if (s_[pos_] == ',') {
        ++pos_;
      } else if (s_[pos_] != '}') {
        fail("expected ',' or '}' in a dict");
      }
    }
  }

  nlohmann::json sequence(int depth, char close) {
    ++pos_;  // '[' or '('
    nlohmann::json out = nlohmann::json::array();
    for (;;) {
      skip_space();
      if (at_end()) fail(std::string("unterminated sequence (expected '") + close + "')");
      if (s_[pos_] == close) {
        ++pos_;
        return out;
      }
      out.push_back(value(depth + 1));
      skip_space();
      if (at_end()) fail(std::string("unterminated sequence (expected '") + close + "')");
      if (s_[pos_] == ',') {
        ++pos_;
      } else if (s_[pos_] != close) {
        fail(std::string("expected ',' or '") + close + "'");
      }
    }
  }

  nlohmann::json name() {
    const std::size_t start = pos_;
    while (!at_end() && is_ident(s_[pos_])) ++pos_;
    const std::string_view word = s_.substr(start, pos_ - start);
    // String prefixes: r'', b'', u'', rb'' ... directly followed by a quote.
    if (!at_end() && (s_[pos_] == '\'' || s_[pos_] == '"') && word.size() <= 2) {
      bool raw = false, ok = true;
      for (char c : word) {
        if (c == 'r' || c == 'R') raw = true;
        else if (c != 'b' && c != 'B' && c != 'u' && c != 'U') ok = false;
      }
      if (ok) return string_literal(raw);
    }
    if (word == "True") return true;
    if (word == "False") return false;
    if (word == "None") return nullptr;
    // repr() prints infinities and NaN as bare names.
    if (word == "inf") return std::numeric_limits<double>::infinity();
    if (word == "nan") return std::numeric_limits<double>::quiet_NaN();
    pos_ = start;
    fail("unexpected name '" + std::string(word.substr(0, 40)) + "'");
  }

  nlohmann::json string_literal(bool raw) {
    const char quote = s_[pos_];
    const bool triple = pos_ + 2 < s_.size() && s_[pos_ + 1] == quote && s_[pos_ + 2] == quote;
    const std::size_t start = pos_;
    pos_ += triple ? 3 : 1;
    std::string out;
    for (;;) {
      if (at_end()) {
        pos_ = start;
        fail("unterminated string");
      }
      const char c = s_[pos_];
      if (c == quote) {
        if (!triple) {
          ++pos_;
          return out;
        }
        if (pos_ + 2 < s_.size() && s_[pos_ + 1] == quote && s_[pos_ + 2] == quote) {
          pos_ += 3;
          return out;
        }
      }
      if (!triple && (c == '\n' || c == '\r')) fail("newline inside a string");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= s_.size()) {
        pos_ = start;
        fail("unterminated string");
      }
      const char e = s_[pos_ + 1];
      if (raw) {  // raw strings keep the backslash; it only protects the next character
        out += c;
        out += e;
        pos_ += 2;
        continue;
      }
      pos_ += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': append_utf8(out, hex_digits(2)); break;
        case 'u': append_utf8(out, hex_digits(4)); break;
        case 'U': append_utf8(out, hex_digits(8)); break;
        default:
          if (e >= '0' && e <= '7') {
            std::uint32_t v = static_cast<std::uint32_t>(e - '0');
            for (int i = 0; i < 2 && !at_end() && s_[pos_] >= '0' && s_[pos_] <= '7'; ++i, ++pos_)
              v = v * 8 + static_cast<std::uint32_t>(s_[pos_] - '0');
            append_utf8(out, v);
          } else {  // unknown escapes stay as written, as in Python
            out += '\\';
            out += e;
          }
      }
    }
  }

  std::uint32_t hex_digits(int n) {
    std::uint32_t v = 0;
    for (int i = 0; i < n; ++i, ++pos_) {
      const int h = at_end() ? -1 : hex_value(s_[pos_]);
      if (h < 0) fail("bad hexadecimal escape in a string");
      v = v * 16 + static_cast<std::uint32_t>(h);
    }
    return v;
  }

  nlohmann::json number() {
    const std::size_t start = pos_;
    bool negative = false;
    if (s_[pos_] == '-' || s_[pos_] == '+') {
      negative = s_[pos_] == '-';
      ++pos_;
      skip_space();
      // -inf, +nan
      if (!at_end() && is_ident_start(s_[pos_])) {
        const std::size_t name_start = pos_;
        while (!at_end() && is_ident(s_[pos_])) ++pos_;
        const std::string_view word = s_.substr(name_start, pos_ - name_start);
        if (word == "inf") return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
        if (word == "nan") return std::numeric_limits<double>::quiet_NaN();
        pos_ = start;
        fail("expected a number after the sign");
      }
    }
    std::string digits;  // the number without its sign and underscores
    const std::size_t body = pos_;
    // 0x / 0o / 0b integers
    if (pos_ + 1 < s_.size() && s_[pos_] == '0' &&
        (s_[pos_ + 1] == 'x' || s_[pos_ + 1] == 'X' || s_[pos_ + 1] == 'o' || s_[pos_ + 1] == 'O' ||
         s_[pos_ + 1] == 'b' || s_[pos_ + 1] == 'B')) {
      const char kind = static_cast<char>(s_[pos_ + 1] | 0x20);
      const int base = kind == 'x' ? 16 : kind == 'o' ? 8 : 2;
      pos_ += 2;
      while (!at_end() && (hex_value(s_[pos_]) >= 0 || s_[pos_] == '_')) {
        if (s_[pos_] != '_') digits += s_[pos_];
        ++pos_;
        if (digits.size() > 64) fail("integer literal too long");
      }
      std::uint64_t v = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
        pos_ = start;
        fail("bad integer literal");
      }
      return integer_json(v, negative);
    }
    bool is_float = false;
    while (!at_end()) {
      const char c = s_[pos_];
      if (is_digit(c) || c == '_') {
        if (c != '_') digits += c;
      } else if (c == '.') {
        is_float = true;
        digits += c;
      } else if (c == 'e' || c == 'E') {
        is_float = true;
        digits += c;
        if (pos_ + 1 < s_.size() && (s_[pos_ + 1] == '-' || s_[pos_ + 1] == '+')) digits += s_[++pos_];
      } else {
        break;
      }
      ++pos_;
      if (digits.size() > 400) fail("number literal too long");
    }
    if (!at_end() && (s_[pos_] == 'j' || s_[pos_] == 'J')) fail("complex numbers are not supported");
    if (digits.empty() || digits == "." || pos_ == body) {
      pos_ = start;
      fail("expected a number");
    }
    if (!is_float) {
      std::uint64_t v = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
      if (ec == std::errc() && end == digits.data() + digits.size()) return integer_json(v, negative);
      if (ec != std::errc::result_out_of_range || end != digits.data() + digits.size()) {
        pos_ = start;
        fail("bad number literal");
      }
      // Wider than 64 bits: keep the magnitude as a double.
    }
    double d = 0.0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), d);
    if (end != digits.data() + digits.size() || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
      pos_ = start;
      fail("bad number literal");
    }
    if (ec == std::errc::result_out_of_range) d = std::isinf(d) || d > 1.0 ? std::numeric_limits<double>::infinity() : 0.0;
    return negative ? -d : d;
  }

  static nlohmann::json integer_json(std::uint64_t v, bool negative) {
    if (!negative) {
      if (v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return static_cast<std::int64_t>(v);
      return v;
    }
    if (v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return -static_cast<std::int64_t>(v);
    if (v == static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1)
      return std::numeric_limits<std::int64_t>::min();
    return -static_cast<double>(v);
  }

  std::string_view s_;
  std::size_t pos_;
  const std::string& source_;
  std::size_t base_;
};

}  // namespace

nlohmann::json parse_python_literal_at(std::string_view text, std::size_t& pos, const std::string& source,
                                       std::size_t base_offset) {
  Parser p(text, pos, source, base_offset);
  nlohmann::json v = p.value(0);
  pos = p.pos();
  return v;
}

nlohmann::json parse_python_literal(std::string_view text, const std::string& source, std::size_t base_offset) {
  Parser p(text, 0, source, base_offset);
  nlohmann::json v = p.value(0);
  p.skip_space();
  if (!p.at_end()) p.fail("unexpected text after the value");
  return v;
}

nlohmann::json python_value_or_string(std::string_view text) {
  try {
    return parse_python_literal(text, "");
  } catch (const InputError&) {
    return std::string(text);
  }
}

}  // namespace moesim::importers
