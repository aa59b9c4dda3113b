// The executor on one rank: every layer type's backward against central finite
// differences of the loss, the sharded parameters against the single-rank model, bf16 and
// fp16 training against fp32, fp16's dynamic loss scaling, and the interleaved pipeline
// schedule's order and exchanges (all stages played out in one process); EvoMoE's
// dense-to-sparse gate in each phase of its schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>

#include "src/accounting/params.hpp"
#include "src/comm/self_communicator.hpp"
#include "src/core/error.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/gpt_moe.hpp"
#include "src/executor/parameters.hpp"
#include "src/executor/pipeline.hpp"
#include "src/executor/trainer.hpp"
#include "src/routing/dense_to_sparse.hpp"
#include "tests/src/executor_test_models.hpp"

namespace moesim::exec {
namespace {


struct Fixture {
  explicit Fixture(const ModelSpec& m) : model(m), backend(make_cpu_backend()),
                                         rep(*backend, model, ExpertShard{m.moe.experts, 1}, 0) {
    std::vector<float> dense(rep.layout.dense_size), expert(rep.layout.expert_size);
    // A wide initialisation spreads the router's logits, so a small step of one weight
    // rarely changes a token's experts (which finite differences cannot follow).
    init_params(rep.layout, 11, 0.1f, dense, expert);
    rep.dense.load(dense);
    rep.expert.load(expert);
    const int rows = 2 * static_cast<int>(m.seq_len);
    for (int i = 0; i < rows; ++i) {
      tokens.push_back((i * 7 + 3) % static_cast<int>(m.vocab));
      targets.push_back((i * 5 + 1) % static_cast<int>(m.vocab));
    }
  }
  // The loss the backward differentiates: token losses summed, plus the weighted l_aux.
  double loss(MicroBatchResult* out = nullptr) {
    MicroBatchInput in;
    in.tokens = tokens.data();
    in.targets = targets.data();
    in.mbs = 2;
    in.gate_seed = 5;
    in.step = step;
    in.loss_scale = 1.0f;
    in.aux_scale = static_cast<float>(model.moe.aux_loss_weight);
    const MicroBatchResult r = train_micro_batch(rep, StageComms{self, self}, in);
    if (out) *out = r;
    return r.loss_sum + model.moe.aux_loss_weight * r.aux_loss_sum;
  }

  ModelSpec model;
  std::unique_ptr<Backend> backend;
  Replica rep;
  SelfCommunicator self;
  std::vector<std::int32_t> tokens, targets;
  std::int64_t step = 0;  // the update, for moe.dense_to_sparse's schedule
};

// Every tensor's three largest gradients against central differences of the loss.
void expect_gradients_match(ModelSpec m, std::int64_t step = 0) {
  m.moe.capacity_factor.reset();  // dropless: no token flips between kept and dropped
  m.moe.second_expert_policy = SecondExpertPolicy::all;
  Fixture f(m);
  f.step = step;
  f.rep.dense.zero_grads();
  f.rep.expert.zero_grads();
  MicroBatchResult base;
  f.loss(&base);
  const float* dg = f.rep.dense.whole_grads();
  const float* eg = f.rep.expert.whole_grads();
  const std::vector<float> dense_grad(dg, dg + f.rep.layout.dense_size);
  const std::vector<float> expert_grad(eg, eg + f.rep.layout.expert_size);

  int checked = 0;
  for (const ParamTensor& t : f.rep.layout.tensors) {
    const bool dense = t.group == ParamGroup::dense;
    float* p = (dense ? f.rep.dense.whole_params() : f.rep.expert.whole_params()) + t.offset;
    const float* g = (dense ? dense_grad.data() : expert_grad.data()) + t.offset;
    // The tensor's largest gradients: where a wrong backward shows most.
    std::vector<std::size_t> order(t.size);
    for (std::size_t i = 0; i < t.size; ++i) order[i] = i;
    const std::size_t candidates = std::min<std::size_t>(6, t.size);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(candidates), order.end(),
                      [&](std::size_t a, std::size_t b) { return std::abs(g[a]) > std::abs(g[b]); });
    int tensor_checked = 0;
    for (std::size_t n = 0; n < candidates && tensor_checked < 3; ++n) {
      const std::size_t i = order[n];
      const float saved = p[i];
      // A step that moves a token to another expert is not differentiable: take the
      // largest step that keeps every token's experts. The fp32 loss's rounding
      // (~1e-6 of ~130 nats) over 2h sets the absolute tolerance.
      for (const double h : {1e-2, 3e-3, 1e-3}) {
        MicroBatchResult plus, minus;
        p[i] = saved + static_cast<float>(h);
        const double lp = f.loss(&plus);
        p[i] = saved - static_cast<float>(h);
        const double lm = f.loss(&minus);
        p[i] = saved;
        // The dense-to-sparse gate's experts past the second show in the count alone.
        if (plus.expert1 != base.expert1 || minus.expert1 != base.expert1 || plus.expert2 != base.expert2 ||
            minus.expert2 != base.expert2 || plus.active_experts_sum != base.active_experts_sum ||
            minus.active_experts_sum != base.active_experts_sum)
          continue;
        const double fd = (lp - lm) / (2 * h);
        EXPECT_NEAR(g[i], fd, 2e-5 / h + 2e-2 * std::abs(fd)) << t.name << "[" << i << "] h=" << h;
        ++tensor_checked;
        break;
      }
    }
    EXPECT_GT(tensor_checked, 0) << t.name << ": every step changed the routing";
    checked += tensor_checked;
  }
  EXPECT_GT(checked, 2 * static_cast<int>(f.rep.layout.tensors.size()));
}

// fairseq's layers: LayerNorm, learned positions, GELU, biases, tied embeddings.
TEST(ExecutorGradients, FairseqLayersMatchFiniteDifferences) { expect_gradients_match(tiny_moe()); }

// open_lm's layers, with grouped-query attention.
TEST(ExecutorGradients, OpenLmLayersMatchFiniteDifferences) { expect_gradients_match(tiny_openlm_moe(2)); }

// RMSNorm and top-1 routing.
TEST(ExecutorGradients, RmsNormAndTop1MatchFiniteDifferences) {
  ModelSpec m = tiny_moe();
  m.norm = Norm::rmsnorm;
  m.moe.top_k = 1;
  expect_gradients_match(m);
}

// Expert-parallel ranks hold disjoint experts whose initial values are the single-rank
// model's, for both placements.
TEST(ExecutorParameters, ShardsAreSlicesOfTheSingleRankModel) {
  const ModelSpec m = tiny_moe();
  const ModelParams whole = param_layout(m, ExpertShard{m.moe.experts, 1}, 0);
  std::vector<float> dense(whole.dense_size), expert(whole.expert_size);
  init_params(whole, 3, 0.02f, dense, expert);
  for (const ExpertPlacement placement : {ExpertPlacement::contiguous, ExpertPlacement::round_robin}) {
    const ExpertShard shard{m.moe.experts, 2, placement};
    std::vector<int> seen(static_cast<std::size_t>(m.moe.experts), 0);
    for (int rank = 0; rank < 2; ++rank) {
      const ModelParams part = param_layout(m, shard, rank);
      EXPECT_EQ(part.dense_size, whole.dense_size);
      EXPECT_EQ(part.expert_size * 2, whole.expert_size);
      std::vector<float> d(part.dense_size), e(part.expert_size);
      init_params(part, 3, 0.02f, d, e);
      EXPECT_EQ(d, dense);
      for (std::size_t t = 0; t < part.tensors.size(); ++t) {
        const ParamTensor& mine = part.tensors[t];
        if (mine.group != ParamGroup::expert) continue;
        const ParamTensor& full = whole.tensors[t];
        ASSERT_EQ(mine.name, full.name);
        for (std::size_t b = 0; b < mine.block_ids.size(); ++b) {
          const auto id = static_cast<std::size_t>(mine.block_ids[b]);
          if (mine.name.find("fc1.weight") != std::string::npos && mine.name.find("layers.1.") == 0) ++seen[id];
          EXPECT_TRUE(std::equal(e.begin() + static_cast<std::ptrdiff_t>(mine.offset + b * mine.block_size),
                                 e.begin() + static_cast<std::ptrdiff_t>(mine.offset + (b + 1) * mine.block_size),
                                 expert.begin() + static_cast<std::ptrdiff_t>(full.offset + id * full.block_size)))
              << mine.name << " expert " << id;
        }
      }
    }
    EXPECT_EQ(seen, std::vector<int>(static_cast<std::size_t>(m.moe.experts), 1)) << "every expert held once";
  }
}

std::vector<StepRecord> train_tiny(const ModelSpec& model, const std::string& inline_plan,
                                   const LossScalerOptions& scaler = {}) {
  const Plan plan = parse_inline_plan(inline_plan);
  check_plan(plan, model, inline_plan);
  check_runnable(model, plan, "tiny-moe", inline_plan);
  TrainOptions o;
  o.steps = 5;
  o.seed = 7;
  o.lr.lr = 3e-3;
  o.clip_norm = 0.5;
  o.data.kind = TokenSourceKind::structured;
  o.loss_scaler = scaler;
  auto backend = make_cpu_backend();
  SelfCommunicator self;
  RankGroups groups = make_groups(self, plan);
  return train(*backend, groups, model, plan, o, nullptr).steps;
}

// Megatron's forward_backward_pipelining_with_interleaving by hand for pp = 2, vpp = 2,
// m = 4 (8 forwards and 8 backwards per stage). The k-th forward runs chunk (k / pp) % vpp
// on micro-batch (k / (pp vpp)) pp + k % pp: k = 0..7 gives c0m0 c0m1 c1m0 c1m1 c0m2 c0m3
// c1m2 c1m3; the k-th backward the same micro-batch with the chunk reversed: c1m0 c1m1
// c0m0 c0m1 c1m2 c1m3 c0m2 c0m3. Warm-up forwards: (pp - stage - 1) 2 + (vpp - 1) pp,
// at most 8: stage 0 runs 2 + 2 = 4, stage 1 0 + 2 = 2. Then forward k = warm-up + i and
// backward i in turn until the forwards run out, then the remaining backwards.
TEST(ExecutorPipeline, InterleavedOrderIsMegatronsByHand) {
  auto names = [](int stage) {
    std::string got;
    for (const PipelineOp& op : pipeline_order(Schedule::interleaved, stage, 2, 4, 2))
      got += (op.forward ? "F" : "B") + std::to_string(op.mb) + "c" + std::to_string(op.chunk) + " ";
    return got;
  };
  // Warm-up F0c0 F1c0 F0c1 F1c1; steady F2c0 B0c1 F3c0 B1c1 F2c1 B0c0 F3c1 B1c0; cool-down.
  EXPECT_EQ(names(0), "F0c0 F1c0 F0c1 F1c1 F2c0 B0c1 F3c0 B1c1 F2c1 B0c0 F3c1 B1c0 B2c1 B3c1 B2c0 B3c0 ");
  // Warm-up F0c0 F1c0; steady from forward 2 (F0c1) against backward 0 (B0c1): the last
  // stage's last chunk turns each forward round at once; cool-down B2c0 B3c0.
  EXPECT_EQ(names(1), "F0c0 F1c0 F0c1 B0c1 F1c1 B1c1 F2c0 B0c0 F3c0 B1c0 F2c1 B2c1 F3c1 B3c1 B2c0 B3c0 ");
  // GPipe and 1F1B have one chunk.
  for (const PipelineOp& op : pipeline_order(Schedule::one_f_one_b, 0, 2, 4)) EXPECT_EQ(op.chunk, 0);
}

// The (pp, vpp, m) the interleaved tests play: m a multiple of pp, from m = pp (stage 0
// all warm-up) up.
std::vector<std::tuple<int, int, int>> interleaved_shapes() {
  std::vector<std::tuple<int, int, int>> shapes;
  for (const int pp : {1, 2, 3, 4, 8})
    for (const int vpp : {2, 3, 4})
      for (const int groups : {1, 2, 3, 5}) shapes.emplace_back(pp, vpp, groups * pp);
  return shapes;
}

// Every chunk runs every micro-batch's forward and backward exactly once, the backward
// after the forward, and each chunk the micro-batches in order (so a chunk's j-th
// activation received is micro-batch j's); interleaved_steps runs the same ops.
TEST(ExecutorPipeline, InterleavedOrderRunsEachChunkAndMicroBatchOnce) {
  for (const auto& [pp, vpp, m] : interleaved_shapes())
    for (int stage = 0; stage < pp; ++stage) {
      SCOPED_TRACE("pp " + std::to_string(pp) + " vpp " + std::to_string(vpp) + " m " + std::to_string(m) +
                   " stage " + std::to_string(stage));
      const std::vector<PipelineOp> order = pipeline_order(Schedule::interleaved, stage, pp, m, vpp);
      ASSERT_EQ(order.size(), static_cast<std::size_t>(2 * m * vpp));
      std::map<std::pair<int, int>, int> forward_at, backward_at;
      std::vector<int> next_forward(static_cast<std::size_t>(vpp), 0), next_backward(next_forward);
      for (std::size_t i = 0; i < order.size(); ++i) {
        const PipelineOp& op = order[i];
        ASSERT_GE(op.chunk, 0);
        ASSERT_LT(op.chunk, vpp);
        ASSERT_GE(op.mb, 0);
        ASSERT_LT(op.mb, m);
        auto& at = op.forward ? forward_at : backward_at;
        EXPECT_TRUE(at.emplace(std::pair{op.chunk, op.mb}, static_cast<int>(i)).second)
            << (op.forward ? "F" : "B") << op.mb << "c" << op.chunk << " twice";
        EXPECT_EQ(op.mb, (op.forward ? next_forward : next_backward)[static_cast<std::size_t>(op.chunk)]++);
      }
      EXPECT_EQ(forward_at.size(), static_cast<std::size_t>(m * vpp));
      EXPECT_EQ(backward_at.size(), static_cast<std::size_t>(m * vpp));
      for (const auto& [key, b] : backward_at) {
        ASSERT_TRUE(forward_at.count(key));
        EXPECT_LT(forward_at.at(key), b) << "B" << key.second << "c" << key.first << " before its forward";
      }
      std::vector<PipelineOp> stepped;
      for (const PipelineStep& step : interleaved_steps(stage, pp, vpp, m))
        for (const PipelineOp& op : step.ops) stepped.push_back(op);
      EXPECT_EQ(stepped, order);
    }
}

// Plays every stage's interleaved_steps against each other over a transport whose sends
// complete only once received (NCCL; MPI for large messages): a stage runs its step's ops
// (each forward needs its activation received, each backward its forward run and its
// gradient received), posts the step's exchange, and goes on when every transfer of it
// has met its peer's. Transfers meet in the order posted per sender and receiver, and per
// direction with `tags` (MPI's tags; NCCL has none). Returns what went wrong, or "".
std::string play_exchanges(int pp, int vpp, int m, bool tags) {
  struct Posted {
    int stage;
    PipelineTransfer t;
  };
  struct Pending {
    std::tuple<int, int, int> queue;
    std::size_t index;
    bool send;
  };
  std::map<std::tuple<int, int, int>, std::vector<Posted>> sends, recvs;  // by (from, to, channel)
  std::vector<std::vector<PipelineStep>> steps;
  for (int s = 0; s < pp; ++s) steps.push_back(interleaved_steps(s, pp, vpp, m));
  std::vector<std::size_t> at(static_cast<std::size_t>(pp), 0);
  std::vector<std::vector<Pending>> pending(static_cast<std::size_t>(pp));
  std::vector<bool> posted(static_cast<std::size_t>(pp), false);
  std::vector<std::set<std::pair<int, int>>> inputs(static_cast<std::size_t>(pp)), grads(inputs), ran(inputs);
  auto name = [](const std::string& what, int s, int chunk, int mb) {
    return what + " stage " + std::to_string(s) + " chunk " + std::to_string(chunk) + " mb " + std::to_string(mb);
  };
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < pp; ++s) {
      const auto u = static_cast<std::size_t>(s);
      if (posted[u] || at[u] == steps[u].size()) continue;
      const PipelineStep& step = steps[u][at[u]];
      for (const PipelineOp& op : step.ops) {
        if (op.forward) {
          if (!(s == 0 && op.chunk == 0) && !inputs[u].count({op.chunk, op.mb}))
            return name("forward without its activation:", s, op.chunk, op.mb);
          ran[u].insert({op.chunk, op.mb});
        } else {
          if (!ran[u].count({op.chunk, op.mb})) return name("backward before its forward:", s, op.chunk, op.mb);
          if (!(s == pp - 1 && op.chunk == vpp - 1) && !grads[u].count({op.chunk, op.mb}))
            return name("backward without its gradient:", s, op.chunk, op.mb);
        }
      }
      for (const PipelineTransfer& t : step.transfers) {
        if (t.send && std::find(step.ops.begin(), step.ops.end(), PipelineOp{t.forward, t.mb, t.chunk}) == step.ops.end())
          return name("sends what no op of its step made:", s, t.chunk, t.mb);
        // Activations go to the next stage round the ring, gradients to the previous.
        const bool to_next = t.send == t.forward;
        const int peer = (s + (to_next ? 1 : pp - 1)) % pp;
        const int channel = tags ? static_cast<int>(t.forward) : 0;
        const std::tuple<int, int, int> queue = t.send ? std::tuple{s, peer, channel} : std::tuple{peer, s, channel};
        auto& list = (t.send ? sends : recvs)[queue];
        list.push_back({s, t});
        pending[u].push_back({queue, list.size() - 1, t.send});
      }
      posted[u] = true;
      progress = true;
    }
    for (int s = 0; s < pp; ++s) {
      const auto u = static_cast<std::size_t>(s);
      if (!posted[u]) continue;
      const bool met = std::all_of(pending[u].begin(), pending[u].end(), [&](const Pending& p) {
        return p.index < sends[p.queue].size() && p.index < recvs[p.queue].size();
      });
      if (!met) continue;
      for (const Pending& p : pending[u]) {
        if (p.send) continue;
        const Posted& from = sends[p.queue][p.index];
        const PipelineTransfer& got = recvs[p.queue][p.index].t;
        // Chunk c of the last stage feeds chunk c + 1 of the first, and back.
        PipelineTransfer expect = from.t;
        expect.send = false;
        if (expect.forward && from.stage == pp - 1) ++expect.chunk;
        if (!expect.forward && from.stage == 0) --expect.chunk;
        if (!(got == expect))
          return name("received the wrong tensor:", s, got.chunk, got.mb) + (got.forward ? " (forward)" : " (backward)");
        (got.forward ? inputs : grads)[u].insert({got.chunk, got.mb});
      }
      pending[u].clear();
      posted[u] = false;
      ++at[u];
      progress = true;
    }
  }
  for (int s = 0; s < pp; ++s)
    if (at[static_cast<std::size_t>(s)] != steps[static_cast<std::size_t>(s)].size())
      return "deadlock: stage " + std::to_string(s) + " waits in step " + std::to_string(at[static_cast<std::size_t>(s)]);
  for (const auto& [queue, list] : sends)
    if (list.size() != recvs[queue].size()) return "a send never received";
  for (int s = 0; s < pp; ++s)
    if (ran[static_cast<std::size_t>(s)].size() != static_cast<std::size_t>(m * vpp)) return "a forward never ran";
  return "";
}

TEST(ExecutorPipeline, InterleavedExchangesPairUpWithoutDeadlock) {
  for (const auto& [pp, vpp, m] : interleaved_shapes())
    for (const bool tags : {true, false}) {
      SCOPED_TRACE("pp " + std::to_string(pp) + " vpp " + std::to_string(vpp) + " m " + std::to_string(m) +
                   (tags ? " (MPI tags)" : " (NCCL, no tags)"));
      EXPECT_EQ(play_exchanges(pp, vpp, m, tags), "");
    }
}

// One stage holding both chunks (pp=1, vpp=2: each hand-off between them an exchange of
// the SelfCommunicator with itself) trains the plain run's losses: each parameter sees the
// micro-batches in the same order, so to the bit.
TEST(ExecutorPipeline, InterleavedOnOneRankTrainsThePlainLosses) {
  const ModelSpec model = tiny_moe();
  const std::vector<StepRecord> plain = train_tiny(model, "dp=1,mbs=2,gbs=8");
  const std::vector<StepRecord> chunked = train_tiny(model, "pp=1,vpp=2,schedule=interleaved,mbs=2,gbs=8");
  ASSERT_EQ(chunked.size(), plain.size());
  for (std::size_t i = 0; i < plain.size(); ++i) {
    EXPECT_EQ(chunked[i].loss, plain[i].loss) << "update " << i + 1;
    EXPECT_EQ(chunked[i].gnorm, plain[i].gnorm) << "update " << i + 1;
    EXPECT_EQ(chunked[i].expert1, plain[i].expert1) << "update " << i + 1;
  }
  EXPECT_NE(plain.front().loss, plain.back().loss);
}

// Uneven end stages: each stage holds the layers stage_layers gives it (12 layers on 4
// stages as 1, 5, 5, 1).
TEST(ExecutorParameters, UnevenStagesHoldTheSimulatorsLayers) {
  ModelSpec m = tiny_moe_deep(12);
  const Plan plan = parse_inline_plan("pp=4,gbs=4,first_stage_layers=1,last_stage_layers=1");
  const std::vector<std::vector<int>> expected = {{0}, {1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}, {11}};
  for (int stage = 0; stage < 4; ++stage) {
    const ModelParams layout =
        param_layout(m, ExpertShard{m.moe.experts, 1}, 0, 1, 0, 4, stage, {}, 1, EndStages{1, 1});
    std::vector<int> held;
    for (const LayerParams& L : layout.layers) held.push_back(L.index);
    EXPECT_EQ(held, stage_layers(m, plan, stage));
    EXPECT_EQ(held, expected[static_cast<std::size_t>(stage)]);
  }
}

// With vpp chunks, stage s holds model chunks s, s + pp, ... in that order (the
// simulator's stage_layers), chunk 0 of stage 0 embedding and the last chunk of the last
// stage holding the head.
TEST(ExecutorParameters, InterleavedStagesHoldTheSimulatorsChunks) {
  ModelSpec m = tiny_moe_deep(12);
  const Plan plan = parse_inline_plan("pp=2,vpp=3,schedule=interleaved,gbs=2");
  for (int stage = 0; stage < 2; ++stage) {
    const ModelParams layout = param_layout(m, ExpertShard{m.moe.experts, 1}, 0, 1, 0, 2, stage, {}, 3);
    std::vector<int> held;
    for (const LayerParams& L : layout.layers) held.push_back(L.index);
    EXPECT_EQ(held, stage_layers(m, plan, stage));
    const std::vector<int> expected = stage == 0 ? std::vector<int>{0, 1, 4, 5, 8, 9} : std::vector<int>{2, 3, 6, 7, 10, 11};
    EXPECT_EQ(held, expected);
    EXPECT_EQ(layout.chunks, 3);
    EXPECT_EQ(layout.wte != kAbsent, stage == 0);
    EXPECT_EQ(layout.head_w != kAbsent, stage == 1);
  }
}


// bf16 GEMMs (autocast-style: operands rounded, fp32 accumulation and results) train
// tiny-moe as fp32 does, a bf16 rounding apart: each GEMM operand moves by up to 2^-9
// relative. Measured here (5 updates of tiny-moe, seed 7): 1.2e-5..7.1e-5 relative on the
// losses, 1.9e-4..1.1e-3 on the gradient norms. The bounds, 1e-3 and 1e-2, are ~10x those;
// the runs must differ at the first update (the forward really rounds) and a bf16 run
// repeats to the bit.
TEST(ExecutorPrecision, Bf16TrainingIsFp32ToBf16Rounding) {
  const ModelSpec model = tiny_moe();
  const std::vector<StepRecord> fp32 = train_tiny(model, "dp=1,mbs=2,gbs=8");
  const std::vector<StepRecord> bf16 = train_tiny(model, "dp=1,mbs=2,gbs=8,precision=bf16");
  const std::vector<StepRecord> again = train_tiny(model, "dp=1,mbs=2,gbs=8,precision=bf16");
  ASSERT_EQ(fp32.size(), 5u);
  ASSERT_EQ(bf16.size(), fp32.size());
  for (std::size_t i = 0; i < fp32.size(); ++i) {
    const double loss_rel = std::abs(bf16[i].loss - fp32[i].loss) / fp32[i].loss;
    const double gnorm_rel = std::abs(bf16[i].gnorm - fp32[i].gnorm) / fp32[i].gnorm;
    std::printf("update %zu: loss fp32 %.8f bf16 %.8f (rel %.2e); gnorm fp32 %.6f bf16 %.6f (rel %.2e)\n", i + 1,
                fp32[i].loss, bf16[i].loss, loss_rel, fp32[i].gnorm, bf16[i].gnorm, gnorm_rel);
    EXPECT_LT(loss_rel, 1e-3) << "update " << i + 1;
    EXPECT_LT(gnorm_rel, 1e-2) << "update " << i + 1;
    EXPECT_EQ(bf16[i].loss, again[i].loss) << "update " << i + 1 << ": bf16 runs repeat to the bit";
  }
  EXPECT_NE(bf16.front().loss, fp32.front().loss) << "the bf16 forward rounds";
  EXPECT_NE(bf16.front().gnorm, fp32.front().gnorm);
}

// open_lm's layers under bf16, the router's linear in the model's gate precision: bf16
// rounds its operands too (the run differs from the one with an fp32 router), and either
// stays a bf16 rounding from fp32.
TEST(ExecutorPrecision, RouterFollowsTheGatePrecision) {
  ModelSpec fp32_router = tiny_openlm_moe(2), bf16_router = fp32_router;
  fp32_router.moe.gate_precision = DType::fp32;
  bf16_router.moe.gate_precision = DType::bf16;
  const std::vector<StepRecord> fp32 = train_tiny(fp32_router, "dp=1,mbs=2,gbs=8");
  const std::vector<StepRecord> a = train_tiny(fp32_router, "dp=1,mbs=2,gbs=8,precision=bf16");
  const std::vector<StepRecord> b = train_tiny(bf16_router, "dp=1,mbs=2,gbs=8,precision=bf16");
  ASSERT_EQ(a.size(), fp32.size());
  ASSERT_EQ(b.size(), fp32.size());
  for (std::size_t i = 0; i < fp32.size(); ++i) {
    EXPECT_NEAR(a[i].loss, fp32[i].loss, 1e-3 * fp32[i].loss) << "update " << i + 1;
    EXPECT_NEAR(b[i].loss, fp32[i].loss, 1e-3 * fp32[i].loss) << "update " << i + 1;
  }
  EXPECT_NE(a.front().loss, fp32.front().loss);
  EXPECT_NE(b.front().loss, a.front().loss) << "the bf16 router rounds";
}

// fp16 GEMMs (operands rounded to IEEE half, fp32 accumulation) with the loss scaled by
// fairseq's default 128 train tiny-moe as fp32 does, an fp16 rounding apart: 2^-11
// relative per operand, 8x finer than bf16's 2^-8, where the loss scaling keeps the
// backward's small operands out of fp16's subnormals. The bounds are bf16's (1e-3 on the
// loss, 1e-2 on the norm); measured here (5 updates of tiny-moe, seed 7): 1.0e-7..6.4e-5
// relative on the losses, 4.3e-5..3.7e-3 on the gradient norms (after the first update,
// Adam's first steps and the routing amplify any rounding, as under bf16). The first
// update's loss, rounding alone, is 100x closer to fp32's than bf16's (1.0e-7 against
// 1.2e-5); the test asks for 8x, the ratio of the two ulps. No update overflows, so the
// scale stays 128 (its window, 2^14 / 1 rank / 4 micro-batches = 4096 updates, is not
// reached); the runs differ at the first update and repeat to the bit.
TEST(ExecutorPrecision, Fp16TrainingIsFp32ToFp16Rounding) {
  const ModelSpec model = tiny_moe();
  const std::vector<StepRecord> fp32 = train_tiny(model, "dp=1,mbs=2,gbs=8");
  const std::vector<StepRecord> fp16 = train_tiny(model, "dp=1,mbs=2,gbs=8,precision=fp16");
  const std::vector<StepRecord> again = train_tiny(model, "dp=1,mbs=2,gbs=8,precision=fp16");
  const std::vector<StepRecord> bf16 = train_tiny(model, "dp=1,mbs=2,gbs=8,precision=bf16");
  ASSERT_EQ(fp32.size(), 5u);
  ASSERT_EQ(fp16.size(), fp32.size());
  for (std::size_t i = 0; i < fp32.size(); ++i) {
    const double loss_rel = std::abs(fp16[i].loss - fp32[i].loss) / fp32[i].loss;
    const double gnorm_rel = std::abs(fp16[i].gnorm - fp32[i].gnorm) / fp32[i].gnorm;
    std::printf("update %zu: loss fp32 %.8f fp16 %.8f (rel %.2e); gnorm fp32 %.6f fp16 %.6f (rel %.2e)\n", i + 1,
                fp32[i].loss, fp16[i].loss, loss_rel, fp32[i].gnorm, fp16[i].gnorm, gnorm_rel);
    EXPECT_LT(loss_rel, 1e-3) << "update " << i + 1;
    EXPECT_LT(gnorm_rel, 1e-2) << "update " << i + 1;
    EXPECT_EQ(fp16[i].loss, again[i].loss) << "update " << i + 1 << ": fp16 runs repeat to the bit";
    EXPECT_EQ(fp16[i].num_updates, static_cast<std::int64_t>(i) + 1);
    EXPECT_EQ(fp16[i].loss_scale, 128.0);
    EXPECT_EQ(fp16[i].overflows, 0);
    EXPECT_EQ(fp32[i].loss_scale, 0.0) << "fp32 scales no loss";
    EXPECT_EQ(bf16[i].loss_scale, 0.0) << "bf16 scales no loss";
  }
  EXPECT_NE(fp16.front().loss, fp32.front().loss) << "the fp16 forward rounds";
  EXPECT_NE(fp16.front().gnorm, fp32.front().gnorm);
  EXPECT_LT(8 * std::abs(fp16.front().loss - fp32.front().loss), std::abs(bf16.front().loss - fp32.front().loss))
      << "fp16 keeps 3 more mantissa bits than bf16";
}

// fairseq's DynamicLossScaler, driven by the global norm of a fake gradient: a vector
// with an inf or a NaN overflows (the scale halves, the update is skipped), a finite one
// does not, and every `window`-th update since the last overflow (or the start) doubles
// the scale. A scale that would fall to min_scale stops training (fairseq's
// FloatingPointError), and the scale is left as it was.
TEST(ExecutorLossScaler, HalvesOnOverflowDoublesAfterAWindow) {
  auto backend = make_cpu_backend();
  auto norm_of = [&](const std::vector<float>& grads) {
    Array<float> g(*backend, grads.size());
    backend->upload(g.data(), grads.data(), grads.size() * sizeof(float));
    return std::sqrt(backend->sum_squares(g.data(), g.size()));
  };
  const std::vector<float> good = {0.5f, -2.0f, 1e3f}, inf = {0.5f, std::numeric_limits<float>::infinity(), 1.0f},
                           nan = {std::numeric_limits<float>::quiet_NaN(), 1.0f, 1.0f};
  DynamicLossScaler s(LossScalerOptions{128, 3, 1e-4});
  // Updates that step call update(), as the trainer does; a skipped one does not.
  auto iteration = [&](const std::vector<float>& grads) {
    const bool skipped = s.check_overflow(norm_of(grads));
    if (!skipped) s.update();
    return skipped;
  };
  EXPECT_FALSE(iteration(good));
  EXPECT_FALSE(iteration(good));
  EXPECT_EQ(s.scale(), 128);
  EXPECT_FALSE(iteration(good));  // the 3rd good update: doubled
  EXPECT_EQ(s.scale(), 256);
  EXPECT_TRUE(iteration(inf));
  EXPECT_EQ(s.scale(), 128);
  EXPECT_TRUE(iteration(nan));
  EXPECT_EQ(s.scale(), 64);
  EXPECT_FALSE(iteration(good));
  EXPECT_FALSE(iteration(good));
  EXPECT_EQ(s.scale(), 64) << "2 good updates since the overflow";
  EXPECT_FALSE(iteration(good));
  EXPECT_EQ(s.scale(), 128) << "3 good updates since the overflow";
  EXPECT_FALSE(iteration(good));
  EXPECT_FALSE(iteration(good));
  EXPECT_FALSE(iteration(good));
  EXPECT_EQ(s.scale(), 256) << "3 more";

  DynamicLossScaler low(LossScalerOptions{4e-4, 1000, 1e-4});
  EXPECT_TRUE(low.check_overflow(norm_of(inf)));
  EXPECT_EQ(low.scale(), 2e-4);
  EXPECT_THROW(low.check_overflow(norm_of(inf)), std::runtime_error);
  EXPECT_EQ(low.scale(), 2e-4);

  // fairseq's default window: 2^14 / world size / update_freq (micro-batches per rank).
  EXPECT_EQ(default_scale_window(1, 1), 16384);
  EXPECT_EQ(default_scale_window(8, 4), 512);
  EXPECT_EQ(default_scale_window(4, 3), 1365);
  EXPECT_EQ(default_scale_window(64, 1024), 1);
}

// A huge initial scale (2^30: the loss gradient times 2^30 / 128 tokens leaves fp16's
// range in the head's backward GEMM) overflows: the first iterations are skipped, each
// halving the scale, until it trains. Skipping changes nothing else (no Adam step, no lr
// step, the update retried on the same batch), so the run is, to the bit, the run that
// starts from the scale it settled on; and fp32's losses are a rounding away.
TEST(ExecutorLossScaler, ForcedOverflowSkipsUpdatesUntilTheScaleFits) {
  const ModelSpec model = tiny_moe();
  const std::string plan = "dp=1,mbs=2,gbs=8,precision=fp16";
  const std::vector<StepRecord> forced = train_tiny(model, plan, LossScalerOptions{0x1p30, 0, 1e-4});
  ASSERT_EQ(forced.size(), 5u);
  const std::int64_t skipped = forced.front().overflows;
  std::printf("skipped %lld iterations, settled at loss scale %.0f\n", static_cast<long long>(skipped),
              forced.front().loss_scale);
  EXPECT_GT(skipped, 0);
  EXPECT_EQ(forced.front().loss_scale, std::ldexp(1.0, 30 - static_cast<int>(skipped)));
  EXPECT_LT(forced.front().loss_scale, 0x1p30);
  for (std::size_t i = 0; i < forced.size(); ++i) EXPECT_EQ(forced[i].num_updates, static_cast<std::int64_t>(i) + 1);
  const std::vector<StepRecord> settled =
      train_tiny(model, plan, LossScalerOptions{forced.front().loss_scale, 0, 1e-4});
  for (std::size_t i = 0; i < forced.size(); ++i) {
    EXPECT_EQ(forced[i].loss, settled[i].loss) << "update " << i + 1;
    EXPECT_EQ(forced[i].gnorm, settled[i].gnorm) << "update " << i + 1;
    EXPECT_EQ(forced[i].loss_scale, settled[i].loss_scale) << "update " << i + 1;
    if (i > 0) {
      EXPECT_EQ(forced[i].overflows, settled[i].overflows) << "update " << i + 1;
    }
  }
  EXPECT_EQ(settled.front().overflows, 0);
  const std::vector<StepRecord> fp32 = train_tiny(model, "dp=1,mbs=2,gbs=8");
  for (std::size_t i = 0; i < forced.size(); ++i)
    EXPECT_NEAR(forced[i].loss, fp32[i].loss, 1e-3 * fp32[i].loss) << "update " << i + 1;
}

// What moesim run refuses about precision, naming the field.
TEST(ExecutorPrecision, RefusesLowPrecisionMasterAndOptimizerState) {
  const ModelSpec model = tiny_moe();
  auto field_of = [&](const std::string& inline_plan) -> std::string {
    try {
      check_runnable(model, parse_inline_plan(inline_plan), "tiny-moe", inline_plan);
    } catch (const InputError& e) {
      return e.field();
    }
    return "";
  };
  EXPECT_EQ(field_of("precision=fp16"), "");
  EXPECT_EQ(field_of("precision=fp16,master_weights=false"), "master_weights");
  EXPECT_EQ(field_of("precision=bf16,master_weights=false"), "master_weights");
  EXPECT_EQ(field_of("optimizer_dtype=bf16"), "optimizer_dtype");
  EXPECT_EQ(field_of("precision=bf16"), "");
  ModelSpec fp16_gate = model;
  fp16_gate.moe.gate_precision = DType::fp16;
  try {
    check_runnable(fp16_gate, parse_inline_plan("precision=bf16"), "tiny-moe", "precision=bf16");
    ADD_FAILURE() << "an fp16 gate under bf16 was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "moe.gate_precision");
  }
  ModelSpec bf16_gate = model;
  bf16_gate.moe.gate_precision = DType::bf16;
  try {
    check_runnable(bf16_gate, parse_inline_plan("precision=fp16"), "tiny-moe", "precision=fp16");
    ADD_FAILURE() << "a bf16 gate under fp16 was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "moe.gate_precision");
  }
  check_runnable(fp16_gate, parse_inline_plan("precision=fp16"), "tiny-moe", "precision=fp16");
}


// ---- EvoMoE's dense-to-sparse gate ----

// tokens x experts logits spread over about [-1.5, 1.5], deterministic.
std::vector<float> some_logits(int tokens, int experts) {
  std::vector<float> x(static_cast<std::size_t>(tokens) * static_cast<std::size_t>(experts));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(1.5 * std::sin(1.7 * static_cast<double>(i) + 0.3));
  return x;
}

kernels::GateOptions dts_options(int k, float temperature, float threshold, bool dense) {
  kernels::GateOptions o;
  o.k = k;
  o.dts_temperature = temperature;
  o.dts_threshold = threshold;
  o.dts_dense = dense;
  return o;
}

// Dense phase: every token goes to every expert, weights softmax(logits / T) summing to 1.
TEST(ExecutorDtsGate, DensePhaseRoutesEveryTokenToEveryExpert) {
  const int T = 6, E = 4;
  const std::vector<float> x = some_logits(T, E);
  const kernels::GateResult g = kernels::gate_forward(x, T, E, dts_options(1, 2.0f, 0.25f, true));
  ASSERT_EQ(g.k, E);
  for (int t = 0; t < T; ++t) {
    double sum = 0;
    std::set<int> experts;
    for (int j = 0; j < E; ++j) {
      const std::size_t c = static_cast<std::size_t>(t * E + j);
      EXPECT_EQ(g.kept[c], 1) << "token " << t << " choice " << j;
      experts.insert(g.expert[c]);
      sum += g.weight[c];
      // softmax(x / 2) by hand.
      double z = 0;
      for (int e = 0; e < E; ++e) z += std::exp((x[static_cast<std::size_t>(t * E + e)] - x[static_cast<std::size_t>(t * E + g.expert[c])]) / 2.0);
      EXPECT_NEAR(g.weight[c], 1.0 / z, 1e-6);
    }
    EXPECT_EQ(experts.size(), static_cast<std::size_t>(E));
    EXPECT_NEAR(sum, 1.0, 1e-6) << "token " << t;
  }
  for (int e = 0; e < E; ++e) EXPECT_EQ(g.counts[static_cast<std::size_t>(e)], T);
}

// Annealing by hand: T = 1.25 and logits 1.25 ln(w) give weights w. Threshold 0.2, k = 2.
// Token 0: w = (.5, .25, .125, .125): experts 0 and 1 pass. Token 1: w = (1, 1, 1, 8)/11:
// expert 3 alone passes, the top 2 add expert 0 (ties to the lowest index). Token 2:
// uniform, 0.25 each: all four pass.
TEST(ExecutorDtsGate, AnnealingTakesTheExpertsOverTheThresholdAtLeastTopK) {
  const float T = 1.25f;
  auto l = [&](double w) { return static_cast<float>(1.25 * std::log(w)); };
  const std::vector<float> x = {l(4), l(2), l(1), l(1), l(1), l(1), l(1), l(8), 0, 0, 0, 0};
  const kernels::GateResult g = kernels::gate_forward(x, 3, 4, dts_options(2, T, 0.2f, false));
  auto routed = [&](int t) {
    std::map<int, float> out;
    for (int j = 0; j < 4; ++j)
      if (g.kept[static_cast<std::size_t>(t * 4 + j)] != 0)
        out[g.expert[static_cast<std::size_t>(t * 4 + j)]] = g.weight[static_cast<std::size_t>(t * 4 + j)];
    return out;
  };
  const std::map<int, float> t0 = routed(0), t1 = routed(1), t2 = routed(2);
  ASSERT_EQ(t0.size(), 2u);
  EXPECT_NEAR(t0.at(0), 0.5, 1e-6);
  EXPECT_NEAR(t0.at(1), 0.25, 1e-6);
  ASSERT_EQ(t1.size(), 2u);
  EXPECT_NEAR(t1.at(3), 8.0 / 11, 1e-6);
  EXPECT_NEAR(t1.at(0), 1.0 / 11, 1e-6);  // not renormalised over the kept experts
  ASSERT_EQ(t2.size(), 4u);
  for (const auto& [e, w] : t2) EXPECT_NEAR(w, 0.25, 1e-6) << "expert " << e;
  EXPECT_EQ(g.expert[0], 0);  // choice 0 is the argmax
  EXPECT_EQ(g.expert[4], 3);
  EXPECT_EQ(g.counts, (std::vector<int>{3, 2, 1, 2}));
  // Top-1 instead: token 1 keeps expert 3 alone.
  const kernels::GateResult g1 = kernels::gate_forward(x, 3, 4, dts_options(1, T, 0.2f, false));
  EXPECT_EQ(g1.counts, (std::vector<int>{2, 2, 1, 2}));
}

// The executor's gate options follow the simulator's schedule: phase and temperature at
// each update are gate_at_step's; sparse updates get the model's plain top-k gate.
TEST(ExecutorDtsGate, ScheduleIsTheSimulatorsAndSparseIsTheTopKGate) {
  const ModelSpec m = tiny_evomoe();
  const DenseToSparse& d = *m.moe.dense_to_sparse;
  ModelSpec plain = m;
  plain.moe.dense_to_sparse.reset();
  const int tokens = 32;
  const std::vector<float> x = some_logits(tokens, m.moe.experts);
  const char* phases[] = {"dense", "dense", "annealing", "annealing", "sparse", "sparse", "sparse"};
  for (std::int64_t step = 0; step < 7; ++step) {
    SCOPED_TRACE(step);
    const GateAtStep sim = gate_at_step(m, RoutingSpec{}, step);
    EXPECT_EQ(sim.phase, phases[step]);
    EXPECT_EQ(dts_temperature(d, step), sim.temperature);
    const kernels::GateOptions o = gate_options(m, tokens, 9, step);
    if (sim.phase == "sparse") {
      EXPECT_EQ(o.dts_temperature, 0.0f);
      const kernels::GateOptions p = gate_options(plain, tokens, 9, step);
      const kernels::GateResult a = kernels::gate_forward(x, tokens, m.moe.experts, o);
      const kernels::GateResult b = kernels::gate_forward(x, tokens, m.moe.experts, p);
      EXPECT_EQ(a.capacity, b.capacity);
      EXPECT_EQ(a.expert, b.expert);
      EXPECT_EQ(a.location, b.location);
      EXPECT_EQ(a.kept, b.kept);
      EXPECT_EQ(a.weight, b.weight);
      EXPECT_EQ(a.aux_loss, b.aux_loss);
    } else {
      EXPECT_EQ(o.dts_temperature, static_cast<float>(sim.temperature));
      EXPECT_EQ(o.dts_dense, sim.phase == "dense");
      EXPECT_EQ(o.capacity, tokens);  // dropless until sparse
    }
  }
  EXPECT_EQ(dts_temperature(d, 2), 2.0);
  EXPECT_EQ(dts_temperature(d, 3), 1.25);
  EXPECT_EQ(dts_temperature(d, 4), 0.5);
  DenseToSparse long_anneal = d;
  long_anneal.anneal_steps = 10;
  EXPECT_DOUBLE_EQ(dts_temperature(long_anneal, 2 + 4), 2.0 - 1.5 * 0.4);
}

// The gate's backward against central differences of L = sum_c r_c weight_c + a l_aux
// over the logits, in each phase (sparse: fairseq's top-1 gate, which the model runs then).
TEST(ExecutorDtsGate, BackwardMatchesFiniteDifferencesInEachPhase) {
  const int T = 6, E = 4;
  const float daux = 0.3f;
  for (const auto& [name, o] : {std::pair{"dense", dts_options(1, 2.0f, 0.25f, true)},
                                std::pair{"annealing", dts_options(1, 1.25f, 0.25f, false)},
                                std::pair{"sparse", [] {
                                            kernels::GateOptions s;
                                            s.k = 1;
                                            s.capacity = 6;
                                            return s;
                                          }()}}) {
    SCOPED_TRACE(name);
    std::vector<float> x = some_logits(T, E);
    const kernels::GateResult g = kernels::gate_forward(x, T, E, o);
    std::vector<float> r(g.weight.size());
    for (std::size_t c = 0; c < r.size(); ++c) r[c] = static_cast<float>(std::cos(0.9 * static_cast<double>(c)));
    auto objective = [&](const kernels::GateResult& h) {
      double sum = static_cast<double>(daux) * h.aux_loss;
      for (std::size_t c = 0; c < r.size(); ++c) sum += static_cast<double>(r[c]) * h.weight[c];
      return sum;
    };
    std::vector<float> dlogits(x.size());
    kernels::gate_backward(g, o, r, daux, dlogits);
    int checked = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float saved = x[i];
      const float h = 1e-3f;
      x[i] = saved + h;
      const kernels::GateResult plus = kernels::gate_forward(x, T, E, o);
      x[i] = saved - h;
      const kernels::GateResult minus = kernels::gate_forward(x, T, E, o);
      x[i] = saved;
      if (plus.kept != g.kept || minus.kept != g.kept || plus.expert != g.expert || minus.expert != g.expert) continue;
      const double fd = (objective(plus) - objective(minus)) / (2.0 * h);
      EXPECT_NEAR(dlogits[i], fd, 2e-3 + 1e-2 * std::abs(fd)) << "logit " << i;
      ++checked;
    }
    EXPECT_GT(checked, T * E / 2);
  }
}

// The whole model's backward in each phase (steps 0, 2, 4 of tiny-evomoe's schedule).
TEST(ExecutorGradients, DenseToSparseMatchesFiniteDifferencesInEachPhase) {
  for (const std::int64_t step : {0, 2, 4}) {
    SCOPED_TRACE(step);
    expect_gradients_match(tiny_evomoe(), step);
  }
}

// 5 updates cross the three phases: every expert per token while dense, top-1 once sparse,
// in between while annealing, never rising.
TEST(ExecutorDtsGate, ActiveExpertsFallAcrossTheSchedule) {
  const std::vector<StepRecord> s = train_tiny(tiny_evomoe(), "dp=1,mbs=2,gbs=8");
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].dts_phase, "dense");
  EXPECT_EQ(s[2].dts_phase, "annealing");
  EXPECT_EQ(s[4].dts_phase, "sparse");
  EXPECT_EQ(s[0].dts_active_experts, 4.0);
  EXPECT_EQ(s[1].dts_active_experts, 4.0);
  EXPECT_EQ(s[3].dts_temperature, 1.25);
  EXPECT_GE(s[2].dts_active_experts, 1.0);
  EXPECT_LT(s[3].dts_active_experts, 4.0);
  EXPECT_EQ(s[4].dts_active_experts, 1.0);
  for (std::size_t i = 1; i < s.size(); ++i) EXPECT_LE(s[i].dts_active_experts, s[i - 1].dts_active_experts) << i;
  for (const StepRecord& r : s) EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_NE(s.front().loss, s.back().loss);
}

}  // namespace
}  // namespace moesim::exec
