// Forward and backward of one micro-batch through the GPT-MoE model on one rank.
#include "src/executor/gpt_moe.hpp"

#include <algorithm>
#include <cmath>

#include "kernels/counter_rng.hpp"
#include "src/accounting/capacity.hpp"
#include "src/executor/moe_layer.hpp"
#include "src/routing/dense_to_sparse.hpp"

namespace moesim::exec {

// What one layer's backward reads from its forward.
struct LayerActs {
  Array<float> x_in, h1, mean1, rstd1, qkv, probs, ctx, x_mid, h2, mean2, rstd2;
  Array<float> pre, act;  // dense FFN
  MoeSaved moe;
};

MicroBatchState::MicroBatchState() = default;
MicroBatchState::~MicroBatchState() = default;
MicroBatchState::MicroBatchState(MicroBatchState&&) noexcept = default;
MicroBatchState& MicroBatchState::operator=(MicroBatchState&&) noexcept = default;

namespace {

// torch.nn.LayerNorm's default epsilon, which fairseq, Megatron and open_lm keep; the model
// spec has no field for it because none of the seeds changes it.
constexpr float kNormEps = 1e-5f;

std::size_t z(long long n) { return static_cast<std::size_t>(n); }

// The router's GEMMs: the plan's mixed precision when the model's moe.gate_precision names
// it (check_runnable refuses the other half type), fp32 otherwise.
kernels::GemmPrecision router_precision(DType gate, kernels::GemmPrecision gemms) {
  const bool same = (gate == DType::bf16 && gemms == kernels::GemmPrecision::bf16) ||
                    (gate == DType::fp16 && gemms == kernels::GemmPrecision::fp16);
  return same ? gemms : kernels::GemmPrecision::fp32;
}

kernels::SecondExpertPolicy to_kernel(SecondExpertPolicy p) {
  switch (p) {
    case SecondExpertPolicy::all: return kernels::SecondExpertPolicy::All;
    case SecondExpertPolicy::sampling: return kernels::SecondExpertPolicy::Sampling;
    case SecondExpertPolicy::random: return kernels::SecondExpertPolicy::Random;
  }
  return kernels::SecondExpertPolicy::All;
}

// Pointers into the replica's parameters and gradients by layout offset (under ZeRO 2/3
// into the units in use); null where the model has no tensor.
struct Views {
  Replica& r;
  float* p(std::size_t off) const { return off == kAbsent ? nullptr : r.dense.param(off); }
  float* g(std::size_t off) const { return off == kAbsent ? nullptr : r.dense.grad(off); }
  float* pe(std::size_t off) const { return off == kAbsent ? r.zeros.data() : r.expert.param(off); }
  float* ge(std::size_t off) const { return off == kAbsent ? r.sink.data() : r.expert.grad(off); }
  // A norm's shift: the parameter, or zeros for gain-only LayerNorm, or none for RMSNorm.
  const float* beta(std::size_t off) const {
    if (r.model.norm == Norm::rmsnorm) return nullptr;
    return off == kAbsent ? r.zeros.data() : r.dense.param(off);
  }
  float* dbeta(std::size_t off) const {
    if (r.model.norm == Norm::rmsnorm) return nullptr;
    return off == kAbsent ? r.sink.data() : r.dense.grad(off);
  }
};

// The units one step of a pass reads (and in the backward writes the gradients of): their
// parameters gathered and their gradients opened as they are added, and at finish() the
// gradients reduced and the parameters released, in reverse order. No-ops for what the
// plan's ZeRO stage holds whole. With `reduce_final` (the update's last backward, ZeRO 0)
// finish() starts the all-reduce of each unit used for the last time in the pass. Left
// unfinished (an error unwinding), it frees them without communicating.
class UnitsInUse {
 public:
  UnitsInUse(Replica& r, bool params, bool grads, bool reduce_final = false)
      : r_(r), params_(params), grads_(grads), reduce_final_(reduce_final) {}
  UnitsInUse(const UnitsInUse&) = delete;
  UnitsInUse& operator=(const UnitsInUse&) = delete;
  ~UnitsInUse() {
    if (!finished_)
      for (const Use& use : used_) use.store->discard(use.unit);
  }
  // The unit holding the dense (or expert) tensor at `offset`; nothing for kAbsent.
  // `last_use`: no later step of the pass writes its gradient.
  UnitsInUse& dense(std::size_t offset, bool last_use = true) { return add(r_.dense, offset, last_use); }
  UnitsInUse& expert(std::size_t offset) { return add(r_.expert, offset, true); }
  // Every unit of layer L.
  UnitsInUse& layer(const LayerParams& L) { return dense(L.ln1_g).expert(L.ex_w1); }
  void finish() {
    for (auto it = used_.rbegin(); it != used_.rend(); ++it) {
      if (grads_) it->store->close_grads(it->unit);
      if (params_) it->store->release(it->unit);
      if (grads_ && reduce_final_ && it->last_use) it->store->start_reduce(it->unit);
    }
    if (reduce_final_) {
      r_.dense.poll();
      r_.expert.poll();
    }
    finished_ = true;
  }

 private:
  struct Use {
    ParamStore* store;
    std::size_t unit;
    bool last_use;
  };
  UnitsInUse& add(ParamStore& store, std::size_t offset, bool last_use) {
    if (offset == kAbsent) return *this;
    const std::size_t unit = store.unit_of(offset);
    for (const Use& use : used_)
      if (use.store == &store && use.unit == unit) return *this;
    if (params_) store.gather(unit);
    if (grads_) store.open_grads(unit);
    used_.push_back({&store, unit, last_use});
    return *this;
  }

  Replica& r_;
  bool params_, grads_, reduce_final_, finished_ = false;
  std::vector<Use> used_;
};

// Tallies the routed first and second choices of each expert (by expert id).
void count_choices(Backend& B, const Routing& g, MicroBatchResult& out) {
  const std::size_t n = z(g.tokens) * z(g.k);
  std::vector<int> expert(n), location(n);
  B.download(expert.data(), g.expert.data(), n * sizeof(int));
  B.download(location.data(), g.location.data(), n * sizeof(int));
  // The dense-to-sparse gate's k is E (every expert a choice, kept or not): its choices
  // past the second count in neither trace.
  std::vector<int> first(z(g.experts)), second(g.k >= 2 ? z(g.experts) : 0);
  int routed = 0;
  for (std::size_t t = 0; t < z(g.tokens); ++t)
    for (int j = 0; j < g.k; ++j) {
      const std::size_t c = t * z(g.k) + z(j);
      if (location[c] < 0) continue;
      ++routed;
      if (j < 2) (j == 0 ? first : second)[z(expert[c])] += 1;
    }
  out.active_experts_sum += g.tokens > 0 ? static_cast<double>(routed) / g.tokens : 0.0;
  out.expert1.push_back(std::move(first));
  out.expert2.push_back(std::move(second));
}

}  // namespace

namespace {

// Under ZeRO 2/3 each unit is padded for its group's shards.
UnitPadding unit_padding(const ZeroSharding& zero) {
  if (zero.stage < 2) return {};
  return {zero.dense != nullptr ? zero.dense->size() : 1, zero.expert != nullptr ? zero.expert->size() : 1};
}

}  // namespace

Replica::Replica(Backend& b, const ModelSpec& m, const ExpertShard& s, int ep_rank, int tp_size, int tp_index,
                 int pp, int stage, const ZeroSharding& zero, int vpp, EndStages ends)
    : backend(b), model(m), shard(s), tp(tp_size), tp_rank(tp_index),
      layout(param_layout(m, s, ep_rank, tp, tp_rank, pp, stage, unit_padding(zero), vpp, ends)),
      dense(b, zero.dense, zero.stage, ParamGroup::dense, layout),
      expert(b, zero.expert, zero.stage, ParamGroup::expert, layout) {
  // Large enough for any bias or shift: experts x max(d, f) covers expert biases.
  const std::size_t width = z(std::max({m.d_model, m.ffn_dim, m.expert_ffn()}));
  const std::size_t n = width * z(std::max(1, layout.local_experts));
  zeros = Array<float>(b, n);
  sink = Array<float>(b, n);
  b.zero(zeros.data(), n * sizeof(float));
}

kernels::GateOptions gate_options(const ModelSpec& model, int tokens, std::uint64_t seed, std::int64_t step) {
  kernels::GateOptions o;
  o.k = model.moe.top_k;
  o.second_policy = to_kernel(model.moe.second_expert_policy);
  o.seed = seed;
  // Dropless: every expert can hold every token (a token picks an expert at most once).
  o.capacity = static_cast<int>(expert_capacity(model.moe, tokens).value_or(tokens));
  if (model.moe.dense_to_sparse) {
    const DenseToSparse& d = *model.moe.dense_to_sparse;
    const DtsPhase phase = dts_phase(d, step);
    if (phase != DtsPhase::sparse) {
      o.dts_temperature = static_cast<float>(dts_temperature(d, step));
      o.dts_threshold = static_cast<float>(d.threshold);
      o.dts_dense = phase == DtsPhase::dense;
      o.capacity = tokens;
    }
  }
  return o;
}

namespace {

// The shapes of one micro-batch, computed once.
struct Dims {
  Dims(const Replica& r, const MicroBatchInput& in)
      : seq(static_cast<int>(r.model.seq_len)), rows(in.mbs * seq), d(static_cast<int>(r.model.d_model)),
        V(static_cast<int>(r.model.vocab)), heads(r.model.heads / r.tp), kv_heads(r.model.kv_heads / r.tp),
        hd(static_cast<int>(r.model.head_dim)), qw(heads * hd), kvw(kv_heads * hd), qkv_w(qw + 2 * kvw),
        rd(z(rows) * z(d)), f_dense(static_cast<int>(r.model.ffn_dim / r.tp)),
        swiglu(r.model.activation == Activation::swiglu), f1(swiglu ? 2 * f_dense : f_dense),
        rotary(r.model.positions == Positions::rotary),
        attn{in.mbs, seq, heads, kv_heads, hd, 1.0f / std::sqrt(static_cast<float>(hd))},
        probs_size(z(in.mbs) * z(heads) * z(seq) * z(seq)),
        moe{rows, d, static_cast<int>(r.model.expert_ffn() / r.tp), r.model.moe.experts, r.layout.local_experts,
            r.model.is_moe() && r.shard.ep > 1 ? r.shard.slot_of_expert() : std::vector<int>{},
            router_precision(r.model.moe.gate_precision, r.backend.gemm_precision())} {
    // Each MoE layer draws its own gate noise.
    for (const LayerParams& L : r.layout.layers)
      gates.push_back(gate_options(r.model, rows, kernels::mix64(in.gate_seed + z(L.index)), in.step));
  }
  int seq, rows, d, V;
  int heads, kv_heads, hd, qw, kvw, qkv_w;  // this tensor-parallel rank's heads
  std::size_t rd;
  int f_dense;
  bool swiglu;
  int f1;
  bool rotary;
  AttentionShape attn;
  std::size_t probs_size;
  MoeLayerShape moe;
  std::vector<kernels::GateOptions> gates;
};

// One micro-batch on one rank: the replica, its expert-parallel group and the shapes.
struct Pass {
  Replica& r;
  Communicator& ep_comm;
  Communicator& tp_comm;
  const Dims& k;
  Backend& B = r.backend;
  const ModelSpec& m = r.model;
  Views v{r};

  void norm_forward(const float* x, std::size_t g, std::size_t b, Array<float>& y, Array<float>& mean,
                    Array<float>& rstd) {
    y = Array<float>(B, k.rd);
    mean = Array<float>(B, z(k.rows));
    rstd = Array<float>(B, z(k.rows));
    B.norm_forward(x, v.p(g), v.beta(b), k.rows, k.d, kNormEps, y.data(), mean.data(), rstd.data());
  }

  void attention(LayerActs& a, float* ctx) {
    B.attention_forward(k.attn, a.qkv.data(), a.qkv.data() + k.qw, a.qkv.data() + k.qw + k.kvw, k.qkv_w, ctx,
                        k.qw, a.probs.data());
  }

  // Layer i from a.x_in, keeping what the backward reads; returns the layer's output.
  // `record` (the first pass, not a recomputation) collects the gate's figures.
  Array<float> layer_forward(std::size_t i, LayerActs& a, MicroBatchResult* record) {
    const LayerParams& L = r.layout.layers[i];
    const int rows = k.rows, d = k.d;
    norm_forward(a.x_in.data(), L.ln1_g, L.ln1_b, a.h1, a.mean1, a.rstd1);
    a.qkv = Array<float>(B, z(rows) * z(k.qkv_w));
    B.linear_forward(a.h1.data(), v.p(L.qkv_w), v.p(L.qkv_b), rows, d, k.qkv_w, a.qkv.data());
    if (k.rotary) B.rotary_forward(a.qkv.data(), k.qkv_w, rows, k.seq, k.heads + k.kv_heads, k.hd, m.rope_theta);
    a.ctx = Array<float>(B, z(rows) * z(k.qw));
    a.probs = Array<float>(B, k.probs_size);
    attention(a, a.ctx.data());
    a.x_mid = Array<float>(B, k.rd);
    row_parallel(a.ctx.data(), L.proj_w, L.proj_b, k.qw, a.x_mid.data());
    B.axpy(1.0f, a.x_in.data(), a.x_mid.data(), k.rd);
    norm_forward(a.x_mid.data(), L.ln2_g, L.ln2_b, a.h2, a.mean2, a.rstd2);
    Array<float> out(B, k.rd);
    if (!L.moe) {
      a.pre = Array<float>(B, z(rows) * z(k.f1));
      a.act = Array<float>(B, z(rows) * z(k.f_dense));
      if (k.swiglu) {
        B.linear_forward(a.h2.data(), v.p(L.fc1_w), v.p(L.fc1_b), rows, d, k.f1, a.pre.data());
        B.swiglu_forward(a.pre.data(), rows, k.f_dense, a.act.data());
      } else {
        B.linear_forward(a.h2.data(), v.p(L.fc1_w), nullptr, rows, d, k.f1, a.pre.data());
        B.bias_gelu_forward(a.pre.data(), v.p(L.fc1_b), rows, k.f_dense, a.act.data());
      }
      row_parallel(a.act.data(), L.fc2_w, L.fc2_b, k.f_dense, out.data());
    } else {
      moe_forward(B, ep_comm, k.moe, k.gates[i], moe_weights(L), a.h2.data(), out.data(), a.moe);
      sum_over_tp(out.data(), k.rd);  // each rank combined its slice of every expert
      if (record != nullptr) {
        const Routing& g = a.moe.routing;
        record->aux_loss_sum += g.aux_loss;
        record->gate_stats.push_back(g.stats);
        record->moe_index.push_back(L.moe_index);
        count_choices(B, g, *record);
      }
    }
    B.axpy(1.0f, a.x_mid.data(), out.data(), k.rd);
    return out;
  }

  // dx: the gradient of layer i's output on entry, of its input on return.
  void layer_backward(std::size_t i, LayerActs& a, float daux, Array<float>& dx) {
    const LayerParams& L = r.layout.layers[i];
    const int rows = k.rows, d = k.d;
    Array<float> dh2(B, k.rd), tmp(B, k.rd);
    // The FFN's input gradient; the residual carries dx on to x_mid.
    if (!L.moe) {
      Array<float> dact(B, z(rows) * z(k.f_dense)), dpre(B, z(rows) * z(k.f1));
      B.linear_backward(dx.data(), a.act.data(), v.p(L.fc2_w), rows, k.f_dense, d, dact.data(), v.g(L.fc2_w),
                        v.g(L.fc2_b), true);
      if (k.swiglu) {
        B.swiglu_backward(dact.data(), a.pre.data(), rows, k.f_dense, dpre.data());
        B.linear_backward(dpre.data(), a.h2.data(), v.p(L.fc1_w), rows, d, k.f1, dh2.data(), v.g(L.fc1_w),
                          v.g(L.fc1_b), true);
      } else {
        B.bias_gelu_backward(dact.data(), a.pre.data(), v.p(L.fc1_b), rows, k.f_dense, dpre.data(), v.g(L.fc1_b));
        B.linear_backward(dpre.data(), a.h2.data(), v.p(L.fc1_w), rows, d, k.f1, dh2.data(), v.g(L.fc1_w),
                          nullptr, true);
      }
      sum_over_tp(dh2.data(), k.rd);
    } else {
      moe_backward(B, ep_comm, tp_comm, k.moe, k.gates[i], moe_weights(L), a.h2.data(), dx.data(), daux, a.moe,
                   dh2.data(), v.g(L.gate_w), {v.ge(L.ex_w1), v.ge(L.ex_b1), v.ge(L.ex_w2), b2_grad(L)});
    }
    B.norm_backward(dh2.data(), a.x_mid.data(), v.p(L.ln2_g), a.mean2.data(), a.rstd2.data(), rows, d, tmp.data(),
                    v.g(L.ln2_g), v.dbeta(L.ln2_b));
    B.axpy(1.0f, tmp.data(), dx.data(), k.rd);  // dx is now d(x_mid)
    Array<float> dctx(B, z(rows) * z(k.qw));
    B.linear_backward(dx.data(), a.ctx.data(), v.p(L.proj_w), rows, k.qw, d, dctx.data(), v.g(L.proj_w),
                      v.g(L.proj_b), true);
    if (a.probs.empty()) {  // selective recomputation dropped the attention's softmax
      a.probs = Array<float>(B, k.probs_size);
      Array<float> ctx(B, z(rows) * z(k.qw));
      attention(a, ctx.data());
    }
    Array<float> dqkv(B, z(rows) * z(k.qkv_w));
    B.attention_backward(k.attn, dctx.data(), k.qw, a.qkv.data(), a.qkv.data() + k.qw, a.qkv.data() + k.qw + k.kvw,
                         k.qkv_w, a.probs.data(), dqkv.data(), dqkv.data() + k.qw, dqkv.data() + k.qw + k.kvw,
                         k.qkv_w);
    if (k.rotary) B.rotary_backward(dqkv.data(), k.qkv_w, rows, k.seq, k.heads + k.kv_heads, k.hd, m.rope_theta);
    B.linear_backward(dqkv.data(), a.h1.data(), v.p(L.qkv_w), rows, d, k.qkv_w, tmp.data(), v.g(L.qkv_w),
                      v.g(L.qkv_b), true);
    sum_over_tp(tmp.data(), k.rd);
    B.norm_backward(tmp.data(), a.x_in.data(), v.p(L.ln1_g), a.mean1.data(), a.rstd1.data(), rows, d, dh2.data(),
                    v.g(L.ln1_g), v.dbeta(L.ln1_b));
    B.axpy(1.0f, dh2.data(), dx.data(), k.rd);  // dx is now d(x_in)
  }

  // Under tensor parallelism each rank's experts give a partial sum of the output; the
  // output bias joins on one rank only, so the sum adds it once.
  MoeLayerWeights moe_weights(const LayerParams& L) const {
    const float* b2 = r.tp_rank == 0 ? v.pe(L.ex_b2) : r.zeros.data();
    return {v.p(L.gate_w), {v.pe(L.ex_w1), v.pe(L.ex_b1), v.pe(L.ex_w2), b2}};
  }
  float* b2_grad(const LayerParams& L) const { return r.tp_rank == 0 ? v.ge(L.ex_b2) : r.sink.data(); }

  // y = x W^T (+ b) for a layer whose input columns are split over tensor parallel: the
  // partial products are summed over the ranks, then the bias is added once.
  void row_parallel(const float* x, std::size_t w, std::size_t b, int in, float* y) {
    if (r.tp == 1) {
      B.linear_forward(x, v.p(w), v.p(b), k.rows, in, k.d, y);
      return;
    }
    B.linear_forward(x, v.p(w), nullptr, k.rows, in, k.d, y);
    sum_over_tp(y, k.rd);
    if (b != kAbsent) B.add_bias(y, v.p(b), k.rows, k.d);
  }
  void sum_over_tp(float* x, std::size_t n) {
    if (tp_comm.size() == 1) return;
    B.synchronize();
    tp_comm.all_reduce(x, n);
    tp_comm.wait();
  }
};

// Model chunk `chunk` of a stage: its layers [begin, end) of the layout's, and whether it
// embeds (the model's first) or ends in the head (the model's last).
struct ChunkSpan {
  std::size_t begin = 0, end = 0;
  bool first = true, last = true;
};
ChunkSpan chunk_span(const ModelParams& layout, int chunk) {
  const std::size_t per = layout.layers.size() / z(layout.chunks);
  return {per * z(chunk), per * z(chunk + 1), layout.first_stage && chunk == 0,
          layout.last_stage && chunk == layout.chunks - 1};
}

}  // namespace

Array<float> stage_forward(Replica& r, const StageComms& comms, const MicroBatchInput& in, Array<float> input,
                           MicroBatchState& state, MicroBatchResult& result) {
  const Dims k(r, in);
  Pass pass{r, comms.ep, comms.tp, k};
  Backend& B = r.backend;
  const ModelSpec& m = r.model;
  const Views& v = pass.v;
  const int rows = k.rows, d = k.d, V = k.V;
  const ChunkSpan span = chunk_span(r.layout, in.chunk);
  result.tokens = rows;

  // The model's first chunk embeds the tokens; the others continue from the previous one.
  Array<float> x;
  if (span.first) {
    state.tokens = Array<std::int32_t>(B, z(rows));
    B.upload(state.tokens.data(), in.tokens, z(rows) * sizeof(std::int32_t));
    x = Array<float>(B, k.rd);
    UnitsInUse units(r, true, false);
    units.dense(r.layout.wte).dense(r.layout.wpe);
    B.embedding_forward(state.tokens.data(), rows, k.seq, v.p(r.layout.wte), v.p(r.layout.wpe), V, d, x.data());
    units.finish();
  } else {
    x = std::move(input);
  }
  // Full recomputation keeps only each layer's input and runs the layer again before its
  // backward; selective drops the attention's softmax (Megatron's choice: the biggest
  // activation and the cheapest to remake).
  state.acts = std::vector<LayerActs>(span.end - span.begin);
  for (std::size_t j = 0; j < state.acts.size(); ++j) {
    const std::size_t i = span.begin + j;
    LayerActs& a = state.acts[j];
    a.x_in = std::move(x);
    UnitsInUse units(r, true, false);
    units.layer(r.layout.layers[i]);
    x = pass.layer_forward(i, a, &result);
    units.finish();
    if (in.recompute == Recompute::full) {
      Array<float> keep = std::move(a.x_in);
      a = LayerActs();
      a.x_in = std::move(keep);
    } else if (in.recompute == Recompute::selective) {
      a.probs = Array<float>();
    }
  }
  if (!span.last) return x;

  // The model's last chunk: final norm, output head and loss; the logits stay for the backward.
  UnitsInUse units(r, true, false);
  units.dense(r.layout.lnf_g).dense(r.layout.head_w);
  state.x_out = std::move(x);
  const float* head_in = state.x_out.data();
  if (m.final_norm) {
    pass.norm_forward(state.x_out.data(), r.layout.lnf_g, r.layout.lnf_b, state.hf, state.meanf, state.rstdf);
    head_in = state.hf.data();
  }
  state.targets = Array<std::int32_t>(B, z(rows));
  B.upload(state.targets.data(), in.targets, z(rows) * sizeof(std::int32_t));
  state.logits = Array<float>(B, z(rows) * z(V));
  state.lse = Array<float>(B, z(rows));
  B.linear_forward(head_in, v.p(r.layout.head_w), nullptr, rows, d, V, state.logits.data());
  result.loss_sum = B.cross_entropy_forward(state.logits.data(), state.targets.data(), rows, V, state.lse.data());
  units.finish();
  return {};
}

Array<float> stage_backward(Replica& r, const StageComms& comms, const MicroBatchInput& in, Array<float> grad,
                            MicroBatchState& state) {
  const Dims k(r, in);
  Pass pass{r, comms.ep, comms.tp, k};
  Backend& B = r.backend;
  const ModelSpec& m = r.model;
  const Views& v = pass.v;
  const int rows = k.rows, d = k.d, V = k.V;
  const ChunkSpan span = chunk_span(r.layout, in.chunk);

  Array<float> dx;
  if (span.last) {
    UnitsInUse units(r, true, true, in.reduce_in_backward);
    // A head tied to the embedding on this stage gets the embedding's gradient added last.
    units.dense(r.layout.lnf_g).dense(r.layout.head_w, r.layout.head_w != r.layout.wte);
    Array<float> dlogits(B, z(rows) * z(V));
    B.cross_entropy_backward(state.logits.data(), state.targets.data(), state.lse.data(), rows, V, in.loss_scale,
                             dlogits.data());
    state.logits = Array<float>();
    dx = Array<float>(B, k.rd);
    Array<float> tmp(B, k.rd);
    const float* head_in = m.final_norm ? state.hf.data() : state.x_out.data();
    B.linear_backward(dlogits.data(), head_in, v.p(r.layout.head_w), rows, d, V, m.final_norm ? tmp.data() : dx.data(),
                      v.g(r.layout.head_w), nullptr, true);
    if (m.final_norm)
      B.norm_backward(tmp.data(), state.x_out.data(), v.p(r.layout.lnf_g), state.meanf.data(), state.rstdf.data(),
                      rows, d, dx.data(), v.g(r.layout.lnf_g), v.dbeta(r.layout.lnf_b));
    units.finish();
  } else {
    dx = std::move(grad);
  }
  for (std::size_t j = state.acts.size(); j-- > 0;) {
    const std::size_t i = span.begin + j;
    LayerActs& a = state.acts[j];
    // Gathered once for the recomputation and the backward.
    UnitsInUse units(r, true, true, in.reduce_in_backward);
    units.layer(r.layout.layers[i]);
    if (in.recompute == Recompute::full) pass.layer_forward(i, a, nullptr);
    pass.layer_backward(i, a, in.aux_scale, dx);
    units.finish();
    a = LayerActs();
  }
  if (span.first) {
    UnitsInUse units(r, false, true, in.reduce_in_backward);  // the embedding's backward reads no parameter
    units.dense(r.layout.wte).dense(r.layout.wpe);
    B.embedding_backward(dx.data(), state.tokens.data(), rows, k.seq, V, d, v.g(r.layout.wte), v.g(r.layout.wpe));
    units.finish();
  }
  state = MicroBatchState();
  if (span.first) return {};
  return dx;
}

MicroBatchResult train_micro_batch(Replica& r, const StageComms& comms, const MicroBatchInput& in) {
  MicroBatchResult result;
  MicroBatchState state;
  stage_forward(r, comms, in, {}, state, result);
  stage_backward(r, comms, in, {}, state);
  return result;
}

}  // namespace moesim::exec
