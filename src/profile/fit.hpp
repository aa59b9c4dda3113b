// Least-squares fits (Eigen) that turn measured or published tables into the figures of
// a profile: GEMM efficiency and per-kernel fixed cost; alpha-beta of a collective.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "src/profile/profile.hpp"

namespace moesim {

struct RooflineFit {
  double efficiency = 0;        // fraction of `peak` that large GEMMs reach
  double overhead = 0;          // seconds per kernel
  std::vector<double> relative_residuals;  // (model - sample) / sample, per sample
};

// Fits t = flops / (efficiency * peak) + overhead, minimising relative error (so small
// and large GEMMs weigh alike).
RooflineFit fit_gemm(std::span<const GemmSample> samples, double peak);

// Fits t = work / (efficiency * ceiling) + overhead to a measured kernel's samples (work:
// FLOPs for bound flops, bytes for bound bytes), minimising relative error. A negative
// overhead (noise on kernels with no fixed cost) is refitted as zero.
RooflineFit fit_op(std::span<const OpSample> samples, OpBound bound, double ceiling);

// The work a sample is measured against: its FLOPs or its bytes.
double work_of(const OpSample& s, OpBound bound);

// "residuals rms 7.2%, max 26.0%": how well a fit's relative residuals describe its table,
// for the figure's source.
std::string residual_summary(std::span<const double> relative_residuals);

struct AlphaBetaFit {
  double alpha = 0;      // seconds
  double bandwidth = 0;  // bytes/s
  std::vector<double> relative_residuals;
};

// Fits t = alpha + bytes / bandwidth to (bytes, seconds) points, minimising relative error.
AlphaBetaFit fit_alpha_beta(std::span<const double> bytes, std::span<const double> seconds);

}  // namespace moesim
