// Layout and initial values of a rank's parameters.
#include "src/executor/parameters.hpp"

#include <cmath>

#include "kernels/counter_rng.hpp"

namespace moesim::exec {
namespace {

class LayoutBuilder {
 public:
  explicit LayoutBuilder(ModelParams& out) : out_(out) {}

  std::size_t add(std::string name, ParamGroup group, std::size_t size, InitKind init,
                  std::size_t block_size = 0, std::vector<int> block_ids = {}) {
    std::size_t& end = group == ParamGroup::dense ? out_.dense_size : out_.expert_size;
    out_.tensors.push_back({std::move(name), group, end, size, init, block_size, std::move(block_ids)});
    const std::size_t offset = end;
    end += size;
    return offset;
  }

 private:
  ModelParams& out_;
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

ModelParams param_layout(const ModelSpec& m, const ExpertShard& shard, int ep_rank) {
  ModelParams p;
  LayoutBuilder b(p);
  const ParamGroup D = ParamGroup::dense;
  const std::size_t d = z(m.d_model);
  const std::size_t q_width = z(m.heads * m.head_dim);
  const std::size_t kv_width = z(m.kv_heads * m.head_dim);
  const bool beta = m.norm == Norm::layernorm;

  p.wte = b.add("embed_tokens.weight", D, z(m.vocab) * d, InitKind::normal);
  if (m.positions == Positions::learned)
    p.wpe = b.add("embed_positions.weight", D, z(m.max_positions) * d, InitKind::normal);

  p.local_experts = m.is_moe() ? shard.local_count() : 0;
  std::vector<int> local_ids, slot_ids;
  for (int l = 0; l < p.local_experts; ++l) local_ids.push_back(shard.expert_at(ep_rank, l));
  for (int s = 0; s < m.moe.experts; ++s) slot_ids.push_back(shard.expert_of_slot(s));

  for (int i = 0; i < m.layers; ++i) {
    const std::string pre = "layers." + std::to_string(i) + ".";
    LayerParams L;
    L.moe = m.is_moe_layer(i);
    L.ln1_g = b.add(pre + "attn_norm.weight", D, d, InitKind::one);
    if (beta) L.ln1_b = b.add(pre + "attn_norm.bias", D, d, InitKind::zero);
    L.qkv_w = b.add(pre + "attn.qkv.weight", D, (q_width + 2 * kv_width) * d, InitKind::normal);
    if (m.bias || m.qkv_bias) L.qkv_b = b.add(pre + "attn.qkv.bias", D, q_width + 2 * kv_width, InitKind::zero);
    L.proj_w = b.add(pre + "attn.out_proj.weight", D, d * q_width, InitKind::normal);
    if (m.bias) L.proj_b = b.add(pre + "attn.out_proj.bias", D, d, InitKind::zero);
    L.ln2_g = b.add(pre + "ffn_norm.weight", D, d, InitKind::one);
    if (beta) L.ln2_b = b.add(pre + "ffn_norm.bias", D, d, InitKind::zero);
    if (!L.moe) {
      const std::size_t f = z(m.ffn_dim);
      L.fc1_w = b.add(pre + "ffn.fc1.weight", D, f * d, InitKind::normal);
      if (m.bias) L.fc1_b = b.add(pre + "ffn.fc1.bias", D, f, InitKind::zero);
      L.fc2_w = b.add(pre + "ffn.fc2.weight", D, d * f, InitKind::normal);
      if (m.bias) L.fc2_b = b.add(pre + "ffn.fc2.bias", D, d, InitKind::zero);
    } else {
      const std::size_t f = z(m.expert_ffn());
      const std::size_t n = z(p.local_experts);
      const ParamGroup E = ParamGroup::expert;
      L.gate_w = b.add(pre + "moe.gate.wg.weight", D, z(m.moe.experts) * d, InitKind::normal, d, slot_ids);
      L.ex_w1 = b.add(pre + "moe.experts.fc1.weight", E, n * f * d, InitKind::normal, f * d, local_ids);
      if (m.expert_has_bias()) L.ex_b1 = b.add(pre + "moe.experts.fc1.bias", E, n * f, InitKind::zero, f, local_ids);
      L.ex_w2 = b.add(pre + "moe.experts.fc2.weight", E, n * d * f, InitKind::normal, d * f, local_ids);
      if (m.expert_has_bias()) L.ex_b2 = b.add(pre + "moe.experts.fc2.bias", E, n * d, InitKind::zero, d, local_ids);
    }
    p.layers.push_back(L);
  }
  if (m.final_norm) {
    p.lnf_g = b.add("final_norm.weight", D, d, InitKind::one);
    if (beta) p.lnf_b = b.add("final_norm.bias", D, d, InitKind::zero);
  }
  if (!m.tied_embeddings) p.head_w = b.add("output_projection.weight", D, z(m.vocab) * d, InitKind::normal);
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
