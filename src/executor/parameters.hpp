// The parameters one rank holds: every tensor of the GPT-MoE model with its place in one of
// two flat buffers (dense: the same on every data-parallel rank; expert: this rank's
// experts, the same on every expert-data-parallel replica), and their initial values. An
// initial value depends only on (seed, tensor name, global element index), so every plan
// starts from the same model as a single rank does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/executor/rank_grid.hpp"
#include "src/model/model_spec.hpp"

namespace moesim::exec {

enum class ParamGroup { dense, expert };
enum class InitKind { normal, one, zero };

inline constexpr std::size_t kAbsent = static_cast<std::size_t>(-1);

struct ParamTensor {
  std::string name;  // "layers.1.moe.experts.fc1.weight"
  ParamGroup group = ParamGroup::dense;
  std::size_t offset = 0;  // in the group's buffer
  std::size_t size = 0;
  InitKind init = InitKind::normal;
  // A tensor stored as blocks of block_size elements taken from the global tensor's blocks
  // block_ids (this rank's experts). Empty: stored whole.
  std::size_t block_size = 0;
  std::vector<int> block_ids;
  bool tp_split = false;  // split over tensor parallel (else the same on every tp rank)
  // The last pipeline stage's copy of the tied embedding: trained with the first stage's
  // gradient added, and left out of the gradient norm (the first stage counts it).
  bool shared_copy = false;
};

// A run of consecutive tensors of one group that ZeRO-2 and ZeRO-3 shard, gather and
// reduce together (FSDP's flat parameter): the token embedding, the position embedding,
// each layer's dense tensors, each MoE layer's experts, the final norm, the output head.
// `size` includes the zeros that pad it to a multiple of the group's shard count.
struct ParamUnit {
  ParamGroup group = ParamGroup::dense;
  std::size_t offset = 0;  // in the group's buffer
  std::size_t size = 0;
  std::string name;  // "embed_tokens", "layers.1.dense", "layers.1.experts", "final_norm", ...
};

// The multiple each group's units are padded to: 1 for none (ZeRO 0 and 1); under ZeRO-2/3
// the ranks sharing the group (data parallel for dense, expert data parallel for experts).
struct UnitPadding {
  int dense = 1, expert = 1;
};

// Offsets of one layer's tensors (kAbsent where the model has none).
struct LayerParams {
  int index = 0;      // in the model
  bool moe = false;
  int moe_index = 0;  // among the model's MoE layers
  std::size_t ln1_g = kAbsent, ln1_b = kAbsent, qkv_w = kAbsent, qkv_b = kAbsent;
  std::size_t proj_w = kAbsent, proj_b = kAbsent, ln2_g = kAbsent, ln2_b = kAbsent;
  std::size_t fc1_w = kAbsent, fc1_b = kAbsent, fc2_w = kAbsent, fc2_b = kAbsent;  // dense FFN
  std::size_t gate_w = kAbsent;                                                   // dense buffer
  std::size_t ex_w1 = kAbsent, ex_b1 = kAbsent, ex_w2 = kAbsent, ex_b2 = kAbsent;  // expert buffer
};

struct ModelParams {
  std::vector<ParamTensor> tensors;
  std::size_t dense_size = 0, expert_size = 0;
  bool first_stage = true, last_stage = true;  // of the pipeline
  // The stage's model chunks (virtual stages, interleaved schedule): `layers` holds chunk
  // 0's, then chunk 1's, ..., as many each. The first stage's chunk 0 embeds, the last
  // stage's last chunk has the final norm and head.
  int chunks = 1;
  // wte and wpe on the first stage; final norm and head on the last (head_w = wte when tied
  // on one stage, the copy when tied over several).
  std::size_t wte = kAbsent, wpe = kAbsent, lnf_g = kAbsent, lnf_b = kAbsent, head_w = kAbsent;
  std::vector<LayerParams> layers;  // this stage's
  int local_experts = 0;
  std::vector<ParamUnit> units;  // both groups', in buffer order within each group
  std::size_t param_count() const;  // elements of the tensors, padding left out
};

// The tensors of `model` held by expert-parallel rank `ep_rank` of `shard`, tensor-parallel
// rank `tp_rank` of `tp`, on pipeline stage `stage` of `pp` with `vpp` model chunks (its
// layers as src/accounting/params.hpp's stage_layers gives them: chunks stage,
// stage + pp, ...), with each unit padded as `padding` asks. `ends`: the plan's uneven
// first and last stages.
struct EndStages {
  int first_layers = 0, last_layers = 0;  // 0: an even share
};
ModelParams param_layout(const ModelSpec& model, const ExpertShard& shard, int ep_rank, int tp = 1,
                         int tp_rank = 0, int pp = 1, int stage = 0, UnitPadding padding = {}, int vpp = 1,
                         EndStages ends = {});

// Writes every tensor's initial value: normal(0, init_std) for matrices and embeddings,
// one for norm gains, zero for biases.
void init_params(const ModelParams& params, std::uint64_t seed, float init_std,
                 std::span<float> dense, std::span<float> expert);

}  // namespace moesim::exec
