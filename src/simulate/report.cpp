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
}

}  // namespace moesim
