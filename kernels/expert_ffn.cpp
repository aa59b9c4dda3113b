// CPU expert FFNs: grouped GEMMs plus per-expert bias + GELU.
#include "kernels/expert_ffn.hpp"

#include <vector>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

namespace {

void check_weights(const ExpertFfnShape& s, const ExpertFfnWeights& w, const char* fn)
{
    require(s.experts >= 1 && s.model_dim >= 1 && s.ffn_dim >= 1, fn,
            "experts, model_dim and ffn_dim must be >= 1");
    const std::size_t e = static_cast<std::size_t>(s.experts);
    require_size(w.w1.size(), e * elems(s.ffn_dim, s.model_dim), fn, "w1");
    require_size(w.b1.size(), e * s.ffn_dim, fn, "b1");
    require_size(w.w2.size(), e * elems(s.model_dim, s.ffn_dim), fn, "w2");
    require_size(w.b2.size(), e * s.model_dim, fn, "b2");
}

}  // namespace

void expert_ffn_forward(const ExpertFfnShape& shape, const GroupRows& groups,
                        std::span<const float> x, const ExpertFfnWeights& weights,
                        std::span<float> pre, std::span<float> act, std::span<float> y,
                        GemmPrecision precision)
{
    const char* fn = "expert_ffn_forward";
    check_weights(shape, weights, fn);
    require_size(groups.counts.size(), static_cast<std::size_t>(shape.experts), fn,
                 "groups.counts");
    const int d = shape.model_dim, f = shape.ffn_dim;
    require_size(pre.size(), elems(groups.rows, f), fn, "pre");
    require_size(act.size(), elems(groups.rows, f), fn, "act");
    grouped_gemm(groups, x, d, weights.w1, Trans::Yes, f, 0.0f, pre, precision);
    for (int e = 0; e < shape.experts; ++e) {
        const std::size_t row0 = static_cast<std::size_t>(groups.offsets[e]);
        const int m = groups.counts[e];
        bias_gelu(pre.subspan(row0 * f, elems(m, f)), weights.b1.subspan(elems(e, f), f), m, f,
                  shape.activation, act.subspan(row0 * f, elems(m, f)));
    }
    grouped_gemm(groups, act, f, weights.w2, Trans::Yes, d, 0.0f, y, precision);
    for (int e = 0; e < shape.experts; ++e) {
        const float* b2 = weights.b2.data() + elems(e, d);
        for (int r = groups.offsets[e]; r < groups.offsets[e] + groups.counts[e]; ++r) {
            float* row = y.data() + elems(r, d);
            for (int c = 0; c < d; ++c) {
                row[c] += b2[c];
            }
        }
    }
}

void expert_ffn_backward(const ExpertFfnShape& shape, const GroupRows& groups,
                         std::span<const float> dy, std::span<const float> x,
                         const ExpertFfnWeights& weights, std::span<const float> pre,
                         std::span<const float> act, std::span<float> dx,
                         const ExpertFfnGrads& grads, bool accumulate, GemmPrecision precision)
{
    const char* fn = "expert_ffn_backward";
    check_weights(shape, weights, fn);
    require_size(groups.counts.size(), static_cast<std::size_t>(shape.experts), fn,
                 "groups.counts");
    const int d = shape.model_dim, f = shape.ffn_dim;
    require_size(grads.w1.size(), weights.w1.size(), fn, "grads.w1");
    require_size(grads.b1.size(), weights.b1.size(), fn, "grads.b1");
    require_size(grads.w2.size(), weights.w2.size(), fn, "grads.w2");
    require_size(grads.b2.size(), weights.b2.size(), fn, "grads.b2");
    const float beta = accumulate ? 1.0f : 0.0f;

    // fc2: dW2_e = dy_e^T act_e, db2_e = colsum dy_e, dact = dy W2_e.
    grouped_gemm_weight_grad(groups, dy, d, act, f, Trans::Yes, beta, grads.w2, precision);
    std::vector<float> dpre(elems(groups.rows, f), 0.0f);
    grouped_gemm(groups, dy, d, weights.w2, Trans::No, f, 0.0f, dpre, precision);
    for (int e = 0; e < shape.experts; ++e) {
        const std::size_t row0 = static_cast<std::size_t>(groups.offsets[e]);
        const int m = groups.counts[e];
        std::vector<double> acc(d, 0.0);
        for (int r = 0; r < m; ++r) {
            const float* row = dy.data() + (row0 + r) * d;
            for (int c = 0; c < d; ++c) {
                acc[c] += row[c];
            }
        }
        float* db2 = grads.b2.data() + elems(e, d);
        for (int c = 0; c < d; ++c) {
            db2[c] = static_cast<float>(acc[c]) + beta * db2[c];
        }
        // Through bias + GELU, in place on dpre; db1_e = colsum of dpre_e.
        std::vector<float> db1(f);
        const auto dpre_e = std::span<float>(dpre).subspan(row0 * f, elems(m, f));
        bias_gelu_backward(dpre_e, pre.subspan(row0 * f, elems(m, f)),
                           weights.b1.subspan(elems(e, f), f), m, f, shape.activation, dpre_e,
                           db1);
        float* out = grads.b1.data() + elems(e, f);
        for (int c = 0; c < f; ++c) {
            out[c] = db1[c] + beta * out[c];
        }
    }
    // fc1: dW1_e = dpre_e^T x_e, dx = dpre W1_e.
    grouped_gemm_weight_grad(groups, dpre, f, x, d, Trans::Yes, beta, grads.w1, precision);
    grouped_gemm(groups, dpre, f, weights.w1, Trans::No, d, 0.0f, dx, precision);
}

}  // namespace moesim::kernels
