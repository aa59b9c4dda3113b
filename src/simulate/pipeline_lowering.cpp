// Lowering an iteration onto the engine; see pipeline_lowering.hpp.
#include "src/simulate/pipeline_lowering.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moesim {

std::vector<Pass> stage_order(Schedule schedule, int stage, int stages, int m) {
  std::vector<Pass> order;
  if (schedule == Schedule::gpipe) {
    for (int i = 0; i < m; ++i) order.push_back({true, i});
    for (int i = 0; i < m; ++i) order.push_back({false, i});
    return order;
  }
  if (schedule != Schedule::one_f_one_b)
    throw std::runtime_error("the event tier lowers GPipe and 1F1B; interleaved 1F1B is not lowered yet");
  // 1F1B (PipeDream-flush, Megatron): warm-up forwards, then one forward and one backward
  // in turn, then the remaining backwards.
  const int warmup = std::min(stages - stage - 1, m);
  int f = 0, b = 0;
  for (; f < warmup; ++f) order.push_back({true, f});
  while (f < m) {
    order.push_back({true, f++});
    order.push_back({false, b++});
  }
  while (b < m) order.push_back({false, b++});
  return order;
}

LoweredIteration lower_iteration(const std::vector<StageWork>& stages, Schedule schedule, int m, bool with_dp_comm) {
  LoweredIteration out;
  sim::Workload& w = out.workload;
  const int pp = static_cast<int>(stages.size());
  for (int s = 0; s < pp; ++s) {
    const std::string group = "stage " + std::to_string(s);
    out.compute.push_back(w.add_resource(group + " compute", {1, sim::QueueOrder::kInOrder, group}));
    out.comm.push_back(w.add_resource(group + " comm", {1, sim::QueueOrder::kInOrder, group}));
  }
  // Task ids of every pass, [stage][micro-batch]; a backward's id is that of its last
  // chunk (the last micro-batch's backward is split into the reduction's buckets).
  std::vector<std::vector<sim::TaskId>> fwd(static_cast<std::size_t>(pp), std::vector<sim::TaskId>(static_cast<std::size_t>(m)));
  std::vector<std::vector<sim::TaskId>> bwd_first = fwd, bwd_last = fwd;
  std::vector<sim::TaskId> last_chunks;
  for (int s = 0; s < pp; ++s) {
    const StageWork& st = stages[static_cast<std::size_t>(s)];
    const std::vector<Pass> order = stage_order(schedule, s, pp, m);
    const bool gather = with_dp_comm && st.fsdp_gather > 0;
    std::int32_t position = 0, comm_position = 0;
    const int last_b = m - 1;
    std::vector<sim::TaskId> chunks;
    for (const Pass& p : order) {
      const std::string tag = std::to_string(s) + "." + std::to_string(p.micro_batch);
      sim::TaskId g = 0;
      if (gather) {
        g = w.add_delay((p.forward ? "fsdp_gather F" : "fsdp_gather B") + tag, st.fsdp_gather,
                        {"fsdp_all_gather", out.comm[static_cast<std::size_t>(s)], comm_position++});
      }
      const auto mb = static_cast<std::size_t>(p.micro_batch);
      if (p.forward) {
        const sim::TaskId t = w.add_delay("F" + tag, st.forward, {"forward", out.compute[static_cast<std::size_t>(s)], position++});
        fwd[static_cast<std::size_t>(s)][mb] = t;
        if (gather) w.add_dependency(g, t);
      } else {
        // The last backward runs as `buckets` chunks so each bucket's reduction can start
        // when its gradients exist.
        const int pieces = (p.micro_batch == last_b && with_dp_comm && st.grad_reduce > 0) ? std::max(1, st.buckets) : 1;
        sim::TaskId prev = 0;
        for (int c = 0; c < pieces; ++c) {
          const sim::TaskId t = w.add_delay("B" + tag + (pieces > 1 ? "/" + std::to_string(c) : ""), st.backward / pieces,
                                            {"backward", out.compute[static_cast<std::size_t>(s)], position++});
          if (c == 0) {
            bwd_first[static_cast<std::size_t>(s)][mb] = t;
            if (gather) w.add_dependency(g, t);
          } else {
            w.add_dependency(prev, t);
          }
          if (pieces > 1) chunks.push_back(t);
          prev = t;
        }
        bwd_last[static_cast<std::size_t>(s)][mb] = prev;
      }
    }
    // Gradient buckets on the communication stream, each after its chunk.
    sim::TaskId done = bwd_last[static_cast<std::size_t>(s)][static_cast<std::size_t>(last_b)];
    if (with_dp_comm && st.grad_reduce > 0) {
      const int pieces = std::max(1, st.buckets);
      for (int c = 0; c < pieces; ++c) {
        const sim::TaskId r = w.add_delay("grad_reduce " + std::to_string(s) + "/" + std::to_string(c), st.grad_reduce / pieces,
                                          {"dp_grad_reduce", out.comm[static_cast<std::size_t>(s)], comm_position++});
        w.add_dependency(chunks.empty() ? done : chunks[static_cast<std::size_t>(c)], r);
        done = r;
      }
    }
    const sim::TaskId opt = w.add_delay("optimizer " + std::to_string(s), st.optimizer,
                                        {"optimizer", out.compute[static_cast<std::size_t>(s)], position++});
    w.add_dependency(done, opt);
  }
  // Between stages: activations forward, gradients backward; and each stage's backward of
  // a micro-batch after its forward.
  for (int s = 0; s < pp; ++s) {
    const StageWork& st = stages[static_cast<std::size_t>(s)];
    for (int i = 0; i < m; ++i) {
      const auto S = static_cast<std::size_t>(s), I = static_cast<std::size_t>(i);
      w.add_dependency(fwd[S][I], bwd_first[S][I]);
      if (s + 1 < pp) {
        const sim::TaskId a = w.add_delay("send F" + std::to_string(s) + "." + std::to_string(i), st.send_forward, {"pp_send_recv"});
        w.add_dependency(fwd[S][I], a);
        w.add_dependency(a, fwd[S + 1][I]);
        const sim::TaskId g = w.add_delay("send B" + std::to_string(s + 1) + "." + std::to_string(i),
                                          stages[S + 1].send_backward, {"pp_send_recv"});
        w.add_dependency(bwd_last[S + 1][I], g);
        w.add_dependency(g, bwd_first[S][I]);
      }
    }
  }
  return out;
}

}  // namespace moesim
