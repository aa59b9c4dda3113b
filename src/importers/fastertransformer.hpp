// Importer for FasterTransformer's GPT config.ini (seed 003): [gpt] sizes and
// [structure] MoE layout -> ModelSpec. FasterTransformer is an inference engine: the
// file carries no training plan and no capacity (it never drops tokens).
#pragma once

#include <string>
#include <string_view>

#include "src/importers/import_report.hpp"
#include "src/importers/overrides.hpp"

namespace moesim::importers {

ImportResult import_fastertransformer(std::string_view text, const std::string& file, Overrides& set);

}  // namespace moesim::importers
