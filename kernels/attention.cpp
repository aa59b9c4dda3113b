// CPU reference of causal self-attention: per (sequence, head), Eigen GEMMs on strided maps
// of the q, k, v column blocks, and the masked softmax and its backward in plain loops.
#include "kernels/attention.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::require;

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;
using ConstStrided = Eigen::Map<const RowMatrix, 0, Stride>;
using Strided = Eigen::Map<RowMatrix, 0, Stride>;
using Square = Eigen::Map<RowMatrix>;
using ConstSquare = Eigen::Map<const RowMatrix>;

// Elements a rows x width matrix with row stride ld spans (the last row ends at its width).
std::size_t strided_extent(int rows, int width, int ld)
{
    return rows == 0 ? 0 : static_cast<std::size_t>(rows - 1) * static_cast<std::size_t>(ld) + width;
}

void require_extent(std::size_t actual, int rows, int width, int ld, const char* function, const char* name)
{
    const std::size_t needed = strided_extent(rows, width, ld);
    require(actual >= needed, function,
            std::string(name) + " has " + std::to_string(actual) + " elements, needs at least " +
                std::to_string(needed) + " (" + std::to_string(rows) + " rows of " + std::to_string(width) +
                " columns, row stride " + std::to_string(ld) + ")");
}

std::size_t probs_size(const AttentionShape& s)
{
    return static_cast<std::size_t>(s.batch) * s.heads * s.seq * s.seq;
}

// Offset of the (b, head) block: row b * seq of a matrix with row stride ld, column head * head_dim.
std::size_t block_offset(const AttentionShape& s, int b, int head, int ld)
{
    return static_cast<std::size_t>(b) * s.seq * ld + static_cast<std::size_t>(head) * s.head_dim;
}

std::size_t probs_offset(const AttentionShape& s, int b, int h)
{
    return (static_cast<std::size_t>(b) * s.heads + h) * s.seq * s.seq;
}

// A GEMM operand as the products read it: `x` itself under fp32, else its bf16- or
// fp16-rounded copy, kept in `copy` (same layout, so the strided maps below apply to either).
std::span<const float> operand(std::span<const float> x, GemmPrecision precision, std::vector<float>& copy)
{
    if (precision == GemmPrecision::fp32) {
        return x;
    }
    copy.resize(x.size());
    round_to(precision, x, copy);
    return copy;
}

}  // namespace

namespace detail {

void check_attention_shape(const AttentionShape& s, int ld_in, int ld_out, const char* function)
{
    require(s.batch >= 0 && s.seq >= 0, function, "needs batch >= 0 and seq >= 0");
    require(s.heads >= 1 && s.kv_heads >= 1 && s.head_dim >= 1, function,
            "needs heads, kv_heads and head_dim >= 1");
    require(s.heads % s.kv_heads == 0, function,
            "kv_heads (" + std::to_string(s.kv_heads) + ") must divide heads (" + std::to_string(s.heads) + ")");
    const int width = s.heads * s.head_dim;
    require(ld_in >= width && ld_out >= width, function,
            "row strides must be at least heads * head_dim = " + std::to_string(width) + " (got " +
                std::to_string(ld_in) + " and " + std::to_string(ld_out) + ")");
}

}  // namespace detail

void attention_forward(const AttentionShape& s, std::span<const float> q, std::span<const float> k,
                       std::span<const float> v, int ld_in, std::span<float> ctx, int ld_out,
                       std::span<float> probs, GemmPrecision precision)
{
    const char* fn = "attention_forward";
    detail::check_attention_shape(s, ld_in, ld_out, fn);
    const int rows = s.batch * s.seq;
    const int d = s.head_dim;
    require_extent(q.size(), rows, s.heads * d, ld_in, fn, "q");
    require_extent(k.size(), rows, s.kv_heads * d, ld_in, fn, "k");
    require_extent(v.size(), rows, s.kv_heads * d, ld_in, fn, "v");
    require_extent(ctx.size(), rows, s.heads * d, ld_out, fn, "ctx");
    detail::require_size(probs.size(), probs_size(s), fn, "probs");
    const int group = s.heads / s.kv_heads;
    std::vector<float> q_copy, k_copy, v_copy, p_copy;
    q = operand(q, precision, q_copy);
    k = operand(k, precision, k_copy);
    v = operand(v, precision, v_copy);
    for (int b = 0; b < s.batch; ++b) {
        for (int h = 0; h < s.heads; ++h) {
            const int g = h / group;
            const ConstStrided Q(q.data() + block_offset(s, b, h, ld_in), s.seq, d, Stride(ld_in));
            const ConstStrided K(k.data() + block_offset(s, b, g, ld_in), s.seq, d, Stride(ld_in));
            const ConstStrided V(v.data() + block_offset(s, b, g, ld_in), s.seq, d, Stride(ld_in));
            const std::span<float> p_bh = probs.subspan(probs_offset(s, b, h), static_cast<std::size_t>(s.seq) * s.seq);
            Square P(p_bh.data(), s.seq, s.seq);
            P.noalias() = (Q * K.transpose()) * s.scale;
            for (int i = 0; i < s.seq; ++i) {
                float* row = P.data() + static_cast<std::size_t>(i) * s.seq;
                // Keys 0..i only; the maximum keeps exp() <= 1, and the diagonal is always
                // there, so the sum is >= 1.
                const float mx = *std::max_element(row, row + i + 1);
                float sum = 0.0f;
                for (int j = 0; j <= i; ++j) {
                    row[j] = std::exp(row[j] - mx);
                    sum += row[j];
                }
                for (int j = 0; j <= i; ++j) {
                    row[j] /= sum;
                }
                std::fill(row + i + 1, row + s.seq, 0.0f);
            }
            Strided C(ctx.data() + block_offset(s, b, h, ld_out), s.seq, d, Stride(ld_out));
            const ConstSquare P_op(operand(p_bh, precision, p_copy).data(), s.seq, s.seq);
            C.noalias() = P_op * V;
        }
    }
}

void attention_backward(const AttentionShape& s, std::span<const float> dctx, int ld_out,
                        std::span<const float> q, std::span<const float> k, std::span<const float> v,
                        int ld_in, std::span<const float> probs, std::span<float> dq, std::span<float> dk,
                        std::span<float> dv, int ld_grad, GemmPrecision precision)
{
    const char* fn = "attention_backward";
    detail::check_attention_shape(s, ld_in, ld_out, fn);
    require(ld_grad >= s.heads * s.head_dim, fn,
            "ld_grad must be at least heads * head_dim = " + std::to_string(s.heads * s.head_dim));
    const int rows = s.batch * s.seq;
    const int d = s.head_dim;
    require_extent(dctx.size(), rows, s.heads * d, ld_out, fn, "dctx");
    require_extent(q.size(), rows, s.heads * d, ld_in, fn, "q");
    require_extent(k.size(), rows, s.kv_heads * d, ld_in, fn, "k");
    require_extent(v.size(), rows, s.kv_heads * d, ld_in, fn, "v");
    detail::require_size(probs.size(), probs_size(s), fn, "probs");
    require_extent(dq.size(), rows, s.heads * d, ld_grad, fn, "dq");
    require_extent(dk.size(), rows, s.kv_heads * d, ld_grad, fn, "dk");
    require_extent(dv.size(), rows, s.kv_heads * d, ld_grad, fn, "dv");
    const int group = s.heads / s.kv_heads;
    RowMatrix dS(s.seq, s.seq);
    const std::size_t square = static_cast<std::size_t>(s.seq) * s.seq;
    std::vector<float> dctx_copy, q_copy, k_copy, v_copy, p_copy, ds_copy;
    dctx = operand(dctx, precision, dctx_copy);
    q = operand(q, precision, q_copy);
    k = operand(k, precision, k_copy);
    v = operand(v, precision, v_copy);
    for (int b = 0; b < s.batch; ++b) {
        for (int g = 0; g < s.kv_heads; ++g) {
            const ConstStrided K(k.data() + block_offset(s, b, g, ld_in), s.seq, d, Stride(ld_in));
            const ConstStrided V(v.data() + block_offset(s, b, g, ld_in), s.seq, d, Stride(ld_in));
            Strided dK(dk.data() + block_offset(s, b, g, ld_grad), s.seq, d, Stride(ld_grad));
            Strided dV(dv.data() + block_offset(s, b, g, ld_grad), s.seq, d, Stride(ld_grad));
            dK.setZero();
            dV.setZero();
            // The query heads sharing kv head g, summed in head order (deterministic).
            for (int h = g * group; h < (g + 1) * group; ++h) {
                const ConstStrided Q(q.data() + block_offset(s, b, h, ld_in), s.seq, d, Stride(ld_in));
                const ConstStrided dC(dctx.data() + block_offset(s, b, h, ld_out), s.seq, d, Stride(ld_out));
                const std::span<const float> p_bh = probs.subspan(probs_offset(s, b, h), square);
                const ConstSquare P(p_bh.data(), s.seq, s.seq);
                dS.noalias() = dC * V.transpose();  // dP for now
                for (int i = 0; i < s.seq; ++i) {
                    const float* p = P.data() + static_cast<std::size_t>(i) * s.seq;
                    float* ds = dS.data() + static_cast<std::size_t>(i) * s.seq;
                    float dot = 0.0f;
                    for (int j = 0; j <= i; ++j) {
                        dot += p[j] * ds[j];
                    }
                    for (int j = 0; j <= i; ++j) {
                        ds[j] = p[j] * (ds[j] - dot) * s.scale;
                    }
                    // Masked keys had P = 0, so no gradient reaches their scores.
                    std::fill(ds + i + 1, ds + s.seq, 0.0f);
                }
                const ConstSquare dS_op(operand({dS.data(), square}, precision, ds_copy).data(), s.seq, s.seq);
                const ConstSquare P_op(operand(p_bh, precision, p_copy).data(), s.seq, s.seq);
                Strided dQ(dq.data() + block_offset(s, b, h, ld_grad), s.seq, d, Stride(ld_grad));
                dQ.noalias() = dS_op * K;
                dK.noalias() += dS_op.transpose() * Q;
                dV.noalias() += P_op.transpose() * dC;
            }
        }
    }
}

}  // namespace moesim::kernels
