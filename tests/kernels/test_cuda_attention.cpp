// The CUDA attention and embedding against their CPU references: multi-head and
// grouped-query shapes, one token, sequences longer than a warp's stride, q/k/v as column
// blocks of a fused QKV buffer with padded ctx rows, and an empty batch.
// Tolerances, CUDA vs CPU (fp32 on both; cuBLAS and Eigen sum in different orders, expf
// vs std::exp differ by ulps):
//   attention probs 1e-6 abs + 1e-5 rel; ctx 2e-6 abs + 1e-5 rel; dq, dk, dv (backward
//     run on the CPU forward's probs) 5e-6 abs + 1e-5 rel; about 10x the largest errors
//     seen on an H100 with cuBLAS 13.0 (probs 9e-8, ctx 1.8e-7, gradients 4.8e-7 abs).
//     TF32 on the handle would fail them, as it should. Two CUDA backward runs are
//     bitwise equal.
//   bf16 operands (GemmPrecision::bf16, both sides): probs as fp32's (the scores come from
//     the same bf16 operands, exact products, fp32 sums); ctx, dq, dk, dv within 5e-4 in
//     relative norm: P and dS are computed in fp32 on each side before rounding, and an
//     element within fp32 noise of a bf16 rounding boundary rounds a step (2^-8) apart.
//     bf16 against fp32 differs by about 1e-3; the test requires more than 1e-4. Seen on
//     an H100 (CUDA 13.0): ctx at most 2.2e-5, dq, dk, dv at most 7.0e-6.
//   embedding forward and backward: exact (the same fp32 additions in the same order);
//     a token outside the vocabulary gives a NaN row on the GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/cuda/attention_cuda.hpp"
#include "kernels/cuda/embedding_cuda.hpp"
#include "kernels/embedding.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using cuda::DeviceBuffer;
using test::expect_close;
using test::random_vector;
using test::to_device;

class CudaAttention : public test::CudaTest {};
class CudaEmbedding : public test::CudaTest {};

struct AttentionCase {
    int batch, seq, heads, kv_heads, head_dim;
    bool fused;  // q, k, v column blocks of one buffer; ctx and dctx rows padded
};

const AttentionCase kCases[] = {
    {2, 5, 2, 2, 3, false},
    {2, 5, 2, 1, 3, false},     // multi-query
    {1, 1, 4, 4, 8, false},     // one token
    {0, 16, 2, 2, 8, false},    // empty batch
    {3, 64, 8, 8, 64, true},    // GPT-2-like head size
    {2, 130, 12, 4, 32, true},  // grouped-query, rows longer than 4 x 32 keys
    {2, 257, 4, 2, 16, false},
};

TEST_F(CudaAttention, ForwardBackwardMatchCpu)
{
    cuda::CublasHandle handle;
    std::uint64_t seed = 100;
    for (const GemmPrecision precision : {GemmPrecision::fp32, GemmPrecision::bf16}) {
    const bool bf16 = precision == GemmPrecision::bf16;
    // fp32: elementwise; bf16: in relative norm (header).
    auto compare = [&](const std::vector<float>& actual, const std::vector<float>& expected, double abs_tol,
                       double rel_tol, float fill, const char* what) {
        if (!bf16) {
            expect_close(actual, expected, abs_tol, rel_tol, what);
            return;
        }
        const double error = test::relative_error(actual, expected, fill);
        std::printf("%s bf16: relative error %.2e\n", what, error);
        EXPECT_LE(error, 5e-4) << what << " (bf16, relative norm)";
    };
    for (const AttentionCase& c : kCases) {
        const AttentionShape s{c.batch, c.seq, c.heads, c.kv_heads, c.head_dim,
                               1.0f / std::sqrt(static_cast<float>(c.head_dim))};
        SCOPED_TRACE("batch " + std::to_string(c.batch) + " seq " + std::to_string(c.seq) + " heads " +
                     std::to_string(c.heads) + " kv_heads " + std::to_string(c.kv_heads) + " head_dim " +
                     std::to_string(c.head_dim) + (c.fused ? " fused" : "") + (bf16 ? " bf16" : " fp32"));
        const int rows = c.batch * c.seq, qw = c.heads * c.head_dim, kw = c.kv_heads * c.head_dim;
        // Fused: one buffer of rows [q | k | v]. Separate: q, k, v one after the other, each
        // rows x heads*d (one row stride serves all three, so k and v rows are padded when
        // kv_heads < heads).
        const int ld = c.fused ? qw + 2 * kw : qw;
        const int ld_out = c.fused ? qw + 5 : qw;
        const std::size_t q_at = 0;
        const std::size_t k_at = c.fused ? static_cast<std::size_t>(qw) : static_cast<std::size_t>(rows) * qw;
        const std::size_t v_at = c.fused ? static_cast<std::size_t>(qw + kw) : 2 * static_cast<std::size_t>(rows) * qw;
        const std::size_t in_size = static_cast<std::size_t>(rows) * (c.fused ? ld : 3 * qw);
        const auto in = random_vector(in_size, seed++);
        const std::span<const float> all(in);
        const std::size_t probs_size = static_cast<std::size_t>(c.batch) * c.heads * c.seq * c.seq;
        const std::size_t ctx_size = static_cast<std::size_t>(rows) * ld_out;

        std::vector<float> ctx(ctx_size, 3.5f), probs(probs_size);  // 3.5: padding columns stay
        attention_forward(s, all.subspan(q_at), all.subspan(k_at), all.subspan(v_at), ld, ctx, ld_out, probs,
                          precision);

        auto d_in = to_device(in);
        auto d_ctx = to_device(std::vector<float>(ctx_size, 3.5f));
        DeviceBuffer<float> d_probs(probs_size);
        cuda::attention_forward_cuda(handle.get(), s, d_in.data() + q_at, d_in.data() + k_at, d_in.data() + v_at,
                                     ld, d_ctx.data(), ld_out, d_probs.data(), precision);
        expect_close(d_probs.download(), probs, 1e-6, 1e-5, "probs");
        const std::vector<float> gpu_ctx = d_ctx.download();
        compare(gpu_ctx, ctx, 2e-6, 1e-5, 3.5f, "ctx");
        if (bf16 && rows > 0) {
            std::vector<float> ctx32(ctx_size, 3.5f), probs32(probs_size);
            attention_forward(s, all.subspan(q_at), all.subspan(k_at), all.subspan(v_at), ld, ctx32, ld_out, probs32);
            EXPECT_GT(test::relative_error(gpu_ctx, ctx32, 3.5f), 1e-4) << "bf16 ctx equals fp32's: nothing was rounded";
        }

        // Backward from the CPU's probs, into one gradient buffer laid out like the input.
        const auto dctx = random_vector(ctx_size, seed++);
        std::vector<float> grad(in_size, -1.5f);
        const std::span<float> g(grad);
        attention_backward(s, dctx, ld_out, all.subspan(q_at), all.subspan(k_at), all.subspan(v_at), ld, probs,
                           g.subspan(q_at), g.subspan(k_at), g.subspan(v_at), ld, precision);
        auto d_dctx = to_device(dctx);
        auto d_probs_cpu = to_device(probs);
        std::vector<std::vector<float>> runs;
        for (int run = 0; run < 2; ++run) {
            auto d_grad = to_device(std::vector<float>(in_size, -1.5f));
            cuda::attention_backward_cuda(handle.get(), s, d_dctx.data(), ld_out, d_in.data() + q_at,
                                          d_in.data() + k_at, d_in.data() + v_at, ld, d_probs_cpu.data(),
                                          d_grad.data() + q_at, d_grad.data() + k_at, d_grad.data() + v_at, ld,
                                          precision);
            runs.push_back(d_grad.download());
        }
        compare(runs[0], grad, 5e-6, 1e-5, -1.5f, "dq, dk, dv");
        EXPECT_EQ(runs[0], runs[1]) << "two backward runs differ";
    }
    }
}

TEST_F(CudaEmbedding, ForwardBackwardMatchCpuExactly)
{
    const int batch = 6, seq = 50, vocab = 37, dim = 96, positions = 64;
    const int rows = batch * seq;
    std::vector<std::int32_t> tokens(rows);
    for (int r = 0; r < rows; ++r) {
        tokens[r] = (r * r + 3 * r) % vocab;  // every token repeats, in no particular order
    }
    tokens[7] = 0;
    const auto wte = random_vector(static_cast<std::size_t>(vocab) * dim, 1);
    const auto wpe = random_vector(static_cast<std::size_t>(positions) * dim, 2);
    const auto dy = random_vector(static_cast<std::size_t>(rows) * dim, 3);
    const auto dwte0 = random_vector(wte.size(), 4);  // accumulated onto
    const auto dwpe0 = random_vector(wpe.size(), 5);
    auto d_tokens = to_device(tokens);
    auto d_wte = to_device(wte);
    auto d_wpe = to_device(wpe);
    auto d_dy = to_device(dy);

    for (const bool with_wpe : {true, false}) {
        SCOPED_TRACE(with_wpe ? "with wpe" : "without wpe");
        std::vector<float> y(static_cast<std::size_t>(rows) * dim);
        embedding_forward(tokens, wte, with_wpe ? std::span<const float>(wpe) : std::span<const float>(), rows, seq,
                          vocab, dim, y);
        DeviceBuffer<float> d_y(y.size());
        cuda::embedding_forward_cuda(d_tokens.data(), d_wte.data(), with_wpe ? d_wpe.data() : nullptr, rows, seq,
                                     vocab, dim, d_y.data());
        EXPECT_EQ(d_y.download(), y);

        auto dwte = dwte0;
        auto dwpe = dwpe0;
        embedding_backward(dy, tokens, rows, seq, vocab, dim, dwte, with_wpe ? std::span<float>(dwpe) : std::span<float>());
        auto d_dwte = to_device(dwte0);
        auto d_dwpe = to_device(dwpe0);
        cuda::embedding_backward_cuda(d_dy.data(), d_tokens.data(), rows, seq, vocab, dim, d_dwte.data(),
                                      with_wpe ? d_dwpe.data() : nullptr);
        EXPECT_EQ(d_dwte.download(), dwte);
        EXPECT_EQ(d_dwpe.download(), dwpe);
    }

    // A bad token: its row is NaN, the others are right, and the backward skips it.
    auto bad = tokens;
    bad[11] = vocab;
    auto d_bad = to_device(bad);
    DeviceBuffer<float> d_y(static_cast<std::size_t>(rows) * dim);
    cuda::embedding_forward_cuda(d_bad.data(), d_wte.data(), d_wpe.data(), rows, seq, vocab, dim, d_y.data());
    const auto y = d_y.download();
    for (int r = 0; r < rows; ++r) {
        const float x = y[static_cast<std::size_t>(r) * dim];
        EXPECT_EQ(std::isnan(x), r == 11) << "row " << r;
    }
}

}  // namespace
}  // namespace moesim::kernels
