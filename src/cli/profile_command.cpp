// `moesim profile --out profiles/NAME.json [--device cpu|cuda] [--model M] [--quick]`:
// measures the kernels of the model's layers on this device and, under mpirun, the
// collectives across the ranks; fits them and writes a measured profile (rank 0).
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>

#include "src/cli/commands.hpp"
#include "src/cli/progress_bar.hpp"
#include "src/cli/world.hpp"
#include "src/comm/mpi_communicator.hpp"
#if MOESIM_COMM_NCCL
#include "src/comm/nccl_communicator.hpp"
#endif
#include "src/core/atomic_file.hpp"
#include "src/core/error.hpp"
#include "src/core/table.hpp"
#include "src/cost/compute_model.hpp"
#include "src/model/model_json.hpp"
#include "src/profile/profile.hpp"
#include "src/profiler/measured_profile.hpp"

namespace moesim::cli {

namespace {

struct ProfileArgs {
  std::string out, device = "cpu", model, base, name;
  bool quick = false, no_comm = false, check = false;
};

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  return gethostname(buf, sizeof buf - 1) == 0 ? buf : "unknown";
}

std::string pct(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%+.1f%%", 100 * x);
  return b;
}
std::string num(double x, const char* f = "%.3g") {
  char b[32];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

void print_fits(const Profile& p, std::ostream& out) {
  Table t({"kernel", "bound", "samples", "efficiency", "overhead", "max |residual|"});
  for (const auto& [name, op] : p.compute.ops) {
    const double ceiling = op.bound == OpBound::flops ? p.peak(op.dtype) : p.compute.memory_bandwidth.value;
    double worst = 0;
    for (const OpSample& s : op.samples) {
      const double work = op.bound == OpBound::flops ? s.flops : s.bytes;
      const double fit = work / (op.efficiency.value * ceiling) + op.overhead.value;
      worst = std::max(worst, std::abs(fit - s.seconds) / s.seconds);
    }
    t.add_row({name, to_string(op.bound), std::to_string(op.samples.size()), num(op.efficiency.value, "%.3f"),
               human_seconds(op.overhead.value), num(100 * worst, "%.1f%%")});
  }
  t.print(out);
  if (p.comm.collectives.empty()) return;
  Table c({"collective", "ranks", "sizes", "alpha", "bandwidth (algbw)"});
  for (const CollectiveProfile& cp : p.comm.collectives)
    c.add_row({cp.op, std::to_string(cp.ranks), std::to_string(cp.samples.size()), human_seconds(cp.alpha.value),
               num(cp.bandwidth.value / 1e9, "%.2f GB/s")});
  out << "\n";
  c.print(out);
}

// Predicts held-out shapes with the new profile (and the base profile's roofline, when
// there is one), measures them, and prints the errors.
void print_check(ComputeBackend& backend, const Profile& measured, const std::optional<Profile>& base,
                 const ModelSpec& model, const GridOptions& grid, std::ostream& out) {
  std::vector<std::string> header{"held-out kernel", "shape", "measured", "predicted", "error"};
  if (base) header.push_back("public profile error");
  Table t(header);
  for (const OpPoint& p : held_out_grid(model, grid)) {
    const MeasuredPoint m = measure_point(backend, p);
    const auto predicted = measured_seconds(measured, p.kernel, p.dtype, m.sample.flops, m.sample.bytes, p.shape);
    std::string shape;
    for (const auto& [k, v] : p.shape) shape += (shape.empty() ? "" : " ") + k + "=" + std::to_string(v);
    std::vector<std::string> row{op_key(p.kernel, p.dtype), shape, human_seconds(m.sample.seconds),
                                 predicted ? human_seconds(*predicted) : "-",
                                 predicted ? pct(*predicted / m.sample.seconds - 1) : "-"};
    if (base) {
      Profile roofline = *base;
      roofline.compute.ops.clear();
      OpCost op{"", "", m.sample.flops, m.sample.bytes, 1, p.kernel, {}, 0};
      price(roofline, p.dtype, bound_of(p.kernel) == OpBound::flops ? roofline.compute.gemm_efficiency.value : 1.0, op);
      row.push_back(pct(op.seconds / m.sample.seconds - 1));
    }
    t.add_row(row);
  }
  t.print(out);
}

Provenance measured_provenance(const ComputeBackend& backend, const World& world, const std::string& transport) {
  Provenance prov;
  prov.kind = "measured";
  prov.host = host_name();
  prov.date = utc_now();
  (backend.kind() == "cpu" ? prov.cpu : prov.gpu) = backend.device();
  const auto versions = backend.versions();
  if (auto it = versions.find("driver"); it != versions.end()) prov.driver = it->second;
  if (auto it = versions.find("cuda"); it != versions.end()) prov.cuda = it->second;
  if (world.session) prov.mpi = mpi_library_version();
#if MOESIM_COMM_NCCL
  if (transport == "nccl") prov.nccl = nccl_version();
#else
  (void)transport;
#endif
  return prov;
}

// The public profile a GPU's measurements are laid over: --base, or the shipped one
// whose GPU matches the device's name.
Profile base_profile(const std::string& given, const ComputeBackend& backend) {
  if (!given.empty()) return load_profile(given);
  const auto gpu = gpu_model_of(backend.device());
  if (!gpu)
    throw InputError("--base", "", "expected the public profile of \"" + backend.device() +
                                       "\" (no shipped profile matches its name)");
  return load_profile("profiles/" + std::string(to_string(*gpu)) + ".json");
}

}  // namespace

Command add_profile(CLI::App& app) {
  auto a = std::make_shared<ProfileArgs>();
  CLI::App* cmd = app.add_subcommand(
      "profile", "Measure this machine's kernels (and, under mpirun, collectives); write a measured profile");
  cmd->add_option("--out", a->out, "profile JSON to write, e.g. profiles/cpu.json")->required();
  cmd->add_option("--device", a->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--model", a->model,
                  "model JSON whose layer shapes to measure (default: openlm-41m-e8 on cpu, fairseq-moe-4.1b on cuda)");
  cmd->add_option("--base", a->base, "public profile of this GPU (cuda; default: profiles/<gpu>.json by device name)");
  cmd->add_option("--name", a->name, "profile name (default: the --out file's stem)");
  cmd->add_flag("--quick", a->quick, "a smaller grid: fewer shapes and repeats");
  cmd->add_flag("--no-comm", a->no_comm, "skip the collectives");
  cmd->add_flag("--check", a->check, "also predict and measure held-out shapes, and print the errors");
  return {cmd, [a]() {
            World ranks;
            open_world(ranks, a->device);
            Communicator& world = ranks.get();
            const bool root = world.rank() == 0;
            const std::string model_path = !a->model.empty() ? a->model
                                           : a->device == "cuda" ? "configs/models/fairseq-moe-4.1b.json"
                                                                 : "configs/models/openlm-41m-e8.json";
            const ModelSpec model = load_model(model_path);
            TimingOptions timing;
            if (a->quick) {
              timing.min_repeats = 3;
              timing.target_seconds = 0.02;
            }
            std::unique_ptr<ComputeBackend> backend =
                a->device == "cuda" ? make_cuda_backend(timing) : make_cpu_backend(timing);
            std::optional<Profile> base;
            if (a->device == "cuda") base = base_profile(a->base, *backend);
            GridOptions grid{backend->kind(), backend->gemm_dtypes(), a->quick};
            const auto start = std::chrono::steady_clock::now();
            ProgressBar bar;
            if (!root) bar.on = false;

            MeasuredRun run;
            run.name = a->name.empty() ? std::filesystem::path(a->out).stem().string() : a->name;
            run.backend = backend->kind();
            // Rank 0 times the kernels while the others wait, so no two ranks share a
            // core or a GPU while a kernel is timed.
            if (root) run.compute = measure_points(*backend, profile_grid(model, grid), bar, a->quick ? 2 : 3);
            world.idle_barrier();
            if (!a->no_comm && world.size() > 1) {
              CollectiveGrid cg;
              if (a->quick) {
                cg.max_bytes = 64.0 * (1 << 20);
                cg.target_seconds = 0.05;
              }
              run.collectives = measure_collectives(world, cg, [&](int done, int total) { bar(done, total, "collectives"); });
              run.transport = world.name();
              // Nodes: distinct host names among the ranks.
              const std::vector<std::string> hosts = world.gather_strings(host_name());
              std::vector<std::string> distinct = hosts;
              std::sort(distinct.begin(), distinct.end());
              run.nodes = std::max<int>(1, static_cast<int>(std::unique(distinct.begin(), distinct.end()) - distinct.begin()));
            }
            if (!root) return 0;

            run.provenance = measured_provenance(*backend, ranks, run.transport);
            const Profile profile = make_measured_profile(run, base);
            write_file_atomically(a->out, profile_to_json(profile).dump(2) + "\n");
            const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            std::cout << "profile " << profile.name << " (" << backend->device() << ", " << run.compute.size()
                      << " kernel shapes, " << run.collectives.size() << " collective sizes on " << world.size()
                      << " ranks) written to " << a->out << " in " << num(took, "%.0f") << " s\n\n";
            print_fits(profile, std::cout);
            if (a->check) {
              std::cout << "\n";
              print_check(*backend, profile, base, model, grid, std::cout);
            }
            return 0;
          }};
}

}  // namespace moesim::cli
