// The MoE gate after its linear layer: fairseq's Top1Gate / Top2Gate routing on CPU.
// Softmax in fp32, first expert = argmax, second expert = argmax of the other experts
// (policy all / sampling / random), locations in each expert's capacity buffer, dropping,
// combine weights, the load-balancing loss l_aux, and fairseq's balance metrics; plus
// the backward pass from combine-weight and l_aux gradients to the logits.
//
// Semantics follow fairseq/modules/moe/top2gate.py and top1gate.py (branch main):
//  - logits are tokens x experts, row-major; probs = softmax(logits) per token.
//  - expert 1 = argmax(logits) (= argmax of probs; ties go to the lowest index, as torch's
//    argmax). Taking it on the logits keeps CPU and CUDA bitwise-equal whatever their exp.
//  - expert 2 (k = 2) = argmax over e != expert1 of logits (policy all and random) or of
//    logits + Gumbel noise (policy sampling, the Gumbel-max trick).
//  - policy random keeps the second choice only when 2 * gate2 > u, u ~ U[0,1), gate2 the
//    raw probability (or the normalised one when normalize_before_dropping).
//  - padding tokens are routed nowhere but still count in the means (me, ce, entropy)
//    and in the histograms, as in fairseq.
//  - location of a choice = number of earlier routed choices of the same expert, with ALL
//    first choices before any second choice (fairseq: locations2 += sum(mask1)); a choice
//    is kept when location < capacity, dropped otherwise.
//  - combine weights: k = 1: gate1 = prob of expert 1 if kept, else 0 (not normalised).
//    k = 2, normalize_before_dropping = false (fairseq's default): g_j = prob_j * kept_j,
//    w_j = g_j / max(g1 + g2, FLT_EPSILON) (so a token whose first choice is dropped gives
//    its second expert weight 1). normalize_before_dropping = true: w_j = kept_j *
//    prob_j / max(prob1 + prob2, FLT_EPSILON).
//  - l_aux = mean_e(me_e * ce_e) * E * E with me = mean over tokens of probs and ce = the
//    fraction of tokens whose (non-padding) first choice is e, before dropping.
// Random draws come from counter_rng.hpp keyed by GateOptions::seed: the same seed gives
// the same routing on CPU and CUDA; torch's own random stream is not reproduced.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace moesim::kernels {

// fairseq's --moe-second-expert-policy.
enum class SecondExpertPolicy { All, Sampling, Random };

struct GateOptions {
    int k = 2;          // 1 = Top1Gate, 2 = Top2Gate
    int capacity = 0;   // slots per expert (see the *_capacity helpers); tokens >= -> dropless
    SecondExpertPolicy second_policy = SecondExpertPolicy::Sampling;  // fairseq's default
    bool normalize_before_dropping = false;  // --moe-normalize-gate-prob-before-dropping
    std::uint64_t seed = 0;                  // for the sampling and random policies
    // EvoMoE's dense-to-sparse gate (arXiv 2112.14397) while dts_temperature > 0; see
    // "Dense-to-sparse gate" below. 0: fairseq's gate as above.
    float dts_temperature = 0;
    float dts_threshold = 0;  // a token takes the experts whose weight exceeds it, at least k
    bool dts_dense = false;   // the dense phase: every token takes every expert
};

// Training capacity of Top2Gate: 2 * ceil(tokens / experts).
int top2_capacity(int tokens, int experts);
// Training capacity of Top1Gate: int(capacity_factor * ceil(tokens / experts)).
int top1_capacity(int tokens, int experts, double capacity_factor);
// Evaluation capacity of both gates: ceil(token_fraction * tokens)
// (--moe-eval-capacity-token-fraction; fairseq uses it when the fraction is > 0).
int eval_capacity(int tokens, double token_fraction);

// fairseq's gate metadata, logged per MoE layer (names as in its train_inner lines).
// Percentages are in [0, 100]. For k = 1 the expert2 fields are 0 (Top1Gate logs none
// of them and no overflow either; overflow_expert1 is computed here all the same).
struct GateStats {
    double overflow_expert1 = 0;  // % of routed first choices dropped (0 when none routed)
    double overflow_expert2 = 0;  // % of routed second choices dropped
    double entropy_gating = 0;    // mean over tokens of -sum p log p (p clamped to [eps,1-eps])
    double expert1_balance_top = 0;     // % of tokens whose expert 1 is one of the 20% busiest
    double expert1_balance_bottom = 0;  // % of tokens on the 20% least busy experts
    double expert2_balance_top = 0;
    double expert2_balance_bottom = 0;
    int unused_expert1_count = 0;  // experts that are nobody's first choice
    int unused_expert2_count = 0;
};

// Output of gate_forward. Per-choice arrays are tokens x k, token-major (index t*k + j,
// j = 0 for the first choice); per-expert arrays have `experts` entries.
struct GateResult {
    int tokens = 0;
    int experts = 0;
    int k = 0;
    int capacity = 0;
    std::vector<float> probs;            // tokens x experts softmax, kept for the backward
    std::vector<int> expert;             // chosen expert of each choice
    std::vector<int> location;           // slot in the expert's buffer; -1 when not routed
                                         // (padding, or second choice refused by `random`)
    std::vector<std::uint8_t> kept;      // 1 when routed and location < capacity
    std::vector<float> weight;           // combine weight (0 when not kept)
    std::vector<int> counts;             // kept choices per expert (<= capacity)
    std::vector<int> demand;             // routed choices per expert, kept or dropped
    std::vector<float> ce;               // fraction of tokens routed first to e (for l_aux)
    float aux_loss = 0;                  // l_aux
    GateStats stats;
};

// Dense-to-sparse gate (GateOptions::dts_temperature > 0): probs = softmax(logits / T) in
// fp32; a token's choices are all E experts ordered by descending logit (ties to the lowest
// index), so GateResult::k = E and choice 0 is the argmax. Choice j is kept (routed) when
// dts_dense, or j < options.k, or its prob exceeds dts_threshold: the experts over the
// threshold, at least the top k. Dropless: capacity = tokens, locations count each expert's
// kept choices in token order. Combine weight of a kept choice = its prob, not
// renormalised over the kept experts (EvoMoE's DTS gate scales each expert's output by its
// gate weight). No Gumbel noise (EvoMoE's DTS gate adds it; left out so that the route is a
// function of the logits alone, deterministic and resumable without an RNG key). l_aux,
// ce and the balance stats count each token's argmax as its first choice (capacity never
// drops, so the overflows are 0); me comes from the tempered probs.
//
// Routes `tokens` tokens over `experts` experts from logits (tokens x experts). padding is
// empty or has one entry per token (nonzero = padding). Throws std::invalid_argument on
// inconsistent sizes or options (k not 1 or 2, k > experts, capacity < 0).
GateResult gate_forward(std::span<const float> logits, int tokens, int experts,
                        const GateOptions& options, std::span<const std::uint8_t> padding = {});

// Gradient of the logits given the gradient of the combine weights (tokens x k, as
// GateResult::weight; under the dense-to-sparse gate through softmax(logits / T)) and of l_aux (a scalar, e.g. the gate-loss weight). Writes dlogits
// (tokens x experts); argmax, Gumbel noise, the random policy and dropping are constants,
// as under torch autograd.
void gate_backward(const GateResult& result, const GateOptions& options,
                   std::span<const float> dweight, float daux, std::span<float> dlogits);

// Load-balancing loss from per-expert sums; shared by the CPU and CUDA gates so both use
// one formula: prob_sum[e] = sum over tokens of probs[., e], first_demand[e] = routed
// first choices of e. Returns 0 for zero tokens.
float aux_loss_from_sums(std::span<const double> prob_sum, std::span<const int> first_demand,
                         int tokens);

// The balance metrics from per-expert tallies (shared by CPU and CUDA):
//  hist1/hist2[e]: tokens whose first/second choice is e (padding included, as fairseq);
//  demand1/demand2[e]: routed first/second choices of e; capacity as in GateOptions;
//  entropy_sum: sum over tokens of the token's gate entropy. hist2/demand2 empty for k = 1.
GateStats gate_stats_from_tallies(std::span<const int> hist1, std::span<const int> hist2,
                                  std::span<const int> demand1, std::span<const int> demand2,
                                  int tokens, int capacity, double entropy_sum);

}  // namespace moesim::kernels
