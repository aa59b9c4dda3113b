// An MoE layer chained from the CPU kernels (gate linear, top-2 gate, permute, expert
// FFNs, unpermute, l_aux), its hand-chained backward checked against finite differences:
// the kernels' backward passes compose the way the executor will compose them.
#include <gtest/gtest.h>

#include "kernels/expert_ffn.hpp"
#include "kernels/gate.hpp"
#include "kernels/linear.hpp"
#include "kernels/permute.hpp"
#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::random_vector;

struct Layer {
    int tokens = 10, d = 4, f = 8, experts = 4;
    GateOptions options;
    std::vector<float> x, wg, w1, b1, w2, b2, r;
    float aux_weight = 0.3f;

    Layer()
    {
        options.k = 2;
        options.capacity = 4;  // below 2 * ceil(10 / 4) = 6: some choices overflow
        options.second_policy = SecondExpertPolicy::Sampling;
        options.seed = 77;
        x = random_vector(tokens * d, 11);  // seed chosen so no token sits near a routing tie
        wg = random_vector(experts * d, 2, -2, 2);
        w1 = random_vector(experts * f * d, 3);
        b1 = random_vector(experts * f, 4);
        w2 = random_vector(experts * d * f, 5);
        b2 = random_vector(experts * d, 6);
        r = random_vector(tokens * d, 7);
    }
    ExpertFfnShape shape() const { return {experts, d, f, Gelu::Tanh}; }

    // Forward; returns the loss <r, out> + aux_weight * l_aux and leaves the saved state.
    GateResult gate;
    Dispatch dispatch;
    std::vector<float> logits, xp, pre, act, yp, out;
    double forward()
    {
        logits.assign(tokens * experts, 0.0f);
        linear_forward(x, wg, {}, tokens, d, experts, logits);
        gate = gate_forward(logits, tokens, experts, options);
        dispatch = make_dispatch(gate, DispatchLayout::Packed);
        const std::size_t rows = static_cast<std::size_t>(dispatch.rows);
        xp.assign(rows * d, 0.0f);
        pre.assign(rows * f, 0.0f);
        act.assign(rows * f, 0.0f);
        yp.assign(rows * d, 0.0f);
        out.assign(tokens * d, 0.0f);
        permute(x, d, dispatch, xp);
        const GroupRows groups{dispatch.offsets, dispatch.counts, dispatch.rows};
        expert_ffn_forward(shape(), groups, xp, {w1, b1, w2, b2}, pre, act, yp);
        unpermute(yp, d, dispatch, gate.weight, out);
        return test::dot(r, out) + aux_weight * static_cast<double>(gate.aux_loss);
    }
};

TEST(MoeLayer, ChainedBackwardMatchesFiniteDifferences)
{
    Layer layer;
    layer.forward();
    const auto kept = layer.gate.kept;
    int dropped = 0;
    for (auto k : kept) {
        dropped += k ? 0 : 1;
    }
    ASSERT_GT(dropped, 0) << "the case should exercise capacity overflow";

    const Dispatch& disp = layer.dispatch;
    const int d = layer.d;
    std::vector<float> dyp(layer.yp.size()), dweight(layer.gate.weight.size());
    unpermute_backward(layer.r, layer.yp, d, disp, layer.gate.weight, dyp, dweight);
    std::vector<float> dxp(layer.xp.size()), dw1(layer.w1.size()), db1(layer.b1.size()),
        dw2(layer.w2.size()), db2(layer.b2.size());
    const GroupRows groups{disp.offsets, disp.counts, disp.rows};
    expert_ffn_backward(layer.shape(), groups, dyp, layer.xp, {layer.w1, layer.b1, layer.w2, layer.b2},
                        layer.pre, layer.act, dxp, {dw1, db1, dw2, db2});
    std::vector<float> dx(layer.x.size()), dx_gate(layer.x.size());
    permute_backward(dxp, d, disp, dx);
    std::vector<float> dlogits(layer.logits.size()), dwg(layer.wg.size());
    gate_backward(layer.gate, layer.options, dweight, layer.aux_weight, dlogits);
    linear_backward(dlogits, layer.x, layer.wg, layer.tokens, d, layer.experts, dx_gate, dwg, {});
    for (std::size_t i = 0; i < dx.size(); ++i) {
        dx[i] += dx_gate[i];
    }

    const auto loss = [&] {
        const double l = layer.forward();
        EXPECT_EQ(layer.gate.kept, kept) << "routing changed under the perturbation";
        return l;
    };
    for (std::size_t i = 0; i < layer.x.size(); ++i) {
        EXPECT_NEAR(dx[i], test::finite_difference(layer.x, i, loss), 3e-3) << "x " << i;
    }
    for (std::size_t i = 0; i < layer.wg.size(); ++i) {
        EXPECT_NEAR(dwg[i], test::finite_difference(layer.wg, i, loss), 3e-3) << "wg " << i;
    }
    for (std::size_t i = 0; i < layer.w1.size(); i += 7) {
        EXPECT_NEAR(dw1[i], test::finite_difference(layer.w1, i, loss), 3e-3) << "w1 " << i;
    }
    for (std::size_t i = 0; i < layer.b2.size(); ++i) {
        EXPECT_NEAR(db2[i], test::finite_difference(layer.b2, i, loss), 3e-3) << "b2 " << i;
    }
}

}  // namespace
}  // namespace moesim::kernels
