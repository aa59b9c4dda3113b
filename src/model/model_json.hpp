// Reading and writing ModelSpec as moesim's model JSON (configs/models/*.json).
// The format is documented in docs/config-format.md; unknown keys are errors.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "src/model/model_spec.hpp"

namespace moesim {

// Largest values accepted, chosen so that parameter counts stay exact in 64 bits.
struct ModelLimits {
  static constexpr int max_layers = 1024;
  static constexpr std::int64_t max_d_model = 65536;
  static constexpr std::int64_t max_ffn = 262144;
  static constexpr std::int64_t max_vocab = 4194304;
  static constexpr std::int64_t max_seq = 1048576;
  static constexpr int max_heads = 1024;
  static constexpr std::int64_t max_head_dim = 4096;
  static constexpr int max_experts = 4096;
  static constexpr int max_shared_experts = 256;
};

ModelSpec model_from_json(const nlohmann::json& doc, const std::string& file);
ModelSpec load_model(const std::string& path);
// Canonical JSON with every field explicit; model_from_json(model_to_json(m)) == m.
nlohmann::ordered_json model_to_json(const ModelSpec& model);

}  // namespace moesim
