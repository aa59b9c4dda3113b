// The executor under MPI (mpirun -n 4): every plan shape trains the same losses as one
// rank running the same micro-batches, and the model learns the structured corpus.
// Plans of 2 ranks run on both halves of the world at once (Communicator::split).
// ZeRO-1, 2 and 3 save the memory the simulator predicts (2 and 3 to the byte); ZeRO 0's
// gradient reduction, overlapped with the backward, trains the same losses.
// Checkpoints: a run stopped and resumed trains the same losses, to the bit, as one that
// was not, and a checkpoint cut short while written is never resumed. EvoMoE's
// dense-to-sparse gate trains the same losses under dp, ep, tp and pp, and resumes.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "src/accounting/memory.hpp"
#include "src/comm/mpi_communicator.hpp"
#include "tests/src/mpi_test_main.hpp"
#include "src/comm/self_communicator.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/parameters.hpp"
#include "src/executor/pipeline.hpp"
#include "src/executor/trainer.hpp"
#include "tests/src/executor_test_models.hpp"

namespace moesim {
namespace {


Communicator& world() {
  static MpiCommunicator comm;
  return comm;
}

exec::TrainOptions options(std::int64_t steps) {
  exec::TrainOptions o;
  o.steps = steps;
  o.seed = 7;
  o.lr.lr = 3e-3;
  o.clip_norm = 0.5;  // active: the tiny model's first gradients have norm ~1
  o.data.kind = TokenSourceKind::structured;
  return o;
}

exec::TrainResult train_result(Communicator& comm, const ModelSpec& model, const Plan& plan,
                               const exec::TrainOptions& o) {
  auto backend = exec::make_cpu_backend();
  exec::RankGroups groups = exec::make_groups(comm, plan);
  return exec::train(*backend, groups, model, plan, o, nullptr);
}

std::vector<exec::StepRecord> train_on(Communicator& comm, const ModelSpec& model, const Plan& plan,
                                       const exec::TrainOptions& o) {
  return train_result(comm, model, plan, o).steps;
}

// Trains `inline_plan` on the first plan.world() ranks of each block of the world, and the
// same micro-batches on one rank; the losses of 5 updates agree within `loss_rel` relative
// (1e-5 unless said), the gradient norms within 10 times that, the loss scales exactly.
void expect_equivalent(const std::string& inline_plan, ModelSpec model = tiny_moe(), double loss_rel = 1e-5,
                       exec::TrainOptions o = options(5)) {
  const Plan plan = parse_inline_plan(inline_plan);
  check_plan(plan, model, inline_plan);
  ASSERT_EQ(world().size() % plan.world(), 0) << "run under mpirun -n 4";
  std::unique_ptr<Communicator> block = world().split(world().rank() / plan.world(), world().rank());
  const std::vector<exec::StepRecord> split = train_on(*block, model, plan, o);

  Plan single = plan;
  single.dp = 1;
  single.tp = 1;
  single.pp = 1;
  single.ep = 1;
  single.zero = 0;
  single.placement = ExpertPlacement::contiguous;
  single.recompute = Recompute::none;
  single.schedule = Schedule::one_f_one_b;  // one stage, one chunk: the micro-batches in turn
  single.vpp = 1;
  single.first_stage_layers = single.last_stage_layers = 0;
  single.gbs = plan.global_batch();
  EXPECT_EQ(single.precision, plan.precision) << "the reference trains in the plan's precision";
  SelfCommunicator self;
  const std::vector<exec::StepRecord> one = train_on(self, model, single, o);

  ASSERT_EQ(split.size(), one.size());
  double worst = 0;
  for (std::size_t i = 0; i < one.size(); ++i) worst = std::max(worst, std::abs(split[i].loss - one[i].loss) / one[i].loss);
  if (world().rank() == 0) std::printf("%s: largest relative loss difference %.2e\n", inline_plan.c_str(), worst);
  for (std::size_t i = 0; i < one.size(); ++i) {
    EXPECT_NEAR(split[i].loss, one[i].loss, loss_rel * std::abs(one[i].loss)) << inline_plan << " update " << i + 1;
    EXPECT_NEAR(split[i].gnorm, one[i].gnorm, 10 * loss_rel * one[i].gnorm) << inline_plan << " update " << i + 1;
    EXPECT_EQ(split[i].expert1, one[i].expert1) << inline_plan << " update " << i + 1;
    EXPECT_EQ(split[i].loss_scale, one[i].loss_scale) << inline_plan << " update " << i + 1;
    EXPECT_EQ(split[i].overflows, one[i].overflows) << inline_plan << " update " << i + 1;
    EXPECT_NEAR(split[i].dts_active_experts, one[i].dts_active_experts, 1e-6) << inline_plan << " update " << i + 1;
  }
  // Training moved: later losses differ from the first.
  EXPECT_NE(one.front().loss, one.back().loss);
}

TEST(ExecutorEquivalence, DataParallel2) { expect_equivalent("dp=2,mbs=2,gbs=8"); }
TEST(ExecutorEquivalence, DataParallel4) { expect_equivalent("dp=4,mbs=2,gbs=8"); }
TEST(ExecutorEquivalence, ExpertParallel2) { expect_equivalent("dp=2,ep=2,mbs=2,gbs=8"); }
TEST(ExecutorEquivalence, ExpertParallel4) { expect_equivalent("dp=4,ep=4,mbs=1,gbs=8"); }
TEST(ExecutorEquivalence, DataAndExpertParallel) { expect_equivalent("dp=4,ep=2,mbs=2,gbs=8"); }
TEST(ExecutorEquivalence, RoundRobinExperts) { expect_equivalent("dp=2,ep=2,mbs=2,gbs=8,placement=round_robin"); }
TEST(ExecutorEquivalence, Zero1) { expect_equivalent("dp=2,mbs=2,gbs=8,zero=1"); }
TEST(ExecutorEquivalence, Zero1WithExpertParallel) { expect_equivalent("dp=4,ep=2,mbs=1,gbs=8,zero=1"); }

// Uneven end stages (Megatron's --decoder-first/last-pipeline-num-layers), as
// stage_layers splits them: tiny-moe's 4 layers as 1 + 3, the 8-layer model as 1 + 3 + 3
// + 1, and under the interleaved schedule 2 + 6 split over two chunks a stage.
TEST(ExecutorEquivalence, UnevenStagesOneFOneB) {
  expect_equivalent("pp=2,mbs=1,gbs=8,first_stage_layers=1");
  // The split is the plan's, not an even one: the last stage's 3 layers and the head make
  // the busiest rank hold more than either stage of the even split.
  auto peak = [](const std::string& inline_plan) {
    const Plan plan = parse_inline_plan(inline_plan);
    std::unique_ptr<Communicator> block = world().split(world().rank() / plan.world(), world().rank());
    std::size_t most = 0;
    for (const exec::StepRecord& r : train_on(*block, tiny_moe(), plan, options(1))) most = std::max(most, r.peak_bytes);
    return most;
  };
  EXPECT_GT(peak("pp=2,mbs=1,gbs=8,first_stage_layers=1"), peak("pp=2,mbs=1,gbs=8"));
}
TEST(ExecutorEquivalence, UnevenStagesGPipeDataExpertParallel) {
  expect_equivalent("dp=2,pp=2,ep=2,mbs=1,gbs=8,zero=1,schedule=gpipe,last_stage_layers=1");
}
TEST(ExecutorEquivalence, UnevenFourStages) {
  expect_equivalent("pp=4,mbs=1,gbs=8,first_stage_layers=1,last_stage_layers=1", tiny_moe_deep(8));
}
TEST(ExecutorEquivalence, UnevenStagesInterleaved) {
  expect_equivalent("pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=8,first_stage_layers=2", tiny_moe_deep(8));
}

TEST(ExecutorEquivalence, TensorParallel2) { expect_equivalent("tp=2,mbs=2,gbs=8"); }
TEST(ExecutorEquivalence, TensorParallel4) { expect_equivalent("tp=4,mbs=2,gbs=8"); }
TEST(ExecutorEquivalence, TensorDataExpertParallel) { expect_equivalent("dp=2,tp=2,ep=2,mbs=2,gbs=8,zero=1"); }
TEST(ExecutorEquivalence, Pipeline2OneFOneB) { expect_equivalent("pp=2,mbs=1,gbs=8"); }
TEST(ExecutorEquivalence, Pipeline2GPipe) { expect_equivalent("pp=2,mbs=2,gbs=8,schedule=gpipe"); }
TEST(ExecutorEquivalence, Pipeline4OneFOneB) { expect_equivalent("pp=4,mbs=1,gbs=8"); }
TEST(ExecutorEquivalence, PipelineDataExpertParallel) { expect_equivalent("dp=2,pp=2,ep=2,mbs=1,gbs=8,zero=1"); }
TEST(ExecutorEquivalence, PipelineTensorParallelRecompute) {
  expect_equivalent("tp=2,pp=2,mbs=1,gbs=8,recompute=full");
}
// Megatron's interleaved schedule: each stage holds vpp model chunks (stage s chunks s,
// s + pp, ...), activations go round the ring of stages vpp times.
TEST(ExecutorEquivalence, InterleavedPipeline2) { expect_equivalent("pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=8"); }
// m = pp: stage 0 runs every forward before its first backward.
TEST(ExecutorEquivalence, InterleavedPipelineAllWarmup) {
  expect_equivalent("pp=2,vpp=2,schedule=interleaved,mbs=4,gbs=8");
}
TEST(ExecutorEquivalence, InterleavedPipelineDataParallel) {
  expect_equivalent("dp=2,pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=8");
}
TEST(ExecutorEquivalence, InterleavedPipelineDataExpertParallelZero1) {
  expect_equivalent("dp=2,pp=2,ep=2,vpp=2,schedule=interleaved,mbs=1,gbs=8,zero=1");
}
TEST(ExecutorEquivalence, InterleavedPipelineTensorParallelRecompute) {
  expect_equivalent("tp=2,pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=8,recompute=full");
}
TEST(ExecutorEquivalence, InterleavedPipelineSelectiveRecomputeUntiedHead) {
  expect_equivalent("dp=2,pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=8,recompute=selective", tiny_openlm_moe(2));
}
TEST(ExecutorEquivalence, InterleavedPipeline4) {
  expect_equivalent("pp=4,vpp=2,schedule=interleaved,mbs=1,gbs=8", tiny_moe_deep(8));
}
TEST(ExecutorEquivalence, InterleavedPipeline4FullRecompute) {
  expect_equivalent("pp=4,vpp=2,schedule=interleaved,mbs=1,gbs=8,recompute=full", tiny_moe_deep(8));
}
TEST(ExecutorEquivalence, InterleavedPipeline2FourChunks) {
  expect_equivalent("pp=2,vpp=4,schedule=interleaved,mbs=1,gbs=8", tiny_moe_deep(8));
}
TEST(ExecutorEquivalence, InterleavedPipelineOnOneStage) {
  expect_equivalent("pp=1,vpp=2,schedule=interleaved,mbs=2,gbs=8");
}
TEST(ExecutorEquivalence, FullRecomputation) { expect_equivalent("dp=2,ep=2,mbs=2,gbs=8,recompute=full"); }
TEST(ExecutorEquivalence, SelectiveRecomputation) { expect_equivalent("dp=4,ep=2,mbs=2,gbs=8,recompute=selective"); }

TEST(ExecutorEquivalence, Top1Gate) {
  ModelSpec m = tiny_moe();
  m.moe.top_k = 1;
  expect_equivalent("dp=4,ep=4,mbs=2,gbs=8", m);
}

TEST(ExecutorEquivalence, DroplessExpertParallel) {
  ModelSpec m = tiny_moe();
  m.moe.capacity_factor.reset();
  expect_equivalent("dp=2,ep=2,mbs=2,gbs=8", m);
}

TEST(ExecutorEquivalence, OpenLmLayersWithExpertParallel) {
  expect_equivalent("dp=4,ep=4,mbs=2,gbs=8,zero=1", tiny_openlm_moe(4));
}

TEST(ExecutorEquivalence, OpenLmLayersWithTensorParallel) {
  expect_equivalent("dp=2,tp=2,ep=2,mbs=2,gbs=8,recompute=selective", tiny_openlm_moe(2));
}

// bf16 GEMMs (the plan's precision, which the single-rank reference keeps): the ranks
// round the same operands the one rank does. Only plans whose sums match the single
// rank's closely enough: a weight one fp32 ulp away after an update can round to another
// bf16 value, a step 2^16 times larger, and routing amplifies it. Here (CPU, seed 7)
// tp=2,pp=2 (partial sums over tp) and dp=2,pp=2,ep=2,zero=1 (reduce-scatter) leave
// 1e-5 from update 2 or 3 on, reaching 1e-4 to 7e-4 by update 5; dp and ep hold 1e-5.
TEST(ExecutorEquivalence, Bf16ExpertParallel) { expect_equivalent("dp=2,ep=2,mbs=2,gbs=8,precision=bf16"); }
TEST(ExecutorEquivalence, Bf16OpenLmLayers) {
  expect_equivalent("dp=4,ep=4,mbs=2,gbs=8,precision=bf16", tiny_openlm_moe(4));
}

// fp16 GEMMs with dynamic loss scaling (the reference keeps the plan's precision and the
// scale): as bf16, the ranks round the same operands the one rank does, and a weight one
// fp32 ulp away rounds to another fp16 value, a step 2^13 times larger (8x finer than
// bf16's). Here (CPU, seed 7) the largest relative loss differences over 5 updates are
// 4.7e-7 (dp=2), 8.2e-7 (dp=2,ep=2), 3.5e-7 (pp=2) and 2.8e-6 (tp=2, partial sums over
// tp): all within the fp32 plans' 1e-5, which the tests keep.
TEST(ExecutorEquivalence, Fp16DataParallel) { expect_equivalent("dp=2,mbs=2,gbs=8,precision=fp16"); }
TEST(ExecutorEquivalence, Fp16ExpertParallel) { expect_equivalent("dp=2,ep=2,mbs=2,gbs=8,precision=fp16"); }
TEST(ExecutorEquivalence, Fp16TensorParallel) { expect_equivalent("tp=2,mbs=2,gbs=8,precision=fp16"); }
TEST(ExecutorEquivalence, Fp16Pipeline) { expect_equivalent("pp=2,mbs=1,gbs=8,precision=fp16"); }
// A forced overflow (initial scale 2^30): every rank skips the same iterations, halving
// alike, on 2 and 4 ranks and on one; the one rank's run skips as many.
TEST(ExecutorEquivalence, Fp16ForcedOverflowSkipsAlikeOnEveryRank) {
  exec::TrainOptions o = options(5);
  o.loss_scaler.init_scale = 0x1p30;
  int skipped = 0;
  o.on_overflow = [&](std::int64_t update, double) {
    EXPECT_EQ(update, 1);
    ++skipped;
  };
  expect_equivalent("dp=2,ep=2,mbs=2,gbs=8,precision=fp16", tiny_moe(), 1e-5, o);
  expect_equivalent("dp=2,tp=2,mbs=2,gbs=8,precision=fp16", tiny_moe(), 1e-5, o);
  EXPECT_GT(skipped, 0);
}

// ZeRO-2 (gradients reduce-scattered per unit in the backward, only the owned shard kept)
// and ZeRO-3 (parameters sharded too, each layer all-gathered before its forward and its
// backward): alone, and with expert, tensor and pipeline parallelism and recomputation.
// With ep=2 over dp=4 the experts shard over their 2 replicas; with tied embeddings over
// pp=2 the two copies' shards are summed.
TEST(ExecutorEquivalence, Zero2DataParallel2) { expect_equivalent("dp=2,mbs=2,gbs=8,zero=2"); }
TEST(ExecutorEquivalence, Zero2DataParallel4) { expect_equivalent("dp=4,mbs=2,gbs=8,zero=2"); }
TEST(ExecutorEquivalence, Zero3DataParallel2) { expect_equivalent("dp=2,mbs=2,gbs=8,zero=3"); }
TEST(ExecutorEquivalence, Zero3DataParallel4) { expect_equivalent("dp=4,mbs=2,gbs=8,zero=3"); }
TEST(ExecutorEquivalence, Zero2WithExpertParallel) { expect_equivalent("dp=4,ep=2,mbs=1,gbs=8,zero=2"); }
TEST(ExecutorEquivalence, Zero3WithExpertParallel) { expect_equivalent("dp=4,ep=2,mbs=1,gbs=8,zero=3"); }
TEST(ExecutorEquivalence, Zero2WithTensorParallel) { expect_equivalent("dp=2,tp=2,mbs=2,gbs=8,zero=2"); }
TEST(ExecutorEquivalence, Zero3WithTensorParallel) { expect_equivalent("dp=2,tp=2,mbs=2,gbs=8,zero=3"); }
TEST(ExecutorEquivalence, Zero3WithTensorExpertParallel) { expect_equivalent("dp=2,tp=2,ep=2,mbs=2,gbs=8,zero=3"); }
TEST(ExecutorEquivalence, Zero2PipelineOneFOneB) { expect_equivalent("dp=2,pp=2,mbs=1,gbs=8,zero=2"); }
TEST(ExecutorEquivalence, Zero2PipelineGPipe) { expect_equivalent("dp=2,pp=2,mbs=2,gbs=8,schedule=gpipe,zero=2"); }
TEST(ExecutorEquivalence, Zero3PipelineOneFOneB) { expect_equivalent("dp=2,pp=2,mbs=1,gbs=8,zero=3"); }
TEST(ExecutorEquivalence, Zero3PipelineGPipe) { expect_equivalent("dp=2,pp=2,mbs=2,gbs=8,schedule=gpipe,zero=3"); }
TEST(ExecutorEquivalence, Zero2InterleavedPipeline) {
  expect_equivalent("dp=2,pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=8,zero=2");
}
TEST(ExecutorEquivalence, Zero3InterleavedPipeline) {
  expect_equivalent("dp=2,pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=8,zero=3");
}
TEST(ExecutorEquivalence, Zero2FullRecomputation) { expect_equivalent("dp=4,ep=2,mbs=1,gbs=8,recompute=full,zero=2"); }
TEST(ExecutorEquivalence, Zero3FullRecomputation) { expect_equivalent("dp=4,ep=2,mbs=1,gbs=8,recompute=full,zero=3"); }
TEST(ExecutorEquivalence, Zero3SelectiveRecomputation) {
  expect_equivalent("dp=4,ep=2,mbs=2,gbs=8,recompute=selective,zero=3");
}
TEST(ExecutorEquivalence, Zero3OpenLmLayers) { expect_equivalent("dp=4,ep=2,mbs=1,gbs=8,zero=3", tiny_openlm_moe(2)); }

TEST(ExecutorEquivalence, EveryLayerMoeWithRandomPolicy) {
  ModelSpec m = tiny_moe();
  m.moe.layers = {1, 0, {}};
  m.moe.second_expert_policy = SecondExpertPolicy::random;
  expect_equivalent("dp=4,ep=2,mbs=2,gbs=8", m);
}

// run_pipeline performs exactly pipeline_order's ops on every stage, each receiving what
// its virtual stage's neighbour sent for the same micro-batch; 1F1B holds at most
// stages - stage micro-batches in flight (GPipe all of them), interleaved its warm-up
// forwards plus one.
TEST(ExecutorPipeline, RunsTheScheduleOrder) {
  auto backend = exec::make_cpu_backend();
  const int stage = world().rank(), stages = world().size(), m = 8;
  struct Case {
    Schedule schedule;
    int vpp;
  };
  for (const Case c : {Case{Schedule::gpipe, 1}, Case{Schedule::one_f_one_b, 1}, Case{Schedule::interleaved, 2},
                       Case{Schedule::interleaved, 3}}) {
    SCOPED_TRACE("vpp " + std::to_string(c.vpp));
    const int last_virtual = stages * c.vpp - 1;
    // A virtual stage's output for micro-batch mb holds 1000 vs + mb, its input gradient
    // the negative.
    auto label = [&](int chunk, int mb) { return static_cast<float>(1000 * (chunk * stages + stage) + mb); };
    std::vector<exec::PipelineOp> done;
    int in_flight = 0, most = 0;
    exec::StageWork work;
    work.forward = [&](int chunk, int mb, exec::Array<float> input) {
      const int vs = chunk * stages + stage;
      EXPECT_EQ(input.empty(), vs == 0);
      if (!input.empty()) {
        EXPECT_EQ(input.data()[0], static_cast<float>(1000 * (vs - 1) + mb)) << "stage " << stage;
      }
      done.push_back({true, mb, chunk});
      most = std::max(most, ++in_flight);
      exec::Array<float> out(*backend, 3);
      std::fill(out.data(), out.data() + 3, label(chunk, mb));
      return vs == last_virtual ? exec::Array<float>() : std::move(out);
    };
    work.backward = [&](int chunk, int mb, exec::Array<float> grad) {
      const int vs = chunk * stages + stage;
      EXPECT_EQ(grad.empty(), vs == last_virtual);
      if (!grad.empty()) {
        EXPECT_EQ(grad.data()[0], -static_cast<float>(1000 * (vs + 1) + mb)) << "stage " << stage;
      }
      done.push_back({false, mb, chunk});
      --in_flight;
      exec::Array<float> dx(*backend, 3);
      std::fill(dx.data(), dx.data() + 3, -label(chunk, mb));
      return vs == 0 ? exec::Array<float>() : std::move(dx);
    };
    exec::run_pipeline(c.schedule, m, world(), *backend, 3, work, c.vpp);
    EXPECT_EQ(done, exec::pipeline_order(c.schedule, stage, stages, m, c.vpp));
    int expected = c.schedule == Schedule::gpipe ? m : std::min(m, stages - stage);
    if (c.schedule == Schedule::interleaved)
      expected = std::min(2 * (stages - stage - 1) + (c.vpp - 1) * stages + 1, m * c.vpp);
    EXPECT_EQ(most, expected) << "stage " << stage;
  }
}

// 300 updates on 2 ranks (dp=2, ep=2) of the structured corpus, whose entropy floor is
// log2(4) = 2 bits per token: the cross-entropy of the last 50 updates ends within 0.25
// bits of it (it starts at log2(64) = 6 bits). Measured: 2.10 bits.
TEST(ExecutorLearning, StructuredCorpusOnTwoRanks) {
  const Plan plan = parse_inline_plan("dp=2,ep=2,mbs=4,gbs=16");
  std::unique_ptr<Communicator> block = world().split(world().rank() / 2, world().rank());
  exec::TrainOptions o = options(300);
  o.lr.decay = LrDecay::cosine;
  o.lr.lr = 1e-2;
  o.lr.warmup_updates = 30;
  o.lr.end_lr = 1e-3;
  o.lr.total_updates = 300;
  o.clip_norm = 1.0;
  const std::vector<exec::StepRecord> steps = train_on(*block, tiny_moe(), plan, o);
  double last = 0;
  for (std::size_t i = steps.size() - 50; i < steps.size(); ++i) last += steps[i].nll_loss / 50;
  EXPECT_GT(steps.front().nll_loss, 5.5);
  EXPECT_LT(last, 2.25) << "mean cross-entropy of updates 251-300, bits";
  EXPECT_GT(last, 2.0 - 0.05) << "below the corpus's entropy floor: the loss is wrong";
}

// ZeRO's memory, by the backend's byte counter (StepRecord::peak_bytes, the most any rank
// held during an update), against the simulator's closed form (src/accounting/memory.cpp)
// for dp=4, ep=2 (dense parameters shard 4 ways, experts over their 2 replicas). The
// simulator prices the states (parameters, gradients, Adam's moments) each 1/shards from
// its ZeRO stage on and the activations alike for every stage, so what a stage saves
// against zero=0 is a difference of states, which the executor must save too, but for
// what the simulator leaves out: the whole units a pass has in use (under ZeRO-3 one
// layer's parameters and gradients, in its backward; under ZeRO-2 its gradients), the
// reduce-scatter's landing chunk, and the zeros that pad each unit to a multiple of the
// shards. Those bound the difference from below; nothing is saved beyond the prediction.
TEST(ExecutorMemory, ZeroSavesWhatTheSimulatorPredicts) {
  const ModelSpec model = tiny_moe();
  const char* const base = "dp=4,ep=2,mbs=1,gbs=8,zero=";
  std::vector<double> measured, predicted;
  for (int zero = 0; zero <= 3; ++zero) {
    const Plan plan = parse_inline_plan(base + std::to_string(zero));
    ASSERT_EQ(world().size(), plan.world()) << "run under mpirun -n 4";
    std::size_t peak = 0;
    for (const exec::StepRecord& r : train_on(world(), model, plan, options(2))) peak = std::max(peak, r.peak_bytes);
    measured.push_back(static_cast<double>(peak));
    predicted.push_back(peak_memory(model, plan).bytes.states());
  }
  // The units of rank 0's layout under ZeRO 2/3: the largest layer's (dense and expert
  // units together), the head's with the tied embedding, and the padding.
  const Plan plan3 = parse_inline_plan(std::string(base) + "3");
  const exec::ModelParams layout = exec::param_layout(model, exec::ExpertShard{model.moe.experts, plan3.ep}, 0, 1, 0,
                                                      1, 0, exec::UnitPadding{plan3.dp, plan3.edp()});
  auto unit_size = [&](exec::ParamGroup group, std::size_t offset) -> std::size_t {
    for (const exec::ParamUnit& u : layout.units)
      if (u.group == group && u.offset <= offset && offset < u.offset + u.size) return u.size;
    return 0;
  };
  std::size_t largest_use = unit_size(exec::ParamGroup::dense, layout.wte) +
                            unit_size(exec::ParamGroup::dense, layout.lnf_g);  // the head's backward
  for (const exec::LayerParams& L : layout.layers)
    largest_use = std::max(largest_use, unit_size(exec::ParamGroup::dense, L.ln1_g) +
                                            (L.moe ? unit_size(exec::ParamGroup::expert, L.ex_w1) : 0));
  std::size_t largest_chunk = 0;
  for (const exec::ParamUnit& u : layout.units)
    largest_chunk = std::max(largest_chunk, u.size / static_cast<std::size_t>(u.group == exec::ParamGroup::dense
                                                                                   ? plan3.dp
                                                                                   : plan3.edp()));
  const std::size_t padding = layout.dense_size + layout.expert_size - layout.param_count();
  for (int zero = 1; zero <= 3; ++zero) {
    const auto z = static_cast<std::size_t>(zero);
    const double saved = measured[0] - measured[z], predicted_saved = predicted[0] - predicted[z];
    // Not priced: under ZeRO-1 the reduce-scattered chunk of the gradients; under 2 and 3
    // the landing chunk of a unit's reduce-scatter and the padding of the shards (16 bytes
    // an element), and any difference between the units in use and the simulator's
    // largest piece (largest_sharded_unit_params).
    const double chunks = static_cast<double>(layout.dense_size) / plan3.dp +
                          static_cast<double>(layout.expert_size) / plan3.edp();
    const double in_use = 4.0 * static_cast<double>(largest_use) * (zero == 3 ? 2 : 1);
    const double unpriced = zero == 1 ? 4.0 * chunks
                                      : 4.0 * static_cast<double>(largest_chunk) + 16.0 * static_cast<double>(padding);
    if (world().rank() == 0)
      std::printf("zero=%d: peak %.0f bytes (zero=0: %.0f); saved %.0f, predicted %.0f (states %.0f -> %.0f), "
                  "units in use %.0f, unpriced up to %.0f\n", zero, measured[z], measured[0], saved, predicted_saved,
                  predicted[0], predicted[z], zero >= 2 ? in_use : 0.0, unpriced);
    EXPECT_LE(saved, predicted_saved) << "zero=" << zero;
    EXPECT_GE(saved, predicted_saved - unpriced) << "zero=" << zero;
    // This model's units divide evenly and its largest piece is the one in use: to the byte.
    if (zero >= 2) {
      EXPECT_EQ(saved, predicted_saved) << "zero=" << zero;
    }
  }
  EXPECT_LT(measured[3], measured[2]);
  EXPECT_LT(measured[2], measured[1]);
}

// A started all-reduce sums as all_reduce does, also when split into several MPI calls
// (a communicator limited to 3 elements a call), and completes by wait() or by test().
TEST(ExecutorOverlap, StartedAllReduceSums) {
  MpiCommunicator small(MPI_COMM_WORLD, 3);
  const int n = world().size();
  for (const bool by_test : {false, true}) {
    std::vector<float> data(10);
    for (std::size_t i = 0; i < data.size(); ++i)
      data[i] = static_cast<float>((world().rank() + 1) * 100 + static_cast<int>(i));
    std::unique_ptr<PendingCollective> pending = small.start_all_reduce(data.data(), data.size());
    if (by_test) {
      while (!pending->test()) {
      }
    } else {
      pending->wait();
    }
    EXPECT_TRUE(pending->test());
    for (std::size_t i = 0; i < data.size(); ++i)
      EXPECT_EQ(data[i], static_cast<float>(n * (n + 1) / 2 * 100 + n * static_cast<int>(i))) << i;
  }
}

// ZeRO 0's gradients all-reduced unit by unit as the update's last backward finishes each
// (TrainOptions::overlap_grad_reduce, on by default) train the losses of one all-reduce of
// the whole buffer after the backward, and every unit's reduction starts before that
// backward has ended: its timeline event begins inside the last B event of the update.
// Only the order of the sums differs (Open MPI picks its algorithm by message size, and the
// tied embedding's copies are summed after the data-parallel reduction instead of before),
// so the losses agree within 1e-6 relative, the routing exactly (with Open MPI 4.1.4 here
// these three plans train the same losses to the bit).
TEST(ExecutorOverlap, BucketedReduceTrainsTheSameLossesDuringTheBackward) {
  const ModelSpec model = tiny_moe();
  for (const char* inline_plan : {"dp=4,ep=2,mbs=1,gbs=8", "dp=2,pp=2,mbs=1,gbs=8", "dp=2,tp=2,ep=2,mbs=2,gbs=8",
                                  "dp=2,pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=8"}) {
    SCOPED_TRACE(inline_plan);
    const Plan plan = parse_inline_plan(inline_plan);
    ASSERT_EQ(world().size(), plan.world()) << "run under mpirun -n 4";
    exec::TrainOptions whole = options(5);
    whole.overlap_grad_reduce = false;
    exec::TrainOptions overlapped = options(5);
    overlapped.timeline = true;
    const std::vector<exec::StepRecord> one = train_on(world(), model, plan, whole);
    const exec::TrainResult split = train_result(world(), model, plan, overlapped);
    ASSERT_EQ(split.steps.size(), one.size());
    for (std::size_t i = 0; i < one.size(); ++i) {
      EXPECT_NEAR(split.steps[i].loss, one[i].loss, 1e-6 * std::abs(one[i].loss)) << "update " << i + 1;
      EXPECT_EQ(split.steps[i].expert1, one[i].expert1) << "update " << i + 1;
    }
    // Per update: the spans of each model chunk's last backward (B<virtual stage>.<m - 1>:
    // the last backward of the stage unless interleaved), and the unit reductions.
    const std::string last_mb = "." + std::to_string(plan.micro_batches() - 1);
    for (long long update = 1; update <= 5; ++update) {
      std::vector<const exec::TimelineEvent*> last_backwards, buckets;
      for (const exec::TimelineEvent& e : split.timeline) {
        if (e.update != update) continue;
        if (e.category == "backward" && e.name.ends_with(last_mb)) last_backwards.push_back(&e);
        if (e.category == exec::kOverlappedReduce) buckets.push_back(&e);
      }
      ASSERT_EQ(last_backwards.size(), static_cast<std::size_t>(plan.schedule == Schedule::interleaved ? plan.vpp : 1));
      ASSERT_GT(buckets.size(), 1u) << "update " << update;
      int during = 0;
      for (const exec::TimelineEvent* b : buckets) {
        EXPECT_LE(b->start_s, b->end_s) << b->name;
        for (const exec::TimelineEvent* last : last_backwards)
          if (last->start_s <= b->start_s && b->start_s < last->end_s) {
            ++during;
            break;
          }
      }
      // Every unit's gradient is written by its chunk's backward, so every reduction
      // starts in the last of them.
      EXPECT_EQ(during, static_cast<int>(buckets.size())) << "update " << update;
    }
  }
}

// A fresh, empty folder under the system's temp folder, the same on every rank.
std::string shared_temp_dir(const std::string& name) {
  std::string dir;
  if (world().rank() == 0) {
    dir = (std::filesystem::temp_directory_path() / ("moesim-checkpoint-" + name + "." + std::to_string(::getpid())))
              .string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  return world().broadcast_bytes(dir);
}

// EvoMoE's dense-to-sparse gate: 5 updates cross its dense (1-2), annealing (3-4) and
// sparse (5) phases, a different number of experts per token going through the
// all-to-all-v until the last.
TEST(ExecutorEquivalence, EvoMoeDataExpertParallel2) { expect_equivalent("dp=2,ep=2,mbs=2,gbs=8", tiny_evomoe()); }
TEST(ExecutorEquivalence, EvoMoeExpertParallel4) { expect_equivalent("dp=4,ep=4,mbs=1,gbs=8", tiny_evomoe()); }
TEST(ExecutorEquivalence, EvoMoeTensorDataExpertParallel) {
  expect_equivalent("dp=2,tp=2,ep=2,mbs=2,gbs=8,zero=1", tiny_evomoe());
}
TEST(ExecutorEquivalence, EvoMoePipelineDataExpertParallel) {
  expect_equivalent("dp=2,pp=2,ep=2,mbs=1,gbs=8,zero=1", tiny_evomoe());
}
// The recomputed forward routes as the first did (the update's step reaches it too).
TEST(ExecutorEquivalence, EvoMoePipelineTensorParallelRecompute) {
  expect_equivalent("tp=2,pp=2,mbs=1,gbs=8,recompute=full", tiny_evomoe());
}

void remove_shared_dir(const std::string& dir) {
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}

// Expert parallelism and ZeRO-1, so each rank's file holds its own experts and its own
// shard of the Adam moments.
const char* const kCheckpointPlan = "dp=4,ep=2,mbs=1,gbs=8,zero=1";

exec::TrainOptions saving(std::int64_t steps, const std::string& dir, std::int64_t interval) {
  exec::TrainOptions o = options(steps);
  o.checkpoint.dir = dir;
  o.checkpoint.interval = interval;
  return o;
}

exec::TrainOptions resuming(std::int64_t steps, const std::string& dir) {
  exec::TrainOptions o = options(steps);
  o.checkpoint.dir = dir;
  o.checkpoint.resume = true;
  return o;
}

// 6 updates straight, against 3 updates saved at update 3 and a fresh process state (new
// backend, new groups) resuming there for updates 4 to 6: the same losses to the bit on
// CPU. Also with tensor and pipeline parallelism, whose ranks hold slices and stages, and
// under ZeRO-3 (a rank's file holds its shard of the parameters) and ZeRO-2.
TEST(ExecutorCheckpoint, ResumeEqualsUninterruptedRun) {
  const ModelSpec model = tiny_moe();
  for (const char* inline_plan : {kCheckpointPlan, "dp=2,tp=2,ep=2,mbs=2,gbs=8,zero=1",
                                  "dp=2,pp=2,ep=2,mbs=1,gbs=8,zero=1", "dp=4,ep=2,mbs=1,gbs=8,zero=3",
                                  "dp=2,pp=2,mbs=1,gbs=8,zero=3", "dp=4,ep=2,mbs=1,gbs=8,zero=2",
                                  "dp=2,pp=2,ep=2,vpp=2,schedule=interleaved,mbs=1,gbs=8,zero=1"}) {
    SCOPED_TRACE(inline_plan);
    const Plan plan = parse_inline_plan(inline_plan);
    ASSERT_EQ(world().size(), plan.world()) << "run under mpirun -n 4";
    const std::vector<exec::StepRecord> whole = train_on(world(), model, plan, options(6));
    ASSERT_EQ(whole.size(), 6u);

    const std::string dir = shared_temp_dir("resume");
    const std::vector<exec::StepRecord> before = train_on(world(), model, plan, saving(3, dir, 3));
    const std::string saved = dir + "/update-3";
    EXPECT_TRUE(std::filesystem::exists(saved + "/manifest.json"));
    for (int r = 0; r < world().size(); ++r)
      EXPECT_TRUE(std::filesystem::exists(saved + "/rank-" + std::to_string(r) + ".bin")) << "rank " << r;
    const exec::TrainResult after = train_result(world(), model, plan, resuming(6, dir));

    EXPECT_EQ(after.resumed_from, 3);
    ASSERT_EQ(before.size(), 3u);
    ASSERT_EQ(after.steps.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(before[i].loss, whole[i].loss) << "update " << i + 1;
      EXPECT_EQ(after.steps[i].num_updates, whole[i + 3].num_updates);
      EXPECT_EQ(after.steps[i].loss, whole[i + 3].loss) << "update " << i + 4;
      EXPECT_EQ(after.steps[i].gnorm, whole[i + 3].gnorm) << "update " << i + 4;
      EXPECT_EQ(after.steps[i].expert1, whole[i + 3].expert1) << "update " << i + 4;
    }
    remove_shared_dir(dir);
  }
}

// EvoMoE's schedule resumes from the saved update: stopped after update 3, the run resumes
// at the second annealing update (step 3) and goes on into the sparse phase, to the bit.
TEST(ExecutorCheckpoint, DenseToSparseResumesInsideTheAnnealing) {
  const ModelSpec model = tiny_evomoe();
  const Plan plan = parse_inline_plan(kCheckpointPlan);
  ASSERT_EQ(world().size(), plan.world()) << "run under mpirun -n 4";
  const std::vector<exec::StepRecord> whole = train_on(world(), model, plan, options(6));
  ASSERT_EQ(whole.size(), 6u);
  const std::string dir = shared_temp_dir("resume-dts");
  const std::vector<exec::StepRecord> before = train_on(world(), model, plan, saving(3, dir, 3));
  const exec::TrainResult after = train_result(world(), model, plan, resuming(6, dir));
  EXPECT_EQ(after.resumed_from, 3);
  ASSERT_EQ(after.steps.size(), 3u);
  EXPECT_EQ(after.steps[0].dts_phase, "annealing");
  EXPECT_EQ(after.steps[1].dts_phase, "sparse");
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(before[i].loss, whole[i].loss) << "update " << i + 1;
    EXPECT_EQ(after.steps[i].loss, whole[i + 3].loss) << "update " << i + 4;
    EXPECT_EQ(after.steps[i].gnorm, whole[i + 3].gnorm) << "update " << i + 4;
    EXPECT_EQ(after.steps[i].dts_active_experts, whole[i + 3].dts_active_experts) << "update " << i + 4;
  }
  remove_shared_dir(dir);
}

// Checkpoints at updates 2 and 4, then update 4's damaged as a crash or a bad disk leaves
// it: resuming takes update 2 and still trains the uninterrupted run's losses.
TEST(ExecutorCheckpoint, IncompleteCheckpointIsSkipped) {
  const ModelSpec model = tiny_moe();
  const Plan plan = parse_inline_plan(kCheckpointPlan);
  ASSERT_EQ(world().size(), plan.world()) << "run under mpirun -n 4";
  const std::vector<exec::StepRecord> whole = train_on(world(), model, plan, options(6));

  enum class Damage { no_manifest, short_shard, flipped_byte };
  for (const Damage damage : {Damage::no_manifest, Damage::short_shard, Damage::flipped_byte}) {
    SCOPED_TRACE(static_cast<int>(damage));
    const std::string dir = shared_temp_dir("incomplete");
    train_on(world(), model, plan, saving(4, dir, 2));
    if (world().rank() == 0) {
      const std::string last = dir + "/update-4/";
      EXPECT_TRUE(std::filesystem::exists(last + "manifest.json"));  // no ASSERT: the peers wait below
      const std::string shard = last + "rank-3.bin";
      const auto size = std::filesystem::file_size(shard);
      if (damage == Damage::no_manifest) std::filesystem::remove(last + "manifest.json");
      if (damage == Damage::short_shard) std::filesystem::resize_file(shard, size / 2);
      if (damage == Damage::flipped_byte) {  // same size: only the checksum can tell
        std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(static_cast<std::streamoff>(size - 5));
        char c = 0;
        f.get(c);
        f.seekp(static_cast<std::streamoff>(size - 5));
        f.put(static_cast<char>(c ^ 0x10));
      }
    }
    world().barrier();
    const exec::TrainResult resumed = train_result(world(), model, plan, resuming(6, dir));
    EXPECT_EQ(resumed.resumed_from, 2);
    ASSERT_EQ(resumed.steps.size(), 4u);
    EXPECT_EQ(resumed.steps.front().num_updates, 3);
    for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(resumed.steps[i].loss, whole[i + 2].loss) << "update " << i + 3;
    remove_shared_dir(dir);
  }
}

}  // namespace
}  // namespace moesim

int main(int argc, char** argv) { return moesim::testing::run_mpi_tests(argc, argv); }
