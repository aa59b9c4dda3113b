// Importer for HuggingFace config.json of MoE decoder families: mixtral, qwen2_moe,
// qwen3_moe, deepseek_v2, deepseek_v3, olmoe (a multimodal wrapper's text_config is
// unwrapped first). Unknown keys are listed as ignored; an unknown family is an error.
#pragma once

#include <string>
#include <string_view>

#include "src/importers/import_report.hpp"
#include "src/importers/overrides.hpp"

namespace moesim::importers {

// The model_type values this importer maps, comma-separated (for messages and docs).
inline constexpr const char* kHfFamilies = "mixtral, qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3, olmoe, gpt_oss";

ImportResult import_huggingface(std::string_view text, const std::string& file, Overrides& set);

}  // namespace moesim::importers
