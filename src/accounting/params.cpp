// Closed-form parameter counts. Tensor parallelism follows Megatron: q/k/v and fc1 are
// column-parallel (weights and biases split), o and fc2 row-parallel (weights split,
// output bias replicated), embeddings vocabulary-parallel, norms and routers replicated.
#include "src/accounting/params.hpp"

#include <algorithm>

namespace moesim {
namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace

std::int64_t ParamBreakdown::total() const {
  return embedding + positions + attention + norms + dense_ffn + router + shared_experts + routed_experts + output_head +
         mtp_projection;
}

std::int64_t attention_params(const ModelSpec& m, int tp) {
  const std::int64_t d = m.d_model, h = m.heads;
  if (m.mla) {
    // DeepSeek-V2/V3: q = W_qb(norm(W_qa x)) or W_q x; [c_kv, k_rope] = W_kva x;
    // [k_nope, v] = W_kvb(norm(c_kv)); heads split over tp, the down-projections replicated.
    const MlaSpec& a = *m.mla;
    const std::int64_t qk = a.qk_nope_head_dim + a.qk_rope_head_dim;
    std::int64_t q = a.q_lora_rank > 0 ? d * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * h * qk / tp
                                       : d * h * qk / tp;
    std::int64_t kv = d * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank +
                      a.kv_lora_rank * h * (a.qk_nope_head_dim + a.v_head_dim) / tp;
    std::int64_t o = h * a.v_head_dim * d / tp;
    return q + kv + o + (m.bias ? d : 0);
  }
  const std::int64_t q = h * m.head_dim, kv = m.kv_heads * m.head_dim;
  std::int64_t w = d * (q + 2 * kv) / tp + q * d / tp;
  std::int64_t b = (m.bias || m.qkv_bias) ? (q + 2 * kv) / tp : 0;
  if (m.bias) b += d;
  std::int64_t norm = 0;  // qk-norms are gains only (RMSNorm)
  if (m.qk_norm == QkNorm::per_head) norm = 2 * m.head_dim;
  if (m.qk_norm == QkNorm::full) norm = (q + kv) / tp;
  return w + b + norm;
}

std::int64_t norm_params(const ModelSpec& m) {
  return m.norm == Norm::layernorm ? 2 * m.d_model : m.d_model;
}

std::int64_t ffn_params(std::int64_t d, std::int64_t hidden, Activation act, bool bias, int tp) {
  const std::int64_t h = hidden / tp;
  if (act == Activation::swiglu) return 3 * d * h + (bias ? 2 * h + d : 0);
  return 2 * d * h + (bias ? h + d : 0);
}

std::int64_t dense_ffn_params(const ModelSpec& m, int tp) {
  return ffn_params(m.d_model, m.ffn_dim, m.activation, m.bias, tp);
}

std::int64_t expert_ffn_params(const ModelSpec& m, int tp) {
  return ffn_params(m.d_model, m.expert_ffn(), m.expert_act(), m.expert_has_bias(), tp);
}

std::int64_t shared_expert_params(const ModelSpec& m, int tp) {
  return ffn_params(m.d_model, m.shared_ffn(), m.expert_act(), m.expert_has_bias(), tp);
}

std::int64_t router_params(const ModelSpec& m) {
  return m.d_model * m.moe.experts + (m.moe.gate_bias ? m.moe.experts : 0);
}

namespace {

// Adds one layer's parameters as held by a rank with the given tp, expert tp (etp) and
// experts_here routed experts of that layer. Shared experts split as the dense layers do.
void add_layer(const ModelSpec& m, int layer, int tp, int etp, int experts_here, ParamBreakdown& b) {
  b.attention += attention_params(m, tp);
  b.norms += 2 * norm_params(m);
  if (!m.is_moe_layer(layer)) {
    b.dense_ffn += dense_ffn_params(m, tp);
    return;
  }
  b.router += router_params(m);
  b.shared_experts += m.moe.shared_experts * shared_expert_params(m, tp);
  b.routed_experts += experts_here * expert_ffn_params(m, etp);
}

void finish(const ModelSpec& m, bool first, bool last, int tp, ParamBreakdown& b) {
  const std::int64_t vocab_rows = ceil_div(m.vocab, tp);
  if (first) {
    b.embedding += vocab_rows * m.d_model;
    if (m.positions == Positions::learned) b.positions += m.max_positions * m.d_model;
  }
  if (last) {
    if (m.final_norm) b.norms += norm_params(m);
    // Untied: its own head. Tied on a later stage: a copy of the embedding for the head.
    if (!m.tied_embeddings || !first) b.output_head += vocab_rows * m.d_model;
  }
}

}  // namespace

void add_mtp_modules(const ModelSpec& m, int tp, int etp, int experts_here, ParamBreakdown& b) {
  for (int k = 0; k < m.mtp_layers; ++k) {
    b.norms += 3 * norm_params(m);  // enorm, hnorm and the norm before the shared head
    b.mtp_projection += 2 * m.d_model * m.d_model / tp;
    add_layer(m, m.layers - 1, tp, etp, experts_here, b);
  }
}

ParamCounts count_params(const ModelSpec& m) {
  ParamCounts c;
  for (int i = 0; i < m.layers; ++i) add_layer(m, i, 1, 1, m.is_moe() ? m.moe.experts : 0, c.by_kind);
  finish(m, true, true, 1, c.by_kind);
  c.total = c.by_kind.total();
  c.expert = c.by_kind.expert();
  c.non_expert = c.by_kind.non_expert();
  c.per_expert = m.is_moe() ? expert_ffn_params(m, 1) : 0;
  c.active = c.non_expert + static_cast<std::int64_t>(m.moe_layer_count()) * m.moe.top_k * c.per_expert;
  add_mtp_modules(m, 1, 1, m.is_moe() ? m.moe.experts : 0, c.mtp);
  c.mtp_total = c.mtp.total();
  const bool mtp_moe = m.is_moe_layer(m.layers - 1);
  c.mtp_active = c.mtp.non_expert() + (mtp_moe ? std::int64_t{m.mtp_layers} * m.moe.top_k * c.per_expert : 0);
  return c;
}

std::int64_t largest_sharded_unit_params(const ModelSpec& m, const Plan& p, const StageParams& s) {
  auto sharded = [&](const ParamBreakdown& b) {
    return (p.dense_replicas() > 1 ? b.non_expert() : 0) + (p.edp() > 1 ? b.expert() : 0);
  };
  ParamBreakdown embedding;
  embedding.embedding = s.by_kind.embedding;
  embedding.positions = s.by_kind.positions;
  std::int64_t largest = sharded(embedding);
  if (s.stage == p.pp - 1) {
    // The head, with the final norm; a tied head on stage 0 is the embedding's unit.
    ParamBreakdown head;
    finish(m, false, true, p.tp, head);
    if (p.pp > 1 || !m.tied_embeddings) largest = std::max(largest, sharded(head));
  }
  for (const int layer : s.layers) {
    ParamBreakdown b;
    add_layer(m, layer, p.tp, p.expert_tp(), m.is_moe() ? m.moe.experts / p.ep : 0, b);
    largest = std::max(largest, sharded(b));
  }
  return largest;
}

std::vector<int> stage_layers(const ModelSpec& m, const Plan& p, int stage) {
  if (p.first_stage_layers > 0 || p.last_stage_layers > 0) {
    // Uneven (check_plan made the middle split exact): first, the even middle, last. As in
    // Megatron-Core, each stage splits its layers evenly over its vpp chunks, and the
    // model's layers run through the chunks in order: chunk c of stage s is the model's
    // (c pp + s)-th.
    const int first = p.first_stage_layers, last = p.last_stage_layers;
    const int middle_stages = p.pp - (first > 0) - (last > 0);
    const int each = middle_stages > 0 ? (m.layers - first - last) / middle_stages : 0;
    std::vector<int> count(static_cast<std::size_t>(p.pp), each);
    if (first > 0) count.front() = first;
    if (last > 0) count.back() = last;
    std::vector<int> out;
    int begin = 0;
    for (int chunk = 0; chunk < p.pp * p.vpp; ++chunk) {
      const int s = chunk % p.pp, size = count[static_cast<std::size_t>(s)] / p.vpp;
      if (s == stage)
        for (int i = 0; i < size; ++i) out.push_back(begin + i);
      begin += size;
    }
    return out;
  }
  const int chunks = p.pp * p.vpp;
  const int per_chunk = m.layers / chunks;
  std::vector<int> out;
  for (int chunk = stage; chunk < chunks; chunk += p.pp)
    for (int i = 0; i < per_chunk; ++i) out.push_back(chunk * per_chunk + i);
  return out;
}

std::vector<StageParams> params_per_stage(const ModelSpec& m, const Plan& p) {
  std::vector<StageParams> stages;
  const int experts_here = m.is_moe() ? m.moe.experts / p.ep : 0;
  for (int s = 0; s < p.pp; ++s) {
    StageParams sp;
    sp.stage = s;
    sp.layers = stage_layers(m, p, s);
    for (int layer : sp.layers) add_layer(m, layer, p.tp, p.expert_tp(), experts_here, sp.by_kind);
    finish(m, s == 0, s == p.pp - 1, p.tp, sp.by_kind);
    // Megatron-Core places the multi-token prediction modules on the last stage.
    if (s == p.pp - 1) add_mtp_modules(m, p.tp, p.expert_tp(), experts_here, sp.by_kind);
    sp.total = sp.by_kind.total();
    sp.expert = sp.by_kind.expert();
    sp.non_expert = sp.by_kind.non_expert();
    stages.push_back(std::move(sp));
  }
  return stages;
}

}  // namespace moesim
