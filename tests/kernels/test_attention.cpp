// Tests of causal self-attention: the forward against a naive triple loop in double, the
// causal structure of the probabilities, the backward against central differences of
// that double reference, grouped-query heads, and q/k/v as column blocks of one QKV buffer.
// Tolerances (fp32 kernels, inputs in [-1, 1]; about 10x the largest error seen): probs
// 1e-6 abs, ctx 2e-6 abs against the double reference; gradients 2e-6 abs + 1e-5 rel
// against central differences of the double reference (h = 1e-4, error ~1e-9).
#include "kernels/attention.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::random_vector;

AttentionShape make_shape(int batch, int seq, int heads, int kv_heads, int head_dim)
{
    return {batch, seq, heads, kv_heads, head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim))};
}

std::string describe(const AttentionShape& s)
{
    return "batch " + std::to_string(s.batch) + " seq " + std::to_string(s.seq) + " heads " +
           std::to_string(s.heads) + " kv_heads " + std::to_string(s.kv_heads) + " head_dim " +
           std::to_string(s.head_dim);
}

// q, k and v as separate buffers, each rows x heads*d: the API has one row stride for the
// three, so with kv_heads < heads the k and v rows carry padding after their kv_heads*d
// columns, filled with NaN to show that it is never read.
struct Inputs {
    AttentionShape shape;
    std::vector<float> q, k, v;
    int rows() const { return shape.batch * shape.seq; }
    int ld() const { return shape.heads * shape.head_dim; }
    int kv_width() const { return shape.kv_heads * shape.head_dim; }
};

Inputs make_inputs(const AttentionShape& s, std::uint64_t seed, float range = 1.0f)
{
    const auto n = static_cast<std::size_t>(s.batch * s.seq) * s.heads * s.head_dim;
    Inputs in{s, random_vector(n, seed, -range, range), random_vector(n, seed + 1, -range, range),
              random_vector(n, seed + 2, -range, range)};
    for (std::size_t i = 0; i < n; ++i) {
        if (static_cast<int>(i % in.ld()) >= in.kv_width()) {
            in.k[i] = in.v[i] = std::numeric_limits<float>::quiet_NaN();
        }
    }
    return in;
}

// The definition, written out in double (q, k, v with row stride ld): for each sequence,
// head and query i, softmax over keys j <= i of scale * <q_i, k_j>, then the weighted sum
// of v_j. Returns ctx (rows x heads*d, contiguous); probs (batch x heads x seq x seq) if given.
template <class T>
std::vector<double> reference_forward(const AttentionShape& s, const std::vector<T>& q, const std::vector<T>& k,
                                      const std::vector<T>& v, int ld, std::vector<double>* probs = nullptr)
{
    const int d = s.head_dim, qw = s.heads * d, group = s.heads / s.kv_heads;
    std::vector<double> ctx(static_cast<std::size_t>(s.batch * s.seq) * qw, 0.0);
    if (probs) {
        probs->assign(static_cast<std::size_t>(s.batch) * s.heads * s.seq * s.seq, 0.0);
    }
    std::vector<double> p(s.seq);
    for (int b = 0; b < s.batch; ++b) {
        for (int h = 0; h < s.heads; ++h) {
            const int g = h / group;
            for (int i = 0; i < s.seq; ++i) {
                const std::size_t qi = static_cast<std::size_t>(b * s.seq + i) * ld + h * d;
                const std::size_t ci = static_cast<std::size_t>(b * s.seq + i) * qw + h * d;
                double mx = -std::numeric_limits<double>::infinity();
                for (int j = 0; j <= i; ++j) {
                    const std::size_t kj = static_cast<std::size_t>(b * s.seq + j) * ld + g * d;
                    double dot = 0;
                    for (int c = 0; c < d; ++c) {
                        dot += static_cast<double>(q[qi + c]) * static_cast<double>(k[kj + c]);
                    }
                    p[j] = dot * s.scale;
                    mx = std::max(mx, p[j]);
                }
                double sum = 0;
                for (int j = 0; j <= i; ++j) {
                    p[j] = std::exp(p[j] - mx);
                    sum += p[j];
                }
                for (int j = 0; j <= i; ++j) {
                    p[j] /= sum;
                    const std::size_t vj = static_cast<std::size_t>(b * s.seq + j) * ld + g * d;
                    for (int c = 0; c < d; ++c) {
                        ctx[ci + c] += p[j] * static_cast<double>(v[vj + c]);
                    }
                    if (probs) {
                        (*probs)[((static_cast<std::size_t>(b) * s.heads + h) * s.seq + i) * s.seq + j] = p[j];
                    }
                }
            }
        }
    }
    return ctx;
}

struct Forward {
    std::vector<float> ctx, probs;
};

Forward run_forward(const Inputs& in)
{
    const AttentionShape& s = in.shape;
    Forward f{std::vector<float>(static_cast<std::size_t>(in.rows()) * in.ld()),
              std::vector<float>(static_cast<std::size_t>(s.batch) * s.heads * s.seq * s.seq)};
    attention_forward(s, in.q, in.k, in.v, in.ld(), f.ctx, in.ld(), f.probs);
    return f;
}

const AttentionShape kShapes[] = {
    make_shape(2, 5, 2, 2, 3),   // the finite-difference size
    make_shape(2, 5, 2, 1, 3),   // grouped-query: both query heads read kv head 0
    make_shape(1, 1, 3, 3, 4),   // one token
    make_shape(3, 17, 6, 2, 8),  // groups of three query heads
    make_shape(2, 40, 4, 4, 16),
};

TEST(Attention, ForwardMatchesNaiveDoubleReference)
{
    std::uint64_t seed = 10;
    for (const AttentionShape& s : kShapes) {
        SCOPED_TRACE(describe(s));
        const Inputs in = make_inputs(s, seed += 3);
        const Forward f = run_forward(in);
        std::vector<double> ref_probs;
        const std::vector<double> ref_ctx = reference_forward(s, in.q, in.k, in.v, in.ld(), &ref_probs);
        ASSERT_EQ(f.probs.size(), ref_probs.size());
        for (std::size_t i = 0; i < ref_probs.size(); ++i) {
            EXPECT_NEAR(f.probs[i], ref_probs[i], 1e-6) << "probs[" << i << "]";
        }
        for (std::size_t i = 0; i < ref_ctx.size(); ++i) {
            EXPECT_NEAR(f.ctx[i], ref_ctx[i], 2e-6) << "ctx[" << i << "]";
        }
    }
}

TEST(Attention, FirstQueryAttendsOnlyToItself)
{
    for (const AttentionShape& s : kShapes) {
        SCOPED_TRACE(describe(s));
        const Inputs in = make_inputs(s, 20, 3.0f);
        const Forward f = run_forward(in);
        const int d = s.head_dim, group = s.heads / s.kv_heads;
        for (int b = 0; b < s.batch; ++b) {
            const std::size_t row0 = static_cast<std::size_t>(b) * s.seq;
            for (int h = 0; h < s.heads; ++h) {
                const std::size_t p0 = (static_cast<std::size_t>(b) * s.heads + h) * s.seq * s.seq;
                EXPECT_EQ(f.probs[p0], 1.0f);
                for (int c = 0; c < d; ++c) {
                    // exp(0) / exp(0) = 1 exactly, so ctx equals v bit for bit.
                    EXPECT_EQ(f.ctx[row0 * in.ld() + h * d + c], in.v[row0 * in.ld() + (h / group) * d + c])
                        << "b " << b << " h " << h << " c " << c;
                }
            }
        }
    }
}

TEST(Attention, ProbabilitiesAreCausalAndSumToOne)
{
    // range 30: scores up to 30^2 * 8 / sqrt(8) ~ 2500, which overflows expf without the
    // row maximum subtracted.
    for (const float range : {1.0f, 30.0f}) {
        const AttentionShape s = make_shape(2, 33, 4, 2, 8);
        const Forward f = run_forward(make_inputs(s, 30, range));
        for (int bh = 0; bh < s.batch * s.heads; ++bh) {
            for (int i = 0; i < s.seq; ++i) {
                const float* row = f.probs.data() + (static_cast<std::size_t>(bh) * s.seq + i) * s.seq;
                double sum = 0;
                for (int j = 0; j < s.seq; ++j) {
                    if (j > i) {
                        EXPECT_EQ(row[j], 0.0f) << "query " << i << " key " << j;
                    } else {
                        EXPECT_TRUE(row[j] >= 0.0f && row[j] <= 1.0f) << row[j];
                    }
                    sum += row[j];
                }
                EXPECT_NEAR(sum, 1.0, 1e-6) << "range " << range << " head " << bh << " query " << i;
            }
        }
        for (const float c : f.ctx) {
            ASSERT_TRUE(std::isfinite(c)) << "range " << range;
        }
    }
}

// loss = <w, ctx>; the analytic gradients from the float kernel against central
// differences of the double reference (so the differences carry no fp32 noise).
void check_backward_against_finite_differences(const AttentionShape& s)
{
    SCOPED_TRACE(describe(s));
    const Inputs in = make_inputs(s, 40 + s.kv_heads);
    const Forward f = run_forward(in);
    const auto w = random_vector(f.ctx.size(), 50);
    std::vector<float> dq(in.q.size(), std::numeric_limits<float>::quiet_NaN());  // overwritten, not added to
    std::vector<float> dk(in.k.size(), std::numeric_limits<float>::quiet_NaN());
    std::vector<float> dv(in.v.size(), std::numeric_limits<float>::quiet_NaN());
    attention_backward(s, w, in.ld(), in.q, in.k, in.v, in.ld(), f.probs, dq, dk, dv, in.ld());

    std::vector<double> q(in.q.begin(), in.q.end()), k(in.k.begin(), in.k.end()), v(in.v.begin(), in.v.end());
    const auto loss = [&] {
        const std::vector<double> ctx = reference_forward(s, q, k, v, in.ld());
        double l = 0;
        for (std::size_t i = 0; i < ctx.size(); ++i) {
            l += w[i] * ctx[i];
        }
        return l;
    };
    const double h = 1e-4;
    // Only the heads' columns: k and v padding (kv_heads < heads) is neither read nor written.
    const auto check = [&](std::vector<double>& x, const std::vector<float>& grad, int width, const char* name) {
        for (std::size_t i = 0; i < x.size(); ++i) {
            if (static_cast<int>(i % in.ld()) >= width) {
                EXPECT_TRUE(std::isnan(grad[i])) << name << "[" << i << "] padding was written";
                continue;
            }
            const double saved = x[i];
            x[i] = saved + h;
            const double up = loss();
            x[i] = saved - h;
            const double down = loss();
            x[i] = saved;
            const double fd = (up - down) / (2 * h);
            EXPECT_NEAR(grad[i], fd, 2e-6 + 1e-5 * std::fabs(fd)) << name << "[" << i << "]";
        }
    };
    check(q, dq, in.ld(), "dq");
    check(k, dk, in.kv_width(), "dk");
    check(v, dv, in.kv_width(), "dv");
}

TEST(Attention, BackwardMatchesFiniteDifferences)
{
    check_backward_against_finite_differences(make_shape(2, 5, 2, 2, 3));
}

TEST(Attention, GroupedQueryBackwardMatchesFiniteDifferences)
{
    check_backward_against_finite_differences(make_shape(2, 5, 2, 1, 3));
    check_backward_against_finite_differences(make_shape(1, 4, 4, 2, 2));
}

// q, k, v as column blocks of one fused QKV output (row stride heads*d + 2*kv_heads*d) and
// ctx with a padded row stride give the same numbers as separate buffers, and leave every
// other column alone.
TEST(Attention, FusedQkvLayoutMatchesSeparateBuffers)
{
    for (const AttentionShape& s : {make_shape(2, 5, 2, 2, 3), make_shape(2, 9, 4, 2, 5)}) {
        SCOPED_TRACE(describe(s));
        const Inputs in = make_inputs(s, 60);
        const int rows = in.rows(), qw = in.ld(), kw = in.kv_width();
        const int ld = qw + 2 * kw;  // 3 * heads * head_dim without grouped-query
        const int ld_out = qw + 3;
        const float sentinel = -7.25f;
        std::vector<float> qkv(static_cast<std::size_t>(rows) * ld);
        for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < qw; ++c) {
                qkv[static_cast<std::size_t>(r) * ld + c] = in.q[static_cast<std::size_t>(r) * qw + c];
            }
            for (int c = 0; c < kw; ++c) {
                qkv[static_cast<std::size_t>(r) * ld + qw + c] = in.k[static_cast<std::size_t>(r) * qw + c];
                qkv[static_cast<std::size_t>(r) * ld + qw + kw + c] = in.v[static_cast<std::size_t>(r) * qw + c];
            }
        }
        const std::span<const float> all(qkv);
        std::vector<float> ctx(static_cast<std::size_t>(rows) * ld_out, sentinel);
        std::vector<float> probs(static_cast<std::size_t>(s.batch) * s.heads * s.seq * s.seq);
        attention_forward(s, all, all.subspan(qw), all.subspan(qw + kw), ld, ctx, ld_out, probs);

        const Forward f = run_forward(in);
        EXPECT_EQ(probs, f.probs);
        for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < ld_out; ++c) {
                const float got = ctx[static_cast<std::size_t>(r) * ld_out + c];
                EXPECT_EQ(got, c < qw ? f.ctx[static_cast<std::size_t>(r) * qw + c] : sentinel)
                    << "row " << r << " column " << c;
            }
        }

        // Backward into one dQKV buffer (ld_grad = ld) from a padded dctx.
        const auto w = random_vector(static_cast<std::size_t>(rows) * qw, 61);
        std::vector<float> dctx(static_cast<std::size_t>(rows) * ld_out, 1e30f);  // padding never read
        for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < qw; ++c) {
                dctx[static_cast<std::size_t>(r) * ld_out + c] = w[static_cast<std::size_t>(r) * qw + c];
            }
        }
        std::vector<float> dqkv(qkv.size(), sentinel);
        const std::span<float> dall(dqkv);
        attention_backward(s, dctx, ld_out, all, all.subspan(qw), all.subspan(qw + kw), ld, probs, dall,
                           dall.subspan(qw), dall.subspan(qw + kw), ld);
        std::vector<float> dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
        attention_backward(s, w, qw, in.q, in.k, in.v, qw, f.probs, dq, dk, dv, qw);
        for (int r = 0; r < rows; ++r) {
            const float* got = dqkv.data() + static_cast<std::size_t>(r) * ld;
            for (int c = 0; c < qw; ++c) {
                EXPECT_EQ(got[c], dq[static_cast<std::size_t>(r) * qw + c]) << "dq row " << r << " column " << c;
            }
            for (int c = 0; c < kw; ++c) {
                EXPECT_EQ(got[qw + c], dk[static_cast<std::size_t>(r) * qw + c]) << "dk row " << r << " column " << c;
                EXPECT_EQ(got[qw + kw + c], dv[static_cast<std::size_t>(r) * qw + c])
                    << "dv row " << r << " column " << c;
            }
        }
    }
}

TEST(Attention, RejectsBadShapes)
{
    const AttentionShape s = make_shape(1, 2, 2, 2, 2);
    std::vector<float> x(8), ctx(8), probs(8), small(7);
    EXPECT_NO_THROW(attention_forward(s, x, x, x, 4, ctx, 4, probs));
    AttentionShape three_kv = s;
    three_kv.heads = 3;
    three_kv.kv_heads = 2;  // does not divide heads
    EXPECT_THROW(attention_forward(three_kv, x, x, x, 6, ctx, 6, probs), std::invalid_argument);
    EXPECT_THROW(attention_forward(s, x, x, x, 3, ctx, 4, probs), std::invalid_argument);      // ld_in < width
    EXPECT_THROW(attention_forward(s, small, x, x, 4, ctx, 4, probs), std::invalid_argument);  // q too short
    EXPECT_THROW(attention_forward(s, x, x, x, 4, ctx, 4, small), std::invalid_argument);      // probs size
    EXPECT_THROW(attention_backward(s, x, 4, x, x, x, 4, probs, x, x, small, 4), std::invalid_argument);
    EXPECT_THROW(attention_backward(s, x, 4, x, x, x, 4, probs, x, x, x, 3), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::kernels
