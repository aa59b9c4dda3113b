// Weighted linear least squares with Eigen for the profile fits.
#include "src/profile/fit.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <tuple>

#include <Eigen/Dense>

namespace moesim {
namespace {

// Solves min sum ((a x_i + b - t_i) / t_i)^2 for (a, b).
std::pair<double, double> relative_least_squares(std::span<const double> x, std::span<const double> t) {
  assert(x.size() == t.size() && x.size() >= 2);
  const Eigen::Index n = static_cast<Eigen::Index>(x.size());
  Eigen::MatrixXd A(n, 2);
  Eigen::VectorXd y(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const double w = 1.0 / t[static_cast<std::size_t>(i)];
    A(i, 0) = x[static_cast<std::size_t>(i)] * w;
    A(i, 1) = w;
    y(i) = 1.0;
  }
  Eigen::Vector2d ab = A.colPivHouseholderQr().solve(y);
  return {ab(0), ab(1)};
}

}  // namespace

RooflineFit fit_gemm(std::span<const GemmSample> samples, double peak) {
  std::vector<double> x, t;
  for (const GemmSample& s : samples) {
    x.push_back(2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) / peak);
    t.push_back(s.seconds);
  }
  auto [a, b] = relative_least_squares(x, t);
  RooflineFit fit{1.0 / a, b, {}};
  for (std::size_t i = 0; i < x.size(); ++i) fit.relative_residuals.push_back((a * x[i] + b - t[i]) / t[i]);
  return fit;
}

double work_of(const OpSample& s, OpBound bound) { return bound == OpBound::flops ? s.flops : s.bytes; }

RooflineFit fit_op(std::span<const OpSample> samples, OpBound bound, double ceiling) {
  std::vector<double> x, t;
  for (const OpSample& s : samples) {
    x.push_back(work_of(s, bound) / ceiling);
    t.push_back(s.seconds);
  }
  double a = 0, b = 0;
  if (x.size() >= 2) std::tie(a, b) = relative_least_squares(x, t);
  if (x.size() < 2 || b < 0 || a <= 0) {
    // Through the origin: a = sum(x/t) / sum((x/t)^2) minimises sum((a x - t)/t)^2.
    double num = 0, den = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      num += x[i] / t[i];
      den += (x[i] / t[i]) * (x[i] / t[i]);
    }
    a = den > 0 ? num / den : 0;
    b = 0;
  }
  RooflineFit fit{a > 0 ? 1.0 / a : 0.0, b, {}};
  for (std::size_t i = 0; i < x.size(); ++i) fit.relative_residuals.push_back((a * x[i] + b - t[i]) / t[i]);
  return fit;
}

std::string residual_summary(std::span<const double> r) {
  double sum = 0, worst = 0;
  for (double x : r) {
    sum += x * x;
    worst = std::max(worst, std::abs(x));
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "residuals rms %.1f%%, max %.1f%%",
                r.empty() ? 0.0 : 100 * std::sqrt(sum / static_cast<double>(r.size())), 100 * worst);
  return buf;
}

AlphaBetaFit fit_alpha_beta(std::span<const double> bytes, std::span<const double> seconds) {
  auto [inv_bw, alpha] = relative_least_squares(bytes, seconds);
  AlphaBetaFit fit{alpha, 1.0 / inv_bw, {}};
  for (std::size_t i = 0; i < bytes.size(); ++i)
    fit.relative_residuals.push_back((alpha + bytes[i] * inv_bw - seconds[i]) / seconds[i]);
  return fit;
}

}  // namespace moesim
