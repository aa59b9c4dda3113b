// A small INI reader with Python configparser's rules, for FasterTransformer's
// config.ini: [sections], "key = value" or "key: value", full-line comments (; or #),
// indented continuation lines, keys lower-cased.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moesim::importers {

struct IniEntry {
  std::string key;
  std::string value;
  std::size_t line = 0;  // 1-based
};

struct IniSection {
  std::string name;
  std::vector<IniEntry> entries;
  std::size_t line = 0;
};

// Errors (a key before any section, a line that is neither, a section or key given
// twice) are InputError naming `file` and the line.
std::vector<IniSection> parse_ini(std::string_view text, const std::string& file);

// {section: {key: value}} with each value read by python_value_or_string
// ("16" -> 16, "False" -> false, "[1, 3]" -> [1, 3], "fp16" -> "fp16").
nlohmann::json ini_to_json(const std::vector<IniSection>& sections);

}  // namespace moesim::importers
