// Dense fp32 GEMM on row-major matrices through Eigen: C = alpha * op(A) * op(B) + beta * C.
// The one place the CPU kernels multiply matrices, so the layout convention lives here,
// and so does the precision of the operands (fp32, or bf16 as autocast rounds them).
#pragma once

#include <bit>
#include <cstdint>
#include <span>

namespace moesim::kernels {

enum class Trans { No, Yes };

// The type a GEMM's operands are rounded to before the product. Products accumulate, and
// C is read and written, in fp32 either way: bf16 is autocast-style mixed precision
// (torch.autocast's matmuls on fp32 tensors: operands .to(torch.bfloat16), fp32 results).
enum class GemmPrecision { fp32, bf16 };

// x rounded to the nearest bf16 (ties to even, as torch's .to(torch.bfloat16) and CUDA's
// __float2bfloat16_rn), returned as the float of the same value. Infinities stay, NaN
// stays NaN, finite values beyond bf16's largest round to infinity.
constexpr float round_to_bf16(float x)
{
    const auto u = std::bit_cast<std::uint32_t>(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
        return std::bit_cast<float>((u | 0x00400000u) & 0xFFFF0000u);  // quiet NaN, sign kept
    }
    const std::uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
    return std::bit_cast<float>(rounded & 0xFFFF0000u);
}

// op(A) is m x k: A is stored m x k (No) or k x m (Yes); op(B) is k x n: B is stored
// k x n (No) or n x k (Yes); C is m x n. All contiguous row-major. With beta == 0, C is
// not read (it may hold NaN). With precision bf16, A and B are rounded (round_to_bf16,
// into temporary copies) before the product. Throws std::invalid_argument on a size
// mismatch.
void gemm(Trans trans_a, Trans trans_b, int m, int n, int k, float alpha,
          std::span<const float> a, std::span<const float> b, float beta, std::span<float> c,
          GemmPrecision precision = GemmPrecision::fp32);

// out[i] = round_to_bf16(in[i]); sizes must match (out may be in).
void round_to_bf16(std::span<const float> in, std::span<float> out);

}  // namespace moesim::kernels
