// Lowering an iteration onto the engine; see pipeline_lowering.hpp.
#include "src/simulate/pipeline_lowering.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moesim {
namespace {

// A communication task: a delay of `seconds`, or a collective running `flows` over the
// network (a `share` of them), holding `party` when there is one.
sim::TaskId add_comm(sim::Workload& w, const std::string& name, double seconds, const CommFlows& flows, double share,
                     const sim::TaskOptions& options) {
  if (!flows) return w.add_delay(name, seconds * share, options);
  sim::CollectiveSpec spec;
  if (options.resource != sim::kNoResource) spec.parties = {options.resource};
  spec.expansion = [flows, share](const sim::CollectiveContext&, sim::StepBuilder& b) { flows(b, share); };
  sim::TaskOptions o = options;
  o.resource = sim::kNoResource;
  return w.add_collective(name, std::move(spec), o);
}

}  // namespace

std::vector<Pass> stage_order(Schedule schedule, int stage, int stages, int m, int vpp) {
  std::vector<Pass> order;
  if (schedule == Schedule::gpipe) {
    for (int i = 0; i < m; ++i) order.push_back({true, i, 0});
    for (int i = 0; i < m; ++i) order.push_back({false, i, 0});
    return order;
  }
  if (schedule == Schedule::one_f_one_b) vpp = 1;
  if (vpp > 1 && m % stages != 0)
    throw std::runtime_error("interleaved 1F1B needs the micro-batches (" + std::to_string(m) +
                             ") to be a multiple of the pipeline stages (" + std::to_string(stages) + ")");
  // 1F1B (PipeDream-flush, Megatron): warm-up forwards, then one forward and one backward
  // in turn, then the remaining backwards. Interleaved: the k-th pass of a kind takes chunk
  // (k mod pp vpp) / pp (reversed for backwards) of micro-batch (k / (pp vpp)) pp + k mod pp.
  const int total = m * vpp, group = stages * vpp;
  const int warmup = std::min(total, vpp == 1 ? stages - stage - 1 : 2 * (stages - stage - 1) + (vpp - 1) * stages);
  auto pass = [&](int k, bool forward) {
    const int in_group = k % group;
    int chunk = in_group / stages;
    if (!forward) chunk = vpp - 1 - chunk;
    return Pass{forward, (k / group) * stages + in_group % stages, chunk};
  };
  int f = 0, b = 0;
  for (; f < warmup; ++f) order.push_back(pass(f, true));
  while (f < total) {
    order.push_back(pass(f++, true));
    order.push_back(pass(b++, false));
  }
  while (b < total) order.push_back(pass(b++, false));
  return order;
}

LoweredIteration lower_iteration(const std::vector<StageWork>& stages, Schedule schedule, int m, bool with_dp_comm,
                                 int vpp) {
  if (schedule != Schedule::interleaved) vpp = 1;
  LoweredIteration out;
  out.vpp = vpp;
  sim::Workload& w = out.workload;
  const int pp = static_cast<int>(stages.size()), virtual_stages = pp * vpp;
  for (int s = 0; s < pp; ++s) {
    const std::string group = "stage " + std::to_string(s);
    out.compute.push_back(w.add_resource(group + " compute", {1, sim::QueueOrder::kInOrder, group}));
    out.comm.push_back(w.add_resource(group + " comm", {1, sim::QueueOrder::kInOrder, group}));
  }
  const std::vector<sim::TaskId> none(static_cast<std::size_t>(m));
  out.forward.assign(static_cast<std::size_t>(virtual_stages), none);
  out.backward_first = out.backward_last = out.forward;
  auto at = [](std::vector<std::vector<sim::TaskId>>& v, int vs, int mb) -> sim::TaskId& {
    return v[static_cast<std::size_t>(vs)][static_cast<std::size_t>(mb)];
  };
  for (int s = 0; s < pp; ++s) {
    const StageWork& st = stages[static_cast<std::size_t>(s)];
    const sim::ResourceId compute = out.compute[static_cast<std::size_t>(s)], comm = out.comm[static_cast<std::size_t>(s)];
    const std::vector<Pass> order = stage_order(schedule, s, pp, m, vpp);
    const bool gather = with_dp_comm && st.fsdp_gather > 0;
    const bool reduce = with_dp_comm && st.grad_reduce > 0;
    std::int32_t position = 0, comm_position = 0;
    std::vector<sim::TaskId> chunks;
    for (std::size_t i = 0; i < order.size(); ++i) {
      const Pass& p = order[i];
      const int vs = p.chunk * pp + s;
      const std::string tag = std::to_string(vs) + "." + std::to_string(p.micro_batch);
      sim::TaskId g = 0;
      if (gather)
        g = add_comm(w, (p.forward ? "fsdp_gather F" : "fsdp_gather B") + tag, st.fsdp_gather, st.fsdp_gather_flows,
                     1.0 / vpp, {"fsdp_all_gather", comm, comm_position++});
      if (p.forward) {
        const sim::TaskId t = w.add_delay("F" + tag, st.forward / vpp, {"forward", compute, position++});
        at(out.forward, vs, p.micro_batch) = t;
        if (gather) w.add_dependency(g, t);
        continue;
      }
      // The stage's last pass, a backward, runs as `buckets` chunks so each bucket's
      // reduction can start when its gradients exist.
      const int pieces = (i + 1 == order.size() && reduce) ? std::max(1, st.buckets) : 1;
      sim::TaskId prev = 0;
      for (int c = 0; c < pieces; ++c) {
        const sim::TaskId t = w.add_delay("B" + tag + (pieces > 1 ? "/" + std::to_string(c) : ""),
                                          st.backward / vpp / pieces, {"backward", compute, position++});
        if (c == 0) {
          at(out.backward_first, vs, p.micro_batch) = t;
          if (gather) w.add_dependency(g, t);
        } else {
          w.add_dependency(prev, t);
        }
        if (pieces > 1) chunks.push_back(t);
        prev = t;
      }
      at(out.backward_last, vs, p.micro_batch) = prev;
    }
    // Gradient buckets on the communication stream, each after its chunk.
    sim::TaskId done = chunks.empty() ? at(out.backward_last, order.back().chunk * pp + s, order.back().micro_batch)
                                      : chunks.back();
    if (reduce) {
      const int pieces = std::max(1, st.buckets);
      for (int c = 0; c < pieces; ++c) {
        const sim::TaskId r = add_comm(w, "grad_reduce " + std::to_string(s) + "/" + std::to_string(c), st.grad_reduce,
                                       st.grad_reduce_flows, 1.0 / pieces, {"dp_grad_reduce", comm, comm_position++});
        w.add_dependency(chunks.empty() ? done : chunks[static_cast<std::size_t>(c)], r);
        done = r;
      }
    }
    const sim::TaskId opt = w.add_delay("optimizer " + std::to_string(s), st.optimizer, {"optimizer", compute, position++});
    w.add_dependency(done, opt);
  }
  // Between virtual stages: activations forward, gradients backward; and every backward
  // after its own forward.
  for (int vs = 0; vs < virtual_stages; ++vs) {
    const StageWork& from = stages[static_cast<std::size_t>(vs % pp)];
    for (int i = 0; i < m; ++i) {
      w.add_dependency(at(out.forward, vs, i), at(out.backward_first, vs, i));
      if (vs + 1 == virtual_stages) continue;
      const std::string tag = std::to_string(vs) + "." + std::to_string(i);
      const sim::TaskId a = add_comm(w, "send F" + tag, from.send_forward, from.send_forward_flows, 1.0, {"pp_send_recv"});
      w.add_dependency(at(out.forward, vs, i), a);
      w.add_dependency(a, at(out.forward, vs + 1, i));
      const StageWork& back = stages[static_cast<std::size_t>((vs + 1) % pp)];
      const sim::TaskId g = add_comm(w, "send B" + std::to_string(vs + 1) + "." + std::to_string(i), back.send_backward,
                                     back.send_backward_flows, 1.0, {"pp_send_recv"});
      w.add_dependency(at(out.backward_last, vs + 1, i), g);
      w.add_dependency(g, at(out.backward_first, vs, i));
    }
  }
  return out;
}

std::vector<double> peak_in_flight(const LoweredIteration& l, const sim::Result& r) {
  const std::size_t pp = l.forward.size() / static_cast<std::size_t>(l.vpp);
  std::vector<double> peaks;
  for (std::size_t s = 0; s < pp; ++s) {
    std::vector<std::pair<double, int>> events;  // (time, -1 free | +1 allocate): frees sort first
    for (std::size_t vs = s; vs < l.forward.size(); vs += pp)
      for (std::size_t m = 0; m < l.forward[vs].size(); ++m) {
        events.push_back({r.start[l.forward[vs][m]], +1});
        events.push_back({r.end[l.backward_last[vs][m]], -1});
      }
    std::sort(events.begin(), events.end());
    int held = 0, peak = 0;
    for (const auto& [t, d] : events) peak = std::max(peak, held += d);
    peaks.push_back(static_cast<double>(peak) / l.vpp);
  }
  return peaks;
}

}  // namespace moesim
