// The models the executor's tests train: tiny-moe as shipped (fairseq's layers), deeper,
// and with open_lm's layers; tiny-evomoe (EvoMoE's dense-to-sparse gate).
#pragma once

#include <string>

#include "src/model/model_json.hpp"

namespace moesim {

inline ModelSpec tiny_moe() { return load_model(std::string(MOESIM_SOURCE_DIR) + "/configs/models/tiny-moe.json"); }

// EvoMoE's dense-to-sparse gate on tiny-moe, top-1 at the end: dense for updates 0-1,
// annealing at 2-3 (temperature 2.0, 1.25), sparse from 4 on.
inline ModelSpec tiny_evomoe() {
  return load_model(std::string(MOESIM_SOURCE_DIR) + "/configs/models/tiny-evomoe.json");
}

// tiny-moe with `layers` layers (every other one MoE still): deep enough for pp=4 with two
// chunks per stage (interleaved).
inline ModelSpec tiny_moe_deep(int layers) {
  ModelSpec m = tiny_moe();
  m.layers = layers;
  return m;
}

// open_lm's layers on tiny-moe's sizes: gain-only LayerNorm, rotary positions, SwiGLU, no
// biases, an untied head, bias-free GELU experts (MegaBlocks'), and `kv_heads` kv heads.
inline ModelSpec tiny_openlm_moe(int kv_heads) {
  ModelSpec m = tiny_moe();
  m.positions = Positions::rotary;
  m.norm = Norm::gain_only_layernorm;
  m.activation = Activation::swiglu;
  m.moe.expert_activation = Activation::gelu;
  m.bias = false;
  m.moe.expert_bias = false;
  m.tied_embeddings = false;
  m.kv_heads = kv_heads;
  return m;
}

}  // namespace moesim
