// Roofline-plus-overhead pricing of the ops of a GPT-MoE layer; see compute_model.hpp.
#include "src/cost/compute_model.hpp"

#include <algorithm>
#include <cmath>

#include "src/accounting/memory.hpp"
#include "src/core/error.hpp"
#include "src/profile/fit.hpp"

namespace moesim {
namespace {

// Peak for a GEMM in `dtype`; a dtype the profile lacks falls back to the GEMM table's.
double peak_for(const Profile& p, DType dtype) {
  double peak = p.peak(dtype);
  return peak > 0 ? peak : p.peak(p.compute.gemm_dtype);
}

OpCost gemm_op(std::string name, std::string category, double m, double n, double k, double e, int kernels = 1) {
  OpCost op;
  op.kernel = kernels > 1 ? "grouped_gemm" : "gemm";
  op.name = std::move(name);
  op.category = std::move(category);
  op.flops = 2 * m * n * k;
  op.bytes = e * (m * k + k * n + m * n);
  op.kernels = kernels;
  auto whole = [](double x) { return static_cast<std::int64_t>(std::llround(x)); };
  if (kernels > 1)  // m: all experts' tokens
    op.shape = {{"experts", kernels}, {"tokens_per_expert", whole(m / kernels)}, {"n", whole(n)}, {"k", whole(k)}};
  else
    op.shape = {{"m", whole(m)}, {"n", whole(n)}, {"k", whole(k)}};
  return op;
}

OpCost stream_op(std::string name, std::string category, double bytes, int kernels = 1, std::string kernel = "") {
  OpCost op;
  op.kernel = std::move(kernel);
  op.name = std::move(name);
  op.category = std::move(category);
  op.bytes = bytes;
  op.kernels = kernels;
  return op;
}

const OpProfile* find_op(const Profile& p, const std::string& kernel, DType dtype) {
  if (auto it = p.compute.ops.find(kernel + "_" + to_string(dtype)); it != p.compute.ops.end()) return &it->second;
  for (const auto& [name, op] : p.compute.ops)
    if (op.bound == OpBound::bytes && name.size() > kernel.size() && name.compare(0, kernel.size() + 1, kernel + "_") == 0)
      return &op;
  return nullptr;
}

}  // namespace

std::optional<double> measured_seconds(const Profile& p, const std::string& kernel, DType dtype, double flops,
                                       double bytes, const std::map<std::string, std::int64_t>& shape) {
  const OpProfile* op = kernel.empty() ? nullptr : find_op(p, kernel, dtype);
  if (!op || op->samples.empty()) return std::nullopt;
  const bool by_flops = op->bound == OpBound::flops;
  const double ceiling = by_flops ? p.peak(op->dtype) : p.compute.memory_bandwidth.value;
  const double scale = op->efficiency.value * ceiling;
  auto fit = [&](double work) { return work / scale + op->overhead.value; };
  const double work = by_flops ? flops : bytes;
  const bool by_shape = !shape.empty() && shape.size() == op->samples.front().shape.size();
  const double log_work = std::log(std::max(work, 1.0));
  auto distance = [&](const OpSample& s) {
    if (!by_shape) return std::abs(std::log(std::max(work_of(s, op->bound), 1.0)) - log_work);
    double d2 = 0;
    for (const auto& [name, v] : shape) {
      const auto it = s.shape.find(name);
      const double o = it == s.shape.end() ? 0.0 : static_cast<double>(it->second);
      const double d = std::log1p(static_cast<double>(v)) - std::log1p(o);
      d2 += d * d;
    }
    return std::sqrt(d2);
  };
  // Interpolation width in log units: a neighbour a grid step (x4) away weighs 2%, one halfway weighs the same.
  const double width = 0.5;
  std::vector<double> d(op->samples.size());
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = distance(op->samples[i]);
  const double best = *std::min_element(d.begin(), d.end());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const OpSample& s = op->samples[i];
    const double weight = std::exp(-0.5 * (d[i] * d[i] - best * best) / (width * width));
    num += weight * std::log(s.seconds / fit(work_of(s, op->bound)));
    den += weight;
  }
  return fit(work) * std::exp(num / den);
}

void price(const Profile& p, DType dtype, double efficiency, OpCost& op) {
  if (auto t = measured_seconds(p, op.kernel, dtype, op.flops, op.bytes, op.shape)) {
    op.seconds = *t;
    return;
  }
  const double compute = op.flops > 0 ? op.flops / (efficiency * peak_for(p, dtype)) : 0.0;
  const double memory = op.bytes / (p.compute.memory_efficiency.value * p.compute.memory_bandwidth.value);
  op.seconds = std::max(compute, memory) + op.kernels * p.compute.kernel_overhead.value;
}

double gemm_seconds(const Profile& p, double m, double n, double k, DType dtype) {
  OpCost op = gemm_op("gemm", "gemm", m, n, k, bytes_of(dtype));
  price(p, dtype, p.compute.gemm_efficiency.value, op);
  return op.seconds;
}

double streaming_seconds(const Profile& p, double bytes, int kernels) {
  OpCost op = stream_op("stream", "stream", bytes, kernels);
  price(p, DType::fp32, 1.0, op);
  return op.seconds;
}

std::vector<OpCost> layer_forward_ops(const Profile& p, const ModelSpec& m, const Plan& plan, int layer, double T,
                                      double expert_tokens) {
  const double e = bytes_of(plan.precision), t = plan.tp, h = static_cast<double>(m.d_model);
  const double s = static_cast<double>(m.seq_len), heads = m.heads;
  double q_width, kv_width, v_width;  // output widths of the q, k+v projections and of attention
  if (m.mla) {
    const MlaSpec& a = *m.mla;
    q_width = heads * static_cast<double>(a.qk_nope_head_dim + a.qk_rope_head_dim);
    kv_width = heads * static_cast<double>(a.qk_nope_head_dim + a.v_head_dim);
    v_width = heads * static_cast<double>(a.v_head_dim);
  } else {
    q_width = heads * static_cast<double>(m.head_dim);
    kv_width = 2.0 * m.kv_heads * static_cast<double>(m.head_dim);
    v_width = q_width;
  }
  std::vector<OpCost> ops;
  const double gemm_eff = p.compute.gemm_efficiency.value;
  auto add = [&](OpCost op, double efficiency) {
    price(p, plan.precision, efficiency, op);
    ops.push_back(std::move(op));
  };
  // The linear layers' GEMMs: under fp8 on FP8 operands (one byte) at the FP8 peak.
  const bool fp8 = plan.fp8 != Fp8::none;
  if (fp8 && p.compute.fp8_peak_flops.value <= 0)
    throw InputError(p.name, "compute.peak_flops.fp8", "expected an FP8 peak for a plan with fp8 (the profile has none)");
  const double le = fp8 ? 1.0 : e;
  auto add_linear = [&](OpCost op) {
    if (!fp8) return add(std::move(op), gemm_eff);
    const double compute = op.flops / (p.compute.fp8_gemm_efficiency.value * p.compute.fp8_peak_flops.value);
    const double memory = op.bytes / (p.compute.memory_efficiency.value * p.compute.memory_bandwidth.value);
    op.seconds = std::max(compute, memory) + op.kernels * p.compute.kernel_overhead.value;
    ops.push_back(std::move(op));
  };
  // Sequence parallelism runs the norms and residuals on 1/tp of the tokens.
  const double norm_tokens = plan.sp ? T / t : T;
  add(stream_op("norm", "norm", 2 * e * norm_tokens * h, 1, "layer_norm"), 1.0);
  add_linear(gemm_op("qkv", "attention", T, (q_width + kv_width) / t, h, le));
  // Causal attention: the kernels skip the masked half of the s x s scores.
  const double attn_flops = 2 * T * s * (q_width + v_width) / t / 2;
  if (plan.attention == AttentionImpl::flash) {
    // Reads the rank's queries and writes its outputs; reads the keys and values of the
    // whole sequence (under cp, the chunks the ring brings in too).
    const double all_tokens = static_cast<double>(plan.mbs) * s;
    OpCost op = stream_op("attention", "attention", e * (T * (q_width + v_width) + all_tokens * kv_width) / t);
    op.flops = attn_flops;
    add(op, p.compute.attention_efficiency.value);
  } else {
    // Q K^T and softmax(.) V as batched GEMMs over the full matrix, plus the softmax and
    // dropout passes over a s^2 b scores (read and write).
    OpCost scores = gemm_op("attention_scores", "attention", T, s, q_width / t, e);
    add(scores, gemm_eff);
    add(stream_op("softmax", "attention", 2 * 2 * e * heads / t * s * T), 1.0);
    add(gemm_op("attention_values", "attention", T, v_width / t, s, e), gemm_eff);
  }
  add_linear(gemm_op("attention_out", "attention", T, h, v_width / t, le));
  add(stream_op("residual_norm", "norm", 3 * e * norm_tokens * h, 1, "layer_norm"), 1.0);

  // `split`: the tensor-parallel ways the hidden dim is cut (tp, or etp for routed experts).
  auto ffn = [&](const char* name, const char* category, double tokens, double hidden, Activation act, int experts,
                 double split) {
    const double branches = act == Activation::swiglu ? 2.0 : 1.0;
    add_linear(gemm_op(std::string(name) + "_fc1", category, tokens, branches * hidden / split, h, le, experts));
    add(stream_op(std::string(name) + "_activation", category, e * tokens * hidden / split * (branches + 1), 1,
                  "bias_gelu"),
        1.0);
    add_linear(gemm_op(std::string(name) + "_fc2", category, tokens, h, hidden / split, le, experts));
  };
  if (!m.is_moe_layer(layer)) {
    ffn("ffn", "ffn", T, static_cast<double>(m.ffn_dim), m.activation, 1, t);
    return ops;
  }
  const double E = m.moe.experts, k = m.moe.top_k;
  add(gemm_op("gate", "moe_gate", T, E, h, bytes_of(m.moe.gate_precision)), gemm_eff);
  add(stream_op("topk", "moe_gate", 2.0 * 4.0 * T * E, 1, "gate"), 1.0);
  add(stream_op("permute", "moe_permute", 2 * e * T * k * h, 1, "permute"), 1.0);
  const int local_experts = std::max(1, m.moe.experts / plan.ep);
  ffn("expert", "moe_experts", expert_tokens, static_cast<double>(m.expert_ffn()), m.expert_act(), local_experts,
      plan.expert_tp());
  if (m.moe.shared_experts > 0)
    ffn("shared_expert", "moe_shared", T, static_cast<double>(m.shared_ffn()) * m.moe.shared_experts, m.expert_act(), 1,
        t);
  add(stream_op("unpermute", "moe_permute", 2 * e * T * k * h, 1, "unpermute"), 1.0);
  return ops;
}

std::vector<OpCost> embedding_forward_ops(const Profile& p, const ModelSpec& m, const Plan& plan, double T) {
  OpCost op = stream_op("embedding", "embedding", 2 * bytes_of(plan.precision) * T * static_cast<double>(m.d_model));
  price(p, plan.precision, 1.0, op);
  return {op};
}

std::vector<OpCost> head_forward_ops(const Profile& p, const ModelSpec& m, const Plan& plan, double T) {
  const double e = bytes_of(plan.precision), V = static_cast<double>(m.vocab) / plan.tp;
  std::vector<OpCost> ops;
  OpCost norm = stream_op("final_norm", "norm", 2 * e * T * static_cast<double>(m.d_model), 1, "layer_norm");
  price(p, plan.precision, 1.0, norm);
  ops.push_back(norm);
  OpCost head = gemm_op("output_head", "head", T, V, static_cast<double>(m.d_model), e);
  price(p, plan.precision, p.compute.gemm_efficiency.value, head);
  ops.push_back(head);
  // Softmax cross-entropy in fp32 over the logits: read logits, write probabilities.
  OpCost loss = stream_op("loss", "head", (e + 4.0) * T * V, 2, "cross_entropy");
  price(p, plan.precision, 1.0, loss);
  ops.push_back(loss);
  return ops;
}

std::vector<OpCost> mtp_forward_ops(const Profile& p, const ModelSpec& m, const Plan& plan, double T) {
  const double e = bytes_of(plan.precision), h = static_cast<double>(m.d_model);
  std::vector<OpCost> ops;
  OpCost norms = stream_op("mtp_norms", "mtp", 2 * 2 * e * T * h, 2, "layer_norm");
  price(p, plan.precision, 1.0, norms);
  ops.push_back(norms);
  OpCost projection = gemm_op("mtp_projection", "mtp", T, h / plan.tp, 2 * h, e);
  price(p, plan.precision, p.compute.gemm_efficiency.value, projection);
  ops.push_back(projection);
  return ops;
}

OpCost optimizer_op(const Profile& p, const Plan& plan, double params) {
  // Adam reads weights, gradients, both moments (and the master copy) and writes back
  // weights, moments (and master): one fused multi-tensor kernel.
  const double w = bytes_of(plan.precision), o = bytes_of(plan.optimizer_dtype);
  const double per_param = 2 * w + w + 2 * 2 * o + (plan.master_weights ? 2 * 4.0 : 0.0);
  OpCost op = stream_op("optimizer", "optimizer", per_param * params, 1, "adam");
  price(p, plan.precision, 1.0, op);
  return op;
}

}  // namespace moesim
