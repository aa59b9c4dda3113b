// The profiler: the work each kernel is measured against, the fits and the measured-table
// interpolation (exact on synthetic tables), measured profiles written and read back, and
// a CPU held-out check (grid and held-out shapes measured side by side in one run).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "src/core/error.hpp"
#include "src/cost/comm_model.hpp"
#include "src/cost/compute_model.hpp"
#include "src/model/model_json.hpp"
#include "src/profile/fit.hpp"
#include "src/profiler/compute_profiler.hpp"
#include "src/profiler/measured_profile.hpp"

namespace moesim {
namespace {

TEST(OpWork, ClosedForms) {
  const Work g = work_of({"gemm", DType::bf16, {{"m", 4}, {"n", 5}, {"k", 6}}});
  EXPECT_EQ(g.flops, 2.0 * 4 * 5 * 6);
  EXPECT_EQ(g.bytes, 2.0 * (4 * 6 + 5 * 6 + 4 * 5));
  const Work gg = work_of({"grouped_gemm", DType::fp32, {{"experts", 3}, {"tokens_per_expert", 7}, {"n", 5}, {"k", 6}}});
  EXPECT_EQ(gg.flops, 2.0 * 21 * 5 * 6);
  EXPECT_EQ(gg.bytes, 4.0 * (21 * 6 + 3 * 5 * 6 + 21 * 5));
  const Work p = work_of({"permute", DType::fp32, {{"tokens", 10}, {"d", 8}, {"top_k", 2}, {"experts", 4}}});
  EXPECT_EQ(p.bytes, 2 * 4.0 * 20 * 8 + 20 * 4);
  EXPECT_EQ(work_of({"copy", DType::fp32, {{"bytes", 1000}}}).bytes, 2000);
  EXPECT_EQ(work_of({"adam", DType::fp32, {{"params", 10}}}).bytes, 7 * 4 * 10);
  EXPECT_EQ(bound_of("grouped_gemm"), OpBound::flops);
  EXPECT_EQ(bound_of("permute"), OpBound::bytes);
}

TEST(OpGrid, HeldOutShapesAreNotInTheGrid) {
  const ModelSpec m = load_model("configs/models/openlm-41m-e8.json");
  for (bool quick : {true, false}) {
    const GridOptions o{"cpu", {DType::fp32}, quick};
    const auto grid = profile_grid(m, o);
    for (const OpPoint& h : held_out_grid(m, o))
      for (const OpPoint& g : grid)
        EXPECT_FALSE(g.kernel == h.kernel && g.dtype == h.dtype && g.shape == h.shape) << op_key(h.kernel, h.dtype);
  }
}

// A synthetic table t = work / (eff * ceiling) + c, times a per-sample factor.
OpProfile synthetic(OpBound bound, double eff, double ceiling, double c, const std::vector<double>& factors) {
  OpProfile op;
  op.bound = bound;
  op.dtype = DType::fp32;
  for (std::size_t i = 0; i < factors.size(); ++i) {
    const std::int64_t m = std::int64_t{64} << (2 * i);
    OpSample s{{{"m", m}, {"n", 256}, {"k", 512}}, 2.0 * static_cast<double>(m) * 256 * 512, 4.0 * static_cast<double>(m) * 1024, 0};
    s.seconds = ((bound == OpBound::flops ? s.flops : s.bytes) / (eff * ceiling) + c) * factors[i];
    op.samples.push_back(s);
  }
  return op;
}

TEST(OpFit, RecoversExactParametersAndRefitsNegativeOverheadAsZero) {
  const OpProfile op = synthetic(OpBound::flops, 0.8, 1e12, 5e-6, {1, 1, 1, 1});
  const RooflineFit f = fit_op(op.samples, OpBound::flops, 1e12);
  EXPECT_NEAR(f.efficiency, 0.8, 1e-12);
  EXPECT_NEAR(f.overhead, 5e-6, 1e-15);
  // Times proportional to work minus a constant would fit a negative overhead.
  OpProfile neg = synthetic(OpBound::bytes, 0.5, 1e10, 0, {1, 1, 1, 1});
  for (OpSample& s : neg.samples) s.seconds -= 1e-7;
  const RooflineFit z = fit_op(neg.samples, OpBound::bytes, 1e10);
  EXPECT_EQ(z.overhead, 0.0);
  EXPECT_GT(z.efficiency, 0.5);
}

Profile cpu_ceilings() {
  Profile p;
  p.device = GpuModel::cpu;
  p.compute.peak_flops[DType::fp32] = {1e12, "test"};
  p.compute.memory_bandwidth = {1e10, "test"};
  p.compute.memory_efficiency = {1.0, "test"};
  p.compute.gemm_efficiency = {1.0, "test"};
  return p;
}

TEST(MeasuredSeconds, EqualsTheFitOnAnExactTableAndInterpolatesRatios) {
  Profile p = cpu_ceilings();
  OpProfile op = synthetic(OpBound::flops, 0.8, 1e12, 5e-6, {1, 1, 1, 1});
  op.efficiency = {0.8, "test"};
  op.overhead = {5e-6, "test"};
  p.compute.ops["gemm_fp32"] = op;
  const double flops = 2.0 * 300 * 256 * 512;
  const double fit = flops / 0.8e12 + 5e-6;
  EXPECT_NEAR(*measured_seconds(p, "gemm", DType::fp32, flops, 0, {{"m", 300}, {"n", 256}, {"k", 512}}), fit, 1e-15);
  EXPECT_NEAR(*measured_seconds(p, "gemm", DType::fp32, flops, 0), fit, 1e-15);
  // Every sample 1.25x the fit: so is every prediction, measured or not.
  for (OpSample& s : p.compute.ops["gemm_fp32"].samples) s.seconds *= 1.25;
  EXPECT_NEAR(*measured_seconds(p, "gemm", DType::fp32, flops, 0), 1.25 * fit, 1e-12 * fit);
  // A sample is reproduced where it alone is near: the first, far below the others.
  const OpSample& first = p.compute.ops["gemm_fp32"].samples.front();
  p.compute.ops["gemm_fp32"].samples.front().seconds *= 2;
  const double at_first = *measured_seconds(p, "gemm", DType::fp32, first.flops, 0, first.shape);
  EXPECT_NEAR(at_first / first.seconds, 1.0, 0.03);
  // A FLOP-bound kernel needs its own dtype; a byte-bound one takes any.
  EXPECT_FALSE(measured_seconds(p, "gemm", DType::bf16, flops, 0));
  EXPECT_FALSE(measured_seconds(p, "permute", DType::fp32, 0, 1e6));
  OpProfile perm = synthetic(OpBound::bytes, 0.5, 1e10, 1e-6, {1, 1});
  perm.efficiency = {0.5, "t"};
  perm.overhead = {1e-6, "t"};
  p.compute.ops["permute_fp32"] = perm;
  EXPECT_NEAR(*measured_seconds(p, "permute", DType::bf16, 0, 1e6), 1e6 / 0.5e10 + 1e-6, 1e-15);
}

MeasuredRun synthetic_cpu_run() {
  MeasuredRun run;
  run.name = "cpu-test";
  run.backend = "cpu";
  run.transport = "mpi";
  run.provenance = {"measured", "", "host", "2026-11-22T00:00:00Z", "Test CPU", "", "", "", "", "Open MPI"};
  // GEMMs at 50 GFLOP/s + 2 us; copies at 8 GB/s (read + write); layer norms at 4 GB/s.
  for (std::int64_t m : {16, 64, 256, 1024}) {
    OpPoint pt{"gemm", DType::fp32, {{"m", m}, {"n", 512}, {"k", 512}}};
    const Work w = work_of(pt);
    run.compute.push_back({pt, {pt.shape, w.flops, w.bytes, w.flops / 50e9 + 2e-6}});
    OpPoint ln{"layer_norm", DType::fp32, {{"rows", m}, {"cols", 512}}};
    const Work lw = work_of(ln);
    run.compute.push_back({ln, {ln.shape, lw.flops, lw.bytes, lw.bytes / 4e9}});
  }
  for (std::int64_t b : {1 << 20, 1 << 24}) {
    OpPoint pt{"copy", DType::fp32, {{"bytes", b}}};
    const Work w = work_of(pt);
    run.compute.push_back({pt, {pt.shape, w.flops, w.bytes, w.bytes / 8e9}});
  }
  for (double bytes : {1024.0, 65536.0, 4194304.0}) {
    run.collectives.push_back({BenchCollective::all_reduce, 2, bytes, 3e-6 + bytes / 2e9, 0, 0});
    run.collectives.push_back({BenchCollective::all_to_all, 2, bytes, 4e-6 + bytes / 5e9, 0, 0});
  }
  return run;
}

TEST(MeasuredProfile, CpuCeilingsAreMeasuredAndTheFileRoundTrips) {
  const Profile p = make_measured_profile(synthetic_cpu_run(), std::nullopt);
  EXPECT_EQ(p.device, GpuModel::cpu);
  EXPECT_NEAR(p.peak(DType::fp32), 50e9, 50e9 * 1e-9);
  EXPECT_NEAR(p.compute.memory_bandwidth.value, 8e9, 8e9 * 1e-9);
  EXPECT_NEAR(p.compute.gemm_efficiency.value, 1.0, 1e-9);
  EXPECT_NEAR(p.compute.kernel_overhead.value, 2e-6, 1e-12);
  EXPECT_NEAR(p.compute.ops.at("layer_norm_fp32").efficiency.value, 0.5, 1e-9);
  ASSERT_EQ(p.comm.collectives.size(), 2u);
  EXPECT_EQ(p.comm.collectives[0].op, "all_reduce");
  EXPECT_NEAR(p.comm.collectives[0].alpha.value, 3e-6, 1e-12);
  EXPECT_NEAR(p.comm.collectives[0].bandwidth.value, 2e9, 2e9 * 1e-6);
  // The written profile reads back to the same figures, to the bit.
  const std::string text = profile_to_json(p).dump(2);
  const Profile again = profile_from_json(nlohmann::json::parse(text), "rt.json");
  EXPECT_EQ(profile_to_json(again).dump(2), text);
  EXPECT_EQ(again.compute.ops.at("gemm_fp32").samples.size(), 4u);
  EXPECT_EQ(again.provenance.cpu, "Test CPU");
  // The communication model uses the measured fit for that collective on that many ranks.
  ClusterSpec cluster;
  const CollectiveCost c = collective_cost(again, cluster, Collective::all_to_all, {2, 1}, 1e6);
  EXPECT_NEAR(c.seconds, 4e-6 + 1e6 / 5e9, 1e-15);
}

TEST(MeasuredProfile, BadTablesNameTheField) {
  nlohmann::json j = nlohmann::json::parse(profile_to_json(make_measured_profile(synthetic_cpu_run(), std::nullopt)).dump());
  j["compute"]["ops"]["gemm_fp32"]["table"][1] = {1, 2, 3, 4, 5, -6};
  try {
    profile_from_json(j, "p.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(),
                 "p.json: field 'compute.ops.gemm_fp32.table': expected rows of 6 non-negative numbers, got an array [1,2,3,4,5,-6]");
  }
  j = nlohmann::json::parse(profile_to_json(make_measured_profile(synthetic_cpu_run(), std::nullopt)).dump());
  j["communication"]["collectives"][0]["columns"] = {"size", "seconds"};
  try {
    profile_from_json(j, "p.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "p.json: field 'communication.collectives[0].columns': expected a list of column names ending "
                           "with \"bytes\" \"seconds\"");
  }
}

TEST(MeasuredProfile, GpuNamesMapToTheirPublicProfiles) {
  EXPECT_EQ(gpu_model_of("NVIDIA H100 80GB HBM3"), GpuModel::h100_sxm5_80gb);
  EXPECT_EQ(gpu_model_of("NVIDIA H100 PCIe"), GpuModel::h100_pcie_80gb);
  EXPECT_EQ(gpu_model_of("NVIDIA A100-SXM4-80GB"), GpuModel::a100_sxm4_80gb);
  EXPECT_EQ(gpu_model_of("NVIDIA A100-SXM4-40GB"), GpuModel::a100_sxm4_40gb);
  EXPECT_EQ(gpu_model_of("Tesla V100-SXM2-32GB"), GpuModel::v100_sxm2_32gb);
  EXPECT_FALSE(gpu_model_of("NVIDIA GeForce RTX 4090"));
}

// The acceptance check of the CPU profile: fit the quick grid, predict shapes it did not
// measure, and compare with their measurement. Grid and held-out points are measured
// together, in three shuffled passes, so a slow spell of this shared machine hits both alike.
TEST(HeldOut, CpuPredictionsOfUnmeasuredShapes) {
  const ModelSpec model = load_model("configs/models/openlm-41m-e8.json");
  const GridOptions grid{"cpu", {DType::fp32}, true};
  const std::vector<OpPoint> fit_points = profile_grid(model, grid), held = held_out_grid(model, grid);
  std::vector<OpPoint> all = fit_points;
  all.insert(all.end(), held.begin(), held.end());
  TimingOptions timing;
  timing.min_repeats = 3;
  timing.target_seconds = 0.02;
  auto backend = make_cpu_backend(timing);
  std::vector<MeasuredPoint> measured = measure_points(*backend, all, {}, 3);
  MeasuredRun run;
  run.name = "held-out";
  run.backend = "cpu";
  run.provenance.kind = "measured";
  run.compute.assign(measured.begin(), measured.begin() + static_cast<std::ptrdiff_t>(fit_points.size()));
  const std::vector<MeasuredPoint> held_measured(measured.begin() + static_cast<std::ptrdiff_t>(fit_points.size()),
                                                 measured.end());
  const Profile profile = make_measured_profile(run, std::nullopt);
  std::vector<double> errors;
  std::printf("%-20s %-48s %12s %12s %8s\n", "held-out kernel", "shape", "measured", "predicted", "error");
  for (const MeasuredPoint& m : held_measured) {
    const auto t = measured_seconds(profile, m.point.kernel, m.point.dtype, m.sample.flops, m.sample.bytes, m.point.shape);
    ASSERT_TRUE(t) << op_key(m.point.kernel, m.point.dtype);
    std::string shape;
    for (const auto& [k, v] : m.point.shape) shape += k + "=" + std::to_string(v) + " ";
    errors.push_back(*t / m.sample.seconds - 1);
    std::printf("%-20s %-48s %10.1f us %10.1f us %+7.1f%%\n", op_key(m.point.kernel, m.point.dtype).c_str(), shape.c_str(),
                m.sample.seconds * 1e6, *t * 1e6, 100 * errors.back());
  }
  std::vector<double> abs_errors;
  for (double e : errors) abs_errors.push_back(std::abs(e));
  std::sort(abs_errors.begin(), abs_errors.end());
  const double median = abs_errors[abs_errors.size() / 2];
  std::printf("held-out |error|: median %.1f%%, max %.1f%% over %zu shapes\n", 100 * median, 100 * abs_errors.back(),
              abs_errors.size());
  EXPECT_LE(median, 0.15);
}

}  // namespace
}  // namespace moesim
