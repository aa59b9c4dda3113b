// The training loop of one rank: micro-batches, gradient reduction, clipping, Adam, and
// the update's figures reduced over the ranks.
#include "src/executor/trainer.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>
#include <numbers>
#include <string>

#include "kernels/counter_rng.hpp"
#include "src/core/error.hpp"
#include "src/executor/gpt_moe.hpp"
#include "src/executor/pipeline.hpp"
#include "src/executor/rank_grid.hpp"
#include "src/routing/dense_to_sparse.hpp"

namespace moesim::exec {
namespace {

std::size_t z(long long n) { return static_cast<std::size_t>(n); }

// Sums `values` over `comm` through the backend's memory (NCCL reduces device buffers).
void sum_over(Backend& backend, Communicator& comm, std::vector<float>& values) {
  if (comm.size() == 1 || values.empty()) return;
  Array<float> buf(backend, values.size());
  backend.upload(buf.data(), values.data(), values.size() * sizeof(float));
  comm.all_reduce(buf.data(), values.size());
  comm.wait();
  backend.download(values.data(), buf.data(), values.size() * sizeof(float));
}

// One parameter group's optimizer: Adam over the ranges of the group's store this rank
// updates (all of it, or under ZeRO its shard: Adam's moments are held for those only),
// the gradients reduced over the group's replicas as the store's ZeRO stage says.
struct OptimizerGroup {
  OptimizerGroup(Backend& backend, ParamStore& s)
      : B(backend), store(s), m(backend, s.owned_size()), v(backend, s.owned_size()) {
    B.zero(m.data(), m.size() * sizeof(float));
    B.zero(v.data(), v.size() * sizeof(float));
  }

  bool sharded() const { return store.zero() >= 1; }
  // Squares of the gradients this rank updates, a tensor the tensor-parallel ranks share
  // weighted 1/tp, so that a sum over them counts it once.
  double owned_squares(const std::vector<ParamTensor>& tensors, ParamGroup group, int tp) {
    const float* g = store.owned_grads();
    double sum = 0;
    for (const ParamStore::Owned& o : store.owned())
      for (const ParamTensor& t : tensors) {
        if (t.group != group || t.shared_copy) continue;
        const std::size_t a = std::max(o.offset, t.offset), b = std::min(o.offset + o.size, t.offset + t.size);
        if (a >= b) continue;
        const double sq = B.sum_squares(g + o.at + (a - o.offset), b - a);
        sum += t.tp_split ? sq : sq / tp;
      }
    return sum;
  }
  void scale(float factor) { B.scale(factor, store.owned_grads(), store.owned_size()); }
  void step(int update, const kernels::AdamOptions& adam) {
    float* g = store.owned_grads();
    for (const ParamStore::Owned& o : store.owned())
      B.adam_step(store.owned_params(o), g + o.at, m.data() + o.at, v.data() + o.at, o.size, update, adam);
    store.publish();
  }

  Backend& B;
  ParamStore& store;
  Array<float> m, v;
};

// What a checkpoint must have been saved under to be resumed by this run; lr holds the
// schedule's fields that shape its values.
RunIdentity run_identity(const ModelSpec& model, const Plan& plan, int world_size, const TrainOptions& o) {
  RunIdentity id{model.name, plan_to_inline(plan), world_size, o.seed, to_string(o.data), {}};
  id.lr["decay"] = to_string(o.lr.decay);
  id.lr["lr"] = o.lr.lr;
  id.lr["warmup_updates"] = o.lr.warmup_updates;
  if (o.lr.warmup_updates > 0) id.lr["warmup_init_lr"] = o.lr.warmup_init_lr;
  if (o.lr.decay == LrDecay::linear || o.lr.decay == LrDecay::cosine) {
    id.lr["end_lr"] = o.lr.end_lr;
    id.lr["total_updates"] = o.lr.total_updates;
  }
  return id;
}

void unsupported(const std::string& file, const std::string& field, const std::string& what) {
  throw InputError(file, field, what + " (moesim run does not train this yet)");
}

}  // namespace

void check_runnable(const ModelSpec& m, const Plan& p, const std::string& model_file,
                    const std::string& plan_file) {
  auto divides = [&](const char* file_field, std::int64_t n, const std::string& what) {
    if (n % p.tp != 0)
      throw InputError(plan_file, "tp", "expected a divisor of the model's " + what + " (" + std::to_string(n) +
                                            "), got " + std::to_string(p.tp) + " (" + file_field + ")");
  };
  divides("heads", m.heads, "heads");
  divides("kv_heads", m.kv_heads, "kv_heads");
  divides("ffn_dim", m.ffn_dim, "ffn_dim");
  if (m.is_moe()) divides("expert_ffn_dim", m.expert_ffn(), "expert FFN dim");
  check_plan(p, m, plan_file);  // the layers' split over (uneven) stages
  // bf16, fp16: autocast-style GEMMs over fp32 weights, which are the master copy (fp16
  // with dynamic loss scaling).
  if (p.precision != DType::fp32 && !p.master_weights)
    unsupported(plan_file, "master_weights", "expected true (the fp32 weights are the master copy)");
  if (p.optimizer_dtype != DType::fp32) unsupported(plan_file, "optimizer_dtype", "expected fp32");
  // The simulator prices these; the executor does not run them (its norms run on every
  // token of each tensor-parallel rank, its GEMMs in the plan's precision).
  if (p.sp) unsupported(plan_file, "sp", "expected false");
  if (p.cp > 1) unsupported(plan_file, "cp", "expected 1 (no ring attention in the executor)");
  if (p.etp > 0 && p.etp != p.tp) unsupported(plan_file, "etp", "expected tp (experts split as the dense layers)");
  if (p.fp8 != Fp8::none) unsupported(plan_file, "fp8", "expected none");
  if (m.positions == Positions::sinusoidal) unsupported(model_file, "positions", "expected learned or rotary");
  if (m.activation == Activation::relu) unsupported(model_file, "activation", "expected gelu or swiglu");
  if (m.mla) unsupported(model_file, "mla", "expected none");
  if (m.moe.expert_groups > 0) unsupported(model_file, "moe.expert_groups", "expected none (no group-limited routing)");
  if (m.mtp_layers > 0) unsupported(model_file, "mtp_layers", "expected 0 (no multi-token prediction in the executor)");
  if (m.qk_norm != QkNorm::none) unsupported(model_file, "qk_norm", "expected none");
  if (m.is_moe()) {
    if (m.expert_act() != Activation::gelu) unsupported(model_file, "moe.expert_activation", "expected gelu");
    if (m.moe.top_k > 2) unsupported(model_file, "moe.top_k", "expected 1 or 2");
    if (m.moe.shared_experts != 0) unsupported(model_file, "moe.shared_experts", "expected 0");
    if (m.moe.router_score != RouterScore::softmax) unsupported(model_file, "moe.router_score", "expected softmax");
    if (m.moe.gate_bias) unsupported(model_file, "moe.gate_bias", "expected false");
    if (p.precision == DType::bf16 && m.moe.gate_precision == DType::fp16)
      unsupported(model_file, "moe.gate_precision", "expected fp32 or bf16 with precision bf16");
    if (p.precision == DType::fp16 && m.moe.gate_precision == DType::bf16)
      unsupported(model_file, "moe.gate_precision", "expected fp32 or fp16 with precision fp16");
  }
}

RankGroups make_groups(Communicator& world, const Plan& plan) {
  const RankGrid g = rank_grid(plan, world.rank());
  const int column = g.pp * plan.tp + g.tp;  // ranks differing only in dp share it
  RankGroups groups;
  groups.world = &world;
  groups.dp = world.split(column, g.dp);
  groups.ep = world.split(column * plan.edp() + g.edp, g.ep);
  groups.edp = world.split(column * plan.ep + g.ep, g.edp);
  groups.tp = world.split(g.pp * plan.dp + g.dp, g.tp);
  const int line = g.dp * plan.tp + g.tp;  // ranks differing only in pp share it
  groups.pp = world.split(line, g.pp);
  // The first and last stages of a line hold the tied embedding's two copies.
  const bool end = g.pp == 0 || g.pp == plan.pp - 1;
  groups.embedding = world.split(end ? line : plan.dp * plan.tp + line, g.pp);
  return groups;
}

TrainResult train(Backend& B, RankGroups& groups, const ModelSpec& model, const Plan& plan,
                  const TrainOptions& options, const std::function<void(const StepRecord&)>& on_step) {
  Communicator& world = *groups.world;
  if (world.size() != plan.world())
    throw InputError("--plan", "dp*tp*pp", "expected " + std::to_string(plan.world()) +
                                               " ranks (start it with mpirun -n " +
                                               std::to_string(plan.world()) + "), got " +
                                               std::to_string(world.size()));
  const RankGrid grid = rank_grid(plan, world.rank());
  // The CUDA gate kernels are fairseq's top-1/top-2 only.
  if (model.moe.dense_to_sparse && B.kind() != "cpu")
    throw InputError("--device", "moe.dense_to_sparse", "expected --device cpu (no dense-to-sparse gate on " + B.kind() + ")");
  B.set_gemm_precision(plan.precision == DType::bf16   ? kernels::GemmPrecision::bf16
                       : plan.precision == DType::fp16 ? kernels::GemmPrecision::fp16
                                                       : kernels::GemmPrecision::fp32);
  TokenSourceSpec data = options.data;
  data.seed = options.seed;
  const int seq = static_cast<int>(model.seq_len);
  const TokenSource source(data, static_cast<int>(model.vocab), seq);

  const ExpertShard shard{model.moe.experts, plan.ep, plan.placement};
  // Dense parameters are replicated over data parallel, experts over their replicas.
  // Under the interleaved schedule the stage holds its vpp model chunks in one replica, so
  // gradients, ZeRO, the optimizer and checkpoints cover them all alike.
  const int chunks = plan.schedule == Schedule::interleaved ? plan.vpp : 1;
  Replica rep(B, model, shard, grid.ep, plan.tp, grid.tp, plan.pp, grid.pp,
              ZeroSharding{plan.zero, groups.dp.get(), groups.edp.get()}, chunks,
              EndStages{plan.first_stage_layers, plan.last_stage_layers});
  const StageComms comms{*groups.ep, *groups.tp};
  const bool tied_copies = model.tied_embeddings && plan.pp > 1 && (rep.layout.first_stage || rep.layout.last_stage);
  {
    std::vector<float> dense(rep.layout.dense_size), expert(rep.layout.expert_size);
    init_params(rep.layout, options.seed, options.init_std, dense, expert);
    rep.dense.load(dense);
    rep.expert.load(expert);
  }
  OptimizerGroup dense(B, rep.dense);
  OptimizerGroup experts(B, rep.expert);
  std::optional<DynamicLossScaler> scaler;
  if (plan.precision == DType::fp16) {
    LossScalerOptions o = options.loss_scaler;
    if (o.window == 0) o.window = default_scale_window(world.size(), plan.micro_batches());
    if (!(o.init_scale > o.min_scale))
      throw InputError("--fp16-init-scale", "", "expected a scale above --min-loss-scale (" +
                                                    std::to_string(o.min_scale) + "), got " +
                                                    std::to_string(o.init_scale));
    scaler.emplace(o);
  }
  Array<float> scale_state(B, scaler ? 1 : 0);  // the loss scale, as checkpoints hold it
  // All an update hands the next: parameters and Adam moments (the data and the gate's
  // draws are functions of the update number), so they and the count resume a run;
  // under fp16 also the loss scale (as fairseq saves it; its window restarts).
  std::vector<StateBuffer> state{{"dense", rep.dense.held_params(), rep.dense.held_params_size()},
                                 {"expert", rep.expert.held_params(), rep.expert.held_params_size()},
                                 {"dense.exp_avg", dense.m.data(), dense.m.size()},
                                 {"dense.exp_avg_sq", dense.v.data(), dense.v.size()},
                                 {"expert.exp_avg", experts.m.data(), experts.m.size()},
                                 {"expert.exp_avg_sq", experts.v.data(), experts.v.size()}};
  if (scaler) {
    const auto initial = static_cast<float>(scaler->scale());
    B.upload(scale_state.data(), &initial, sizeof initial);
    state.push_back({"loss_scale", scale_state.data(), 1});
  }
  Checkpointer checkpoints(B, world, options.checkpoint, run_identity(model, plan, world.size(), options), state);
  const std::int64_t first = checkpoints.resume();
  if (scaler && first > 0) {
    float saved = 0;
    B.download(&saved, scale_state.data(), sizeof saved);
    scaler->set_scale(saved);
  }
  if (first > 0 && first >= options.steps)
    throw InputError("--steps", "", "expected more than the " + std::to_string(first) + " updates of " +
                                        checkpoints.update_dir(first) + ", got " + std::to_string(options.steps));

  const std::int64_t G = plan.global_batch();
  const std::int64_t M = plan.micro_batches();
  const std::int64_t local = G / plan.dp;
  const int mbs = plan.mbs;
  const double global_tokens = static_cast<double>(G) * seq;
  const double calls = static_cast<double>(plan.dp * M);  // micro-batches per update
  const int moe_layers = model.moe_layer_count();
  const auto E = z(model.moe.experts);

  TrainResult result;
  Timeline timeline(options.timeline);
  result.param_count = rep.layout.param_count();
  result.resumed_from = first;
  std::vector<std::int32_t> tokens(z(mbs) * z(seq)), targets(tokens.size());
  std::int64_t overflows = 0;  // iterations skipped since the last update
  for (std::int64_t step = first; step < options.steps;) {
    const auto t0 = std::chrono::steady_clock::now();
    // fp16: the backward starts from the loss's gradient times the scale (exact: a power
    // of two); 1 otherwise.
    const double loss_scale = scaler ? scaler->scale() : 1.0;
    B.reset_peak();
    rep.dense.zero_grads();
    rep.expert.zero_grads();

    // Summed over this rank's micro-batches, then over the data-parallel group:
    // loss, l_aux, 6 gate figures, then expert1 and expert2 counts per MoE layer.
    // Last: the experts per token summed over MoE layers (moe.dense_to_sparse's figure).
    std::vector<float> sums(8 + 2 * z(moe_layers) * E + 1, 0.0f);
    double loss_sum = 0, aux_sum = 0;
    std::vector<MicroBatchState> states(z(M) * z(chunks));  // by chunk, then micro-batch
    // The simulator's names: F<virtual stage>.<mb>, the virtual stage chunk * pp + stage.
    auto tag = [&](int chunk, int mb) { return std::to_string(chunk * plan.pp + grid.pp) + "." + std::to_string(mb); };
    auto input_of = [&](int chunk, int mb) {
      MicroBatchInput in;
      in.tokens = tokens.data();
      in.targets = targets.data();
      in.mbs = mbs;
      // One seed per micro-batch of the whole update, so a split over ranks draws alike.
      in.gate_seed = kernels::mix64(options.seed ^ kernels::mix64(z(step * plan.dp * M + grid.dp * M + mb)));
      in.step = step;
      in.loss_scale = static_cast<float>(loss_scale / global_tokens);
      in.aux_scale = static_cast<float>(loss_scale * model.moe.aux_loss_weight / calls);
      in.recompute = plan.recompute;
      in.chunk = chunk;
      return in;
    };
    StageWork work;
    work.forward = [&](int chunk, int mb, Array<float> input) {
      const std::int64_t first_sequence = step * G + grid.dp * local + mb * mbs;
      const std::vector<std::int32_t> batch = source.batch(first_sequence, mbs);
      for (int b = 0; b < mbs; ++b)
        for (int j = 0; j < seq; ++j) {
          tokens[z(b) * z(seq) + z(j)] = batch[z(b) * z(seq + 1) + z(j)];
          targets[z(b) * z(seq) + z(j)] = batch[z(b) * z(seq + 1) + z(j) + 1];
        }
      MicroBatchResult r;
      const double t = timeline.now();
      Array<float> out =
          stage_forward(rep, comms, input_of(chunk, mb), std::move(input), states[z(chunk) * z(M) + z(mb)], r);
      B.synchronize();
      timeline.add("F" + tag(chunk, mb), "forward", t, step + 1);
      loss_sum += r.loss_sum;
      aux_sum += r.aux_loss_sum;
      sums.back() += static_cast<float>(r.active_experts_sum);
      for (std::size_t l = 0; l < r.gate_stats.size(); ++l) {
        const kernels::GateStats& s = r.gate_stats[l];
        sums[2] += static_cast<float>(s.overflow_expert1);
        sums[3] += static_cast<float>(s.overflow_expert2);
        sums[4] += static_cast<float>(s.entropy_gating);
        sums[5] += static_cast<float>(s.expert1_balance_top);
        sums[6] += static_cast<float>(s.expert1_balance_bottom);
        sums[7] += static_cast<float>(s.unused_expert1_count);
        const auto g = z(r.moe_index[l]);  // among the model's MoE layers
        for (std::size_t e = 0; e < E; ++e) {
          sums[8 + g * E + e] += static_cast<float>(r.expert1[l][e]);
          if (!r.expert2[l].empty()) sums[8 + (z(moe_layers) + g) * E + e] += static_cast<float>(r.expert2[l][e]);
        }
      }
      return out;
    };
    std::vector<std::int64_t> backwards(z(chunks), 0);  // each chunk's units are final after its last
    work.backward = [&](int chunk, int mb, Array<float> grad) {
      const double t = timeline.now();
      MicroBatchInput in = input_of(chunk, mb);
      in.reduce_in_backward = options.overlap_grad_reduce && ++backwards[z(chunk)] == M;
      Array<float> dx = stage_backward(rep, comms, in, std::move(grad), states[z(chunk) * z(M) + z(mb)]);
      B.synchronize();
      timeline.add("B" + tag(chunk, mb), "backward", t, step + 1);
      return dx;
    };
    run_pipeline(plan.schedule, static_cast<int>(M), *groups.pp, B, z(mbs) * z(seq) * z(model.d_model), work,
                 chunks);
    sums[0] = static_cast<float>(loss_sum);
    sums[1] = static_cast<float>(aux_sum);
    sum_over(B, *groups.dp, sums);
    sum_over(B, *groups.pp, sums);  // the loss is the last stage's, each stage has its gates

    // The tied embedding's two copies (first and last stage) train on their summed gradient:
    // under ZeRO 1 before the reduce-scatter, otherwise after the data-parallel reduction
    // (under ZeRO 2/3 each copy is a unit of its own, sharded alike, and the copies' shards
    // are summed; under ZeRO 0 the copies' all-reduces may still be running before).
    auto sum_tied_copies = [&] {
      if (!tied_copies) return;
      const std::size_t at = rep.layout.first_stage ? rep.layout.wte : rep.layout.head_w;
      const auto [grads, count] = rep.dense.held_grads(at, z(model.vocab) * z(model.d_model));
      B.synchronize();
      groups.embedding->all_reduce(grads, count);
      groups.embedding->wait();
    };
    const double reduce_start = timeline.now();
    if (rep.dense.zero() == 1) sum_tied_copies();
    rep.dense.reduce();
    rep.expert.reduce();
    if (rep.dense.zero() != 1) sum_tied_copies();
    B.synchronize();
    timeline.add("grad_reduce " + std::to_string(grid.pp), "dp_grad_reduce", reduce_start, step + 1);
    for (ParamStore* store : {&rep.dense, &rep.expert})
      for (const ParamStore::ReduceSpan& span : store->take_reduce_spans())
        timeline.add_span("grad_reduce " + std::to_string(grid.pp) + " " + span.unit, kOverlappedReduce,
                          timeline.seconds(span.start), timeline.seconds(span.end), step + 1);
    // The global norm counts every gradient once: dense chunks over data parallel (or the
    // whole, the same on every rank), expert chunks over their replicas and then over the
    // expert-parallel group, which holds different experts.
    const std::vector<ParamTensor>& tensors = rep.layout.tensors;
    std::vector<float> dense_sq{static_cast<float>(dense.owned_squares(tensors, ParamGroup::dense, plan.tp))};
    if (dense.sharded()) sum_over(B, *groups.dp, dense_sq);
    sum_over(B, *groups.tp, dense_sq);
    sum_over(B, *groups.pp, dense_sq);
    std::vector<float> expert_sq{static_cast<float>(experts.owned_squares(tensors, ParamGroup::expert, plan.tp))};
    if (experts.sharded()) sum_over(B, *groups.edp, expert_sq);
    sum_over(B, *groups.ep, expert_sq);
    sum_over(B, *groups.tp, expert_sq);
    sum_over(B, *groups.pp, expert_sq);
    const double scaled_norm = std::sqrt(static_cast<double>(dense_sq[0]) + expert_sq[0]);
    if (scaler) {
      // fairseq checks the global norm of the scaled gradients: inf or NaN on any rank is
      // inf or NaN in the sums above on every rank; the flag's maximum over the world
      // makes sure every rank skips alike.
      const bool overflow = world.max_over_ranks(std::isfinite(scaled_norm) ? 0.0 : 1.0) > 0;
      if (overflow && scaler->check_overflow(std::numeric_limits<double>::infinity())) {
        ++overflows;
        if (options.on_overflow) options.on_overflow(step + 1, scaler->scale());
        continue;  // no step, no lr step, num_updates unchanged: the next iteration retries
      }
    }
    const double gnorm = scaled_norm / loss_scale;
    // Unscaling and clipping are one multiplication of the gradients (fairseq's
    // multiply_factor).
    const double clip = clip_scale(gnorm, options.clip_norm) / loss_scale;
    const double lr = lr_at(options.lr, step + 1);
    const double step_start = timeline.now();
    if (std::isfinite(clip)) {
      if (clip != 1.0) {
        dense.scale(static_cast<float>(clip));
        experts.scale(static_cast<float>(clip));
      }
      kernels::AdamOptions adam = options.adam;
      adam.lr = static_cast<float>(lr);
      const int update = static_cast<int>(step + 1);
      dense.step(update, adam);
      experts.step(update, adam);
    }
    if (scaler) {
      scaler->update();
      const auto now = static_cast<float>(scaler->scale());
      B.upload(scale_state.data(), &now, sizeof now);
    }
    B.synchronize();
    timeline.add("optimizer " + std::to_string(grid.pp), "optimizer", step_start, step + 1);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    StepRecord rec;
    rec.num_updates = step + 1;
    const double nll = sums[0] / global_tokens;
    const double gate_loss = sums[1] / calls;
    rec.nll_loss = nll / std::numbers::ln2;
    rec.moe_gate_loss = gate_loss;
    rec.loss = (nll + model.moe.aux_loss_weight * gate_loss) / std::numbers::ln2;
    const double gate_calls = calls * moe_layers;
    if (gate_calls > 0) {
      rec.overflow_expert1 = sums[2] / gate_calls;
      rec.overflow_expert2 = sums[3] / gate_calls;
      rec.entropy_gating = sums[4] / gate_calls;
      rec.expert1_balance_top = sums[5] / gate_calls;
      rec.expert1_balance_bottom = sums[6] / gate_calls;
      rec.unused_expert1_count = sums[7] / gate_calls;
      rec.dts_active_experts = sums.back() / gate_calls;
    }
    if (model.moe.dense_to_sparse) {
      const DenseToSparse& d = *model.moe.dense_to_sparse;
      rec.dts_phase = dts_phase(d, step) == DtsPhase::dense       ? "dense"
                      : dts_phase(d, step) == DtsPhase::annealing ? "annealing"
                                                                  : "sparse";
      rec.dts_temperature = dts_temperature(d, step);
    }
    rec.lr = lr;
    rec.gnorm = gnorm;
    rec.loss_scale = scaler ? scaler->scale() : 0.0;
    rec.overflows = std::exchange(overflows, 0);
    rec.tokens = G * seq;
    rec.sequences = G;
    rec.seconds = world.max_over_ranks(seconds);
    rec.peak_bytes = static_cast<std::size_t>(world.max_over_ranks(static_cast<double>(B.peak_bytes())));
    for (int l = 0; l < moe_layers; ++l) {
      std::vector<std::int64_t> e1(E), e2(model.moe.top_k == 2 ? E : 0);
      for (std::size_t e = 0; e < E; ++e) {
        e1[e] = static_cast<std::int64_t>(sums[8 + z(l) * E + e]);
        if (!e2.empty()) e2[e] = static_cast<std::int64_t>(sums[8 + (z(moe_layers) + z(l)) * E + e]);
      }
      rec.expert1.push_back(std::move(e1));
      rec.expert2.push_back(std::move(e2));
    }
    if (on_step) on_step(rec);
    result.steps.push_back(std::move(rec));
    checkpoints.after_update(step + 1, options.steps);
    ++step;
  }
  result.timeline = timeline.events();
  return result;
}

}  // namespace moesim::exec
