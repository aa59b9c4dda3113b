// Closed-form memory accounting; conventions in memory.hpp.
#include "src/accounting/memory.hpp"

#include <algorithm>
#include <cmath>

#include "src/accounting/capacity.hpp"
#include "src/accounting/params.hpp"

namespace moesim {

int bytes_of(DType d) { return d == DType::fp32 ? 4 : 2; }

double gemm_input_bytes(const Plan& p) {
  if (p.fp8 == Fp8::none) return bytes_of(p.precision);
  return p.fp8_recipe == Fp8Recipe::blockwise ? kFp8BytesPerElement : 1.0;
}

namespace {

// Dropout masks are one byte per element (PyTorch bool).
constexpr double kMaskBytes = 1.0;
// Softmax statistics (log-sum-exp) of fused attention are kept in fp32.
constexpr double kFp32Bytes = 4.0;

}  // namespace

LayerActivations layer_activations(const ModelSpec& m, const Plan& p, int layer) {
  LayerActivations a;
  const double e = bytes_of(p.precision), g = gemm_input_bytes(p), t = p.tp, et = p.expert_tp();
  // What tensor parallelism replicates (norm inputs, dropout masks), sequence parallelism splits.
  const double rt = p.sp ? t : 1.0;
  // The rank's share of the micro-batch's tokens (1/cp of each sequence).
  const double sb = attention_tokens(p, m);
  const double h = static_cast<double>(m.d_model);
  const double q = static_cast<double>(m.heads * m.head_dim), kv = static_cast<double>(m.kv_heads * m.head_dim);
  const double scores = static_cast<double>(m.heads) * static_cast<double>(m.seq_len) * sb;  // a s^2 b (cp is flash only)

  // Attention: norm input and QKV input (replicated over tp), Q, K, V and the
  // projection input (split), the post-projection dropout mask (replicated). The QKV and
  // projection inputs are GEMM inputs (FP8 under fp8).
  a.attention = (e + g) * sb * h / rt + e * sb * (q + 2 * kv) / t + g * sb * q / t + kMaskBytes * sb * h / rt;
  bool keep_scores = p.attention == AttentionImpl::unfused && p.recompute == Recompute::none;
  if (keep_scores) a.attention += (2 * e + kMaskBytes) * scores / t;  // softmax out, dropout mask, dropout out
  if (p.attention == AttentionImpl::flash) a.attention += kFp32Bytes * static_cast<double>(m.heads) * sb / t;

  // FFN: norm input and fc1 input (replicated), activation input(s) and fc2 input (split),
  // mask. The fc1 and fc2 inputs are GEMM inputs.
  auto ffn_inner = [&](double tokens, double hidden, Activation act, double split) {
    double act_inputs = act == Activation::swiglu ? 2.0 : 1.0;
    return (e * act_inputs + g) * tokens * hidden / split;
  };
  if (!m.is_moe_layer(layer)) {
    a.ffn = ((e + g) * sb * h + kMaskBytes * sb * h) / rt;
    a.ffn += ffn_inner(sb, static_cast<double>(m.ffn_dim), m.activation, t);
    return a;
  }
  // An MoE layer's norm output is the router's input, kept in precision; shared experts
  // hold their own copy of it as their fc1's input under fp8 (the same tensor otherwise).
  const MoeSpec& moe = m.moe;
  const double shared_copy = moe.shared_experts > 0 && g != e ? g : 0.0;
  a.ffn = ((2 * e + shared_copy) * sb * h + kMaskBytes * sb * h) / rt;
  const double slots = static_cast<double>(expert_slots(moe, std::llround(expert_layer_tokens(p, m))));
  a.ffn += bytes_of(moe.gate_precision) * sb * moe.experts;  // gate probabilities
  a.ffn += (g + e) * slots * h;                               // expert inputs (fc1's) and outputs
  a.ffn += ffn_inner(slots, static_cast<double>(m.expert_ffn()), m.expert_act(), et);
  if (moe.shared_experts > 0)
    a.ffn += moe.shared_experts * ffn_inner(sb, static_cast<double>(m.shared_ffn()), m.expert_act(), t);
  return a;
}

double in_flight_micro_batches(const Plan& p, int stage) {
  const double m = static_cast<double>(p.micro_batches());
  switch (p.schedule) {
    case Schedule::gpipe: return m;
    case Schedule::one_f_one_b: return std::min(static_cast<double>(p.pp - stage), m);
    case Schedule::interleaved: {
      // Megatron's warm-up: 2 (pp - stage - 1) + (vpp - 1) pp chunks, plus the one in 1F1B;
      // expressed in whole-stage micro-batches (a chunk is 1/vpp of the stage's layers).
      double chunks = 2.0 * (p.pp - stage - 1) + static_cast<double>(p.vpp - 1) * p.pp + 1.0;
      chunks = std::min(chunks, m * p.vpp);
      return chunks / p.vpp;
    }
  }
  return m;
}

std::vector<StageMemory> memory_per_stage(const ModelSpec& m, const Plan& p, std::span<const double> in_flight) {
  std::vector<StageMemory> out;
  const double w = bytes_of(p.precision);
  const double dp = p.dense_replicas(), edp = p.edp();
  for (const StageParams& sp : params_per_stage(m, p)) {
    StageMemory sm;
    sm.stage = sp.stage;
    MemoryBreakdown& b = sm.bytes;
    const double ne = static_cast<double>(sp.non_expert), ex = static_cast<double>(sp.expert);
    // Each state is sharded from its ZeRO stage on: 1 optimizer (+master), 2 gradients, 3 weights.
    auto held = [&](int from_stage) { return p.zero >= from_stage ? ne / dp + ex / edp : ne + ex; };
    b.weights = w * held(3);
    b.grads = bytes_of(p.grads()) * held(2);
    // What sharding cannot shard: ZeRO 2 holds a piece's whole gradient from its backward to
    // its reduce-scatter, ZeRO 3 also its whole weights while it runs (the largest piece).
    if (p.fp8 != Fp8::none) {
      // Transformer Engine keeps an FP8 copy (one byte, and a scale a block under
      // blockwise) of every linear layer's weight, sharded as the weights are.
      const ParamBreakdown& k = sp.by_kind;
      const double dense = static_cast<double>(k.attention + k.dense_ffn + k.shared_experts);
      const double experts = static_cast<double>(k.routed_experts);
      const double copy = p.fp8_recipe == Fp8Recipe::blockwise ? 1.0 + 4.0 / kFp8BlockElements : 1.0;
      b.weights += copy * (p.zero >= 3 ? dense / dp + experts / edp : dense + experts);
    }
    const double unit = static_cast<double>(largest_sharded_unit_params(m, p, sp));
    if (p.zero >= 2) b.grads += bytes_of(p.grads()) * unit;
    if (p.zero >= 3) b.weights += w * unit;
    b.master = p.master_weights ? 4.0 * held(1) : 0.0;
    b.optimizer = 2.0 * bytes_of(p.optimizer_dtype) * held(1);

    double per_micro_batch = 0, largest_layer = 0;
    std::vector<int> layers = sp.layers;
    const bool last = sp.stage == p.pp - 1;
    if (last) layers.insert(layers.end(), static_cast<std::size_t>(m.mtp_layers), m.layers - 1);  // MTP modules' layers
    for (int layer : layers) {
      double a = layer_activations(m, p, layer).total();
      per_micro_batch += a;
      largest_layer = std::max(largest_layer, a);
    }
    const double sb = attention_tokens(p, m);
    const double h = static_cast<double>(m.d_model);
    if (p.recompute == Recompute::full) {
      // Only each layer's input is kept; backward recomputes one layer at a time.
      per_micro_batch = static_cast<double>(layers.size()) * w * sb * h;
    }
    // A multi-token prediction module also keeps its two normed inputs for the projection.
    if (last) per_micro_batch += m.mtp_layers * 2 * w * sb * h;
    sm.in_flight_micro_batches = static_cast<std::size_t>(sp.stage) < in_flight.size()
                                     ? in_flight[static_cast<std::size_t>(sp.stage)]
                                     : in_flight_micro_batches(p, sp.stage);
    b.activations = per_micro_batch * sm.in_flight_micro_batches;
    if (p.recompute == Recompute::full) b.activations += largest_layer;
    if (last) {
      // Output head: its input, and fp32 logits for the loss (vocabulary split over tp), for
      // the model and again for each multi-token prediction module.
      b.activations += (1 + m.mtp_layers) * (w * sb * h + kFp32Bytes * sb * static_cast<double>(m.vocab) / p.tp);
    }
    if (m.is_moe()) {
      bool has_moe = std::any_of(sp.layers.begin(), sp.layers.end(), [&](int l) { return m.is_moe_layer(l); });
      if (has_moe)
        b.dispatch_buffers = 2 * w * static_cast<double>(expert_slots(m.moe, std::llround(expert_layer_tokens(p, m)))) *
                             static_cast<double>(m.d_model);
    }
    out.push_back(sm);
  }
  return out;
}

StageMemory peak_memory(const ModelSpec& m, const Plan& p, std::span<const double> in_flight) {
  auto stages = memory_per_stage(m, p, in_flight);
  return *std::max_element(stages.begin(), stages.end(), [](const StageMemory& a, const StageMemory& b) {
    return a.bytes.total() < b.bytes.total();
  });
}

}  // namespace moesim
