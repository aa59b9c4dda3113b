// The cuBLAS GEMMs against the Eigen references: dense GEMM (every transpose), grouped
// GEMM and its weight gradient (empty groups, padded layout gaps), the expert FFNs.
// Tolerances, CUDA vs CPU (fp32 compute on both; summation order differs):
//   gemm, grouped_gemm, grouped weight gradient: 1e-4 abs + 1e-4 rel.
//   expert FFN forward and backward: 1e-4 abs + 1e-4 rel.
//   bf16 operands and output (fp32 accumulation) against fp32 Eigen on the same rounded
//   operands: ||cuda - cpu|| / ||cpu|| <= 5e-3 (the output's own bf16 rounding is 2^-9 rel).
//   bf16 operands, fp32 output (GemmPrecision::bf16, the executor's mixed precision) against
//   the CPU kernels' bf16 mode: gemm, grouped gemm and its weight gradient 1e-4 abs +
//   1e-4 rel, as fp32 (both round the same fp32 inputs to the same bf16 values, whose
//   products are exact in fp32: only the order of the sums differs); the expert FFNs
//   within 5e-4 in relative norm (act and the activation gradient are computed in fp32 on
//   each side, then rounded: an element within fp32 noise of a rounding boundary lands a
//   bf16 step apart; seen on an H100: at most 3.6e-6). Each bf16 result differs from
//   fp32's by more than 1e-4: it rounds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "kernels/cuda/expert_ffn_cuda.hpp"
#include "kernels/cuda/gemm_cuda.hpp"
#include "kernels/cuda/grouped_gemm_cuda.hpp"
#include "kernels/expert_ffn.hpp"
#include "kernels/gemm.hpp"
#include "kernels/grouped_gemm.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using cuda::DeviceBuffer;
using test::expect_close;
using test::random_vector;
using test::to_device;

class CudaGemm : public test::CudaTest {};

std::uint16_t bf16_bits(float f)
{
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

float bf16_value(std::uint16_t b)
{
    const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// Rounds `v` to bf16 in place and returns the bits.
std::vector<std::uint16_t> round_to_bf16(std::vector<float>& v)
{
    std::vector<std::uint16_t> bits(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
        bits[i] = bf16_bits(v[i]);
        v[i] = bf16_value(bits[i]);
    }
    return bits;
}

void expect_relative_norm(const std::vector<std::uint16_t>& actual, const std::vector<float>& expected, double tol,
                          const std::string& what)
{
    ASSERT_EQ(actual.size(), expected.size()) << what;
    double diff = 0, ref = 0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        const double a = bf16_value(actual[i]), e = expected[i];
        ASSERT_FALSE(std::isnan(a)) << what << "[" << i << "]";
        diff += (a - e) * (a - e);
        ref += e * e;
    }
    EXPECT_LE(std::sqrt(diff / ref), tol) << what;
}

TEST_F(CudaGemm, Bf16DenseAndGroupedGemmMatchEigenOnRoundedOperands)
{
    cuda::CublasHandle handle;
    const int m = 96, n = 80, k = 128;
    auto a = random_vector(static_cast<std::size_t>(m) * k, 11), b = random_vector(static_cast<std::size_t>(n) * k, 12);
    const auto a_bits = round_to_bf16(a), b_bits = round_to_bf16(b);
    std::vector<float> c(static_cast<std::size_t>(m) * n);
    gemm(Trans::No, Trans::Yes, m, n, k, 1.0f, a, b, 0.0f, c);
    auto d_a = to_device(a_bits), d_b = to_device(b_bits);
    DeviceBuffer<std::uint16_t> d_c(c.size());
    cuda::gemm_cuda_typed(handle.get(), CUDA_R_16BF, Trans::No, Trans::Yes, m, n, k, 1.0f, d_a.data(), d_b.data(), 0.0f,
                          d_c.data());
    expect_relative_norm(d_c.download(), c, 5e-3, "bf16 gemm");

    // Grouped: an empty expert and uneven ones, weights n x k per expert (trans_w = Yes).
    const std::vector<int> offsets = {0, 40, 40, 41}, counts = {40, 0, 1, 55};
    const int rows = 96;
    auto x = random_vector(static_cast<std::size_t>(rows) * k, 13), w = random_vector(4 * static_cast<std::size_t>(n) * k, 14);
    const auto x_bits = round_to_bf16(x), w_bits = round_to_bf16(w);
    const GroupRows groups{offsets, counts, rows};
    std::vector<float> y(static_cast<std::size_t>(rows) * n, 0.0f);
    grouped_gemm(groups, x, k, w, Trans::Yes, n, 0.0f, y);
    auto d_x = to_device(x_bits), d_w = to_device(w_bits);
    for (cuda::GroupedAlgo algo : {cuda::GroupedAlgo::PerGroup, cuda::GroupedAlgo::GroupedBatched}) {
        DeviceBuffer<std::uint16_t> d_y(y.size());
        cuda::check(cudaMemset(d_y.data(), 0, y.size() * 2), "cudaMemset");
        cuda::grouped_gemm_cuda_typed(handle.get(), CUDA_R_16BF, groups, d_x.data(), k, d_w.data(), Trans::Yes, n,
                                      0.0f, d_y.data(), algo);
        expect_relative_norm(d_y.download(), y, 5e-3, "bf16 grouped gemm");
    }
}

TEST_F(CudaGemm, Bf16OperandsWithFp32OutputMatchCpuBf16)
{
    cuda::CublasHandle handle;
    const auto bf16 = GemmPrecision::bf16;
    struct Shape {
        int m, n, k;
    };
    for (Shape s : {Shape{17, 33, 65}, Shape{128, 64, 256}, Shape{5, 7, 0}}) {
        for (Trans ta : {Trans::No, Trans::Yes}) {
            for (Trans tb : {Trans::No, Trans::Yes}) {
                const auto a = random_vector(static_cast<std::size_t>(s.m) * s.k, 1);
                const auto b = random_vector(static_cast<std::size_t>(s.k) * s.n, 2);
                const std::vector<float> c0 = random_vector(static_cast<std::size_t>(s.m) * s.n, 3);
                std::vector<float> c = c0, c32 = c0;
                auto d_a = to_device(a), d_b = to_device(b), d_c = to_device(c);
                gemm(ta, tb, s.m, s.n, s.k, 1.5f, a, b, 0.5f, c, bf16);
                gemm(ta, tb, s.m, s.n, s.k, 1.5f, a, b, 0.5f, c32);
                cuda::gemm_cuda(handle.get(), ta, tb, s.m, s.n, s.k, 1.5f, d_a.data(), d_b.data(), 0.5f, d_c.data(),
                                bf16);
                const std::vector<float> out = d_c.download();
                expect_close(out, c, 1e-4, 1e-4, "bf16 gemm");
                if (s.k > 0) {
                    EXPECT_GT(test::relative_error(out, c32), 1e-4) << "bf16 gemm equals fp32's";
                }
            }
        }
    }

    const std::vector<int> offsets = {0, 40, 40, 41}, counts = {40, 0, 1, 100};
    const int rows = 141, k = 48, n = 80;
    const GroupRows groups{offsets, counts, rows};
    for (Trans tw : {Trans::Yes, Trans::No}) {
        const auto x = random_vector(static_cast<std::size_t>(rows) * k, 1);
        const auto w = random_vector(4 * static_cast<std::size_t>(n) * k, 2);
        const auto dyv = random_vector(static_cast<std::size_t>(rows) * n, 3);
        std::vector<float> y(static_cast<std::size_t>(rows) * n, 0.0f);
        std::vector<float> dw = random_vector(w.size(), 4);
        auto d_x = to_device(x), d_w = to_device(w), d_y = to_device(y), d_dy = to_device(dyv), d_dw = to_device(dw);
        grouped_gemm(groups, x, k, w, tw, n, 0.0f, y, bf16);
        grouped_gemm_weight_grad(groups, dyv, n, x, k, tw, 1.0f, dw, bf16);
        cuda::grouped_gemm_cuda(handle.get(), groups, d_x.data(), k, d_w.data(), tw, n, 0.0f, d_y.data(), bf16);
        cuda::grouped_gemm_weight_grad_cuda(handle.get(), groups, d_dy.data(), n, d_x.data(), k, tw, 1.0f,
                                            d_dw.data(), bf16);
        expect_close(d_y.download(), y, 1e-4, 1e-4, "bf16 grouped y");
        expect_close(d_dw.download(), dw, 1e-4, 1e-4, "bf16 grouped dw");
    }

    const ExpertFfnShape shape{4, 32, 96, Gelu::Tanh};
    const std::vector<int> ffn_offsets = {0, 30, 30, 31}, ffn_counts = {30, 0, 1, 50};
    const int ffn_rows = 81, d = shape.model_dim, f = shape.ffn_dim, e = shape.experts;
    const GroupRows ffn_groups{ffn_offsets, ffn_counts, ffn_rows};
    const auto x = random_vector(static_cast<std::size_t>(ffn_rows) * d, 1);
    const auto w1 = random_vector(static_cast<std::size_t>(e) * f * d, 2), b1 = random_vector(e * f, 3);
    const auto w2 = random_vector(static_cast<std::size_t>(e) * d * f, 4), b2 = random_vector(e * d, 5);
    const auto dyv = random_vector(static_cast<std::size_t>(ffn_rows) * d, 6);
    std::vector<float> pre(static_cast<std::size_t>(ffn_rows) * f), act(pre.size()), y(x.size()), dx(x.size());
    std::vector<float> dw1(w1.size()), db1(b1.size()), dw2(w2.size()), db2(b2.size());
    std::vector<float> pre32(pre.size()), act32(pre.size()), y32(x.size());
    expert_ffn_forward(shape, ffn_groups, x, {w1, b1, w2, b2}, pre, act, y, bf16);
    expert_ffn_forward(shape, ffn_groups, x, {w1, b1, w2, b2}, pre32, act32, y32);
    expert_ffn_backward(shape, ffn_groups, dyv, x, {w1, b1, w2, b2}, pre, act, dx, {dw1, db1, dw2, db2},
                        /*accumulate=*/false, bf16);

    auto d_x = to_device(x), d_w1 = to_device(w1), d_b1 = to_device(b1), d_w2 = to_device(w2),
         d_b2 = to_device(b2), d_dy = to_device(dyv);
    DeviceBuffer<float> g_pre(pre.size()), g_act(act.size()), g_y(y.size()), g_dx(dx.size());
    DeviceBuffer<float> g_dw1(w1.size()), g_db1(b1.size()), g_dw2(w2.size()), g_db2(b2.size());
    const cuda::ExpertFfnDeviceWeights weights{d_w1.data(), d_b1.data(), d_w2.data(), d_b2.data()};
    cuda::expert_ffn_forward_cuda(handle.get(), shape, ffn_groups, d_x.data(), weights, g_pre.data(), g_act.data(),
                                  g_y.data(), bf16);
    const std::vector<float> gpu_y = g_y.download();
    expect_close(g_pre.download(), pre, 1e-4, 1e-4, "bf16 ffn pre (one GEMM of rounded inputs)");
    EXPECT_LE(test::relative_error(gpu_y, y), 5e-4) << "bf16 ffn y";
    EXPECT_GT(test::relative_error(gpu_y, y32), 1e-4) << "bf16 ffn y equals fp32's";
    cuda::expert_ffn_backward_cuda(handle.get(), shape, ffn_groups, d_dy.data(), d_x.data(), weights, g_pre.data(),
                                   g_act.data(), g_dx.data(),
                                   {g_dw1.data(), g_db1.data(), g_dw2.data(), g_db2.data()}, false, bf16);
    const std::vector<float> gpu_dx = g_dx.download(), gpu_dw1 = g_dw1.download(), gpu_db1 = g_db1.download(),
                             gpu_dw2 = g_dw2.download(), gpu_db2 = g_db2.download();
    std::printf("bf16 expert FFN, CUDA vs CPU, relative error: y %.2e dx %.2e dw1 %.2e db1 %.2e dw2 %.2e db2 %.2e\n",
                test::relative_error(gpu_y, y), test::relative_error(gpu_dx, dx), test::relative_error(gpu_dw1, dw1),
                test::relative_error(gpu_db1, db1), test::relative_error(gpu_dw2, dw2),
                test::relative_error(gpu_db2, db2));
    EXPECT_LE(test::relative_error(gpu_dx, dx), 5e-4) << "bf16 ffn dx";
    EXPECT_LE(test::relative_error(gpu_dw1, dw1), 5e-4) << "bf16 ffn dw1";
    EXPECT_LE(test::relative_error(gpu_db1, db1), 5e-4) << "bf16 ffn db1";
    EXPECT_LE(test::relative_error(gpu_dw2, dw2), 5e-4) << "bf16 ffn dw2";
    expect_close(gpu_db2, db2, 1e-4, 1e-4, "bf16 ffn db2 (sums of the fp32 dy)");
}

TEST_F(CudaGemm, DenseGemmMatchesEigen)
{
    cuda::CublasHandle handle;
    struct Shape {
        int m, n, k;
    };
    for (Shape s : {Shape{1, 1, 1}, Shape{17, 33, 65}, Shape{128, 64, 256}, Shape{5, 7, 0}}) {
        for (Trans ta : {Trans::No, Trans::Yes}) {
            for (Trans tb : {Trans::No, Trans::Yes}) {
                const auto a = random_vector(static_cast<std::size_t>(s.m) * s.k, 1);
                const auto b = random_vector(static_cast<std::size_t>(s.k) * s.n, 2);
                std::vector<float> c = random_vector(static_cast<std::size_t>(s.m) * s.n, 3);
                auto d_a = to_device(a), d_b = to_device(b), d_c = to_device(c);
                gemm(ta, tb, s.m, s.n, s.k, 1.5f, a, b, 0.5f, c);
                cuda::gemm_cuda(handle.get(), ta, tb, s.m, s.n, s.k, 1.5f, d_a.data(), d_b.data(), 0.5f, d_c.data());
                expect_close(d_c.download(), c, 1e-4, 1e-4, "gemm");
            }
        }
    }
}

TEST_F(CudaGemm, GroupedGemmMatchesEigen)
{
    cuda::CublasHandle handle;
    // Packed groups with an empty expert, and a padded layout with gaps between groups.
    const std::vector<std::vector<int>> offsets = {{0, 40, 40, 41}, {0, 64, 128, 192}};
    const std::vector<std::vector<int>> counts = {{40, 0, 1, 100}, {64, 3, 0, 17}};
    const std::vector<int> rows = {141, 256};
    const int k = 48, n = 80;
    for (std::size_t i = 0; i < offsets.size(); ++i) {
        const GroupRows groups{offsets[i], counts[i], rows[i]};
        for (Trans tw : {Trans::Yes, Trans::No}) {
            const auto x = random_vector(static_cast<std::size_t>(rows[i]) * k, 1);
            const auto w = random_vector(4 * static_cast<std::size_t>(n) * k, 2);
            const auto dyv = random_vector(static_cast<std::size_t>(rows[i]) * n, 3);
            std::vector<float> y(static_cast<std::size_t>(rows[i]) * n, 0.0f);
            std::vector<float> dw = random_vector(w.size(), 4);
            auto d_x = to_device(x), d_w = to_device(w), d_y = to_device(y), d_dy = to_device(dyv),
                 d_dw = to_device(dw);
            grouped_gemm(groups, x, k, w, tw, n, 0.0f, y);
            grouped_gemm_weight_grad(groups, dyv, n, x, k, tw, 1.0f, dw);
            cuda::grouped_gemm_cuda(handle.get(), groups, d_x.data(), k, d_w.data(), tw, n, 0.0f, d_y.data());
            cuda::grouped_gemm_weight_grad_cuda(handle.get(), groups, d_dy.data(), n, d_x.data(), k, tw, 1.0f,
                                                d_dw.data());
            expect_close(d_y.download(), y, 1e-4, 1e-4, "grouped y");
            expect_close(d_dw.download(), dw, 1e-4, 1e-4, "grouped dw");
        }
    }
}

TEST_F(CudaGemm, ExpertFfnMatchesCpu)
{
    cuda::CublasHandle handle;
    const ExpertFfnShape shape{4, 32, 96, Gelu::Tanh};
    const std::vector<int> offsets = {0, 30, 30, 31}, counts = {30, 0, 1, 50};
    const int rows = 81, d = shape.model_dim, f = shape.ffn_dim, e = shape.experts;
    const GroupRows groups{offsets, counts, rows};
    const auto x = random_vector(static_cast<std::size_t>(rows) * d, 1);
    const auto w1 = random_vector(static_cast<std::size_t>(e) * f * d, 2), b1 = random_vector(e * f, 3);
    const auto w2 = random_vector(static_cast<std::size_t>(e) * d * f, 4), b2 = random_vector(e * d, 5);
    const auto dyv = random_vector(static_cast<std::size_t>(rows) * d, 6);
    std::vector<float> pre(static_cast<std::size_t>(rows) * f), act(pre.size()), y(x.size()), dx(x.size());
    std::vector<float> dw1(w1.size()), db1(b1.size()), dw2(w2.size()), db2(b2.size());
    expert_ffn_forward(shape, groups, x, {w1, b1, w2, b2}, pre, act, y);
    expert_ffn_backward(shape, groups, dyv, x, {w1, b1, w2, b2}, pre, act, dx, {dw1, db1, dw2, db2});

    auto d_x = to_device(x), d_w1 = to_device(w1), d_b1 = to_device(b1), d_w2 = to_device(w2),
         d_b2 = to_device(b2), d_dy = to_device(dyv);
    DeviceBuffer<float> g_pre(pre.size()), g_act(act.size()), g_y(y.size()), g_dx(dx.size());
    DeviceBuffer<float> g_dw1(w1.size()), g_db1(b1.size()), g_dw2(w2.size()), g_db2(b2.size());
    const cuda::ExpertFfnDeviceWeights weights{d_w1.data(), d_b1.data(), d_w2.data(), d_b2.data()};
    cuda::expert_ffn_forward_cuda(handle.get(), shape, groups, d_x.data(), weights, g_pre.data(), g_act.data(),
                                  g_y.data());
    expect_close(g_y.download(), y, 1e-4, 1e-4, "ffn y");
    expect_close(g_act.download(), act, 1e-4, 1e-4, "ffn act");
    cuda::expert_ffn_backward_cuda(handle.get(), shape, groups, d_dy.data(), d_x.data(), weights, g_pre.data(),
                                   g_act.data(), g_dx.data(),
                                   {g_dw1.data(), g_db1.data(), g_dw2.data(), g_db2.data()});
    expect_close(g_dx.download(), dx, 1e-4, 1e-4, "ffn dx");
    expect_close(g_dw1.download(), dw1, 1e-4, 1e-4, "ffn dw1");
    expect_close(g_db1.download(), db1, 1e-4, 1e-4, "ffn db1");
    expect_close(g_dw2.download(), dw2, 1e-4, 1e-4, "ffn dw2");
    expect_close(g_db2.download(), db2, 1e-4, 1e-4, "ffn db2");
}

}  // namespace
}  // namespace moesim::kernels
