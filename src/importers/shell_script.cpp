// A shell-word reader: statements are read and their assignments applied in order, so a
// later $VAR sees the value the script gave it. Conditions are not evaluated and loops
// run once: a launch script's flags do not depend on them in practice (a note says so).
#include "src/importers/shell_script.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "src/core/error.hpp"

namespace moesim::importers {
namespace {

constexpr std::size_t kMaxExpansion = std::size_t{1} << 20;  // bytes a script may expand to
constexpr int kMaxDepth = 32;                                  // nested ${...:-${...}} / $((...))

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }
bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_ident(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
bool ends_word(char c) {
  return is_blank(c) || c == '\n' || c == ';' || c == '&' || c == '|' || c == '<' || c == '>' || c == '(' || c == ')';
}

struct Field {
  std::string text;
  std::string unresolved;
  bool real = false;  // quoted or non-empty: survives as a word
};

// A variable: one item for a scalar, one per element for an array; an item whose value
// the script cannot give carries the name of what made it unknown.
struct Var {
  std::vector<Field> items;
};

bool any_unresolved(const Var& v) {
  for (const Field& f : v.items)
    if (!f.unresolved.empty()) return true;
  return false;
}

// Shared state of one script read (the sub-readers of ${VAR:-default} use it too).
struct State {
  std::string file;
  std::string_view whole;  // for line numbers
  std::vector<std::size_t> line_starts;
  std::map<std::string, Var> vars;
  std::function<const std::string*(const std::string&)> lookup;
  std::size_t expanded = 0;
  bool saw_control = false;

  std::size_t line_of(const char* p) const {
    const std::size_t off = static_cast<std::size_t>(p - whole.data());
    return static_cast<std::size_t>(std::upper_bound(line_starts.begin(), line_starts.end(), off) - line_starts.begin());
  }
  void grow(std::size_t n, const char* at) {
    expanded += n;
    if (expanded > kMaxExpansion)
      throw InputError(file, "line " + std::to_string(line_of(at)), "the script expands to more than 1 MiB of text");
  }
  // A variable's value: --set first, then the script's own; nullopt when unset.
  std::optional<Var> get(const std::string& name) const {
    if (lookup)
      if (const std::string* v = lookup(name)) return Var{{Field{*v, "", true}}};
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  }
};


// Builds the words one shell word expands to (splitting unquoted expansions).
class WordBuilder {
 public:
  WordBuilder(State& st, const char* at) : st_(st), at_(at) {}

  void literal(std::string_view text, bool quoted) {
    st_.grow(text.size(), at_);
    Field& f = current();
    f.text += text;
    if (quoted || !text.empty()) f.real = true;
  }
  void split(std::string_view text) {
    st_.grow(text.size(), at_);
    std::size_t i = 0;
    while (i < text.size()) {
      if (is_blank(text[i]) || text[i] == '\n') {
        open_ = false;
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < text.size() && !is_blank(text[j]) && text[j] != '\n') ++j;
      Field& f = current();
      f.text += text.substr(i, j - i);
      f.real = true;
      i = j;
    }
  }
  void unresolved(const std::string& name) {
    st_.grow(name.size() + 1, at_);
    Field& f = current();
    if (f.unresolved.empty()) f.unresolved = name;
    f.text += name[0] == '$' || name[0] == '`' ? name : "$" + name;
    f.real = true;
  }
  void break_field() { open_ = false; }
  std::vector<Field> finish() {
    std::vector<Field> out;
    for (Field& f : fields_)
      if (f.real) out.push_back(std::move(f));
    return out;
  }

 private:
  Field& current() {
    if (!open_) {
      fields_.emplace_back();
      open_ = true;
    }
    return fields_.back();
  }
  State& st_;
  const char* at_;
  std::vector<Field> fields_;
  bool open_ = false;
};

class Reader {
 public:
  Reader(State& st, std::string_view text, int depth) : st_(st), s_(text), depth_(depth) {}

  // Reads statements until the end of the text.
  void run(std::vector<ShellCommand>& commands) {
    while (!at_end()) statement(commands);
  }

  // One word of a ${VAR:-default} default or an assignment: all fields joined.
  Field whole_word() {
    Field out;
    out.real = true;
    skip_blanks();
    while (!at_end()) {
      std::vector<Field> fs = word(false);
      for (std::size_t i = 0; i < fs.size(); ++i) {
        out.text += (i ? " " : "") + fs[i].text;
        if (out.unresolved.empty()) out.unresolved = fs[i].unresolved;
      }
      if (at_end()) break;
      // A default may contain blanks: keep them as written.
      while (!at_end() && (is_blank(s_[pos_]) || ends_word(s_[pos_]))) out.text += s_[pos_++];
    }
    return out;
  }

 private:
  bool at_end() const { return pos_ >= s_.size(); }
  char peek(std::size_t k = 0) const { return pos_ + k < s_.size() ? s_[pos_ + k] : '\0'; }
  const char* here() const { return s_.data() + std::min(pos_, s_.size()); }
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(st_.file, "line " + std::to_string(st_.line_of(here())), what);
  }

  void skip_blanks() {
    for (;;) {
      if (is_blank(peek())) {
        ++pos_;
      } else if (peek() == '\\' && peek(1) == '\n') {
        pos_ += 2;
      } else {
        return;
      }
    }
  }

  void skip_heredocs() {
    for (const auto& [delim, strip_tabs] : heredocs_) {
      while (!at_end()) {
        std::size_t nl = s_.find('\n', pos_);
        std::string_view line = s_.substr(pos_, nl == std::string_view::npos ? std::string_view::npos : nl - pos_);
        pos_ = nl == std::string_view::npos ? s_.size() : nl + 1;
        if (strip_tabs)
          while (!line.empty() && line.front() == '\t') line.remove_prefix(1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line == delim) break;
      }
    }
    heredocs_.clear();
  }

  bool assignment_ahead(std::size_t& name_end, bool& append) const {
    if (!is_ident_start(peek())) return false;
    std::size_t i = pos_;
    while (i < s_.size() && is_ident(s_[i])) ++i;
    name_end = i;
    append = i < s_.size() && s_[i] == '+';
    if (append) ++i;
    return i < s_.size() && s_[i] == '=';
  }

  void assign() {
    std::size_t name_end = 0;
    bool append = false;
    assignment_ahead(name_end, append);
    const std::string name(s_.substr(pos_, name_end - pos_));
    pos_ = name_end + (append ? 2 : 1);
    Var value;
    bool array = false;
    if (peek() == '(') {  // NAME=( words ... )
      array = true;
      const std::size_t open = pos_++;
      for (;;) {
        while (is_blank(peek()) || peek() == '\n' || (peek() == '\\' && peek(1) == '\n')) pos_ += peek() == '\\' ? 2 : 1;
        if (at_end()) {
          pos_ = open;
          fail("unterminated array assignment to " + name + " (expected ')')");
        }
        if (peek() == ')') {
          ++pos_;
          break;
        }
        if (peek() == '#') {
          while (!at_end() && peek() != '\n') ++pos_;
          continue;
        }
        if (ends_word(peek())) fail(std::string("unexpected '") + peek() + "' in the array assignment to " + name);
        for (Field& f : word(true)) value.items.push_back(std::move(f));
      }
    } else {
      Field f;
      if (!at_end() && !ends_word(peek())) {
        std::vector<Field> fs = word(false);
        for (std::size_t i = 0; i < fs.size(); ++i) {
          f.text += (i ? " " : "") + fs[i].text;
          if (f.unresolved.empty()) f.unresolved = fs[i].unresolved;
        }
      }
      f.real = true;
      value.items.push_back(std::move(f));
    }
    if (st_.lookup && st_.lookup(name)) return;  // --set wins over the script
    Var& var = st_.vars[name];
    if (!append) {
      var = std::move(value);
    } else if (array || var.items.size() > 1) {
      var.items.insert(var.items.end(), value.items.begin(), value.items.end());
    } else {
      if (var.items.empty()) var.items.emplace_back();
      if (!value.items.empty()) {
        var.items[0].text += value.items[0].text;
        if (var.items[0].unresolved.empty()) var.items[0].unresolved = value.items[0].unresolved;
      }
    }
  }

  void statement(std::vector<ShellCommand>& commands) {
    ShellCommand cmd;
    bool command_position = true;
    for (;;) {
      skip_blanks();
      if (at_end()) break;
      const char c = peek();
      if (c == '\n') {
        ++pos_;
        skip_heredocs();
        break;
      }
      if (c == ';' || c == '&' || c == '|' || c == '(' || c == ')') {
        while (peek() == ';' || peek() == '&' || peek() == '|') ++pos_;
        if (peek() == '(' || peek() == ')') ++pos_;
        break;
      }
      if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
        continue;
      }
      if (c == '<' || c == '>') {
        redirection();
        continue;
      }
      std::size_t name_end = 0;
      bool append = false;
      if (command_position && assignment_ahead(name_end, append)) {
        assign();
        continue;
      }
      const std::size_t start = pos_;
      std::vector<Field> fs = word(true);
      // "2>&1": a file-descriptor number glued to a redirection is not a word.
      if ((peek() == '>' || peek() == '<') &&
          std::all_of(s_.begin() + static_cast<std::ptrdiff_t>(start), s_.begin() + static_cast<std::ptrdiff_t>(pos_),
                      [](char ch) { return ch >= '0' && ch <= '9'; }))
        continue;
      if (command_position && fs.size() == 1 && fs[0].unresolved.empty()) {
        static const char* const keywords[] = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until",
                                               "for", "case", "esac", "function", "{", "}", "!", "time"};
        static const char* const declarers[] = {"export", "declare", "local", "readonly", "typeset"};
        const std::string& w = fs[0].text;
        if (std::find(std::begin(keywords), std::end(keywords), w) != std::end(keywords)) {
          if (w == "if" || w == "for" || w == "while" || w == "until" || w == "case") st_.saw_control = true;
          continue;
        }
        if (std::find(std::begin(declarers), std::end(declarers), w) != std::end(declarers)) {
          // export NAME=value: the assignments follow; options and bare names are skipped.
          for (;;) {
            skip_blanks();
            if (at_end() || ends_word(peek()) || peek() == '#') break;
            if (assignment_ahead(name_end, append)) {
              assign();
            } else {
              word(true);
            }
          }
          continue;
        }
      }
      for (Field& f : fs) {
        if (cmd.words.empty()) cmd.line = st_.line_of(s_.data() + start);
        cmd.words.push_back({std::move(f.text), std::move(f.unresolved)});
      }
      if (!fs.empty()) command_position = false;
    }
    if (!cmd.words.empty()) commands.push_back(std::move(cmd));
  }

  void redirection() {
    const bool heredoc = peek() == '<' && peek(1) == '<' && peek(2) != '<';
    while (peek() == '<' || peek() == '>' || peek() == '&' || peek() == '|') ++pos_;
    bool strip_tabs = false;
    if (heredoc && peek() == '-') {
      strip_tabs = true;
      ++pos_;
    }
    skip_blanks();
    if (at_end() || ends_word(peek())) return;
    std::vector<Field> target = word(false);
    if (heredoc) heredocs_.emplace_back(target.empty() ? std::string() : target[0].text, strip_tabs);
  }

  // Index just past the bracket matching the one at `open_at` (quotes skipped).
  std::size_t match(std::size_t open_at, char open, char close) const {
    int depth = 0;
    for (std::size_t i = open_at; i < s_.size(); ++i) {
      const char c = s_[i];
      if (c == '\\') {
        ++i;
      } else if (c == '\'') {
        const std::size_t q = s_.find('\'', i + 1);
        if (q == std::string_view::npos) return std::string_view::npos;
        i = q;
      } else if (c == '"') {
        std::size_t j = i + 1;
        while (j < s_.size() && s_[j] != '"') j += s_[j] == '\\' ? 2 : 1;
        if (j >= s_.size()) return std::string_view::npos;
        i = j;
      } else if (c == open) {
        ++depth;
      } else if (c == close) {
        if (--depth == 0) return i + 1;
      }
    }
    return std::string_view::npos;
  }

  // Reads one shell word at pos_; `split`: unquoted expansions split into several words.
  std::vector<Field> word(bool split) {
    WordBuilder b(st_, here());
    while (!at_end()) {
      const char c = peek();
      if (ends_word(c)) break;
      if (c == '\\') {
        if (peek(1) == '\n') {
          pos_ += 2;
        } else if (pos_ + 1 < s_.size()) {
          b.literal(s_.substr(pos_ + 1, 1), true);
          pos_ += 2;
        } else {
          ++pos_;
        }
      } else if (c == '\'') {
        const std::size_t q = s_.find('\'', pos_ + 1);
        if (q == std::string_view::npos) fail("unterminated single quote");
        b.literal(s_.substr(pos_ + 1, q - pos_ - 1), true);
        pos_ = q + 1;
      } else if (c == '"') {
        double_quoted(b);
      } else if (c == '$' && peek(1) == '\'') {  // $'...': ANSI-C quoting, read as plain quotes
        const std::size_t q = s_.find('\'', pos_ + 2);
        if (q == std::string_view::npos) fail("unterminated $' quote");
        b.literal(s_.substr(pos_ + 2, q - pos_ - 2), true);
        pos_ = q + 1;
      } else if (c == '$') {
        expansion(b, false, split);
      } else if (c == '`') {
        const std::size_t q = s_.find('`', pos_ + 1);
        if (q == std::string_view::npos) fail("unterminated backquote");
        b.unresolved("`" + std::string(s_.substr(pos_ + 1, std::min<std::size_t>(q - pos_ - 1, 40))) + "`");
        pos_ = q + 1;
      } else {
        std::size_t j = pos_;
        while (j < s_.size() && !ends_word(s_[j]) && s_[j] != '\\' && s_[j] != '\'' && s_[j] != '"' && s_[j] != '$' &&
               s_[j] != '`')
          ++j;
        b.literal(s_.substr(pos_, j - pos_), false);
        pos_ = j;
      }
    }
    return b.finish();
  }

  void double_quoted(WordBuilder& b) {
    const std::size_t open = pos_++;
    b.literal("", true);
    for (;;) {
      if (at_end()) {
        pos_ = open;
        fail("unterminated double quote");
      }
      const char c = peek();
      if (c == '"') {
        ++pos_;
        return;
      }
      if (c == '\\') {
        const char n = peek(1);
        if (n == '\n') {
          pos_ += 2;
        } else if (n == '$' || n == '"' || n == '\\' || n == '`') {
          b.literal(std::string(1, n), true);
          pos_ += 2;
        } else {
          b.literal("\\", true);
          ++pos_;
        }
      } else if (c == '$') {
        expansion(b, true, false);
      } else if (c == '`') {
        const std::size_t q = s_.find('`', pos_ + 1);
        if (q == std::string_view::npos) fail("unterminated backquote");
        b.unresolved("`...`");
        pos_ = q + 1;
      } else {
        std::size_t j = pos_;
        while (j < s_.size() && s_[j] != '"' && s_[j] != '\\' && s_[j] != '$' && s_[j] != '`') ++j;
        b.literal(s_.substr(pos_, j - pos_), true);
        pos_ = j;
      }
    }
  }

  // Expands a variable into the word: "${A[@]}" gives one word per element; otherwise
  // the elements are joined with blanks, and split into words when unquoted.
  void put(WordBuilder& b, const Var& v, bool quoted, bool split, bool all_elements) {
    for (std::size_t i = 0; i < v.items.size(); ++i) {
      const Field& item = v.items[i];
      if (i > 0) {
        if (all_elements && quoted) b.break_field();
        else if (quoted || !split) b.literal(" ", quoted);
        else b.break_field();
      }
      if (!item.unresolved.empty()) {
        if (split && !quoted) b.break_field();
        b.unresolved(item.unresolved);
        if (split && !quoted) b.break_field();
      } else if (quoted || !split) {
        b.literal(item.text, quoted);
      } else {
        b.split(item.text);
      }
    }
  }

  void expansion(WordBuilder& b, bool quoted, bool split) {
    const char n = peek(1);
    if (n == '(' && peek(2) == '(') {  // $(( arithmetic ))
      const std::size_t end = match(pos_ + 1, '(', ')');
      if (end == std::string_view::npos || end < pos_ + 5 || s_[end - 2] != ')') fail("unterminated $((");
      const std::string_view expr = s_.substr(pos_ + 3, end - pos_ - 5);
      pos_ = end;
      std::string failed;
      std::optional<std::int64_t> v = arithmetic(expr, failed);
      if (v) b.literal(std::to_string(*v), quoted);
      else b.unresolved(failed.empty() ? "$((" + std::string(expr.substr(0, 40)) + "))" : failed);
      return;
    }
    if (n == '(') {  // $(command): never run
      const std::size_t end = match(pos_ + 1, '(', ')');
      if (end == std::string_view::npos) fail("unterminated $(");
      b.unresolved("$(" + std::string(s_.substr(pos_ + 2, std::min<std::size_t>(end - pos_ - 3, 40))) + ")");
      pos_ = end;
      return;
    }
    if (n == '{') {
      const std::size_t end = match(pos_ + 1, '{', '}');
      if (end == std::string_view::npos) fail("unterminated ${");
      const std::string_view inner = s_.substr(pos_ + 2, end - pos_ - 3);
      pos_ = end;
      braced(b, inner, quoted, split);
      return;
    }
    if (is_ident_start(n)) {
      std::size_t j = pos_ + 1;
      while (j < s_.size() && is_ident(s_[j])) ++j;
      const std::string name(s_.substr(pos_ + 1, j - pos_ - 1));
      pos_ = j;
      if (auto v = st_.get(name)) put(b, *v, quoted, split, false);
      else b.unresolved(name);
      return;
    }
    if ((n >= '0' && n <= '9') || n == '@' || n == '*' || n == '#' || n == '?' || n == '$' || n == '!' || n == '-') {
      b.unresolved("$" + std::string(1, n));  // positional and special parameters are unknown here
      pos_ += 2;
      return;
    }
    b.literal("$", quoted);
    ++pos_;
  }

  void braced(WordBuilder& b, std::string_view inner, bool quoted, bool split) {
    std::size_t i = 0;
    while (i < inner.size() && is_ident(inner[i])) ++i;
    const std::string name(inner.substr(0, i));
    if (name.empty() || !is_ident_start(name[0])) {
      b.unresolved("${" + std::string(inner.substr(0, 40)) + "}");
      return;
    }
    const std::string_view rest = inner.substr(i);
    std::optional<Var> v = st_.get(name);
    if (rest.empty()) {
      if (v) put(b, *v, quoted, split, false);
      else b.unresolved(name);
      return;
    }
    if (rest == "[@]" || rest == "[*]") {
      if (v) put(b, *v, quoted, split, rest == "[@]");
      else b.unresolved(name);
      return;
    }
    if (rest.size() > 2 && rest.front() == '[' && rest.back() == ']') {
      std::size_t k = 0;
      bool digits = rest.size() > 2 && rest.size() < 12;
      for (char c : rest.substr(1, rest.size() - 2)) {
        digits = digits && c >= '0' && c <= '9';
        if (digits) k = k * 10 + static_cast<std::size_t>(c - '0');
      }
      if (v && digits) {
        if (k < v->items.size() && !v->items[k].unresolved.empty()) b.unresolved(v->items[k].unresolved);
        else b.literal(k < v->items.size() ? v->items[k].text : std::string(), quoted);
      } else {
        b.unresolved(name);
      }
      return;
    }
    // ${NAME:-word} ${NAME-word} ${NAME:=word} ${NAME=word} ${NAME:+word} ${NAME+word}
    std::size_t op = 0;
    const bool colon = rest[0] == ':';
    if (colon) op = 1;
    if (op < rest.size() && (rest[op] == '-' || rest[op] == '=' || rest[op] == '+')) {
      const char kind = rest[op];
      const std::string_view word_text = rest.substr(op + 1);
      const bool set_and_used =
          v && (!colon || any_unresolved(*v) || v->items.size() > 1 || (!v->items.empty() && !v->items[0].text.empty()));
      if (kind == '+') {
        if (set_and_used) put(b, sub_word(word_text), quoted, split, false);
        return;
      }
      if (set_and_used) {
        put(b, *v, quoted, split, false);
        return;
      }
      Var d = sub_word(word_text);
      if (kind == '=' && !(st_.lookup && st_.lookup(name))) st_.vars[name] = d;
      put(b, d, quoted, split, false);
      return;
    }
    b.unresolved(name);  // ${#NAME}, ${NAME/x/y}, ${NAME:1:2} ...: not evaluated
  }

  Var sub_word(std::string_view text) {
    if (depth_ >= kMaxDepth) fail("expansions nested too deeply");
    Reader sub(st_, text, depth_ + 1);
    Field f = sub.whole_word();
    return Var{{f}};
  }

  // $(( ... )) over integers and variables; nullopt (and the culprit's name) when unknown.
  std::optional<std::int64_t> arithmetic(std::string_view e, std::string& failed) {
    struct Arith {
      std::string_view s;
      std::size_t p = 0;
      State& st;
      std::string& failed;
      int depth = 0;
      bool ok = true;
      void ws() {
        while (p < s.size() && (is_blank(s[p]) || s[p] == '\n')) ++p;
      }
      std::int64_t atom() {
        ws();
        if (++depth > kMaxDepth || p >= s.size()) return ok = false, 0;
        if (s[p] == '(') {
          ++p;
          std::int64_t v = sum();
          ws();
          if (p < s.size() && s[p] == ')') ++p;
          else ok = false;
          --depth;
          return v;
        }
        if (s[p] == '-' || s[p] == '+') {
          const bool neg = s[p] == '-';
          ++p;
          std::int64_t v = atom();
          --depth;
          return neg ? -v : v;
        }
        --depth;
        if (s[p] >= '0' && s[p] <= '9') {
          std::int64_t v = 0;
          while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
            if (v > (INT64_C(1) << 40)) return ok = false, 0;
            v = v * 10 + (s[p++] - '0');
          }
          return v;
        }
        bool dollar = s[p] == '$';
        if (dollar) ++p;
        bool brace = dollar && p < s.size() && s[p] == '{';
        if (brace) ++p;
        const std::size_t start = p;
        while (p < s.size() && is_ident(s[p])) ++p;
        if (p == start) return ok = false, 0;
        const std::string name(s.substr(start, p - start));
        if (brace) {
          if (p < s.size() && s[p] == '}') ++p;
          else return ok = false, 0;
        }
        std::optional<Var> v = st.get(name);
        if (!v || v->items.size() != 1 || !v->items[0].unresolved.empty()) {
          if (failed.empty()) failed = v && v->items.size() == 1 ? v->items[0].unresolved : name;
          if (failed.empty()) failed = name;
          return ok = false, 0;
        }
        const std::string& t = v->items[0].text;
        std::int64_t x = 0;
        if (t.empty() || t.size() > 12) return ok = false, 0;
        for (char c : t) {
          if (c < '0' || c > '9') return ok = false, 0;
          x = x * 10 + (c - '0');
        }
        return x;
      }
      std::int64_t product() {
        std::int64_t v = atom();
        for (;;) {
          ws();
          if (p >= s.size() || (s[p] != '*' && s[p] != '/' && s[p] != '%')) return v;
          const char op = s[p++];
          const std::int64_t r = atom();
          if (!ok) return 0;
          if (op == '*') {
            if (v != 0 && (r > (INT64_C(1) << 40) || v > (INT64_C(1) << 40) || r < -(INT64_C(1) << 40) ||
                           v < -(INT64_C(1) << 40)))
              return ok = false, 0;
            v *= r;
          } else {
            if (r == 0) return ok = false, 0;
            v = op == '/' ? v / r : v % r;
          }
        }
      }
      std::int64_t sum() {
        std::int64_t v = product();
        for (;;) {
          ws();
          if (p >= s.size() || (s[p] != '+' && s[p] != '-')) return v;
          const char op = s[p++];
          const std::int64_t r = product();
          if (!ok) return 0;
          if (v > (INT64_C(1) << 60) || v < -(INT64_C(1) << 60) || r > (INT64_C(1) << 60) || r < -(INT64_C(1) << 60))
            return ok = false, 0;
          v = op == '+' ? v + r : v - r;
        }
      }
    };
    Arith a{e, 0, st_, failed};
    const std::int64_t v = a.sum();
    a.ws();
    if (!a.ok || a.p != e.size()) return std::nullopt;
    return v;
  }

  State& st_;
  std::string_view s_;
  std::size_t pos_ = 0;
  int depth_;
  std::vector<std::pair<std::string, bool>> heredocs_;
};

}  // namespace

ShellScript read_shell_script(std::string_view original, const std::string& file,
                              const std::function<const std::string*(const std::string&)>& lookup) {
  // Scripts saved with CRLF line ends: a backslash before CR LF must still continue the
  // line. Dropping every CR keeps the line count, which is all the offsets are used for.
  std::string without_cr;
  std::string_view text = original;
  if (original.find('\r') != std::string_view::npos) {
    without_cr.reserve(original.size());
    for (char c : original)
      if (c != '\r') without_cr += c;
    text = without_cr;
  }
  State st;
  st.file = file;
  st.whole = text;
  st.lookup = lookup;
  st.line_starts.push_back(0);
  for (std::size_t i = 0; i < text.size(); ++i)
    if (text[i] == '\n') st.line_starts.push_back(i + 1);
  ShellScript out;
  Reader r(st, text, 0);
  r.run(out.commands);
  if (st.saw_control)
    out.notes.push_back("the script's if/for/while/case blocks were read once, as if every branch ran");
  return out;
}

}  // namespace moesim::importers
