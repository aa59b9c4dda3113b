// CPU reference of LayerNorm and RMSNorm, forward and backward.
#include "kernels/norm.hpp"

#include <cmath>
#include <vector>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

namespace {

void check_shapes(const char* fn, std::size_t x, std::size_t gamma, int rows, int cols)
{
    require(rows >= 0 && cols >= 1, fn, "needs rows >= 0 and cols >= 1");
    require_size(x, elems(rows, cols), fn, "x");
    require_size(gamma, static_cast<std::size_t>(cols), fn, "gamma");
}

void check_optional(const char* fn, std::span<float> v, int cols, const char* name)
{
    require(v.empty() || v.size() == static_cast<std::size_t>(cols), fn,
            std::string(name) + " must be empty or have cols entries");
}

}  // namespace

void layer_norm(std::span<const float> x, std::span<const float> gamma,
                std::span<const float> beta, int rows, int cols, float eps, std::span<float> y,
                std::span<float> mean, std::span<float> rstd)
{
    const char* fn = "layer_norm";
    check_shapes(fn, x.size(), gamma.size(), rows, cols);
    require_size(beta.size(), static_cast<std::size_t>(cols), fn, "beta");
    require_size(y.size(), x.size(), fn, "y");
    require_size(mean.size(), static_cast<std::size_t>(rows), fn, "mean");
    require_size(rstd.size(), static_cast<std::size_t>(rows), fn, "rstd");
    for (int r = 0; r < rows; ++r) {
        const float* in = x.data() + elems(r, cols);
        double sum = 0;
        for (int c = 0; c < cols; ++c) {
            sum += in[c];
        }
        const double mu = sum / cols;
        double var = 0;
        for (int c = 0; c < cols; ++c) {
            var += (in[c] - mu) * (in[c] - mu);
        }
        var /= cols;
        const float m = static_cast<float>(mu);
        const float s = static_cast<float>(1.0 / std::sqrt(var + eps));
        mean[r] = m;
        rstd[r] = s;
        float* out = y.data() + elems(r, cols);
        for (int c = 0; c < cols; ++c) {
            out[c] = (in[c] - m) * s * gamma[c] + beta[c];
        }
    }
}

void layer_norm_backward(std::span<const float> dy, std::span<const float> x,
                         std::span<const float> gamma, std::span<const float> mean,
                         std::span<const float> rstd, int rows, int cols, std::span<float> dx,
                         std::span<float> dgamma, std::span<float> dbeta)
{
    const char* fn = "layer_norm_backward";
    check_shapes(fn, x.size(), gamma.size(), rows, cols);
    require_size(dy.size(), x.size(), fn, "dy");
    require_size(dx.size(), x.size(), fn, "dx");
    require_size(mean.size(), static_cast<std::size_t>(rows), fn, "mean");
    require_size(rstd.size(), static_cast<std::size_t>(rows), fn, "rstd");
    check_optional(fn, dgamma, cols, "dgamma");
    check_optional(fn, dbeta, cols, "dbeta");
    std::vector<double> dg(cols, 0.0), db(cols, 0.0);
    for (int r = 0; r < rows; ++r) {
        const float* in = x.data() + elems(r, cols);
        const float* g = dy.data() + elems(r, cols);
        const float m = mean[r], s = rstd[r];
        // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma.
        double sum_dxhat = 0, sum_dxhat_xhat = 0;
        for (int c = 0; c < cols; ++c) {
            const double xhat = (in[c] - m) * s;
            const double dxhat = static_cast<double>(g[c]) * gamma[c];
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * xhat;
            dg[c] += g[c] * xhat;
            db[c] += g[c];
        }
        const double a = sum_dxhat / cols, b = sum_dxhat_xhat / cols;
        float* out = dx.data() + elems(r, cols);
        for (int c = 0; c < cols; ++c) {
            const double xhat = (in[c] - m) * s;
            out[c] = static_cast<float>(s * (static_cast<double>(g[c]) * gamma[c] - a - xhat * b));
        }
    }
    for (int c = 0; c < cols && !dgamma.empty(); ++c) {
        dgamma[c] = static_cast<float>(dg[c]);
    }
    for (int c = 0; c < cols && !dbeta.empty(); ++c) {
        dbeta[c] = static_cast<float>(db[c]);
    }
}

void rms_norm(std::span<const float> x, std::span<const float> gamma, int rows, int cols,
              float eps, std::span<float> y, std::span<float> rstd)
{
    const char* fn = "rms_norm";
    check_shapes(fn, x.size(), gamma.size(), rows, cols);
    require_size(y.size(), x.size(), fn, "y");
    require_size(rstd.size(), static_cast<std::size_t>(rows), fn, "rstd");
    for (int r = 0; r < rows; ++r) {
        const float* in = x.data() + elems(r, cols);
        double sq = 0;
        for (int c = 0; c < cols; ++c) {
            sq += static_cast<double>(in[c]) * in[c];
        }
        const float s = static_cast<float>(1.0 / std::sqrt(sq / cols + eps));
        rstd[r] = s;
        float* out = y.data() + elems(r, cols);
        for (int c = 0; c < cols; ++c) {
            out[c] = in[c] * s * gamma[c];
        }
    }
}

void rms_norm_backward(std::span<const float> dy, std::span<const float> x,
                       std::span<const float> gamma, std::span<const float> rstd, int rows,
                       int cols, std::span<float> dx, std::span<float> dgamma)
{
    const char* fn = "rms_norm_backward";
    check_shapes(fn, x.size(), gamma.size(), rows, cols);
    require_size(dy.size(), x.size(), fn, "dy");
    require_size(dx.size(), x.size(), fn, "dx");
    require_size(rstd.size(), static_cast<std::size_t>(rows), fn, "rstd");
    check_optional(fn, dgamma, cols, "dgamma");
    std::vector<double> dg(cols, 0.0);
    for (int r = 0; r < rows; ++r) {
        const float* in = x.data() + elems(r, cols);
        const float* g = dy.data() + elems(r, cols);
        const float s = rstd[r];
        // dx = rstd * (dxhat - xhat * mean(dxhat * xhat)), xhat = x * rstd.
        double sum_dxhat_xhat = 0;
        for (int c = 0; c < cols; ++c) {
            const double xhat = static_cast<double>(in[c]) * s;
            sum_dxhat_xhat += static_cast<double>(g[c]) * gamma[c] * xhat;
            dg[c] += g[c] * xhat;
        }
        const double b = sum_dxhat_xhat / cols;
        float* out = dx.data() + elems(r, cols);
        for (int c = 0; c < cols; ++c) {
            const double xhat = static_cast<double>(in[c]) * s;
            out[c] = static_cast<float>(s * (static_cast<double>(g[c]) * gamma[c] - xhat * b));
        }
    }
    for (int c = 0; c < cols && !dgamma.empty(); ++c) {
        dgamma[c] = static_cast<float>(dg[c]);
    }
}

}  // namespace moesim::kernels
