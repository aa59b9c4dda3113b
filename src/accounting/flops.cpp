// Closed-form FLOP accounting; see flops.hpp for the conventions.
#include "src/accounting/flops.hpp"

#include <algorithm>

#include "src/accounting/capacity.hpp"

namespace moesim {
namespace {

// Multiply-adds of one FFN per token: 2 matrices for gelu/relu, 3 for swiglu.
double ffn_macs(const ModelSpec& m, Activation act, double hidden) {
  return (act == Activation::swiglu ? 3.0 : 2.0) * static_cast<double>(m.d_model) * hidden;
}

}  // namespace

double ForwardFlops::total() const {
  return qkv + attention_scores + attention_out + dense_ffn + router + shared_experts + routed_experts + output_head +
         mtp_projection + mtp_head;
}

ForwardFlops forward_flops(const ModelSpec& m) {
  ForwardFlops f;
  const double s = static_cast<double>(m.seq_len), d = static_cast<double>(m.d_model);
  const double h = m.heads;
  // Per token: projection multiply-adds into q/k/v, and the widths of scores and values.
  double qkv_macs, score_width, value_width;
  if (m.mla) {
    const MlaSpec& a = *m.mla;
    const double qk = static_cast<double>(a.qk_nope_head_dim + a.qk_rope_head_dim);
    const double ql = static_cast<double>(a.q_lora_rank), kl = static_cast<double>(a.kv_lora_rank);
    qkv_macs = (ql > 0 ? d * ql + ql * h * qk : d * h * qk) + d * (kl + static_cast<double>(a.qk_rope_head_dim)) +
               kl * h * static_cast<double>(a.qk_nope_head_dim + a.v_head_dim);
    score_width = h * qk;
    value_width = h * static_cast<double>(a.v_head_dim);
  } else {
    const double q = h * static_cast<double>(m.head_dim), kv = static_cast<double>(m.kv_heads * m.head_dim);
    qkv_macs = d * (q + 2 * kv);
    score_width = q;
    value_width = q;
  }
  // The main model's layers, then each multi-token prediction module's, shaped as the last.
  for (int n = 0; n < m.layers + m.mtp_layers; ++n) {
    const int i = std::min(n, m.layers - 1);
    f.qkv += 2 * s * qkv_macs;
    f.attention_scores += 2 * s * s * (score_width + value_width);
    f.attention_out += 2 * s * value_width * d;
    if (!m.is_moe_layer(i)) {
      f.dense_ffn += 2 * s * ffn_macs(m, m.activation, static_cast<double>(m.ffn_dim));
      continue;
    }
    f.router += 2 * s * d * m.moe.experts;
    f.shared_experts += 2 * s * m.moe.shared_experts * ffn_macs(m, m.expert_act(), static_cast<double>(m.shared_ffn()));
    f.routed_experts += 2 * s * m.moe.top_k * ffn_macs(m, m.expert_act(), static_cast<double>(m.expert_ffn()));
  }
  f.output_head = 2 * s * d * static_cast<double>(m.vocab);
  f.mtp_projection = m.mtp_layers * 2 * s * (2 * d) * d;
  f.mtp_head = m.mtp_layers * f.output_head;
  return f;
}

IterationFlops iteration_flops(const ModelSpec& m, const Plan& p) {
  IterationFlops it;
  it.forward_per_sequence = forward_flops(m);
  const ForwardFlops& f = it.forward_per_sequence;
  it.sequences = static_cast<double>(p.global_batch());
  it.forward = f.total() * it.sequences;
  it.backward = 2 * it.forward;
  it.model = it.forward + it.backward;
  it.per_token_model = 3 * f.total() / static_cast<double>(m.seq_len);

  // Padding: each rank computes E * capacity slots for its mbs * seq tokens instead of k * tokens.
  double padding_forward = 0;
  if (m.is_moe() && f.routed_experts > 0) {
    const std::int64_t tokens = routed_tokens(p, m);
    const double ratio = static_cast<double>(expert_slots(m.moe, tokens)) / (static_cast<double>(m.moe.top_k) * static_cast<double>(tokens));
    padding_forward = f.routed_experts * (ratio - 1.0) * it.sequences;
  }
  double layer_forward = f.total() - f.output_head - f.mtp_head;
  if (p.recompute == Recompute::full) it.recompute = layer_forward * it.sequences + padding_forward;
  if (p.recompute == Recompute::selective) it.recompute = f.attention_scores * it.sequences;
  it.hardware = it.model + 3 * padding_forward + it.recompute;
  return it;
}

}  // namespace moesim
