// The CUDA rotary embedding and SwiGLU against their CPU references: q and k blocks of a
// fused QKV buffer with padded rows (one call over both), open_lm-160m's shape (head_dim
// 64, seq 2048, 12 + 12 rotated heads), head_dim 2, an empty batch, a non-default stream;
// SwiGLU at small odd sizes and open_lm-160m's FFN width (f = 2048), backward in place.
// Each comparison prints the largest difference and how many elements differ at all.
// Tolerances, CUDA vs CPU:
//   rotary forward and backward: 1e-9 abs + 2.4e-7 rel (2 float ulps). Both sides
//     evaluate the same double expression and round once to float. CUDA's double pow,
//     sin and cos (<= 2 double ulps) differ from glibc's by ~1e-16 relative, i.e. angles
//     by up to ~2047 * 3e-16 ~ 6e-13 rad at position 2047: that changes a float only
//     when its double value falls that close to a rounding boundary (then by 1 ulp), or
//     by ~1e-12 absolute for results near 0; 1e-9 stays far below a float ulp of the O(1)
//     values. The v and padding columns must stay bitwise (the padding holds 3.5, not
//     NaN, which no tolerance compares equal).
//   swiglu forward and backward: 1e-7 abs + 1e-6 rel. silu and silu' are evaluated in
//     double (CUDA's exp within 1 double ulp, glibc's below) and rounded once, so they
//     agree to a float ulp; the products after them are the same IEEE float operations
//     on both sides (no sums for FMA contraction to change).
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/rotary_cuda.hpp"
#include "kernels/cuda/swiglu_cuda.hpp"
#include "kernels/rotary.hpp"
#include "kernels/swiglu.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using cuda::DeviceBuffer;
using test::expect_close;
using test::random_vector;
using test::to_device;

class CudaRotary : public test::CudaTest {};
class CudaSwiglu : public test::CudaTest {};

constexpr float kPad = 3.5f;  // padding columns of the fused rows, never written

// Prints the largest |CUDA - CPU| and the count of elements that are
// not bitwise equal, so a run records how close the two are, not only that they pass.
void report(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::string& what)
{
    double worst = 0.0, worst_rel = 0.0;
    std::size_t differ = 0;
    for (std::size_t i = 0; i < gpu.size() && i < cpu.size(); ++i) {
        if (gpu[i] != cpu[i]) {
            ++differ;
        }
        const double d = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
        worst = std::max(worst, d);
        if (cpu[i] != 0.0f) {
            worst_rel = std::max(worst_rel, d / std::fabs(static_cast<double>(cpu[i])));
        }
    }
    std::printf("  %-40s max |diff| %.3g, max rel %.3g, %zu of %zu elements not bitwise equal\n", what.c_str(),
                worst, worst_rel, differ, gpu.size());
}

struct RotaryCase {
    int batch, seq, heads, kv_heads, head_dim;
    double theta;
    int pad;  // extra columns after v in each fused row, holding kPad
};

const RotaryCase kRotaryCases[] = {
    {2, 7, 4, 2, 8, 10000.0, 3},
    {3, 5, 1, 1, 2, 10000.0, 0},        // one pair per head
    {0, 16, 2, 2, 8, 10000.0, 0},       // empty batch
    {2, 2048, 12, 12, 64, 10000.0, 0},  // open_lm-160m: d_model 768, 12 heads of 64, seq 2048
    {1, 300, 6, 2, 128, 500000.0, 5},   // Llama-3's theta, grouped-query
};

TEST_F(CudaRotary, ForwardBackwardMatchCpu)
{
    std::uint64_t seed = 200;
    for (const RotaryCase& c : kRotaryCases) {
        SCOPED_TRACE("batch " + std::to_string(c.batch) + " seq " + std::to_string(c.seq) + " heads " +
                     std::to_string(c.heads) + " kv_heads " + std::to_string(c.kv_heads) + " head_dim " +
                     std::to_string(c.head_dim));
        const int rows = c.batch * c.seq;
        const int rotated = (c.heads + c.kv_heads) * c.head_dim;  // q and k, adjacent
        const int ld = rotated + c.kv_heads * c.head_dim + c.pad;
        auto qkv = random_vector(static_cast<std::size_t>(rows) * ld, seed++);
        for (int r = 0; r < rows; ++r) {
            for (int col = ld - c.pad; col < ld; ++col) {
                qkv[static_cast<std::size_t>(r) * ld + col] = kPad;
            }
        }
        const RotaryShape s{rows, c.seq, c.heads + c.kv_heads, c.head_dim, c.theta};

        auto cpu = qkv;
        rotary_forward(s, cpu, ld);
        auto d_x = to_device(qkv);
        cuda::rotary_forward_cuda(s, d_x.data(), ld);
        const auto gpu = d_x.download();
        report(gpu, cpu, "rotary forward (" + std::to_string(c.seq) + "x" + std::to_string(c.head_dim) + ")");
        expect_close(gpu, cpu, 1e-9, 2.4e-7, "rotary forward");
        for (std::size_t i = 0; i < qkv.size(); ++i) {
            if (static_cast<int>(i % static_cast<std::size_t>(ld)) >= rotated) {
                ASSERT_EQ(gpu[i], qkv[i]) << "v or padding column changed at " << i;
            }
        }

        // Backward on a fresh gradient, in place.
        const auto grad = random_vector(qkv.size(), seed++);
        auto cpu_grad = grad;
        rotary_backward(s, cpu_grad, ld);
        auto d_g = to_device(grad);
        cuda::rotary_backward_cuda(s, d_g.data(), ld);
        const auto gpu_grad = d_g.download();
        report(gpu_grad, cpu_grad, "rotary backward");
        expect_close(gpu_grad, cpu_grad, 1e-9, 2.4e-7, "rotary backward");
    }
}

TEST_F(CudaRotary, RunsOnTheGivenStream)
{
    const RotaryShape s{4 * 32, 32, 3, 16, 10000.0};
    const int ld = 3 * 16;
    const auto x = random_vector(static_cast<std::size_t>(s.rows) * ld, 7);
    auto cpu = x;
    rotary_forward(s, cpu, ld);
    rotary_backward(s, cpu, ld);
    cudaStream_t stream = nullptr;
    cuda::check(cudaStreamCreate(&stream), "cudaStreamCreate");
    auto d_x = to_device(x);
    cuda::rotary_forward_cuda(s, d_x.data(), ld, stream);
    cuda::rotary_backward_cuda(s, d_x.data(), ld, stream);
    cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    cuda::check(cudaStreamDestroy(stream), "cudaStreamDestroy");
    expect_close(d_x.download(), cpu, 1e-9, 2.4e-7, "rotary forward then backward on a stream");
    EXPECT_THROW(cuda::rotary_forward_cuda({4, 4, 1, 3, 10000.0}, d_x.data(), 3), std::invalid_argument);
}

TEST_F(CudaSwiglu, ForwardBackwardMatchCpu)
{
    struct Case {
        int rows, f;
    };
    std::uint64_t seed = 300;
    for (const Case c : {Case{7, 13}, Case{1, 1}, Case{0, 32}, Case{4096, 2048}}) {
        SCOPED_TRACE("rows " + std::to_string(c.rows) + " f " + std::to_string(c.f));
        const auto x = random_vector(static_cast<std::size_t>(c.rows) * 2 * c.f, seed++, -6.0f, 6.0f);
        const auto dy = random_vector(static_cast<std::size_t>(c.rows) * c.f, seed++);
        std::vector<float> y(dy.size()), dx(x.size());
        swiglu_forward(x, c.rows, c.f, y);
        swiglu_backward(dy, x, c.rows, c.f, dx);

        auto d_x = to_device(x);
        auto d_dy = to_device(dy);
        DeviceBuffer<float> d_y(y.size()), d_dx(dx.size());
        cuda::swiglu_forward_cuda(d_x.data(), c.rows, c.f, d_y.data());
        cuda::swiglu_backward_cuda(d_dy.data(), d_x.data(), c.rows, c.f, d_dx.data());
        const auto gy = d_y.download();
        const auto gdx = d_dx.download();
        report(gy, y, "swiglu forward (" + std::to_string(c.rows) + "x" + std::to_string(c.f) + ")");
        report(gdx, dx, "swiglu backward");
        expect_close(gy, y, 1e-7, 1e-6, "swiglu forward");
        expect_close(gdx, dx, 1e-7, 1e-6, "swiglu backward");

        // In place over the input: the same as into a separate buffer.
        cuda::swiglu_backward_cuda(d_dy.data(), d_x.data(), c.rows, c.f, d_x.data());
        EXPECT_EQ(d_x.download(), gdx) << "in-place backward differs";
    }
}

}  // namespace
}  // namespace moesim::kernels
