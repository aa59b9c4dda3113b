// Tests of the CPU gate against closed forms, a hand-worked routing, and an independent
// one-hot/cumsum formulation of fairseq's top2gating.
#include "kernels/gate.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::random_vector;

GateOptions top2(int capacity, SecondExpertPolicy policy = SecondExpertPolicy::All)
{
    GateOptions o;
    o.k = 2;
    o.capacity = capacity;
    o.second_policy = policy;
    return o;
}

// The hand-worked case: six tokens, three experts, capacity 2, policy all.
const std::vector<float> kHandLogits = {
    3, 2, 0,  // t0: e1 = 0, e2 = 1
    3, 0, 2,  // t1: 0, 2
    3, 2, 0,  // t2: 0, 1
    0, 3, 2,  // t3: 1, 2
    2, 3, 0,  // t4: 1, 0
    0, 2, 3,  // t5: 2, 1
};

TEST(Gate, CapacityHelpersMatchFairseq)
{
    EXPECT_EQ(top2_capacity(10, 4), 6);  // 2 * ceil(10 / 4)
    EXPECT_EQ(top2_capacity(8, 4), 4);
    EXPECT_EQ(top2_capacity(0, 4), 0);
    EXPECT_EQ(top1_capacity(10, 4, 1.0), 3);
    EXPECT_EQ(top1_capacity(10, 4, 1.25), 3);  // int(1.25 * 3)
    EXPECT_EQ(top1_capacity(16, 4, 1.25), 5);
    EXPECT_EQ(eval_capacity(10, 0.25), 3);
}

TEST(Gate, HandWorkedTop2Routing)
{
    const GateResult r = gate_forward(kHandLogits, 6, 3, top2(2));
    const std::vector<int> expert = {0, 1, 0, 2, 0, 1, 1, 2, 1, 0, 2, 1};
    const std::vector<int> location = {0, 2, 1, 1, 2, 3, 0, 2, 1, 3, 0, 4};
    const std::vector<std::uint8_t> kept = {1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0};
    EXPECT_EQ(r.expert, expert);
    EXPECT_EQ(r.location, location);
    EXPECT_EQ(r.kept, kept);
    EXPECT_EQ(r.counts, (std::vector<int>{2, 2, 2}));
    EXPECT_EQ(r.demand, (std::vector<int>{4, 5, 3}));
    const float big = 1.0f / (1.0f + std::exp(-1.0f));  // e^3 / (e^3 + e^2)
    const std::vector<float> weight = {1, 0, big, 1 - big, 0, 0, 1, 0, 1, 0, 1, 0};
    for (std::size_t i = 0; i < weight.size(); ++i) {
        EXPECT_NEAR(r.weight[i], weight[i], 1e-6) << "choice " << i;
    }
    EXPECT_NEAR(r.stats.overflow_expert1, 100.0 / 6, 1e-9);
    EXPECT_NEAR(r.stats.overflow_expert2, 500.0 / 6, 1e-9);
    // hist1 = {3, 2, 1}, hist2 = {1, 3, 2}; 20% of 3 experts rounds up to 1.
    EXPECT_NEAR(r.stats.expert1_balance_top, 50.0, 1e-9);
    EXPECT_NEAR(r.stats.expert1_balance_bottom, 100.0 / 6, 1e-9);
    EXPECT_NEAR(r.stats.expert2_balance_top, 50.0, 1e-9);
    EXPECT_NEAR(r.stats.expert2_balance_bottom, 100.0 / 6, 1e-9);
    EXPECT_EQ(r.stats.unused_expert1_count, 0);
    EXPECT_EQ(r.stats.unused_expert2_count, 0);
}

TEST(Gate, NormalizeBeforeDroppingKeepsRawShares)
{
    GateOptions o = top2(2);
    o.normalize_before_dropping = true;
    const GateResult r = gate_forward(kHandLogits, 6, 3, o);
    const float big = 1.0f / (1.0f + std::exp(-1.0f));
    // t0 keeps only its first choice: weight stays big instead of becoming 1.
    EXPECT_NEAR(r.weight[0], big, 1e-6);
    EXPECT_EQ(r.weight[1], 0.0f);
    EXPECT_NEAR(r.weight[2], big, 1e-6);
    EXPECT_NEAR(r.weight[3], 1 - big, 1e-6);
    EXPECT_EQ(r.weight[4], 0.0f);
}

TEST(Gate, ProbabilitiesSumToOneAndWeightsAreNormalised)
{
    for (int experts : {2, 3, 8, 33}) {
        const int tokens = 50;
        const auto logits = random_vector(static_cast<std::size_t>(tokens) * experts, 7 + experts,
                                          -4, 4);
        const GateResult r = gate_forward(logits, tokens, experts, top2(top2_capacity(tokens, experts) / 2));
        for (int t = 0; t < tokens; ++t) {
            double s = 0;
            for (int e = 0; e < experts; ++e) {
                s += r.probs[static_cast<std::size_t>(t) * experts + e];
            }
            EXPECT_NEAR(s, 1.0, 1e-5);
            const float w = r.weight[2 * t] + r.weight[2 * t + 1];
            if (r.kept[2 * t] || r.kept[2 * t + 1]) {
                EXPECT_NEAR(w, 1.0f, 1e-6);
            } else {
                EXPECT_EQ(w, 0.0f);
            }
        }
    }
}

// fairseq's formulation with one-hot masks and a cumsum per expert column, written
// independently of gate.cpp: locations1 = cumsum(mask1) - 1, locations2 = cumsum(mask2)
// - 1 + sum(mask1), kept = location < capacity.
struct Reference {
    std::vector<int> location;
    std::vector<std::uint8_t> kept;
};
Reference cumsum_reference(const std::vector<int>& expert, const std::vector<std::uint8_t>& routed,
                           int tokens, int experts, int k, int capacity)
{
    std::vector<int> mask(static_cast<std::size_t>(k) * tokens * experts, 0);
    for (int j = 0; j < k; ++j) {
        for (int t = 0; t < tokens; ++t) {
            if (routed[t * k + j]) {
                mask[(static_cast<std::size_t>(j) * tokens + t) * experts + expert[t * k + j]] = 1;
            }
        }
    }
    Reference ref{std::vector<int>(expert.size(), -1), std::vector<std::uint8_t>(expert.size(), 0)};
    for (int e = 0; e < experts; ++e) {
        int base = 0;
        for (int j = 0; j < k; ++j) {
            int cumsum = 0;
            for (int t = 0; t < tokens; ++t) {
                const int m = mask[(static_cast<std::size_t>(j) * tokens + t) * experts + e];
                cumsum += m;
                if (m) {
                    ref.location[t * k + j] = cumsum - 1 + base;
                    ref.kept[t * k + j] = cumsum - 1 + base < capacity ? 1 : 0;
                }
            }
            base += cumsum;  // all first choices of e come before its second choices
        }
    }
    return ref;
}

TEST(Gate, DroppedTokensAreThoseOverCapacityInFairseqOrder)
{
    struct Case {
        int tokens, experts, k, capacity;
        SecondExpertPolicy policy;
        bool pad;
    };
    const Case cases[] = {
        {0, 4, 2, 0, SecondExpertPolicy::All, false},      // no tokens
        {17, 1, 1, 5, SecondExpertPolicy::All, false},     // one expert
        {17, 1, 1, 17, SecondExpertPolicy::All, false},    // one expert, dropless
        {40, 8, 2, 10, SecondExpertPolicy::All, false},    // top-2
        {40, 8, 2, 3, SecondExpertPolicy::Sampling, false},  // heavy overflow
        {40, 8, 2, 0, SecondExpertPolicy::All, false},     // capacity 0: everything dropped
        {64, 16, 2, 8, SecondExpertPolicy::Random, true},  // random policy with padding
        {64, 64, 2, 2, SecondExpertPolicy::Sampling, true},  // experts without tokens
        {33, 5, 1, 4, SecondExpertPolicy::All, true},
    };
    std::uint64_t seed = 100;
    for (const Case& c : cases) {
        GateOptions o;
        o.k = c.k;
        o.capacity = c.capacity;
        o.second_policy = c.policy;
        o.seed = seed;
        const auto logits = random_vector(static_cast<std::size_t>(c.tokens) * c.experts, seed++, -3, 3);
        std::vector<std::uint8_t> padding;
        if (c.pad) {
            padding.resize(c.tokens);
            for (int t = 0; t < c.tokens; ++t) {
                padding[t] = t % 7 == 3 ? 1 : 0;
            }
        }
        const GateResult r = gate_forward(logits, c.tokens, c.experts, o, padding);
        std::vector<std::uint8_t> routed(r.location.size());
        for (std::size_t i = 0; i < routed.size(); ++i) {
            routed[i] = r.location[i] >= 0 ? 1 : 0;
        }
        // Routing masks: padding routes nothing; only `random` refuses second choices.
        for (int t = 0; t < c.tokens; ++t) {
            const bool is_pad = c.pad && padding[t];
            EXPECT_EQ(routed[t * c.k], is_pad ? 0 : 1);
            if (c.k == 2 && c.policy != SecondExpertPolicy::Random) {
                EXPECT_EQ(routed[t * c.k + 1], is_pad ? 0 : 1);
            }
            // Expert 1 is the argmax of the logits; expert 2 differs from it.
            const float* row = logits.data() + static_cast<std::size_t>(t) * c.experts;
            EXPECT_EQ(r.expert[t * c.k], std::max_element(row, row + c.experts) - row);
            if (c.k == 2) {
                EXPECT_NE(r.expert[t * c.k + 1], r.expert[t * c.k]);
                if (c.policy != SecondExpertPolicy::Sampling) {
                    float best = -INFINITY;
                    for (int e = 0; e < c.experts; ++e) {
                        if (e != r.expert[t * c.k]) {
                            best = std::max(best, row[e]);
                        }
                    }
                    EXPECT_EQ(row[r.expert[t * c.k + 1]], best);
                }
            }
        }
        const Reference ref = cumsum_reference(r.expert, routed, c.tokens, c.experts, c.k, c.capacity);
        EXPECT_EQ(r.location, ref.location) << c.tokens << "x" << c.experts;
        EXPECT_EQ(r.kept, ref.kept) << c.tokens << "x" << c.experts;
        std::vector<int> counts(c.experts, 0);
        for (std::size_t i = 0; i < r.kept.size(); ++i) {
            counts[r.expert[i]] += r.kept[i];
        }
        EXPECT_EQ(r.counts, counts);
        for (int e = 0; e < c.experts; ++e) {
            EXPECT_LE(r.counts[e], c.capacity);
            EXPECT_EQ(r.counts[e], std::min(r.demand[e], c.capacity));
        }
    }
}

TEST(Gate, AuxLossIsOneWhenBalancedAndMatchesItsFormula)
{
    // Uniform probabilities: me = 1/E, sum(ce) = 1, so l_aux = E * sum(me * ce) = 1.
    const int tokens = 24, experts = 6;
    std::vector<float> zeros(tokens * experts, 0.0f);
    const GateResult flat = gate_forward(zeros, tokens, experts, top2(8));
    EXPECT_NEAR(flat.aux_loss, 1.0f, 1e-6);
    EXPECT_NEAR(flat.stats.entropy_gating, std::log(6.0), 1e-6);
    // All ties go to expert 0 first and expert 1 second.
    EXPECT_EQ(flat.stats.unused_expert1_count, 5);
    EXPECT_EQ(flat.stats.unused_expert2_count, 5);
    EXPECT_NEAR(flat.stats.expert1_balance_top, 100.0 + 1e-38, 1e-9);  // 20% of 6 -> 2 experts
    EXPECT_NEAR(flat.stats.expert1_balance_bottom, 0.0, 1e-30);

    const auto logits = random_vector(tokens * experts, 3, -2, 2);
    const GateResult r = gate_forward(logits, tokens, experts, top2(8));
    double l = 0;
    for (int e = 0; e < experts; ++e) {
        double me = 0;
        int first = 0;
        for (int t = 0; t < tokens; ++t) {
            me += r.probs[t * experts + e];
            first += r.expert[2 * t] == e ? 1 : 0;
        }
        l += (me / tokens) * (static_cast<double>(first) / tokens);
    }
    EXPECT_NEAR(r.aux_loss, l / experts * experts * experts, 1e-5);
}

TEST(Gate, PaddingRoutesNothingButCountsInTheMeans)
{
    const int tokens = 4, experts = 2;
    const std::vector<float> logits = {1, 0, 1, 0, 0, 1, 0, 1};
    const std::vector<std::uint8_t> padding = {0, 1, 0, 0};
    GateOptions o;
    o.k = 1;
    o.capacity = 4;
    const GateResult r = gate_forward(logits, tokens, experts, o, padding);
    EXPECT_EQ(r.location, (std::vector<int>{0, -1, 0, 1}));
    EXPECT_EQ(r.kept, (std::vector<std::uint8_t>{1, 0, 1, 1}));
    EXPECT_EQ(r.weight[1], 0.0f);
    EXPECT_FLOAT_EQ(r.ce[0], 0.25f);  // one routed first choice over four tokens
    EXPECT_FLOAT_EQ(r.ce[1], 0.5f);
    // Top-1 weight is the raw probability of the kept expert.
    EXPECT_FLOAT_EQ(r.weight[0], 1.0f / (1.0f + std::exp(-1.0f)));
}

TEST(Gate, SamplingIsDeterministicPerSeedAndFollowsTheSoftmax)
{
    const int tokens = 20000, experts = 4;
    const std::vector<float> row = {1.0f, 0.5f, 0.0f, -0.5f};
    std::vector<float> logits;
    for (int t = 0; t < tokens; ++t) {
        logits.insert(logits.end(), row.begin(), row.end());
    }
    GateOptions o = top2(tokens, SecondExpertPolicy::Sampling);
    o.seed = 42;
    const GateResult a = gate_forward(logits, tokens, experts, o);
    const GateResult b = gate_forward(logits, tokens, experts, o);
    EXPECT_EQ(a.expert, b.expert);
    o.seed = 43;
    const GateResult c = gate_forward(logits, tokens, experts, o);
    EXPECT_NE(a.expert, c.expert);
    // Gumbel-max: P(e2 = e) = p_e / (1 - p_0) over e != 0.
    std::vector<double> p(experts);
    double z = 0;
    for (int e = 0; e < experts; ++e) {
        z += std::exp(row[e]);
    }
    for (int e = 0; e < experts; ++e) {
        p[e] = std::exp(row[e]) / z;
    }
    std::vector<int> hits(experts, 0);
    for (int t = 0; t < tokens; ++t) {
        ASSERT_EQ(a.expert[2 * t], 0);
        ++hits[a.expert[2 * t + 1]];
    }
    for (int e = 1; e < experts; ++e) {
        EXPECT_NEAR(static_cast<double>(hits[e]) / tokens, p[e] / (1 - p[0]), 0.02) << "expert " << e;
    }
}

TEST(Gate, RandomPolicyKeepsSecondChoiceWithProbabilityTwiceItsGate)
{
    const int tokens = 20000, experts = 4;
    const std::vector<float> row = {2.0f, 1.0f, 0.0f, -1.0f};
    std::vector<float> logits;
    for (int t = 0; t < tokens; ++t) {
        logits.insert(logits.end(), row.begin(), row.end());
    }
    GateOptions o = top2(2 * tokens, SecondExpertPolicy::Random);
    o.seed = 9;
    const GateResult r = gate_forward(logits, tokens, experts, o);
    double z = 0;
    for (float x : row) {
        z += std::exp(x);
    }
    const double g2 = std::exp(1.0) / z;
    int kept2 = 0;
    for (int t = 0; t < tokens; ++t) {
        kept2 += r.kept[2 * t + 1];
    }
    EXPECT_NEAR(static_cast<double>(kept2) / tokens, 2 * g2, 0.02);
    // Refused second choices still count in expert2's histogram (fairseq uses indices2_s).
    EXPECT_NEAR(r.stats.expert2_balance_top, 100.0, 1e-6);
    // A token without its second choice gives its first expert weight 1.
    for (int t = 0; t < 100; ++t) {
        if (!r.kept[2 * t + 1]) {
            EXPECT_FLOAT_EQ(r.weight[2 * t], 1.0f);
        }
    }
}

TEST(Gate, RejectsBadOptionsAndSizes)
{
    const std::vector<float> logits(12, 0.0f);
    GateOptions o = top2(2);
    o.k = 3;
    EXPECT_THROW(gate_forward(logits, 4, 3, o), std::invalid_argument);
    EXPECT_THROW(gate_forward(logits, 5, 3, top2(2)), std::invalid_argument);
    EXPECT_THROW(gate_forward(logits, 12, 1, top2(2)), std::invalid_argument);  // k > experts
    EXPECT_THROW(gate_forward(logits, 4, 3, top2(-1)), std::invalid_argument);
    const std::vector<std::uint8_t> short_padding(2, 0);
    EXPECT_THROW(gate_forward(logits, 4, 3, top2(2), short_padding), std::invalid_argument);
}

// d/dlogits of sum(dw * weight) + daux * l_aux against central differences.
void check_backward(GateOptions o, int tokens, int experts, std::uint64_t seed)
{
    auto logits = random_vector(static_cast<std::size_t>(tokens) * experts, seed, -2, 2);
    const auto dw = random_vector(static_cast<std::size_t>(tokens) * o.k, seed + 1);
    const float daux = 0.7f;
    const GateResult r = gate_forward(logits, tokens, experts, o);
    std::vector<float> dlogits(logits.size());
    gate_backward(r, o, dw, daux, dlogits);
    const auto loss = [&] {
        const GateResult q = gate_forward(logits, tokens, experts, o);
        EXPECT_EQ(q.kept, r.kept) << "routing changed under the perturbation";
        return test::dot(dw, q.weight) + daux * static_cast<double>(q.aux_loss);
    };
    for (std::size_t i = 0; i < logits.size(); ++i) {
        EXPECT_NEAR(dlogits[i], test::finite_difference(logits, i, loss), 2e-3) << "logit " << i;
    }
}

TEST(Gate, BackwardMatchesFiniteDifferences)
{
    GateOptions o = top2(4);
    check_backward(o, 12, 4, 11);  // capacity overflow: some choices dropped
    o.normalize_before_dropping = true;
    check_backward(o, 12, 4, 12);
    o.second_policy = SecondExpertPolicy::Sampling;
    o.seed = 5;
    check_backward(o, 12, 4, 13);
    GateOptions one;
    one.k = 1;
    one.capacity = 3;
    check_backward(one, 12, 4, 14);
}

}  // namespace
}  // namespace moesim::kernels
