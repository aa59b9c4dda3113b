// ModelSpec's derived queries and its whole-spec validation.
#include "src/model/model_spec.hpp"

#include <algorithm>

#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"
#include "src/model/enum_names.hpp"

namespace moesim {

bool ModelSpec::is_moe_layer(int layer) const {
  if (!is_moe() || layer < 0 || layer >= layers) return false;
  if (!moe.layers.list.empty())
    return std::find(moe.layers.list.begin(), moe.layers.list.end(), layer) != moe.layers.list.end();
  return layer >= moe.layers.offset && (layer - moe.layers.offset) % moe.layers.every == 0;
}

int ModelSpec::moe_layer_count() const {
  int n = 0;
  for (int i = 0; i < layers; ++i) n += is_moe_layer(i) ? 1 : 0;
  return n;
}

void validate(const ModelSpec& m, const std::string& file) {
  auto fail = [&](const std::string& field, const std::string& msg) { throw InputError(file, field, msg); };
  if (m.layers < 1) fail("layers", "expected at least 1 layer");
  if (m.heads < 1) fail("heads", "expected at least 1 head");
  if (m.kv_heads < 1 || m.kv_heads > m.heads || m.heads % m.kv_heads != 0)
    fail("kv_heads", "expected a divisor of heads (" + std::to_string(m.heads) + "), got " + std::to_string(m.kv_heads));
  if (m.d_model < 1) fail("d_model", "expected a positive size");
  if (m.head_dim < 1) fail("head_dim", "expected a positive size");
  if (m.ffn_dim < 1) fail("ffn_dim", "expected a positive size");
  if (m.vocab < 1) fail("vocab", "expected a positive size");
  if (m.seq_len < 1) fail("seq_len", "expected a positive length");
  if (m.positions == Positions::learned && m.max_positions < m.seq_len)
    fail("max_positions", "expected at least seq_len (" + std::to_string(m.seq_len) + ") learned positions");
  if (m.mla) {
    const MlaSpec& a = *m.mla;
    if (a.kv_lora_rank < 1 || a.qk_nope_head_dim < 1 || a.qk_rope_head_dim < 1 || a.v_head_dim < 1)
      fail("mla", "expected positive kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim");
    if (a.q_lora_rank < 0) fail("mla.q_lora_rank", "expected 0 (full rank) or a positive rank");
  }
  if (!m.is_moe()) return;

  const MoeSpec& e = m.moe;
  if (e.top_k < 1 || e.top_k > e.experts)
    fail("moe.top_k", "expected 1 to experts (" + std::to_string(e.experts) + "), got " + std::to_string(e.top_k));
  if ((e.expert_groups > 0) != (e.groups_per_token > 0))
    fail(e.expert_groups > 0 ? "moe.groups_per_token" : "moe.expert_groups",
         "expected expert_groups and groups_per_token together (group-limited routing)");
  if (e.expert_groups > 0) {
    if (e.experts % e.expert_groups != 0)
      fail("moe.expert_groups", "expected a divisor of experts (" + std::to_string(e.experts) + "), got " +
                                    std::to_string(e.expert_groups));
    if (e.groups_per_token > e.expert_groups)
      fail("moe.groups_per_token", "expected at most expert_groups (" + std::to_string(e.expert_groups) + ")");
    if (e.top_k > e.groups_per_token * (e.experts / e.expert_groups))
      fail("moe.groups_per_token", "expected the groups to hold top_k (" + std::to_string(e.top_k) + ") experts");
  }
  if (e.layers.list.empty()) {
    if (e.layers.every < 1) fail("moe.layers.every", "expected at least 1");
    if (e.layers.offset < 0 || e.layers.offset >= m.layers)
      fail("moe.layers.offset", "expected a layer index in [0, " + std::to_string(m.layers - 1) + "]");
  } else {
    std::vector<int> sorted = e.layers.list;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
      fail("moe.layers", "expected distinct layer indices");
    if (sorted.front() < 0 || sorted.back() >= m.layers)
      fail("moe.layers", "expected layer indices in [0, " + std::to_string(m.layers - 1) + "]");
  }
  if (m.moe_layer_count() == 0) fail("moe.layers", "expected at least one MoE layer");
  if (e.shared_experts < 0) fail("moe.shared_experts", "expected 0 or more");
  if (e.capacity_factor && *e.capacity_factor <= 0.0) fail("moe.capacity_factor", "expected a positive factor or null");
  if (e.eval_capacity_factor && *e.eval_capacity_factor <= 0.0)
    fail("moe.eval_capacity_factor", "expected a positive factor or null");
  if (e.dense_to_sparse) {
    const DenseToSparse& d = *e.dense_to_sparse;
    if (d.temperature_start <= 0.0 || d.temperature_end <= 0.0)
      fail("moe.dense_to_sparse", "expected positive temperatures");
  }
}

const char* to_string(Positions p) { return name_of(p, names::kPositions); }
const char* to_string(Norm n) { return name_of(n, names::kNorms); }
const char* to_string(QkNorm n) { return name_of(n, names::kQkNorms); }
const char* to_string(Activation a) { return name_of(a, names::kActivations); }
const char* to_string(DType d) { return name_of(d, names::kDTypes); }
const char* to_string(SecondExpertPolicy p) { return name_of(p, names::kSecondExpertPolicies); }
const char* to_string(RouterScore r) { return name_of(r, names::kRouterScores); }
const char* to_string(CapacityRounding r) { return name_of(r, names::kCapacityRoundings); }

}  // namespace moesim
