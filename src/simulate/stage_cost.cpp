// Pricing one stage's work; see stage_cost.hpp.
#include "src/simulate/stage_cost.hpp"

#include <algorithm>
#include <cmath>

#include "src/accounting/capacity.hpp"
#include "src/accounting/flops.hpp"
#include "src/accounting/memory.hpp"
#include "src/accounting/ring_attention.hpp"
#include "src/cost/comm_model.hpp"
#include "src/cost/compute_model.hpp"

namespace moesim {

StageTime stage_time(const ModelSpec& m, const Plan& p, const ClusterSpec& c, const Profile& prof,
                     const GroupLayout& groups, const StageParams& stage, const ExpertLoad* load) {
  StageTime st;
  const double T = attention_tokens(p, m);
  const double e = bytes_of(p.precision), h = static_cast<double>(m.d_model);
  // Expert token slots of the busiest rank: the padded buffers when there is a capacity,
  // else what the routing puts on the most-loaded rank.
  double slots = m.is_moe() ? static_cast<double>(expert_slots(m.moe, std::llround(expert_layer_tokens(p, m)))) : 0.0;
  if (m.is_moe() && load && !load->capacity) slots = rank_load(*load, p.ep, p.placement).max_tokens;
  auto account = [&](const std::vector<OpCost>& ops, bool recomputed, bool selective_only) {
    for (const OpCost& op : ops) {
      st.forward += op.seconds;
      st.backward += 2 * op.seconds;
      double extra = 0;
      if (recomputed && (!selective_only || op.category == "attention")) extra = op.seconds;
      st.recompute += extra;
      st.compute[op.category] += 3 * op.seconds + extra;
    }
  };
  const bool full = p.recompute == Recompute::full, selective = p.recompute == Recompute::selective;
  if (stage.stage == 0) account(embedding_forward_ops(prof, m, p, T), false, false);
  // A layer's cost depends only on whether it is an MoE layer: price each kind once, then
  // count it (this keeps the screening tier's cost independent of the depth).
  auto price_layer = [&](int layer) {
    StageTime one;
    std::swap(one, st);
    // Selective recomputation redoes the attention core; full redoes the whole layer.
    std::vector<OpCost> ops = layer_forward_ops(prof, m, p, layer, T, slots);
    if (selective) {
      std::vector<OpCost> core, rest;
      for (OpCost& op : ops)
        (op.name == "attention" || op.name == "attention_scores" || op.name == "softmax" || op.name == "attention_values"
             ? core
             : rest)
            .push_back(op);
      account(core, true, false);
      account(rest, false, false);
    } else {
      account(ops, full, false);
    }
    // Megatron: one all-reduce (or, under sp, an all-gather and a reduce-scatter of the same
    // bus bytes) of the block's output per pass, forward and backward, for the attention
    // block and for a dense FFN or the shared experts. Routed experts have their own tensor
    // parallelism (below).
    const bool moe_layer = m.is_moe_layer(layer);
    const int tp_blocks = 1 + (!moe_layer || m.moe.shared_experts > 0 ? 1 : 0);
    if (p.tp > 1)
      st.comm["tp_all_reduce"] +=
          2 * tp_blocks * collective_cost(prof, c, Collective::all_reduce, groups.tp, e * T * h).seconds;
    if (moe_layer && p.expert_tp() > 1) {
      // Megatron-Core's all-to-all dispatcher with expert tensor parallelism: after the
      // dispatch, the etp ranks all-gather their received tokens (each computes all of them
      // on its slice of every expert) and reduce-scatter the experts' partial outputs
      // before the combine; the backward does the reverse. Sized by the busiest rank's
      // expert token slots; without expert parallelism Megatron-Core's all-gather
      // dispatcher gathers the tokens before they are routed.
      const double gathered = e * h * (p.ep > 1 ? slots : expert_layer_tokens(p, m));
      st.comm["etp_all_gather"] += 2 * collective_cost(prof, c, Collective::all_gather, groups.etp, gathered).seconds;
      st.comm["etp_reduce_scatter"] +=
          2 * collective_cost(prof, c, Collective::reduce_scatter, groups.etp, gathered).seconds;
    }
    if (p.cp > 1) {
      // Ring attention: each hop's exchange hides behind one block (1/cp) of the attention
      // core; what is left over is exposed. Backward moves twice the bytes beside twice the
      // compute.
      double core = 0;
      for (const OpCost& op : ops)
        if (op.name == "attention") core += op.seconds;
      const RingExchange ring = ring_attention_exchange(m, p);
      const double hop = collective_cost(prof, c, Collective::send_recv, GroupPlacement{2, groups.cp.nodes > 1 ? 2 : 1},
                                         ring.step_bytes).seconds;
      const double hop_back = collective_cost(prof, c, Collective::send_recv,
                                              GroupPlacement{2, groups.cp.nodes > 1 ? 2 : 1}, 2 * ring.step_bytes).seconds;
      st.comm["cp_ring_exchange"] += ring.steps * (std::max(0.0, hop - core / p.cp) + std::max(0.0, hop_back - 2 * core / p.cp));
    }
    if (moe_layer && p.ep > 1) {
      // Dispatch and combine, forward and backward: each rank sends its E x capacity buffer
      // (fairseq pads to capacity) or k x tokens when dropless, split over the experts'
      // tensor-parallel ranks.
      const double elements = slots * h / p.expert_tp();
      auto all_to_all = [&](double bytes) {
        return collective_cost(prof, c, Collective::all_to_all, groups.ep, bytes).seconds;
      };
      // Under fp8_dispatch the forward dispatch goes in FP8 with its tile scales.
      const double dispatch = p.fp8_dispatch ? all_to_all(elements * kFp8BytesPerElement) : all_to_all(e * elements);
      st.comm["ep_all_to_all"] += dispatch + 3 * all_to_all(e * elements);
    }
    std::swap(one, st);
    return one;
  };
  int count[2] = {0, 0}, example[2] = {-1, -1};
  for (int layer : stage.layers) {
    const int kind = m.is_moe_layer(layer) ? 1 : 0;
    ++count[kind];
    example[kind] = layer;
  }
  const bool last = stage.stage == p.pp - 1;
  if (last && m.mtp_layers > 0) {  // each multi-token prediction module's layer, shaped as the last
    const int kind = m.is_moe_layer(m.layers - 1) ? 1 : 0;
    count[kind] += m.mtp_layers;
    example[kind] = m.layers - 1;
  }
  for (int kind = 0; kind < 2; ++kind) {
    if (count[kind] == 0) continue;
    const StageTime one = price_layer(example[kind]);
    const double n = count[kind];
    st.forward += n * one.forward;
    st.backward += n * one.backward;
    st.recompute += n * one.recompute;
    for (const auto& [k, v] : one.compute) st.compute[k] += n * v;
    for (const auto& [k, v] : one.comm) st.comm[k] += n * v;
  }
  if (last) {
    account(head_forward_ops(prof, m, p, T), false, false);
    for (int k = 0; k < m.mtp_layers; ++k) {
      account(mtp_forward_ops(prof, m, p, T), false, false);
      account(head_forward_ops(prof, m, p, T), false, false);
    }
  }
  if (p.pp > 1) {
    // Activations to the next stage forward, gradients back: both directions per micro-batch.
    GroupPlacement pair{2, groups.pp_crosses_nodes ? 2 : 1};
    st.comm["pp_send_recv"] += 2 * collective_cost(prof, c, Collective::send_recv, pair, e * T * h / p.tp).seconds;
  }
  return st;
}


std::vector<DpCollective> grad_reduce_collectives(const Plan& p, const StageParams& stage) {
  const double g = bytes_of(p.grads()), w = bytes_of(p.precision);
  const double ne = static_cast<double>(stage.non_expert), ex = static_cast<double>(stage.expert);
  const Collective reduce = p.zero >= 2 ? Collective::reduce_scatter : Collective::all_reduce;
  std::vector<DpCollective> out{{reduce, false, g * ne}, {reduce, true, g * ex}};
  if (p.zero >= 1 && p.zero < 3) {  // updated weight shards gathered after the step
    out.push_back({Collective::all_gather, false, w * ne});
    out.push_back({Collective::all_gather, true, w * ex});
  }
  return out;
}

std::vector<DpCollective> fsdp_gather_collectives(const Plan& p, const StageParams& stage) {
  if (p.zero != 3) return {};
  const double w = bytes_of(p.precision);
  return {{Collective::all_gather, false, w * static_cast<double>(stage.non_expert)},
          {Collective::all_gather, true, w * static_cast<double>(stage.expert)}};
}

DpCosts dp_costs(const Plan& p, const ClusterSpec& c, const Profile& prof, const GroupLayout& groups,
                 const StageParams& stage) {
  DpCosts d;
  auto price = [&](const std::vector<DpCollective>& list) {
    double s = 0;
    for (const DpCollective& k : list) s += collective_cost(prof, c, k.op, k.expert ? groups.edp : groups.dp, k.bytes).seconds;
    return s;
  };
  d.reduce_scatter = p.zero >= 2;
  d.grad_reduce = price(grad_reduce_collectives(p, stage));
  d.fsdp_gather = price(fsdp_gather_collectives(p, stage));
  const double ne = static_cast<double>(stage.non_expert), ex = static_cast<double>(stage.expert);
  const double held = p.zero >= 1 ? ne / p.dense_replicas() + ex / p.edp() : ne + ex;
  d.optimizer = optimizer_op(prof, p, held).seconds;
  return d;
}

SimBalance balance_of(const ExpertLoad* load, const Plan& p) {
  SimBalance b;
  if (!load) return b;
  b.present = true;
  b.stats = load->stats;
  b.has_entropy = load->has_entropy;
  b.capacity = load->capacity.value_or(0);
  double demand = 0, kept = 0;
  for (std::size_t i = 0; i < load->demand.size(); ++i) {
    demand += load->demand[i];
    kept += load->kept[i];
  }
  b.dropped_fraction = demand > 0 ? 1 - kept / demand : 0;
  const RankLoad rl = rank_load(*load, p.ep, p.placement);
  b.max_tokens_per_rank = rl.max_tokens;
  b.mean_tokens_per_rank = rl.mean_tokens;
  b.max_rank = rl.max_rank;
  b.demand_per_expert = load->demand;
  b.kept_per_expert = load->kept;
  return b;
}

void finish_result(SimResult& r, const ModelSpec& m, const Plan& p, const ClusterSpec& c, const Profile& prof) {
  const double iteration = r.iteration_s;
  r.tokens = static_cast<double>(p.global_batch()) * static_cast<double>(m.seq_len);
  r.wps = r.tokens / iteration;
  r.wps_per_gpu = r.wps / p.world();
  const IterationFlops it = iteration_flops(m, p);
  r.tflops_per_gpu = it.model / iteration / p.world() / 1e12;
  r.mfu = it.model / iteration / p.world() / prof.peak(p.precision == DType::fp32 ? DType::fp32 : p.precision);
  r.memory = peak_memory(m, p);
  r.gpu_memory = c.gpu_memory_bytes;
  r.fits = r.memory.bytes.total() <= c.gpu_memory_bytes;
}

}  // namespace moesim
