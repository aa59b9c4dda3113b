// Renders a simulation result for tools (JSON) and people (tables).
#include "src/simulate/report.hpp"

#include <cstdio>

#include "src/core/table.hpp"

namespace moesim {

nlohmann::ordered_json sim_result_json(const SimResult& r) {
  nlohmann::ordered_json j;
  j["mode"] = r.mode;
  j["iteration_s"] = r.iteration_s;
  j["tokens_per_iteration"] = r.tokens;
  j["wps"] = r.wps;
  j["wps_per_gpu"] = r.wps_per_gpu;
  j["tflops_per_gpu"] = r.tflops_per_gpu;
  j["mfu"] = r.mfu;
  j["fits"] = r.fits;
  const MemoryBreakdown& b = r.memory.bytes;
  j["memory"] = {{"peak_per_rank_bytes", b.total()},
                 {"gpu_memory_bytes", r.gpu_memory},
                 {"stage", r.memory.stage},
                 {"weights", b.weights},
                 {"grads", b.grads},
                 {"optimizer", b.master + b.optimizer},
                 {"activations", b.activations},
                 {"dispatch_buffers", b.dispatch_buffers}};
  nlohmann::ordered_json compute = nlohmann::ordered_json::object(), comm = nlohmann::ordered_json::object();
  for (const auto& [k, v] : r.breakdown.compute) compute[k] = v;
  for (const auto& [k, v] : r.breakdown.exposed_comm) comm[k] = v;
  j["breakdown"] = {{"compute_s", compute},
                    {"exposed_comm_s", comm},
                    {"bubble_s", r.breakdown.bubble},
                    {"optimizer_s", r.breakdown.optimizer}};
  if (r.balance.present) {
    const SimBalance& bl = r.balance;
    const kernels::GateStats& s = bl.stats;
    nlohmann::ordered_json bal{{"routing", bl.routing},
                               {"capacity", bl.capacity > 0 ? nlohmann::ordered_json(bl.capacity) : nullptr},
                               {"overflow_expert1", s.overflow_expert1},
                               {"overflow_expert2", s.overflow_expert2},
                               {"entropy_gating", bl.has_entropy ? nlohmann::ordered_json(s.entropy_gating) : nullptr},
                               {"expert1_balance_top", s.expert1_balance_top},
                               {"expert1_balance_bottom", s.expert1_balance_bottom},
                               {"expert2_balance_top", s.expert2_balance_top},
                               {"expert2_balance_bottom", s.expert2_balance_bottom},
                               {"unused_expert1_count", s.unused_expert1_count},
                               {"unused_expert2_count", s.unused_expert2_count},
                               {"dropped_fraction", bl.dropped_fraction},
                               {"max_tokens_per_rank", bl.max_tokens_per_rank},
                               {"mean_tokens_per_rank", bl.mean_tokens_per_rank},
                               {"max_rank", bl.max_rank},
                               {"demand_per_expert", bl.demand_per_expert},
                               {"kept_per_expert", bl.kept_per_expert}};
    j["balance"] = bal;
  }
  return j;
}

void print_sim_result(const SimResult& r, std::ostream& out) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "iteration %.4f s (%s tier)  %.0f tokens/s  %.0f tokens/s/GPU  %.1f TFLOP/s/GPU  MFU %.1f%%\n",
                r.iteration_s, r.mode.c_str(), r.wps, r.wps_per_gpu, r.tflops_per_gpu, 100 * r.mfu);
  out << buf;
  out << "peak memory per rank " << human_bytes(r.memory.bytes.total()) << " of " << human_bytes(r.gpu_memory) << ": "
      << (r.fits ? "fits" : "does NOT fit") << "\n\n";
  Table t({"time per iteration", "seconds", "share"});
  auto row = [&](const std::string& name, double s) {
    char v[32], f[32];
    std::snprintf(v, sizeof v, "%.4f", s);
    std::snprintf(f, sizeof f, "%.1f%%", 100 * s / r.iteration_s);
    t.add_row({name, v, f});
  };
  for (const auto& [k, v] : r.breakdown.compute) row("compute: " + k, v);
  for (const auto& [k, v] : r.breakdown.exposed_comm) row("exposed comm: " + k, v);
  row("pipeline bubble", r.breakdown.bubble);
  row("optimizer step", r.breakdown.optimizer);
  t.print(out);
  if (!r.balance.present) return;
  const SimBalance& b = r.balance;
  const kernels::GateStats& s = b.stats;
  out << "\nexpert balance (" << b.routing << " routing, one micro-batch of one rank, capacity "
      << (b.capacity > 0 ? std::to_string(b.capacity) : std::string("none: dropless")) << ")\n";
  std::snprintf(buf, sizeof buf, "  overflow_expert1 %.2f%%  overflow_expert2 %.2f%%  entropy_gating %s\n",
                s.overflow_expert1, s.overflow_expert2,
                b.has_entropy ? std::to_string(s.entropy_gating).substr(0, 6).c_str() : "n/a");
  out << buf;
  std::snprintf(buf, sizeof buf, "  expert1_balance_top %.2f%%  expert1_balance_bottom %.2f%%  unused_expert1_count %d\n",
                s.expert1_balance_top, s.expert1_balance_bottom, s.unused_expert1_count);
  out << buf;
  std::snprintf(buf, sizeof buf, "  expert token slots per EP rank: max %.0f (rank %d), mean %.0f, max/mean %.3f\n",
                b.max_tokens_per_rank, b.max_rank, b.mean_tokens_per_rank,
                b.mean_tokens_per_rank > 0 ? b.max_tokens_per_rank / b.mean_tokens_per_rank : 0.0);
  out << buf;
}

}  // namespace moesim
