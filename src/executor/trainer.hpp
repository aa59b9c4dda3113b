// The training loop of `moesim run` on one rank: each update runs the rank's micro-batches
// (gradients accumulated), reduces dense gradients over the data-parallel group and expert
// gradients over the expert-data-parallel group, clips by the global norm and steps Adam;
// then it reports fairseq's figures for the update, the same on every rank.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/adam.hpp"
#include "src/comm/communicator.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/checkpoint.hpp"
#include "src/executor/loss_scaler.hpp"
#include "src/executor/lr_schedule.hpp"
#include "src/executor/timeline.hpp"
#include "src/executor/token_source.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim::exec {

struct TrainOptions {
  std::int64_t steps = 0;  // the last update: a resumed run trains from its checkpoint's to this
  std::uint64_t seed = 1;  // parameters, data and the gate's draws
  // Megatron's --init-method-std and GPT-2's initialiser range.
  float init_std = 0.02f;
  LrSchedule lr;
  kernels::AdamOptions adam;  // its lr is set from `lr` at every update
  double clip_norm = 0;       // fairseq's --clip-norm; 0 = off
  TokenSourceSpec data;
  bool timeline = false;  // record when each micro-batch, reduction and step ran
  // ZeRO 0: all-reduce each unit's gradient (a layer's, the embeddings', the head's) as the
  // update's last backward finishes it, overlapped with the rest of the backward; off:
  // one all-reduce of the whole buffer after the backward.
  bool overlap_grad_reduce = true;
  CheckpointOptions checkpoint;  // none by default
  // precision=fp16 only: fairseq's dynamic loss scaling (loss_scaler.hpp), and what runs
  // on every rank when an update overflows and is skipped (the update it retries, the
  // halved scale): fairseq's "gradient overflow detected" note.
  LossScalerOptions loss_scaler;
  std::function<void(std::int64_t update, double loss_scale)> on_overflow;
};

// The groups one rank's collectives run over, split from the world by the plan.
struct RankGroups {
  Communicator* world = nullptr;
  std::unique_ptr<Communicator> dp, ep, edp, tp, pp;
  std::unique_ptr<Communicator> embedding;  // first and last pipeline stage (tied embeddings)
};
RankGroups make_groups(Communicator& world, const Plan& plan);

// One update as fairseq's train_inner line reports it; identical on every rank.
struct StepRecord {
  std::int64_t num_updates = 0;
  double loss = 0;           // cross-entropy plus the weighted gate loss, in bits (fairseq)
  double nll_loss = 0;       // cross-entropy alone, bits per token
  double moe_gate_loss = 0;  // mean over micro-batches of the summed l_aux of the MoE layers
  // Gate metadata averaged over MoE layers and micro-batches (fairseq's names).
  double overflow_expert1 = 0, overflow_expert2 = 0, entropy_gating = 0;
  double expert1_balance_top = 0, expert1_balance_bottom = 0, unused_expert1_count = 0;
  // moe.dense_to_sparse: the gate's phase ("dense", "annealing", "sparse") and temperature
  // at this update; empty and 0 without it. dts_active_experts: experts a token is routed
  // to (before capacity drops), averaged over MoE layers and micro-batches (top_k without
  // the schedule, less the random policy's refusals).
  std::string dts_phase;
  double dts_temperature = 0;
  double dts_active_experts = 0;
  double lr = 0;
  double gnorm = 0;          // global gradient norm before clipping (unscaled under fp16)
  // fp16: the loss scale after the update (fairseq's loss_scale; doubled when the update
  // ends a window) and the iterations skipped for overflow since the previous update.
  // 0 and 0 for fp32 and bf16, which scale no loss.
  double loss_scale = 0;
  std::int64_t overflows = 0;
  std::int64_t tokens = 0;   // wpb: tokens in the global batch
  std::int64_t sequences = 0;  // bsz
  double seconds = 0;        // wall time of the update (slowest rank)
  std::size_t peak_bytes = 0;  // most bytes the backend held on any rank during the update
  // Tokens whose first (expert1) and second (expert2) choice is each expert, per MoE layer,
  // over the global batch: the routing trace.
  std::vector<std::vector<std::int64_t>> expert1, expert2;
};

struct TrainResult {
  std::vector<StepRecord> steps;
  std::size_t param_count = 0;  // this rank's parameters
  std::int64_t resumed_from = 0;
  std::vector<TimelineEvent> timeline;  // this rank's, when asked for  // the update of the checkpoint resumed, 0 when none
};

// Trains `model` under `plan` up to update `steps`, from the start or, with
// options.checkpoint.resume, after the newest complete checkpoint. The backend's GEMM
// precision is set from plan.precision (bf16, fp16: backend.hpp's autocast-style GEMMs; the
// weights, Adam and everything else stay fp32). fp16 scales the loss (options.loss_scaler):
// an update whose gradients overflow is skipped and retried on the same batch, so
// num_updates counts only the updates that stepped. `on_step` runs on every
// rank after each update; checkpoints are saved after it. Throws InputError for a model or
// plan the executor cannot run, or a checkpoint of another run (naming the field).
TrainResult train(Backend& backend, RankGroups& groups, const ModelSpec& model, const Plan& plan,
                  const TrainOptions& options, const std::function<void(const StepRecord&)>& on_step);

// What the executor runs so far; an InputError naming `source` and the field otherwise.
void check_runnable(const ModelSpec& model, const Plan& plan, const std::string& model_file,
                    const std::string& plan_file);

}  // namespace moesim::exec
