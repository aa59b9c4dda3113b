// Measuring and fitting the compute kernels; see compute_profiler.hpp.
#include "src/profiler/compute_profiler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <cstdio>
#include <stdexcept>

#include "src/profile/fit.hpp"

namespace moesim {
namespace {

int dim(const OpPoint& p, const char* key) { return static_cast<int>(p.shape.at(key)); }

double run(ComputeBackend& b, const OpPoint& p) {
  const std::string& k = p.kernel;
  if (k == "gemm") return b.gemm(dim(p, "m"), dim(p, "n"), dim(p, "k"), p.dtype);
  if (k == "grouped_gemm") {
    const std::vector<int> counts(static_cast<std::size_t>(dim(p, "experts")), dim(p, "tokens_per_expert"));
    return b.grouped_gemm(counts, dim(p, "k"), dim(p, "n"), p.dtype);
  }
  if (k == "permute") return b.permute(dim(p, "tokens"), dim(p, "d"), dim(p, "top_k"), dim(p, "experts"));
  if (k == "unpermute") return b.unpermute(dim(p, "tokens"), dim(p, "d"), dim(p, "top_k"), dim(p, "experts"));
  if (k == "gate") return b.gate(dim(p, "tokens"), dim(p, "experts"), dim(p, "top_k"));
  if (k == "layer_norm") return b.layer_norm(dim(p, "rows"), dim(p, "cols"));
  if (k == "bias_gelu") return b.bias_gelu(dim(p, "rows"), dim(p, "cols"));
  if (k == "cross_entropy") return b.cross_entropy(dim(p, "rows"), dim(p, "classes"));
  if (k == "adam") return b.adam(static_cast<std::size_t>(p.shape.at("params")));
  if (k == "copy") return b.copy(static_cast<std::size_t>(p.shape.at("bytes")));
  throw std::invalid_argument("measure_point: unknown kernel " + k);
}

std::string label_of(const OpPoint& p) {
  std::string s = op_key(p.kernel, p.dtype);
  for (const auto& [name, v] : p.shape) s += " " + name + "=" + std::to_string(v);
  return s;
}

MeasuredPoint measure_point_work(const OpPoint& point) {
  const Work w = work_of(point);
  return {point, {point.shape, w.flops, w.bytes, 0.0}};
}

}  // namespace

MeasuredPoint measure_point(ComputeBackend& backend, const OpPoint& point) {
  MeasuredPoint m = measure_point_work(point);
  m.sample.seconds = run(backend, point);
  return m;
}

std::vector<MeasuredPoint> measure_points(ComputeBackend& backend, const std::vector<OpPoint>& points,
                                          const std::function<void(int, int, const std::string&)>& progress,
                                          int passes) {
  std::vector<MeasuredPoint> out;
  for (const OpPoint& p : points) out.push_back(measure_point_work(p));
  std::vector<std::vector<double>> times(points.size());
  std::vector<std::size_t> order(points.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::mt19937 rng(12345);  // fixed: the same grid is measured in the same orders
  const int total = static_cast<int>(points.size()) * passes;
  int done = 0;
  for (int pass = 0; pass < passes; ++pass) {
    if (passes > 1) std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t i : order) {
      times[i].push_back(run(backend, points[i]));
      if (progress) progress(++done, total, label_of(points[i]));
    }
  }
  for (std::size_t i = 0; i < points.size(); ++i) {
    std::vector<double>& t = times[i];
    std::sort(t.begin(), t.end());
    const std::size_t n = t.size();
    out[i].sample.seconds = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
  }
  return out;
}

std::map<std::string, OpProfile> fit_ops(const std::vector<MeasuredPoint>& measured, const Profile& ceilings,
                                         const std::string& how) {
  std::map<std::string, OpProfile> ops;
  for (const MeasuredPoint& m : measured) {
    OpProfile& op = ops[op_key(m.point.kernel, m.point.dtype)];
    op.bound = bound_of(m.point.kernel);
    op.dtype = m.point.dtype;
    op.samples.push_back(m.sample);
  }
  for (auto& [name, op] : ops) {
    const bool flops = op.bound == OpBound::flops;
    const double ceiling = flops ? ceilings.peak(op.dtype) : ceilings.compute.memory_bandwidth.value;
    if (!(ceiling > 0)) throw std::runtime_error("fit_ops: no ceiling for " + name);
    const RooflineFit fit = fit_op(op.samples, op.bound, ceiling);
    const std::string note = "; fit over " + std::to_string(op.samples.size()) + " samples, " +
                             residual_summary(fit.relative_residuals);
    const std::string of = flops ? "peak_flops." + std::string(to_string(op.dtype)) : "memory_bandwidth";
    op.efficiency = {fit.efficiency, how + ": t = work/(efficiency * " + of + ") + overhead" + note};
    op.overhead = {fit.overhead, how + ": the same fit's fixed seconds per launch"};
  }
  return ops;
}

}  // namespace moesim
