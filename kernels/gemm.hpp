// Dense fp32 GEMM on row-major matrices through Eigen: C = alpha * op(A) * op(B) + beta * C.
// The one place the CPU kernels multiply matrices, so the layout convention lives here,
// and so does the precision of the operands (fp32, or bf16 or fp16 as autocast rounds them).
#pragma once

#include <bit>
#include <cstdint>
#include <span>

namespace moesim::kernels {

enum class Trans { No, Yes };

// The type a GEMM's operands are rounded to before the product. Products accumulate, and
// C is read and written, in fp32 either way: bf16 and fp16 are autocast-style mixed
// precision (torch.autocast's matmuls on fp32 tensors: operands .to(torch.bfloat16) or
// .to(torch.float16), fp32 results).
enum class GemmPrecision { fp32, bf16, fp16 };

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

// x rounded to the nearest IEEE half (binary16: 10 mantissa bits, exponents -14..15), ties
// to even, as torch's .to(torch.float16) and CUDA's __float2half_rn, returned as the float
// of the same value. Finite values from 65520 (halfway past the largest half, 65504) up
// round to infinity; below 2^-14 the spacing is the smallest subnormal 2^-24, so values up
// to 2^-25 (a tie, to the even 0) round to a signed zero. Infinities stay, NaN stays NaN.
constexpr float round_to_fp16(float x)
{
    const auto u = std::bit_cast<std::uint32_t>(x);
    const std::uint32_t sign = u & 0x80000000u, magnitude = u & 0x7FFFFFFFu;
    if (magnitude > 0x7F800000u) {
        return std::bit_cast<float>(u | 0x00400000u);  // quiet NaN, sign kept
    }
    const int exponent = static_cast<int>(magnitude >> 23) - 127;
    if (exponent >= -14) {  // a half normal (or beyond): drop 13 of float's 23 mantissa bits
        const std::uint32_t rounded = (magnitude + 0xFFFu + ((magnitude >> 13) & 1u)) & ~0x1FFFu;
        const bool overflow = rounded > 0x477FE000u;  // above 65504
        return std::bit_cast<float>(sign | (overflow ? 0x7F800000u : rounded));
    }
    if (exponent < -25) {  // below 2^-25 (float subnormals included): to zero
        return std::bit_cast<float>(sign);
    }
    // A half subnormal: the significand (implicit bit set) in units of 2^-24, to even.
    const std::uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;
    const int shift = -1 - exponent;  // 14..24
    std::uint32_t q = significand >> shift;
    const std::uint32_t rest = significand & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (q & 1u) != 0)) {
        ++q;
    }
    const float value = static_cast<float>(q) * 0x1p-24f;
    return sign != 0 ? -value : value;
}

// op(A) is m x k: A is stored m x k (No) or k x m (Yes); op(B) is k x n: B is stored
// k x n (No) or n x k (Yes); C is m x n. All contiguous row-major. With beta == 0, C is
// not read (it may hold NaN). With precision bf16 or fp16, A and B are rounded
// (round_to_bf16 or round_to_fp16, into temporary copies) before the product. Throws std::invalid_argument on a size
// mismatch.
void gemm(Trans trans_a, Trans trans_b, int m, int n, int k, float alpha,
          std::span<const float> a, std::span<const float> b, float beta, std::span<float> c,
          GemmPrecision precision = GemmPrecision::fp32);

// out[i] = round_to_bf16(in[i]); sizes must match (out may be in).
void round_to_bf16(std::span<const float> in, std::span<float> out);
// out[i] = in[i] as `precision` rounds a GEMM operand (fp32: a copy); sizes must match.
void round_to(GemmPrecision precision, std::span<const float> in, std::span<float> out);

}  // namespace moesim::kernels
