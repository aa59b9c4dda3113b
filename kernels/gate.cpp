// CPU reference of fairseq's Top1Gate/Top2Gate routing; semantics in gate.hpp.
#include "kernels/gate.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <functional>
#include <limits>

#include "kernels/check.hpp"
#include "kernels/counter_rng.hpp"
#include "kernels/top2_weight_grad.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

int top2_capacity(int tokens, int experts)
{
    require(tokens >= 0 && experts >= 1, "top2_capacity", "needs tokens >= 0 and experts >= 1");
    return 2 * ((tokens + experts - 1) / experts);
}

int top1_capacity(int tokens, int experts, double capacity_factor)
{
    require(tokens >= 0 && experts >= 1 && capacity_factor >= 0, "top1_capacity",
            "needs tokens >= 0, experts >= 1 and capacity_factor >= 0");
    return static_cast<int>(capacity_factor * ((tokens + experts - 1) / experts));
}

int eval_capacity(int tokens, double token_fraction)
{
    require(tokens >= 0 && token_fraction > 0, "eval_capacity",
            "needs tokens >= 0 and token_fraction > 0");
    return static_cast<int>(std::ceil(token_fraction * tokens));
}

namespace {

// Index of the largest value, ties to the lowest index; `skip` (or -1) is left out.
int argmax_row(const float* row, int n, int skip, const float* noise)
{
    int best = -1;
    float best_value = 0;
    for (int e = 0; e < n; ++e) {
        if (e == skip) {
            continue;
        }
        const float v = noise ? row[e] + noise[e] : row[e];
        if (best < 0 || v > best_value) {
            best = e;
            best_value = v;
        }
    }
    return best;
}

// -sum p log p with p clamped to [eps, 1 - eps] inside the log (torch's probs_to_logits).
double token_entropy(const float* p, int n)
{
    double h = 0;
    for (int e = 0; e < n; ++e) {
        const float clamped = std::clamp(p[e], FLT_EPSILON, 1.0f - FLT_EPSILON);
        h -= static_cast<double>(p[e]) * std::log(static_cast<double>(clamped));
    }
    return h;
}

// Percentages of tokens per expert, sorted busiest first, then the top/bottom 20% sums.
void balance(std::span<const int> hist, int tokens, double& top, double& bottom, int& unused)
{
    const int experts = static_cast<int>(hist.size());
    std::vector<double> pct(hist.size());
    unused = 0;
    for (int e = 0; e < experts; ++e) {
        pct[e] = 100.0 * hist[e] / tokens;
        unused += hist[e] == 0 ? 1 : 0;
    }
    std::sort(pct.begin(), pct.end(), std::greater<>());
    // fairseq adds torch.finfo(float32).tiny to every entry after sorting.
    for (double& v : pct) {
        v += std::numeric_limits<float>::min();
    }
    // SAMPLE_FRACTION = 0.2 of the experts, at least one.
    const int sample = std::max(static_cast<int>(std::ceil(experts * 0.2)), 1);
    top = 0;
    bottom = 0;
    for (int i = 0; i < sample; ++i) {
        top += pct[i];
        bottom += pct[experts - 1 - i];
    }
}

// A result with every choice unassigned (expert -1) and every tally zero.
GateResult empty_result(int tokens, int experts, int k, int capacity)
{
    GateResult r;
    r.tokens = tokens;
    r.experts = experts;
    r.k = k;
    r.capacity = capacity;
    r.probs.resize(elems(tokens, experts));
    r.expert.assign(elems(tokens, k), -1);
    r.location.assign(elems(tokens, k), -1);
    r.kept.assign(elems(tokens, k), 0);
    r.weight.assign(elems(tokens, k), 0.0f);
    r.counts.assign(experts, 0);
    r.demand.assign(experts, 0);
    r.ce.assign(experts, 0.0f);
    return r;
}

GateResult dts_gate_forward(std::span<const float> logits, int tokens, int experts,
                            const GateOptions& options, std::span<const std::uint8_t> padding)
{
    const char* fn = "gate_forward (dense-to-sparse)";
    require(options.k >= 1 && options.k <= experts, fn, "k must be in [1, experts]");
    const int k = experts;
    const float inv_t = 1.0f / options.dts_temperature;
    GateResult r = empty_result(tokens, experts, k, tokens);
    std::vector<int> hist1(experts, 0), demand1(experts, 0);
    std::vector<double> prob_sum(experts, 0.0);
    std::vector<int> order(experts);
    double entropy_sum = 0;
    for (int t = 0; t < tokens; ++t) {
        const float* x = logits.data() + elems(t, experts);
        float* p = r.probs.data() + elems(t, experts);
        float mx = x[0] * inv_t;
        for (int e = 1; e < experts; ++e) {
            mx = std::max(mx, x[e] * inv_t);
        }
        float sum = 0;
        for (int e = 0; e < experts; ++e) {
            p[e] = std::exp(x[e] * inv_t - mx);
            sum += p[e];
        }
        for (int e = 0; e < experts; ++e) {
            p[e] /= sum;
            prob_sum[e] += p[e];
        }
        entropy_sum += token_entropy(p, experts);
        for (int e = 0; e < experts; ++e) {
            order[e] = e;
        }
        // On the logits, as fairseq's argmax, so that the kept experts are a prefix.
        std::stable_sort(order.begin(), order.end(), [x](int a, int b) { return x[a] > x[b]; });
        ++hist1[order[0]];
        const bool pad = !padding.empty() && padding[t] != 0;
        if (!pad) {
            ++demand1[order[0]];
        }
        for (int j = 0; j < k; ++j) {
            const std::size_t c = elems(t, k) + j;
            const int e = order[j];
            r.expert[c] = e;
            const bool take = !pad && (options.dts_dense || j < options.k || p[e] > options.dts_threshold);
            if (take) {
                r.location[c] = r.counts[e]++;
                r.kept[c] = 1;
                r.weight[c] = p[e];
            }
        }
    }
    for (int e = 0; e < experts; ++e) {
        r.demand[e] = r.counts[e];
        r.ce[e] = tokens > 0 ? static_cast<float>(static_cast<double>(demand1[e]) / tokens) : 0.0f;
    }
    r.aux_loss = aux_loss_from_sums(prob_sum, demand1, tokens);
    r.stats = gate_stats_from_tallies(hist1, {}, demand1, {}, tokens, tokens, entropy_sum);
    return r;
}

}  // namespace

float aux_loss_from_sums(std::span<const double> prob_sum, std::span<const int> first_demand,
                         int tokens)
{
    require_size(first_demand.size(), prob_sum.size(), "aux_loss_from_sums", "first_demand");
    if (tokens == 0) {
        return 0.0f;
    }
    const double experts = static_cast<double>(prob_sum.size());
    double sum = 0;
    for (std::size_t e = 0; e < prob_sum.size(); ++e) {
        sum += (prob_sum[e] / tokens) * (static_cast<double>(first_demand[e]) / tokens);
    }
    // mean_e(me * ce) * E * E
    return static_cast<float>(sum / experts * experts * experts);
}

GateStats gate_stats_from_tallies(std::span<const int> hist1, std::span<const int> hist2,
                                  std::span<const int> demand1, std::span<const int> demand2,
                                  int tokens, int capacity, double entropy_sum)
{
    const std::size_t experts = hist1.size();
    require_size(demand1.size(), experts, "gate_stats_from_tallies", "demand1");
    require_size(hist2.size(), demand2.size(), "gate_stats_from_tallies", "hist2 vs demand2");
    require(hist2.empty() || hist2.size() == experts, "gate_stats_from_tallies",
            "hist2 must be empty or have one entry per expert");
    GateStats s;
    if (tokens == 0) {
        return s;
    }
    s.entropy_gating = entropy_sum / tokens;
    long long routed1 = 0, dropped1 = 0, routed2 = 0, dropped2 = 0;
    for (std::size_t e = 0; e < experts; ++e) {
        const long long d1 = demand1[e];
        routed1 += d1;
        dropped1 += std::max(0LL, d1 - capacity);
        if (!demand2.empty()) {
            // Second choices hold locations d1 .. d1 + d2 - 1.
            const long long d2 = demand2[e];
            const long long kept2 = std::max(0LL, std::min<long long>(d1 + d2, capacity) - d1);
            routed2 += d2;
            dropped2 += d2 - kept2;
        }
    }
    s.overflow_expert1 = routed1 > 0 ? 100.0 * static_cast<double>(dropped1) / static_cast<double>(routed1) : 0.0;
    s.overflow_expert2 = routed2 > 0 ? 100.0 * static_cast<double>(dropped2) / static_cast<double>(routed2) : 0.0;
    balance(hist1, tokens, s.expert1_balance_top, s.expert1_balance_bottom,
            s.unused_expert1_count);
    if (!hist2.empty()) {
        balance(hist2, tokens, s.expert2_balance_top, s.expert2_balance_bottom,
                s.unused_expert2_count);
    }
    return s;
}

GateResult gate_forward(std::span<const float> logits, int tokens, int experts,
                        const GateOptions& options, std::span<const std::uint8_t> padding)
{
    const char* fn = "gate_forward";
    require(tokens >= 0 && experts >= 1, fn, "needs tokens >= 0 and experts >= 1");
    require_size(logits.size(), elems(tokens, experts), fn, "logits");
    require(padding.empty() || padding.size() == static_cast<std::size_t>(tokens), fn,
            "padding must be empty or have one entry per token");
    if (options.dts_temperature > 0) {
        return dts_gate_forward(logits, tokens, experts, options, padding);
    }
    require(options.k == 1 || options.k == 2, fn,
            "k must be 1 (Top1Gate) or 2 (Top2Gate), got " + std::to_string(options.k));
    require(options.k <= experts, fn, "k = 2 needs at least two experts");
    require(options.capacity >= 0, fn, "capacity must be >= 0");
    require_size(logits.size(), elems(tokens, experts), fn, "logits");
    require(padding.empty() || padding.size() == static_cast<std::size_t>(tokens), fn,
            "padding must be empty or have one entry per token");

    const int k = options.k;
    const int cap = options.capacity;
    GateResult r = empty_result(tokens, experts, k, cap);

    std::vector<int> demand1(experts, 0), demand2(experts, 0);
    std::vector<int> hist1(experts, 0), hist2(k == 2 ? experts : 0, 0);
    std::vector<double> prob_sum(experts, 0.0);
    std::vector<float> noise(options.second_policy == SecondExpertPolicy::Sampling ? experts : 0);
    std::vector<float> prenorm(elems(tokens, k), 0.0f);  // gate value before dropping
    double entropy_sum = 0;

    // Pass 1: softmax, choices, routing masks; first-choice locations in token order.
    for (int t = 0; t < tokens; ++t) {
        const float* x = logits.data() + elems(t, experts);
        float* p = r.probs.data() + elems(t, experts);
        float mx = x[0];
        for (int e = 1; e < experts; ++e) {
            mx = std::max(mx, x[e]);
        }
        float sum = 0;
        for (int e = 0; e < experts; ++e) {
            p[e] = std::exp(x[e] - mx);
            sum += p[e];
        }
        for (int e = 0; e < experts; ++e) {
            p[e] /= sum;
            prob_sum[e] += p[e];
        }
        entropy_sum += token_entropy(p, experts);

        const bool pad = !padding.empty() && padding[t] != 0;
        const int e1 = argmax_row(x, experts, -1, nullptr);
        r.expert[elems(t, k)] = e1;
        ++hist1[e1];
        float g1 = p[e1];
        if (!pad) {
            r.location[elems(t, k)] = demand1[e1]++;
        }
        if (k == 2) {
            if (!noise.empty()) {
                for (int e = 0; e < experts; ++e) {
                    noise[e] = gumbel(options.seed, elems(t, experts) + e);
                }
            }
            const int e2 = argmax_row(x, experts, e1, noise.empty() ? nullptr : noise.data());
            r.expert[elems(t, k) + 1] = e2;
            ++hist2[e2];
            float g2 = p[e2];
            if (options.normalize_before_dropping) {
                const float denom = std::max(g1 + g2, FLT_EPSILON);
                g1 /= denom;
                g2 /= denom;
            }
            bool routed2 = !pad;
            if (options.second_policy == SecondExpertPolicy::Random) {
                routed2 = routed2 &&
                          2.0f * g2 > uniform01(options.seed, RngStream::SecondExpertKeep, t);
            }
            if (routed2) {
                r.location[elems(t, k) + 1] = 0;  // placeholder: placed in pass 2
            }
            prenorm[elems(t, k) + 1] = g2;
        }
        prenorm[elems(t, k)] = g1;
    }
    // Pass 2: second choices queue behind every first choice of their expert.
    if (k == 2) {
        for (int t = 0; t < tokens; ++t) {
            int& loc = r.location[elems(t, k) + 1];
            if (loc >= 0) {
                const int e2 = r.expert[elems(t, k) + 1];
                loc = demand1[e2] + demand2[e2]++;
            }
        }
    }
    // Pass 3: drop beyond capacity, combine weights.
    for (int t = 0; t < tokens; ++t) {
        for (int j = 0; j < k; ++j) {
            const std::size_t c = elems(t, k) + j;
            r.kept[c] = r.location[c] >= 0 && r.location[c] < cap ? 1 : 0;
            if (r.kept[c]) {
                ++r.counts[r.expert[c]];
            }
        }
        const std::size_t c = elems(t, k);
        if (k == 1 || options.normalize_before_dropping) {
            for (int j = 0; j < k; ++j) {
                r.weight[c + j] = r.kept[c + j] ? prenorm[c + j] : 0.0f;
            }
        } else {
            const float a = r.kept[c] ? prenorm[c] : 0.0f;
            const float b = r.kept[c + 1] ? prenorm[c + 1] : 0.0f;
            const float denom = std::max(a + b, FLT_EPSILON);
            r.weight[c] = a / denom;
            r.weight[c + 1] = b / denom;
        }
    }
    for (int e = 0; e < experts; ++e) {
        r.demand[e] = demand1[e] + demand2[e];
        r.ce[e] = tokens > 0 ? static_cast<float>(static_cast<double>(demand1[e]) / tokens) : 0.0f;
    }
    r.aux_loss = aux_loss_from_sums(prob_sum, demand1, tokens);
    r.stats = gate_stats_from_tallies(hist1, hist2, demand1,
                                      k == 2 ? std::span<const int>(demand2) : std::span<const int>(),
                                      tokens, cap, entropy_sum);
    return r;
}

void gate_backward(const GateResult& r, const GateOptions& options, std::span<const float> dweight,
                   float daux, std::span<float> dlogits)
{
    const char* fn = "gate_backward";
    const int tokens = r.tokens, experts = r.experts, k = r.k;
    const bool dts = options.dts_temperature > 0;
    require(dts ? k == experts : options.k == k, fn, "options.k differs from the forward's k");
    require_size(dweight.size(), elems(tokens, k), fn, "dweight");
    require_size(dlogits.size(), elems(tokens, experts), fn, "dlogits");
    if (tokens == 0) {
        return;
    }
    // d l_aux / d probs[t][e] = E * ce[e] / tokens (ce is a constant: it comes from argmax).
    std::vector<float> daux_dp(experts);
    for (int e = 0; e < experts; ++e) {
        daux_dp[e] = static_cast<float>(static_cast<double>(daux) * experts * r.ce[e] / tokens);
    }
    std::vector<float> dp(experts);
    for (int t = 0; t < tokens; ++t) {
        const float* p = r.probs.data() + elems(t, experts);
        std::copy(daux_dp.begin(), daux_dp.end(), dp.begin());
        const std::size_t c = elems(t, k);
        const int e1 = r.expert[c];
        if (dts) {
            for (int j = 0; j < k; ++j) {
                dp[r.expert[c + j]] += r.kept[c + j] ? dweight[c + j] : 0.0f;
            }
        } else if (k == 1) {
            dp[e1] += r.kept[c] ? dweight[c] : 0.0f;
        } else {
            const int e2 = r.expert[c + 1];
            float dg1, dg2;
            top2_weight_grad(p[e1], p[e2], dweight[c], dweight[c + 1], r.kept[c], r.kept[c + 1],
                             options.normalize_before_dropping, dg1, dg2);
            dp[e1] += dg1;
            dp[e2] += dg2;
        }
        // Softmax backward: dx = p * (dp - sum p dp), over T for softmax(logits / T).
        double dot = 0;
        for (int e = 0; e < experts; ++e) {
            dot += static_cast<double>(p[e]) * dp[e];
        }
        float* dx = dlogits.data() + elems(t, experts);
        const float inv_t = dts ? 1.0f / options.dts_temperature : 1.0f;
        for (int e = 0; e < experts; ++e) {
            dx[e] = p[e] * (dp[e] - static_cast<float>(dot)) * inv_t;
        }
    }
}

}  // namespace moesim::kernels
