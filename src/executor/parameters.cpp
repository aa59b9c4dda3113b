// Layout and initial values of a rank's parameters.
#include "src/executor/parameters.hpp"

#include <cmath>

#include "kernels/counter_rng.hpp"
#include "src/accounting/params.hpp"

namespace moesim::exec {
namespace {

class LayoutBuilder {
 public:
  LayoutBuilder(ModelParams& out, UnitPadding padding) : out_(out), padding_(padding) {}

  // A tensor held whole by every tensor-parallel rank (or blocks of it: experts).
  std::size_t add(std::string name, ParamGroup group, std::size_t size, InitKind init,
                  std::size_t block_size = 0, std::vector<int> block_ids = {}) {
    return place({std::move(name), group, 0, size, init, block_size, std::move(block_ids), false});
  }
  // This tensor-parallel rank's blocks of a tensor split over the ranks.
  std::size_t split(std::string name, ParamGroup group, InitKind init, std::size_t block_size,
                    std::vector<int> block_ids) {
    const std::size_t size = block_size * block_ids.size();
    return place({std::move(name), group, 0, size, init, block_size, std::move(block_ids), true});
  }

  // Closes the group's unit of the tensors placed since the last one (none: no unit),
  // padding it with zeros to the group's multiple.
  void end_unit(ParamGroup group, std::string name) {
    const bool dense = group == ParamGroup::dense;
    std::size_t& end = dense ? out_.dense_size : out_.expert_size;
    std::size_t& start = dense ? dense_start_ : expert_start_;
    if (end == start) return;
    const auto multiple = static_cast<std::size_t>(dense ? padding_.dense : padding_.expert);
    end = (end + multiple - 1) / multiple * multiple;
    out_.units.push_back({group, start, end - start, std::move(name)});
    start = end;
  }

 private:
  std::size_t place(ParamTensor t) {
    std::size_t& end = t.group == ParamGroup::dense ? out_.dense_size : out_.expert_size;
    t.offset = end;
    end += t.size;
    out_.tensors.push_back(std::move(t));
    return out_.tensors.back().offset;
  }

  ModelParams& out_;
  UnitPadding padding_;
  std::size_t dense_start_ = 0, expert_start_ = 0;
};

std::size_t z(std::int64_t n) { return static_cast<std::size_t>(n); }

// FNV-1a: a tensor's name as part of its values' random key.
std::uint64_t name_hash(const std::string& name) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// A standard normal from two 53-bit uniforms of the counter generator (Box-Muller).
double normal(std::uint64_t key, std::uint64_t index) {
  using kernels::counter_hash;
  using kernels::RngStream;
  const double u1 = (static_cast<double>(counter_hash(key, RngStream::ParameterInit, 2 * index) >> 11) + 0.5) * 0x1.0p-53;
  const double u2 = static_cast<double>(counter_hash(key, RngStream::ParameterInit, 2 * index + 1) >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace

namespace {

std::vector<int> range_ids(int first, int count) {
  std::vector<int> ids;
  for (int i = 0; i < count; ++i) ids.push_back(first + i);
  return ids;
}

// Block ids of a matrix whose rows are all kept and whose columns are split: row o keeps
// global column blocks o * blocks_per_row + j for the listed j.
std::vector<int> column_ids(std::size_t rows, int blocks_per_row, const std::vector<int>& kept) {
  std::vector<int> ids;
  for (std::size_t o = 0; o < rows; ++o)
    for (const int j : kept) ids.push_back(static_cast<int>(o) * blocks_per_row + j);
  return ids;
}

}  // namespace

std::size_t ModelParams::param_count() const {
  std::size_t n = 0;
  for (const ParamTensor& t : tensors) n += t.size;
  return n;
}

ModelParams param_layout(const ModelSpec& m, const ExpertShard& shard, int ep_rank, int tp, int tp_rank, int pp,
                         int stage, UnitPadding padding, int vpp, EndStages ends) {
  ModelParams p;
  LayoutBuilder b(p, padding);
  p.first_stage = stage == 0;
  p.last_stage = stage == pp - 1;
  p.chunks = vpp;
  Plan stages;
  stages.pp = pp;
  stages.vpp = vpp;
  stages.first_stage_layers = ends.first_layers;
  stages.last_stage_layers = ends.last_layers;
  const ParamGroup D = ParamGroup::dense;
  const std::size_t d = z(m.d_model);
  const std::size_t hd = z(m.head_dim);
  const int H = m.heads, KV = m.kv_heads;
  const int Hl = H / tp, KVl = KV / tp;  // this tensor-parallel rank's heads
  const bool beta = m.norm == Norm::layernorm;
  // Megatron's split: q, k, v and fc1 by output rows (heads, FFN columns), the out
  // projection and fc2 by input columns; norms, embeddings, the gate and the biases added
  // after the reduction are replicated.
  std::vector<int> qkv_ids = range_ids(tp_rank * Hl, Hl);
  for (const int id : range_ids(H + tp_rank * KVl, KVl)) qkv_ids.push_back(id);
  for (const int id : range_ids(H + KV + tp_rank * KVl, KVl)) qkv_ids.push_back(id);
  const std::vector<int> proj_ids = column_ids(d, H, range_ids(tp_rank * Hl, Hl));

  if (p.first_stage) {
    p.wte = b.add("embed_tokens.weight", D, z(m.vocab) * d, InitKind::normal);
    // A unit of its own, like the last stage's copy, so that the two copies' shards line up.
    b.end_unit(D, "embed_tokens");
    if (m.positions == Positions::learned)
      p.wpe = b.add("embed_positions.weight", D, z(m.max_positions) * d, InitKind::normal);
    b.end_unit(D, "embed_positions");
  }

  p.local_experts = m.is_moe() ? shard.local_count() : 0;
  std::vector<int> local_ids;
  for (int l = 0; l < p.local_experts; ++l) local_ids.push_back(shard.expert_at(ep_rank, l));

  for (const int i : stage_layers(m, stages, stage)) {
    const std::string pre = "layers." + std::to_string(i) + ".";
    LayerParams L;
    L.index = i;
    L.moe = m.is_moe_layer(i);
    if (L.moe)
      for (int j = 0; j < i; ++j) L.moe_index += m.is_moe_layer(j) ? 1 : 0;
    L.ln1_g = b.add(pre + "attn_norm.weight", D, d, InitKind::one);
    if (beta) L.ln1_b = b.add(pre + "attn_norm.bias", D, d, InitKind::zero);
    L.qkv_w = b.split(pre + "attn.qkv.weight", D, InitKind::normal, hd * d, qkv_ids);
    if (m.bias || m.qkv_bias) L.qkv_b = b.split(pre + "attn.qkv.bias", D, InitKind::zero, hd, qkv_ids);
    L.proj_w = b.split(pre + "attn.out_proj.weight", D, InitKind::normal, hd, proj_ids);
    if (m.bias) L.proj_b = b.add(pre + "attn.out_proj.bias", D, d, InitKind::zero);
    L.ln2_g = b.add(pre + "ffn_norm.weight", D, d, InitKind::one);
    if (beta) L.ln2_b = b.add(pre + "ffn_norm.bias", D, d, InitKind::zero);
    if (!L.moe) {
      const std::size_t fl = z(m.ffn_dim / tp);
      // SwiGLU's fc1 is the fused [gate | value] projection (xformers' w12): each rank
      // keeps its slice of both halves.
      std::vector<int> fc1_ids{tp_rank};
      if (m.activation == Activation::swiglu) fc1_ids.push_back(tp + tp_rank);
      L.fc1_w = b.split(pre + "ffn.fc1.weight", D, InitKind::normal, fl * d, fc1_ids);
      if (m.bias) L.fc1_b = b.split(pre + "ffn.fc1.bias", D, InitKind::zero, fl, fc1_ids);
      L.fc2_w = b.split(pre + "ffn.fc2.weight", D, InitKind::normal, fl, column_ids(d, tp, {tp_rank}));
      if (m.bias) L.fc2_b = b.add(pre + "ffn.fc2.bias", D, d, InitKind::zero);
    } else {
      // Experts split like the dense FFN (Megatron's expert tensor parallel = tp).
      const std::size_t fl = z(m.expert_ffn() / tp);
      const ParamGroup E = ParamGroup::expert;
      std::vector<int> rows_ids, w2_ids;
      for (const int e : local_ids) {
        rows_ids.push_back(e * tp + tp_rank);
        for (std::size_t o = 0; o < d; ++o) w2_ids.push_back(static_cast<int>((z(e) * d + o) * z(tp)) + tp_rank);
      }
      L.gate_w = b.add(pre + "moe.gate.wg.weight", D, z(m.moe.experts) * d, InitKind::normal);
      L.ex_w1 = b.split(pre + "moe.experts.fc1.weight", E, InitKind::normal, fl * d, rows_ids);
      if (m.expert_has_bias()) L.ex_b1 = b.split(pre + "moe.experts.fc1.bias", E, InitKind::zero, fl, rows_ids);
      L.ex_w2 = b.split(pre + "moe.experts.fc2.weight", E, InitKind::normal, fl, w2_ids);
      // The output bias is held by every rank but added (and so trained) on tp rank 0
      // only: its gradient lives on one rank, as a split tensor's slices do.
      if (m.expert_has_bias()) L.ex_b2 = b.split(pre + "moe.experts.fc2.bias", E, InitKind::zero, d, local_ids);
    }
    p.layers.push_back(L);
    b.end_unit(D, pre + "dense");
    b.end_unit(ParamGroup::expert, pre + "experts");
  }
  if (!p.last_stage) return p;
  if (m.final_norm) {
    p.lnf_g = b.add("final_norm.weight", D, d, InitKind::one);
    if (beta) p.lnf_b = b.add("final_norm.bias", D, d, InitKind::zero);
  }
  b.end_unit(D, "final_norm");
  if (!m.tied_embeddings) {
    p.head_w = b.add("output_projection.weight", D, z(m.vocab) * d, InitKind::normal);
  } else if (p.first_stage) {
    p.head_w = p.wte;
  } else {
    // Megatron's copy of the tied embedding on the last stage: same name, so the same
    // values, and its gradient summed with the first stage's every update.
    p.head_w = b.add("embed_tokens.weight", D, z(m.vocab) * d, InitKind::normal);
    p.tensors.back().shared_copy = true;
  }
  b.end_unit(D, "output_projection");
  return p;
}

void init_params(const ModelParams& params, std::uint64_t seed, float init_std,
                 std::span<float> dense, std::span<float> expert) {
  for (const ParamTensor& t : params.tensors) {
    float* out = (t.group == ParamGroup::dense ? dense : expert).data() + t.offset;
    if (t.init != InitKind::normal) {
      std::fill(out, out + t.size, t.init == InitKind::one ? 1.0f : 0.0f);
      continue;
    }
    const std::uint64_t key = kernels::mix64(seed) ^ name_hash(t.name);
    for (std::size_t i = 0; i < t.size; ++i) {
      std::size_t global = i;
      if (t.block_size > 0)
        global = static_cast<std::size_t>(t.block_ids[i / t.block_size]) * t.block_size + i % t.block_size;
      out[i] = static_cast<float>(init_std * normal(key, global));
    }
  }
}

}  // namespace moesim::exec
