// Causal multi-head self-attention as GPT training runs it, unfused: scores = q k^T * scale,
// causal mask, softmax in fp32, ctx = P v; the probabilities are saved for the backward.
// Grouped-query attention (fewer kv heads than query heads) is supported. CPU reference.
#pragma once

#include <span>

#include "kernels/gemm.hpp"

namespace moesim::kernels {

// Tokens are rows, batch-major: row = b * seq + i, with i the position in the sequence.
// q has heads * head_dim columns, k and v kv_heads * head_dim; head h of a row occupies
// columns [h * head_dim, (h + 1) * head_dim). kv_heads divides heads, and query head h
// reads kv head h / (heads / kv_heads) (kv_heads == heads: plain multi-head attention;
// kv_heads == 1: multi-query). scale multiplies q k^T, normally 1 / sqrt(head_dim).
struct AttentionShape {
    int batch = 0;
    int seq = 0;
    int heads = 0;
    int kv_heads = 0;
    int head_dim = 0;
    float scale = 0.0f;
};

// Strided matrices: a rows x width matrix with row stride ld (ld >= width) occupies
// (rows - 1) * ld + width elements, so q, k and v may be column blocks of one fused QKV
// output (ld = (heads + 2 * kv_heads) * head_dim, i.e. 3 * heads * head_dim without
// grouped-query; k = qkv.subspan(heads * head_dim), ...) or separate
// buffers; a span may be longer than that. q, k and v share ld_in, so separate buffers
// with kv_heads < heads need k and v rows padded to q's stride (the fused layout needs
// nothing). Columns outside the heads' blocks are neither read nor written.

// ctx (rows x heads * head_dim, row stride ld_out) = softmax(mask(q k^T * scale)) v per
// head; probs (batch x heads x seq x seq, contiguous) = the softmax, exactly 0 above the
// diagonal (key j > query i). Softmax in fp32 with the row maximum subtracted.
// `precision` is the two products' operands' (gemm.hpp): under bf16 or fp16, q, k, v and the
// probabilities are rounded for q k^T and P v, while scores, probs and ctx stay fp32.
// Deterministic. A size or shape mismatch throws std::invalid_argument.
void attention_forward(const AttentionShape& shape, std::span<const float> q, std::span<const float> k,
                       std::span<const float> v, int ld_in, std::span<float> ctx, int ld_out,
                       std::span<float> probs, GemmPrecision precision = GemmPrecision::fp32);

// From dctx (row stride ld_out), the forward's q, k, v (row stride ld_in) and probs:
// dP = dctx v^T, dS = P * (dP - rowsum(dP * P)) * scale, dq = dS k, dk = dS^T q,
// dv = P^T dctx, with dk and dv summed over the query heads sharing a kv head (in head
// order). dq, dk and dv (row stride ld_grad; possibly column blocks of one dQKV buffer)
// are overwritten on their heads' columns, not accumulated. `precision`: the four
// products' operands (under bf16 or fp16 dctx, q, k, v, P and dS are rounded for them; the
// softmax backward reads the fp32 P and dP).
void attention_backward(const AttentionShape& shape, std::span<const float> dctx, int ld_out,
                        std::span<const float> q, std::span<const float> k, std::span<const float> v,
                        int ld_in, std::span<const float> probs, std::span<float> dq, std::span<float> dk,
                        std::span<float> dv, int ld_grad, GemmPrecision precision = GemmPrecision::fp32);

namespace detail {
// Throws std::invalid_argument naming `function` unless batch, seq >= 0, heads, kv_heads,
// head_dim >= 1, kv_heads divides heads, ld_in >= heads * head_dim and ld_out >=
// heads * head_dim (the q block is the widest). Shared with the CUDA version.
void check_attention_shape(const AttentionShape& shape, int ld_in, int ld_out, const char* function);
}  // namespace detail

}  // namespace moesim::kernels
