// Line-by-line INI parsing.
#include "src/importers/ini_file.hpp"
#include "src/core/text.hpp"

#include <algorithm>
#include <cctype>

#include "src/core/error.hpp"
#include "src/importers/python_literal.hpp"

namespace moesim::importers {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<IniSection> parse_ini(std::string_view text, const std::string& file) {
  std::vector<IniSection> sections;
  IniEntry* last = nullptr;  // the entry a continuation line extends
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    const std::string where = "line " + std::to_string(line_no);
    const std::string_view line = trim(raw);
    if (line.empty()) {
      last = nullptr;
      continue;
    }
    if (line.front() == ';' || line.front() == '#') continue;
    const bool indented = std::isspace(static_cast<unsigned char>(raw.front())) != 0;
    if (indented && last) {  // configparser joins indented lines to the value above
      last->value += "\n" + std::string(line);
      continue;
    }
    if (line.front() == '[') {
      if (line.back() != ']' || line.size() < 3)
        throw InputError(file, where, "expected a section header like [gpt], got '" + std::string(line.substr(0, 60)) + "'");
      std::string name(trim(line.substr(1, line.size() - 2)));
      for (const IniSection& s : sections)
        if (s.name == name) throw InputError(file, name, "section given twice (lines " + std::to_string(s.line) + " and " + std::to_string(line_no) + ")");
      sections.push_back({name, {}, line_no});
      last = nullptr;
      continue;
    }
    const std::size_t sep = line.find_first_of("=:");
    if (sep == std::string_view::npos || sep == 0)
      throw InputError(file, where, "expected 'key = value' or a [section], got '" + std::string(line.substr(0, 60)) + "'");
    if (sections.empty()) throw InputError(file, where, "expected a [section] header before the first key");
    IniSection& section = sections.back();
    std::string key = lower(trim(line.substr(0, sep)));
    for (const IniEntry& e : section.entries)
      if (e.key == key)
        throw InputError(file, section.name + "." + key,
                         "key given twice (lines " + std::to_string(e.line) + " and " + std::to_string(line_no) + ")");
    section.entries.push_back({key, std::string(trim(line.substr(sep + 1))), line_no});
    last = &section.entries.back();
  }
  return sections;
}

nlohmann::json ini_to_json(const std::vector<IniSection>& sections) {
  nlohmann::json out = nlohmann::json::object();
  for (const IniSection& s : sections) {
    nlohmann::json& obj = out[s.name] = nlohmann::json::object();
    for (const IniEntry& e : s.entries) obj[e.key] = python_value_or_string(e.value);
  }
  return out;
}

}  // namespace moesim::importers
