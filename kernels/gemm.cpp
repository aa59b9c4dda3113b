// Eigen-backed row-major GEMM.
#include "kernels/gemm.hpp"

#include <Eigen/Core>
#include <vector>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

namespace {
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMatrix>;
using Map = Eigen::Map<RowMatrix>;
}  // namespace

void round_to_bf16(std::span<const float> in, std::span<float> out)
{
    require_size(out.size(), in.size(), "round_to_bf16", "out");
    for (std::size_t i = 0; i < in.size(); ++i) {
        out[i] = round_to_bf16(in[i]);
    }
}

void round_to(GemmPrecision precision, std::span<const float> in, std::span<float> out)
{
    require_size(out.size(), in.size(), "round_to", "out");
    for (std::size_t i = 0; i < in.size(); ++i) {
        out[i] = precision == GemmPrecision::bf16   ? round_to_bf16(in[i])
                 : precision == GemmPrecision::fp16 ? round_to_fp16(in[i])
                                                    : in[i];
    }
}

void gemm(Trans trans_a, Trans trans_b, int m, int n, int k, float alpha,
          std::span<const float> a, std::span<const float> b, float beta, std::span<float> c,
          GemmPrecision precision)
{
    require(m >= 0 && n >= 0 && k >= 0, "gemm", "m, n and k must be >= 0");
    require_size(a.size(), elems(m, k), "gemm", "a");
    require_size(b.size(), elems(k, n), "gemm", "b");
    require_size(c.size(), elems(m, n), "gemm", "c");
    Map C(c.data(), m, n);
    if (beta == 0.0f) {
        C.setZero();
    } else if (beta != 1.0f) {
        C *= beta;
    }
    if (m == 0 || n == 0 || k == 0) {
        return;
    }
    // bf16, fp16: the rounded operands, as fp32 values (exact), multiplied as any fp32 ones.
    std::vector<float> a_rounded, b_rounded;
    if (precision != GemmPrecision::fp32) {
        a_rounded.resize(a.size());
        b_rounded.resize(b.size());
        round_to(precision, a, a_rounded);
        round_to(precision, b, b_rounded);
        a = a_rounded;
        b = b_rounded;
    }
    const bool ta = trans_a == Trans::Yes, tb = trans_b == Trans::Yes;
    ConstMap A(a.data(), ta ? k : m, ta ? m : k);
    ConstMap B(b.data(), tb ? n : k, tb ? k : n);
    if (!ta && !tb) {
        C.noalias() += alpha * A * B;
    } else if (!ta && tb) {
        C.noalias() += alpha * A * B.transpose();
    } else if (ta && !tb) {
        C.noalias() += alpha * A.transpose() * B;
    } else {
        C.noalias() += alpha * A.transpose() * B.transpose();
    }
}

}  // namespace moesim::kernels
