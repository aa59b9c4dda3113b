// Forward and backward of one micro-batch through the GPT-MoE model on one rank.
#include "src/executor/gpt_moe.hpp"

#include <algorithm>
#include <cmath>

#include "kernels/counter_rng.hpp"
#include "src/accounting/capacity.hpp"
#include "src/executor/moe_layer.hpp"

namespace moesim::exec {
namespace {

// torch.nn.LayerNorm's default epsilon, which fairseq, Megatron and open_lm keep; the model
// spec has no field for it because none of the seeds changes it.
constexpr float kNormEps = 1e-5f;

std::size_t z(long long n) { return static_cast<std::size_t>(n); }

struct LayerActs {
  Array<float> x_in, h1, mean1, rstd1, qkv, probs, ctx, x_mid, h2, mean2, rstd2;
  Array<float> pre, act;  // dense FFN
  MoeSaved moe;
};

kernels::SecondExpertPolicy to_kernel(SecondExpertPolicy p) {
  switch (p) {
    case SecondExpertPolicy::all: return kernels::SecondExpertPolicy::All;
    case SecondExpertPolicy::sampling: return kernels::SecondExpertPolicy::Sampling;
    case SecondExpertPolicy::random: return kernels::SecondExpertPolicy::Random;
  }
  return kernels::SecondExpertPolicy::All;
}

// Pointers into the replica's buffers by layout offset; null where the model has no tensor.
struct Views {
  Replica& r;
  float* p(std::size_t off) const { return off == kAbsent ? nullptr : r.dense.data() + off; }
  float* g(std::size_t off) const { return off == kAbsent ? nullptr : r.dense_grad.data() + off; }
  float* pe(std::size_t off) const { return off == kAbsent ? r.zeros.data() : r.expert.data() + off; }
  float* ge(std::size_t off) const { return off == kAbsent ? r.sink.data() : r.expert_grad.data() + off; }
  // A norm's shift: the parameter, or zeros for gain-only LayerNorm, or none for RMSNorm.
  const float* beta(std::size_t off) const {
    if (r.model.norm == Norm::rmsnorm) return nullptr;
    return off == kAbsent ? r.zeros.data() : r.dense.data() + off;
  }
  float* dbeta(std::size_t off) const {
    if (r.model.norm == Norm::rmsnorm) return nullptr;
    return off == kAbsent ? r.sink.data() : r.dense_grad.data() + off;
  }
};

// Tallies the routed first and second choices of each expert (by expert id).
void count_choices(Backend& B, const ExpertShard& shard, const Routing& g, MicroBatchResult& out) {
  const std::size_t n = z(g.tokens) * z(g.k);
  std::vector<int> expert(n), location(n);
  B.download(expert.data(), g.expert.data(), n * sizeof(int));
  B.download(location.data(), g.location.data(), n * sizeof(int));
  std::vector<int> first(z(g.experts)), second(g.k == 2 ? z(g.experts) : 0);
  for (std::size_t t = 0; t < z(g.tokens); ++t)
    for (int j = 0; j < g.k; ++j) {
      const std::size_t c = t * z(g.k) + z(j);
      if (location[c] < 0) continue;
      (j == 0 ? first : second)[z(shard.expert_of_slot(expert[c]))] += 1;
    }
  out.expert1.push_back(std::move(first));
  out.expert2.push_back(std::move(second));
}

}  // namespace

Replica::Replica(Backend& b, const ModelSpec& m, const ExpertShard& s, int ep_rank)
    : backend(b), model(m), shard(s), layout(param_layout(m, s, ep_rank)),
      dense(b, layout.dense_size), expert(b, layout.expert_size),
      dense_grad(b, layout.dense_size), expert_grad(b, layout.expert_size) {
  // Large enough for any bias or shift: experts x max(d, f) covers expert biases.
  const std::size_t width = z(std::max({m.d_model, m.ffn_dim, m.expert_ffn()}));
  const std::size_t n = width * z(std::max(1, layout.local_experts));
  zeros = Array<float>(b, n);
  sink = Array<float>(b, n);
  b.zero(zeros.data(), n * sizeof(float));
  b.zero(dense_grad.data(), dense_grad.size() * sizeof(float));
  b.zero(expert_grad.data(), expert_grad.size() * sizeof(float));
}

kernels::GateOptions gate_options(const ModelSpec& model, int tokens, std::uint64_t seed) {
  kernels::GateOptions o;
  o.k = model.moe.top_k;
  o.second_policy = to_kernel(model.moe.second_expert_policy);
  o.seed = seed;
  // Dropless: every expert can hold every token (a token picks an expert at most once).
  o.capacity = static_cast<int>(expert_capacity(model.moe, tokens).value_or(tokens));
  return o;
}

MicroBatchResult train_micro_batch(Replica& r, Communicator& ep_comm, const MicroBatchInput& in) {
  Backend& B = r.backend;
  const ModelSpec& m = r.model;
  const Views v{r};
  const int seq = static_cast<int>(m.seq_len);
  const int rows = in.mbs * seq;
  const int d = static_cast<int>(m.d_model);
  const int V = static_cast<int>(m.vocab);
  const int qw = static_cast<int>(m.heads * m.head_dim);
  const int kvw = static_cast<int>(m.kv_heads * m.head_dim);
  const int qkv_w = qw + 2 * kvw;
  const std::size_t rd = z(rows) * z(d);
  const AttentionShape attn{in.mbs, seq, m.heads, m.kv_heads, static_cast<int>(m.head_dim),
                            1.0f / std::sqrt(static_cast<float>(m.head_dim))};
  const std::size_t probs_size = z(in.mbs) * z(m.heads) * z(seq) * z(seq);
  const int f_dense = static_cast<int>(m.ffn_dim);
  const MoeLayerShape moe_shape{rows, d, static_cast<int>(m.expert_ffn()), m.moe.experts,
                                r.layout.local_experts};
  // Each MoE layer draws its own gate noise.
  std::vector<kernels::GateOptions> gates;
  for (std::size_t i = 0; i < r.layout.layers.size(); ++i)
    gates.push_back(gate_options(m, rows, kernels::mix64(in.gate_seed + i)));
  auto norm_fwd = [&](const float* x, std::size_t g, std::size_t b, Array<float>& y, Array<float>& mean,
                      Array<float>& rstd) {
    y = Array<float>(B, rd);
    mean = Array<float>(B, z(rows));
    rstd = Array<float>(B, z(rows));
    B.norm_forward(x, v.p(g), v.beta(b), rows, d, kNormEps, y.data(), mean.data(), rstd.data());
  };

  MicroBatchResult result;
  result.tokens = rows;
  Array<std::int32_t> tokens(B, z(rows)), targets(B, z(rows));
  B.upload(tokens.data(), in.tokens, z(rows) * sizeof(std::int32_t));
  B.upload(targets.data(), in.targets, z(rows) * sizeof(std::int32_t));

  // Forward, keeping what the backward reads.
  Array<float> x(B, rd);
  B.embedding_forward(tokens.data(), rows, seq, v.p(r.layout.wte), v.p(r.layout.wpe), V, d, x.data());
  std::vector<LayerActs> acts(r.layout.layers.size());
  for (std::size_t i = 0; i < acts.size(); ++i) {
    const LayerParams& L = r.layout.layers[i];
    LayerActs& a = acts[i];
    a.x_in = std::move(x);
    norm_fwd(a.x_in.data(), L.ln1_g, L.ln1_b, a.h1, a.mean1, a.rstd1);
    a.qkv = Array<float>(B, z(rows) * z(qkv_w));
    B.linear_forward(a.h1.data(), v.p(L.qkv_w), v.p(L.qkv_b), rows, d, qkv_w, a.qkv.data());
    a.ctx = Array<float>(B, z(rows) * z(qw));
    a.probs = Array<float>(B, probs_size);
    B.attention_forward(attn, a.qkv.data(), a.qkv.data() + qw, a.qkv.data() + qw + kvw, qkv_w,
                        a.ctx.data(), qw, a.probs.data());
    a.x_mid = Array<float>(B, rd);
    B.linear_forward(a.ctx.data(), v.p(L.proj_w), v.p(L.proj_b), rows, qw, d, a.x_mid.data());
    B.axpy(1.0f, a.x_in.data(), a.x_mid.data(), rd);
    norm_fwd(a.x_mid.data(), L.ln2_g, L.ln2_b, a.h2, a.mean2, a.rstd2);
    x = Array<float>(B, rd);
    if (!L.moe) {
      a.pre = Array<float>(B, z(rows) * z(f_dense));
      a.act = Array<float>(B, z(rows) * z(f_dense));
      B.linear_forward(a.h2.data(), v.p(L.fc1_w), nullptr, rows, d, f_dense, a.pre.data());
      B.bias_gelu_forward(a.pre.data(), v.p(L.fc1_b), rows, f_dense, a.act.data());
      B.linear_forward(a.act.data(), v.p(L.fc2_w), v.p(L.fc2_b), rows, f_dense, d, x.data());
    } else {
      const MoeLayerWeights w{v.p(L.gate_w), {v.pe(L.ex_w1), v.pe(L.ex_b1), v.pe(L.ex_w2), v.pe(L.ex_b2)}};
      moe_forward(B, ep_comm, moe_shape, gates[i], w, a.h2.data(), x.data(), a.moe);
      const Routing& g = a.moe.routing;
      result.aux_loss_sum += g.aux_loss;
      result.gate_stats.push_back(g.stats);
      count_choices(B, r.shard, g, result);
    }
    B.axpy(1.0f, a.x_mid.data(), x.data(), rd);
  }
  Array<float> hf, meanf, rstdf;
  const float* head_in = x.data();
  if (m.final_norm) {
    norm_fwd(x.data(), r.layout.lnf_g, r.layout.lnf_b, hf, meanf, rstdf);
    head_in = hf.data();
  }
  const std::size_t head = m.tied_embeddings ? r.layout.wte : r.layout.head_w;
  Array<float> logits(B, z(rows) * z(V)), lse(B, z(rows));
  B.linear_forward(head_in, v.p(head), nullptr, rows, d, V, logits.data());
  result.loss_sum = B.cross_entropy_forward(logits.data(), targets.data(), rows, V, lse.data());

  // Backward.
  Array<float> dlogits(B, z(rows) * z(V));
  B.cross_entropy_backward(logits.data(), targets.data(), lse.data(), rows, V, in.loss_scale, dlogits.data());
  logits = Array<float>();
  Array<float> dx(B, rd), tmp(B, rd);
  B.linear_backward(dlogits.data(), head_in, v.p(head), rows, d, V, m.final_norm ? tmp.data() : dx.data(),
                    v.g(head), nullptr, true);
  dlogits = Array<float>();
  if (m.final_norm)
    B.norm_backward(tmp.data(), x.data(), v.p(r.layout.lnf_g), meanf.data(), rstdf.data(), rows, d,
                    dx.data(), v.g(r.layout.lnf_g), v.dbeta(r.layout.lnf_b));
  for (std::size_t i = acts.size(); i-- > 0;) {
    const LayerParams& L = r.layout.layers[i];
    LayerActs& a = acts[i];
    // dx is the gradient of the layer's output: it flows into the FFN and, by the
    // residual, on to x_mid.
    Array<float> dh2(B, rd);
    if (!L.moe) {
      Array<float> dact(B, z(rows) * z(f_dense));
      B.linear_backward(dx.data(), a.act.data(), v.p(L.fc2_w), rows, f_dense, d, dact.data(), v.g(L.fc2_w),
                        v.g(L.fc2_b), true);
      B.bias_gelu_backward(dact.data(), a.pre.data(), v.p(L.fc1_b), rows, f_dense, dact.data(), v.g(L.fc1_b));
      B.linear_backward(dact.data(), a.h2.data(), v.p(L.fc1_w), rows, d, f_dense, dh2.data(), v.g(L.fc1_w),
                        nullptr, true);
    } else {
      const MoeLayerWeights w{v.p(L.gate_w), {v.pe(L.ex_w1), v.pe(L.ex_b1), v.pe(L.ex_w2), v.pe(L.ex_b2)}};
      moe_backward(B, ep_comm, moe_shape, gates[i], w, a.h2.data(), dx.data(), in.aux_scale, a.moe,
                   dh2.data(), v.g(L.gate_w),
                   {v.ge(L.ex_w1), v.ge(L.ex_b1), v.ge(L.ex_w2), v.ge(L.ex_b2)});
    }
    B.norm_backward(dh2.data(), a.x_mid.data(), v.p(L.ln2_g), a.mean2.data(), a.rstd2.data(), rows, d,
                    tmp.data(), v.g(L.ln2_g), v.dbeta(L.ln2_b));
    B.axpy(1.0f, tmp.data(), dx.data(), rd);  // dx is now d(x_mid)
    Array<float> dctx(B, z(rows) * z(qw));
    B.linear_backward(dx.data(), a.ctx.data(), v.p(L.proj_w), rows, qw, d, dctx.data(), v.g(L.proj_w),
                      v.g(L.proj_b), true);
    Array<float> dqkv(B, z(rows) * z(qkv_w));
    B.attention_backward(attn, dctx.data(), qw, a.qkv.data(), a.qkv.data() + qw, a.qkv.data() + qw + kvw,
                         qkv_w, a.probs.data(), dqkv.data(), dqkv.data() + qw, dqkv.data() + qw + kvw,
                         qkv_w);
    B.linear_backward(dqkv.data(), a.h1.data(), v.p(L.qkv_w), rows, d, qkv_w, tmp.data(), v.g(L.qkv_w),
                      v.g(L.qkv_b), true);
    B.norm_backward(tmp.data(), a.x_in.data(), v.p(L.ln1_g), a.mean1.data(), a.rstd1.data(), rows, d,
                    dh2.data(), v.g(L.ln1_g), v.dbeta(L.ln1_b));
    B.axpy(1.0f, dh2.data(), dx.data(), rd);  // dx is now d(x_in)
    a = LayerActs();
  }
  B.embedding_backward(dx.data(), tokens.data(), rows, seq, V, d, v.g(r.layout.wte), v.g(r.layout.wpe));
  return result;
}

}  // namespace moesim::exec
