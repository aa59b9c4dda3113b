// What an importer produces: the model, a plan when the input carries one, and the
// report of what was mapped, what was defaulted (from which framework's default) and
// what was ignored, printed on stderr by `moesim import`.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim::importers {

struct ImportReport {
  std::vector<std::string> mapped;     // "decoder_layers 12 -> layers"
  std::vector<std::string> defaulted;  // "positions learned (Megatron default learned_absolute)"
  std::vector<std::string> ignored;    // input keys that do not change the model (or are not modelled)
  std::vector<std::string> notes;      // approximations and things a user should know

  void map(const std::string& from, const std::string& to) { mapped.push_back(from + " -> " + to); }
  void defaults(const std::string& field, const std::string& value, const std::string& why) {
    defaulted.push_back(field + " " + value + " (" + why + ")");
  }
  void ignore(const std::string& key) { ignored.push_back(key); }
  void note(const std::string& text) { notes.push_back(text); }
};

struct ImportResult {
  ModelSpec model;
  std::optional<Plan> plan;
  ImportReport report;
  std::string format;  // fairseq | ft | megatron | hf
  std::string detail;  // e.g. the HF family or the Megatron input shape
};

// The report as indented lines; ignored keys are listed compactly, wrapped at ~100 columns.
void print_report(const ImportReport& report, std::ostream& out);

}  // namespace moesim::importers
