// Reading the three shapes of Megatron arguments into one name -> value object.
#include "src/importers/megatron_args.hpp"
#include "src/core/text.hpp"

#include <cctype>

#include "src/core/error.hpp"
#include "src/importers/command_line.hpp"
#include "src/importers/python_literal.hpp"

namespace moesim::importers {
namespace {

bool is_ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

template <class F>
void for_each_line(std::string_view text, F f) {
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    ++line_no;
    f(text.substr(0, nl), line_no);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  }
}

// "name:value" with an identifier name (args.txt).
bool dump_line(std::string_view line, std::string_view& name, std::string_view& value) {
  line = trim(line);
  std::size_t i = 0;
  if (line.empty() || !is_ident_start(line[0])) return false;
  while (i < line.size() && is_ident(line[i])) ++i;
  const std::size_t name_end = i;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  if (i >= line.size() || line[i] != ':') return false;
  name = line.substr(0, name_end);
  value = trim(line.substr(i + 1));
  return true;
}

bool is_block_start(std::string_view line) {
  return line.find(" arguments ") != std::string_view::npos && line.find("---") != std::string_view::npos &&
         line.find("end of arguments") == std::string_view::npos;
}

bool is_dump(std::string_view text) {
  std::size_t lines = 0, matching = 0;
  for_each_line(text, [&](std::string_view line, std::size_t) {
    line = trim(line);
    if (line.empty() || line[0] == '#') return;
    ++lines;
    std::string_view n, v;
    if (dump_line(line, n, v)) ++matching;
  });
  return lines >= 3 && matching * 5 >= lines * 4;
}

// "  name ........ value" (Megatron prints 48 - len(name) dots; a prefix such as
// "[default0]:" before the name is tolerated).
bool block_line(std::string_view line, std::string& name, std::string& value) {
  for (std::size_t i = 0; i + 1 < line.size(); ++i) {
    if (line[i] != ' ' || line[i + 1] != '.') continue;
    std::size_t j = i + 1;
    while (j < line.size() && line[j] == '.') ++j;
    if (j < line.size() && line[j] != ' ') continue;
    std::size_t k = i;
    while (k > 0 && !std::isspace(static_cast<unsigned char>(line[k - 1])) && line[k - 1] != ':') --k;
    if (k == i) return false;
    name = std::string(line.substr(k, i - k));
    value = std::string(trim(line.substr(j)));
    return true;
  }
  return false;
}


}  // namespace

bool looks_like_megatron(std::string_view text) {
  bool block = false;
  for_each_line(text, [&](std::string_view line, std::size_t) { block = block || is_block_start(line); });
  return block || has_long_flags(text) || is_dump(text);
}

MegatronArgs read_megatron_args(std::string_view text, const std::string& file, Overrides& set) {
  MegatronArgs out;
  bool in_block = false, saw_block = false;
  for_each_line(text, [&](std::string_view line, std::size_t) {
    if (!in_block && is_block_start(line)) {
      in_block = saw_block = true;
      out.values = nlohmann::json::object();  // a later block (a restart) replaces an earlier one
      return;
    }
    if (in_block && line.find("end of arguments") != std::string_view::npos) {
      in_block = false;
      return;
    }
    std::string name, value;
    if (in_block && block_line(line, name, value)) out.values[name] = python_value_or_string(value);
  });
  if (saw_block) {
    out.shape = "arguments block";
    if (out.values.empty()) throw InputError(file, "", "the arguments block holds no 'name ..... value' lines");
    return out;
  }
  if (is_dump(text)) {
    out.shape = "name:value dump";
    std::size_t skipped = 0;
    for_each_line(text, [&](std::string_view line, std::size_t) {
      std::string_view n, v;
      if (dump_line(line, n, v)) out.values[std::string(n)] = python_value_or_string(v);
      else if (!trim(line).empty()) ++skipped;
    });
    if (skipped) out.notes.push_back(std::to_string(skipped) + " line(s) that are not name:value skipped");
    return out;
  }
  out.shape = "command line";
  CommandLineArgs cl = read_command_line(text, file, set, "Megatron arguments (--num-layers ...)");
  out.values = std::move(cl.values);
  out.unresolved = std::move(cl.unresolved);
  out.launcher_world = cl.launcher_world;
  out.notes.insert(out.notes.end(), cl.notes.begin(), cl.notes.end());
  return out;
}

}  // namespace moesim::importers
