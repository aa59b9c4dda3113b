// Rotary position embedding (RoPE) applied in place to the query and key heads, forward and
// backward, in the "rotate_half" convention of GPT-NeoX, Llama (Hugging Face) and open_lm.
// CPU reference.
//
// Convention, as open_lm's default positional embedding ("rotary": RotaryWithCast in
// mlfoundations/open_lm open_lm/positional_embedding/rotary.py, copied from xformers
// components/positional_embedding/rotary.py) computes it for a head vector x of width d at
// position p:
//   inv_freq[i] = theta^(-2i/d), i in [0, d/2)       (open_lm: theta = 10000, fixed)
//   emb = cat(p * inv_freq, p * inv_freq)            (the whole head is rotated)
//   y = x * cos(emb) + rotate_half(x) * sin(emb),    rotate_half(x) = cat(-x[d/2:], x[:d/2])
// i.e. each pair (x[i], x[i + d/2]) (the two halves, not adjacent elements as in the
// original RoFormer / Meta Llama's complex-number form) is rotated by the angle
// p * inv_freq[i]:
//   y[i]       = x[i] cos - x[i + d/2] sin
//   y[i + d/2] = x[i + d/2] cos + x[i] sin
//
// Precision: angles, cos and sin and the rotation are evaluated in double, and only the
// result rounded to float, on the CPU and in the CUDA kernel alike (the same MOESIM_HD
// functions below), so both agree to the last float bit apart from the rare element whose
// double result lies within the libraries' few-ulp double differences of a float rounding
// boundary (1 ulp apart), or results near 0 (~1e-12 apart at position 2047). open_lm builds its tables in fp32 (then casts them to the activation dtype):
// its angle at position 2047 can be off by ~2047 * 2^-24 = 1.2e-4 rad, so a comparison
// with open_lm's outputs at long positions needs a tolerance of that order; the two agree
// on the convention, not on the last bits.
#pragma once

#include <math.h>

#include <span>

#include "kernels/host_device.hpp"

namespace moesim::kernels {

// Tokens are rows, batch-major (row = b * seq + p): the position of row r is r % seq, and
// rows is a multiple of seq. Heads are column blocks of head_dim (even) columns: head h
// occupies columns [h * head_dim, (h + 1) * head_dim) of its row. theta is the frequency
// base (> 0); it has no default here because the model config declares it (open_lm and
// Llama: 10000).
struct RotaryShape {
    int rows = 0;
    int seq = 0;
    int heads = 0;
    int head_dim = 0;
    double theta = 0.0;
};

// The angle (radians) by which pair i of a head at position `pos` is rotated:
// pos * theta^(-2i/head_dim), in double.
MOESIM_HD inline double rotary_angle(int pos, int i, int head_dim, double theta)
{
    return static_cast<double>(pos) * pow(theta, -2.0 * i / head_dim);
}

// Rotates the pair (x0, x1) = (x[i], x[i + d/2]) by the angle whose cosine and sine are c
// and s (s negated gives the inverse rotation, the transpose, for the backward). Products
// of two floats are exact in double, so the only roundings are the double ones and the
// final one to float.
MOESIM_HD inline void rotary_rotate_pair(float& x0, float& x1, double c, double s)
{
    const double a = x0;
    const double b = x1;
    x0 = static_cast<float>(a * c - b * s);
    x1 = static_cast<float>(b * c + a * s);
}

// x is a rows x (heads * head_dim) matrix with row stride ld (ld >= heads * head_dim),
// occupying (rows - 1) * ld + heads * head_dim elements (a longer span is fine), so it may
// be the q or k column block of a fused QKV buffer. With the fused layout [q | k | v] of
// attention.hpp, q and k are adjacent: one call with heads = heads + kv_heads on the whole
// buffer rotates both (the same angles apply to q and k heads). Columns past the heads'
// blocks are neither read nor written. A bad shape or short span throws
// std::invalid_argument.

// x <- R(p) x for every head of every row, in place.
void rotary_forward(const RotaryShape& shape, std::span<float> x, int ld);

// dx <- R(p)^T dx (the rotation by -angle), in place: the gradient of rotary_forward with
// respect to its input, given the gradient with respect to its output.
void rotary_backward(const RotaryShape& shape, std::span<float> dx, int ld);

namespace detail {
// Throws std::invalid_argument naming `function` unless rows >= 0, seq >= 1, rows % seq
// == 0, heads >= 1, head_dim >= 2 and even, theta finite and > 0, and ld >=
// heads * head_dim. Shared with the CUDA version.
void check_rotary_shape(const RotaryShape& shape, int ld, const char* function);
}  // namespace detail

}  // namespace moesim::kernels
