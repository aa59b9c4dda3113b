// Helpers shared by the importer tests: fixture paths, reading files, importing a
// fixture, and "matches a published figure to its published precision".
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "src/importers/import.hpp"

namespace moesim::importers::testing {

inline std::string source_path(const std::string& relative) { return std::string(MOESIM_SOURCE_DIR) + "/" + relative; }
inline std::string fixture(const std::string& name) { return source_path("tests/fixtures/importers/" + name); }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline ImportResult import_fixture(const std::string& name, std::vector<std::string> set = {}, std::string format = "") {
  ImportOptions o;
  o.set = std::move(set);
  o.format = std::move(format);
  return import_file(fixture(name), o);
}

// A count in billions matches a published figure given with `decimals` decimals when it
// rounds to it or, as several model cards do, truncates to it.
inline bool matches_published(std::int64_t count, double published_billions, int decimals) {
  const double scale = std::pow(10.0, decimals);
  const double b = static_cast<double>(count) / 1e9;
  const double target = std::round(published_billions * scale);
  return std::round(b * scale) == target || std::floor(b * scale) == target;
}

}  // namespace moesim::importers::testing
