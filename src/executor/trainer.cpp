// The training loop of one rank: micro-batches, gradient reduction, clipping, Adam, and
// the update's figures reduced over the ranks.
#include "src/executor/trainer.hpp"

#include <chrono>
#include <cmath>
#include <numbers>
#include <string>

#include "kernels/counter_rng.hpp"
#include "src/core/error.hpp"
#include "src/executor/gpt_moe.hpp"
#include "src/executor/rank_grid.hpp"

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

void unsupported(const std::string& file, const std::string& field, const std::string& what) {
  throw InputError(file, field, what + " (moesim run does not train this yet)");
}

}  // namespace

void check_runnable(const ModelSpec& m, const Plan& p, const std::string& model_file,
                    const std::string& plan_file) {
  if (p.tp != 1) unsupported(plan_file, "tp", "expected 1");
  if (p.pp != 1) unsupported(plan_file, "pp", "expected 1");
  if (p.zero != 0) unsupported(plan_file, "zero", "expected 0");
  if (p.recompute != Recompute::none) unsupported(plan_file, "recompute", "expected none");
  if (p.precision != DType::fp32) unsupported(plan_file, "precision", "expected fp32");
  if (m.positions == Positions::rotary || m.positions == Positions::sinusoidal)
    unsupported(model_file, "positions", "expected learned");
  if (m.activation != Activation::gelu) unsupported(model_file, "activation", "expected gelu");
  if (m.mla) unsupported(model_file, "mla", "expected none");
  if (m.qk_norm != QkNorm::none) unsupported(model_file, "qk_norm", "expected none");
  if (m.is_moe()) {
    if (m.expert_act() != Activation::gelu) unsupported(model_file, "moe.expert_activation", "expected gelu");
    if (m.moe.top_k > 2) unsupported(model_file, "moe.top_k", "expected 1 or 2");
    if (m.moe.shared_experts != 0) unsupported(model_file, "moe.shared_experts", "expected 0");
    if (m.moe.router_score != RouterScore::softmax) unsupported(model_file, "moe.router_score", "expected softmax");
    if (m.moe.gate_bias) unsupported(model_file, "moe.gate_bias", "expected false");
    if (m.moe.dense_to_sparse) unsupported(model_file, "moe.dense_to_sparse", "expected none");
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
  TokenSourceSpec data = options.data;
  data.seed = options.seed;
  const int seq = static_cast<int>(model.seq_len);
  const TokenSource source(data, static_cast<int>(model.vocab), seq);

  const ExpertShard shard{model.moe.experts, plan.ep, plan.placement};
  Replica rep(B, model, shard, grid.ep);
  {
    std::vector<float> dense(rep.layout.dense_size), expert(rep.layout.expert_size);
    init_params(rep.layout, options.seed, options.init_std, dense, expert);
    B.upload(rep.dense.data(), dense.data(), dense.size() * sizeof(float));
    B.upload(rep.expert.data(), expert.data(), expert.size() * sizeof(float));
  }
  Array<float> m_dense(B, rep.dense.size()), v_dense(B, rep.dense.size());
  Array<float> m_expert(B, rep.expert.size()), v_expert(B, rep.expert.size());
  for (Array<float>* a : {&m_dense, &v_dense, &m_expert, &v_expert}) B.zero(a->data(), a->size() * sizeof(float));

  const std::int64_t G = plan.global_batch();
  const std::int64_t M = plan.micro_batches();
  const std::int64_t local = G / plan.dp;
  const int mbs = plan.mbs;
  const double global_tokens = static_cast<double>(G) * seq;
  const double calls = static_cast<double>(plan.dp * M);  // micro-batches per update
  const int moe_layers = model.moe_layer_count();
  const auto E = z(model.moe.experts);

  TrainResult result;
  result.param_count = rep.layout.dense_size + rep.layout.expert_size;
  std::vector<std::int32_t> tokens(z(mbs) * z(seq)), targets(tokens.size());
  for (std::int64_t step = 0; step < options.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    B.reset_peak();
    B.zero(rep.dense_grad.data(), rep.dense_grad.size() * sizeof(float));
    B.zero(rep.expert_grad.data(), rep.expert_grad.size() * sizeof(float));

    // Summed over this rank's micro-batches, then over the data-parallel group:
    // loss, l_aux, 6 gate figures, then expert1 and expert2 counts per MoE layer.
    std::vector<float> sums(8 + 2 * z(moe_layers) * E, 0.0f);
    double loss_sum = 0, aux_sum = 0;
    for (std::int64_t mb = 0; mb < M; ++mb) {
      const std::int64_t first = step * G + grid.dp * local + mb * mbs;
      const std::vector<std::int32_t> batch = source.batch(first, mbs);
      for (int b = 0; b < mbs; ++b)
        for (int j = 0; j < seq; ++j) {
          tokens[z(b) * z(seq) + z(j)] = batch[z(b) * z(seq + 1) + z(j)];
          targets[z(b) * z(seq) + z(j)] = batch[z(b) * z(seq + 1) + z(j) + 1];
        }
      MicroBatchInput in;
      in.tokens = tokens.data();
      in.targets = targets.data();
      in.mbs = mbs;
      // One seed per micro-batch of the whole update, so a split over ranks draws alike.
      in.gate_seed = kernels::mix64(options.seed ^ kernels::mix64(z(step * plan.dp * M + grid.dp * M + mb)));
      in.loss_scale = static_cast<float>(1.0 / global_tokens);
      in.aux_scale = static_cast<float>(model.moe.aux_loss_weight / calls);
      const MicroBatchResult r = train_micro_batch(rep, *groups.ep, in);
      loss_sum += r.loss_sum;
      aux_sum += r.aux_loss_sum;
      for (std::size_t l = 0; l < r.gate_stats.size(); ++l) {
        const kernels::GateStats& s = r.gate_stats[l];
        sums[2] += static_cast<float>(s.overflow_expert1);
        sums[3] += static_cast<float>(s.overflow_expert2);
        sums[4] += static_cast<float>(s.entropy_gating);
        sums[5] += static_cast<float>(s.expert1_balance_top);
        sums[6] += static_cast<float>(s.expert1_balance_bottom);
        sums[7] += static_cast<float>(s.unused_expert1_count);
        for (std::size_t e = 0; e < E; ++e) {
          sums[8 + l * E + e] += static_cast<float>(r.expert1[l][e]);
          if (!r.expert2[l].empty()) sums[8 + (z(moe_layers) + l) * E + e] += static_cast<float>(r.expert2[l][e]);
        }
      }
    }
    sums[0] = static_cast<float>(loss_sum);
    sums[1] = static_cast<float>(aux_sum);
    sum_over(B, *groups.dp, sums);

    // Dense gradients are summed over data parallel, experts' over their replicas.
    if (groups.dp->size() > 1) groups.dp->all_reduce(rep.dense_grad.data(), rep.dense_grad.size());
    if (groups.edp->size() > 1) groups.edp->all_reduce(rep.expert_grad.data(), rep.expert_grad.size());
    groups.world->wait();
    groups.dp->wait();
    groups.edp->wait();
    // The global norm counts every dense gradient once and every expert's once.
    std::vector<float> expert_sq{static_cast<float>(B.sum_squares(rep.expert_grad.data(), rep.expert_grad.size()))};
    sum_over(B, *groups.ep, expert_sq);
    const double gnorm = std::sqrt(B.sum_squares(rep.dense_grad.data(), rep.dense_grad.size()) + expert_sq[0]);
    const double clip = clip_scale(gnorm, options.clip_norm);
    const double lr = lr_at(options.lr, step + 1);
    if (std::isfinite(clip)) {
      if (clip != 1.0) {
        B.scale(static_cast<float>(clip), rep.dense_grad.data(), rep.dense_grad.size());
        B.scale(static_cast<float>(clip), rep.expert_grad.data(), rep.expert_grad.size());
      }
      kernels::AdamOptions adam = options.adam;
      adam.lr = static_cast<float>(lr);
      const int update = static_cast<int>(step + 1);
      B.adam_step(rep.dense.data(), rep.dense_grad.data(), m_dense.data(), v_dense.data(), rep.dense.size(), update, adam);
      B.adam_step(rep.expert.data(), rep.expert_grad.data(), m_expert.data(), v_expert.data(), rep.expert.size(), update, adam);
    }
    B.synchronize();
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
    }
    rec.lr = lr;
    rec.gnorm = gnorm;
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
  }
  return result;
}

}  // namespace moesim::exec
