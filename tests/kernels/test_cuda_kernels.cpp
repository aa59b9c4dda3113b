// Every CUDA kernel but the GEMMs against its CPU reference over random shapes (zero
// tokens, one expert, k = 2, capacity overflow, padding, each second-expert policy).
// Tolerances, CUDA vs CPU:
//   gate: expert, location, kept, counts, demand and the balance metrics exact; probs and
//     weights 1e-6 abs; l_aux and entropy 1e-5 rel; dlogits 1e-5 abs + 1e-4 rel.
//   permute, permute_backward, unpermute_backward's dy: exact; unpermute 1e-6 abs + 1e-6
//     rel; dweight 1e-5 abs + 1e-5 rel.
//   bias + GELU: 1e-6 abs + 1e-5 rel (erff/tanhf/expf differ by ulps); dbias 1e-4 abs.
//   LayerNorm/RMSNorm: y, mean, rstd 1e-5 abs + 1e-5 rel; dx, dgamma, dbeta 1e-4 abs +
//     1e-4 rel (fp32 sums on GPU, double on CPU).
//   cross-entropy: lse 1e-6 abs + 1e-6 rel, loss sum 1e-6 rel, count exact; dlogits 1e-6 abs.
//   Adam: 1e-7 abs + 1e-6 rel after five steps (the GPU contracts to FMA).
#include <gtest/gtest.h>

#include <cstdint>

#include "kernels/activation.hpp"
#include "kernels/adam.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/cuda/activation_cuda.hpp"
#include "kernels/cuda/adam_cuda.hpp"
#include "kernels/cuda/cross_entropy_cuda.hpp"
#include "kernels/cuda/gate_cuda.hpp"
#include "kernels/cuda/norm_cuda.hpp"
#include "kernels/cuda/permute_cuda.hpp"
#include "kernels/gate.hpp"
#include "kernels/norm.hpp"
#include "kernels/permute.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using cuda::DeviceBuffer;
using test::expect_close;
using test::random_vector;
using test::to_device;

class CudaKernels : public test::CudaTest {};

struct GateCase {
    int tokens, experts, k, capacity;
    SecondExpertPolicy policy;
    bool normalize_before, pad;
};

const GateCase kGateCases[] = {
    {0, 4, 2, 0, SecondExpertPolicy::All, false, false},          // zero tokens
    {37, 1, 1, 37, SecondExpertPolicy::All, false, false},        // one expert
    {37, 1, 1, 10, SecondExpertPolicy::All, false, false},        // one expert, overflow
    {300, 8, 2, top2_capacity(300, 8), SecondExpertPolicy::All, false, false},
    {300, 8, 2, 30, SecondExpertPolicy::Sampling, false, false},  // overflow
    {300, 8, 2, 30, SecondExpertPolicy::Random, true, true},
    {513, 64, 2, 6, SecondExpertPolicy::Sampling, false, true},   // experts with zero tokens
    {200, 40, 1, 4, SecondExpertPolicy::All, false, true},
    {1000, 128, 2, top2_capacity(1000, 128), SecondExpertPolicy::Sampling, true, false},
};

TEST_F(CudaKernels, GateForwardBackwardAndDispatchMatchCpu)
{
    std::uint64_t seed = 1;
    for (const GateCase& c : kGateCases) {
        SCOPED_TRACE("tokens " + std::to_string(c.tokens) + " experts " + std::to_string(c.experts) + " k " +
                     std::to_string(c.k) + " capacity " + std::to_string(c.capacity));
        GateOptions o;
        o.k = c.k;
        o.capacity = c.capacity;
        o.second_policy = c.policy;
        o.normalize_before_dropping = c.normalize_before;
        o.seed = seed;
        const std::size_t te = static_cast<std::size_t>(c.tokens) * c.experts;
        const std::size_t tk = static_cast<std::size_t>(c.tokens) * c.k;
        const auto logits = random_vector(te, seed++, -3, 3);
        std::vector<std::uint8_t> padding;
        if (c.pad) {
            padding.resize(c.tokens);
            for (int t = 0; t < c.tokens; ++t) {
                padding[t] = t % 5 == 1 ? 1 : 0;
            }
        }
        const GateResult cpu = gate_forward(logits, c.tokens, c.experts, o, padding);

        auto d_logits = to_device(logits);
        auto d_padding = to_device(padding);
        DeviceBuffer<float> probs(te), weight(tk), ce(c.experts);
        DeviceBuffer<int> expert(tk), location(tk), counts(c.experts);
        DeviceBuffer<std::uint8_t> kept(tk);
        const cuda::GateHostSummary gpu = cuda::gate_forward_cuda(
            d_logits.data(), c.tokens, c.experts, o, c.pad ? d_padding.data() : nullptr,
            {probs.data(), expert.data(), location.data(), kept.data(), weight.data(), counts.data(), ce.data()});
        EXPECT_EQ(expert.download(), cpu.expert);
        EXPECT_EQ(location.download(), cpu.location);
        EXPECT_EQ(kept.download(), cpu.kept);
        EXPECT_EQ(counts.download(), cpu.counts);
        EXPECT_EQ(gpu.counts, cpu.counts);
        EXPECT_EQ(gpu.demand, cpu.demand);
        EXPECT_EQ(ce.download(), cpu.ce);
        expect_close(probs.download(), cpu.probs, 1e-6, 0, "probs");
        expect_close(weight.download(), cpu.weight, 1e-6, 0, "weight");
        EXPECT_NEAR(gpu.aux_loss, cpu.aux_loss, 1e-5 * std::fabs(cpu.aux_loss));
        EXPECT_NEAR(gpu.stats.entropy_gating, cpu.stats.entropy_gating, 1e-5 * cpu.stats.entropy_gating);
        EXPECT_EQ(gpu.stats.overflow_expert1, cpu.stats.overflow_expert1);
        EXPECT_EQ(gpu.stats.overflow_expert2, cpu.stats.overflow_expert2);
        EXPECT_EQ(gpu.stats.expert1_balance_top, cpu.stats.expert1_balance_top);
        EXPECT_EQ(gpu.stats.expert1_balance_bottom, cpu.stats.expert1_balance_bottom);
        EXPECT_EQ(gpu.stats.expert2_balance_top, cpu.stats.expert2_balance_top);
        EXPECT_EQ(gpu.stats.expert2_balance_bottom, cpu.stats.expert2_balance_bottom);
        EXPECT_EQ(gpu.stats.unused_expert1_count, cpu.stats.unused_expert1_count);
        EXPECT_EQ(gpu.stats.unused_expert2_count, cpu.stats.unused_expert2_count);

        // Backward, from the CPU forward's saved state uploaded, so only the backward differs.
        const auto dweight = random_vector(tk, seed++);
        std::vector<float> cpu_dlogits(te);
        gate_backward(cpu, o, dweight, 0.01f, cpu_dlogits);
        auto d_probs = to_device(cpu.probs);
        auto d_expert = to_device(cpu.expert);
        auto d_kept = to_device(cpu.kept);
        auto d_ce = to_device(cpu.ce);
        auto d_dweight = to_device(dweight);
        DeviceBuffer<float> dlogits(te);
        cuda::gate_backward_cuda(d_probs.data(), d_expert.data(), d_kept.data(), d_ce.data(), c.tokens, c.experts,
                                 o, d_dweight.data(), 0.01f, dlogits.data());
        expect_close(dlogits.download(), cpu_dlogits, 1e-5, 1e-4, "dlogits");

        // Dispatch in both layouts, then permute / unpermute and their backwards.
        for (DispatchLayout layout : {DispatchLayout::Packed, DispatchLayout::Padded}) {
            const Dispatch disp = make_dispatch(cpu, layout);
            const int bound = dispatch_rows_bound(c.tokens, c.experts, c.k, c.capacity, layout);
            DeviceBuffer<int> d_counts(c.experts), d_offsets(c.experts + 1), d_source(bound), d_row(tk);
            auto d_location = to_device(cpu.location);
            const int rows = cuda::make_dispatch_cuda(d_expert.data(), d_location.data(), d_kept.data(), c.tokens,
                                                      c.experts, c.k, c.capacity, layout,
                                                      {d_counts.data(), d_offsets.data(), d_source.data(), d_row.data()});
            ASSERT_EQ(rows, disp.rows);
            EXPECT_EQ(d_counts.download(), disp.counts);
            EXPECT_EQ(d_offsets.download(), disp.offsets);
            EXPECT_EQ(d_row.download(), disp.row);
            auto source = d_source.download();
            source.resize(rows);
            EXPECT_EQ(source, disp.source);

            const int d = 24;
            const std::size_t nx = static_cast<std::size_t>(c.tokens) * d, ny = static_cast<std::size_t>(rows) * d;
            const auto x = random_vector(nx, seed++), dout = random_vector(nx, seed++);
            const auto yv = random_vector(ny, seed++);
            std::vector<float> px(ny), dx(nx), out(nx), dy(ny), dw(tk);
            permute(x, d, disp, px);
            permute_backward(yv, d, disp, dx);
            unpermute(yv, d, disp, cpu.weight, out);
            unpermute_backward(dout, yv, d, disp, cpu.weight, dy, dw);
            auto d_x = to_device(x), d_dout = to_device(dout), d_y = to_device(yv);
            auto d_w = to_device(cpu.weight);
            DeviceBuffer<float> g_px(ny), g_dx(nx), g_out(nx), g_dy(ny), g_dw(tk);
            cuda::permute_cuda(d_x.data(), d, d_source.data(), rows, g_px.data());
            cuda::permute_backward_cuda(d_y.data(), d, d_row.data(), c.tokens, c.k, g_dx.data());
            cuda::unpermute_cuda(d_y.data(), d, d_row.data(), d_w.data(), c.tokens, c.k, g_out.data());
            cuda::unpermute_backward_cuda(d_dout.data(), d_y.data(), d, d_source.data(), d_row.data(), rows,
                                          d_w.data(), c.tokens, c.k, g_dy.data(), g_dw.data());
            EXPECT_EQ(g_px.download(), px);
            EXPECT_EQ(g_dx.download(), dx);
            expect_close(g_out.download(), out, 1e-6, 1e-6, "unpermute");
            EXPECT_EQ(g_dy.download(), dy);
            expect_close(g_dw.download(), dw, 1e-5, 1e-5, "dweight");
        }
    }
}

TEST_F(CudaKernels, BiasGeluMatchesCpu)
{
    for (auto [rows, cols] : {std::pair{0, 8}, std::pair{1, 1}, std::pair{37, 100}, std::pair{256, 1024}}) {
        for (Gelu kind : {Gelu::Erf, Gelu::Tanh}) {
            const std::size_t n = static_cast<std::size_t>(rows) * cols;
            const auto x = random_vector(n, 1, -5, 5), b = random_vector(cols, 2), dyv = random_vector(n, 3);
            std::vector<float> y(n), dx(n), db(cols);
            bias_gelu(x, b, rows, cols, kind, y);
            bias_gelu_backward(dyv, x, b, rows, cols, kind, dx, db);
            auto d_x = to_device(x), d_b = to_device(b), d_dy = to_device(dyv);
            DeviceBuffer<float> g_y(n), g_dx(n), g_db(cols);
            cuda::bias_gelu_cuda(d_x.data(), d_b.data(), rows, cols, kind, g_y.data());
            cuda::bias_gelu_backward_cuda(d_dy.data(), d_x.data(), d_b.data(), rows, cols, kind, g_dx.data(),
                                          g_db.data());
            expect_close(g_y.download(), y, 1e-6, 1e-5, "gelu y");
            expect_close(g_dx.download(), dx, 1e-6, 1e-5, "gelu dx");
            expect_close(g_db.download(), db, 1e-4, 1e-5, "gelu dbias");
        }
    }
}

TEST_F(CudaKernels, NormsMatchCpu)
{
    for (auto [rows, cols] : {std::pair{0, 8}, std::pair{1, 1}, std::pair{33, 70}, std::pair{128, 1024}}) {
        const std::size_t n = static_cast<std::size_t>(rows) * cols;
        const auto x = random_vector(n, 1, -3, 5), g = random_vector(cols, 2, 0.5f, 1.5f);
        const auto b = random_vector(cols, 3), dyv = random_vector(n, 4);
        std::vector<float> y(n), mean(rows), rstd(rows), dx(n), dg(cols), db(cols);
        layer_norm(x, g, b, rows, cols, 1e-5f, y, mean, rstd);
        layer_norm_backward(dyv, x, g, mean, rstd, rows, cols, dx, dg, db);
        auto d_x = to_device(x), d_g = to_device(g), d_b = to_device(b), d_dy = to_device(dyv);
        DeviceBuffer<float> g_y(n), g_mean(rows), g_rstd(rows), g_dx(n), g_dg(cols), g_db(cols);
        cuda::layer_norm_cuda(d_x.data(), d_g.data(), d_b.data(), rows, cols, 1e-5f, g_y.data(), g_mean.data(),
                              g_rstd.data());
        expect_close(g_y.download(), y, 1e-5, 1e-5, "layer_norm y");
        expect_close(g_mean.download(), mean, 1e-5, 1e-5, "layer_norm mean");
        expect_close(g_rstd.download(), rstd, 1e-5, 1e-5, "layer_norm rstd");
        // The backward reads the CPU's statistics so that only the backward is compared.
        auto d_mean = to_device(mean), d_rstd = to_device(rstd);
        cuda::layer_norm_backward_cuda(d_dy.data(), d_x.data(), d_g.data(), d_mean.data(), d_rstd.data(), rows,
                                       cols, g_dx.data(), g_dg.data(), g_db.data());
        expect_close(g_dx.download(), dx, 1e-4, 1e-4, "layer_norm dx");
        expect_close(g_dg.download(), dg, 1e-4, 1e-4, "layer_norm dgamma");
        expect_close(g_db.download(), db, 1e-4, 1e-4, "layer_norm dbeta");

        std::vector<float> ry(n), rr(rows), rdx(n), rdg(cols);
        rms_norm(x, g, rows, cols, 1e-6f, ry, rr);
        rms_norm_backward(dyv, x, g, rr, rows, cols, rdx, rdg);
        DeviceBuffer<float> gr_y(n), gr_r(rows), gr_dx(n), gr_dg(cols);
        cuda::rms_norm_cuda(d_x.data(), d_g.data(), rows, cols, 1e-6f, gr_y.data(), gr_r.data());
        expect_close(gr_y.download(), ry, 1e-5, 1e-5, "rms_norm y");
        expect_close(gr_r.download(), rr, 1e-5, 1e-5, "rms_norm rstd");
        auto d_rr = to_device(rr);
        cuda::rms_norm_backward_cuda(d_dy.data(), d_x.data(), d_g.data(), d_rr.data(), rows, cols, gr_dx.data(),
                                     gr_dg.data());
        expect_close(gr_dx.download(), rdx, 1e-4, 1e-4, "rms_norm dx");
        expect_close(gr_dg.download(), rdg, 1e-4, 1e-4, "rms_norm dgamma");
    }
}

TEST_F(CudaKernels, CrossEntropyMatchesCpu)
{
    for (auto [rows, classes] : {std::pair{0, 5}, std::pair{1, 1}, std::pair{64, 1000}, std::pair{7, 50257}}) {
        const std::size_t n = static_cast<std::size_t>(rows) * classes;
        const auto logits = random_vector(n, 1, -8, 8);
        std::vector<std::int32_t> targets(rows);
        for (int r = 0; r < rows; ++r) {
            targets[r] = r % 4 == 3 ? -100 : static_cast<std::int32_t>((r * 7919) % classes);
        }
        std::vector<float> lse(rows), dl(n);
        const CrossEntropyResult cpu = cross_entropy(logits, targets, rows, classes, -100, lse);
        cross_entropy_backward(logits, targets, lse, rows, classes, -100, 0.25f, dl);
        auto d_logits = to_device(logits);
        auto d_targets = to_device(targets);
        DeviceBuffer<float> g_lse(rows), g_dl(n);
        const CrossEntropyResult gpu =
            cuda::cross_entropy_cuda(d_logits.data(), d_targets.data(), rows, classes, -100, g_lse.data());
        EXPECT_EQ(gpu.count, cpu.count);
        EXPECT_NEAR(gpu.loss_sum, cpu.loss_sum, 1e-6 * std::fabs(cpu.loss_sum) + 1e-9);
        expect_close(g_lse.download(), lse, 1e-6, 1e-6, "lse");
        auto d_lse = to_device(lse);
        cuda::cross_entropy_backward_cuda(d_logits.data(), d_targets.data(), d_lse.data(), rows, classes, -100,
                                          0.25f, g_dl.data());
        expect_close(g_dl.download(), dl, 1e-6, 0, "dlogits");
    }
    // An out-of-range target is an error, as on CPU.
    const std::vector<float> logits(6, 0.0f);
    const std::vector<std::int32_t> bad = {0, 3};
    auto d_logits = to_device(logits);
    auto d_bad = to_device(bad);
    DeviceBuffer<float> lse(2);
    EXPECT_THROW(cuda::cross_entropy_cuda(d_logits.data(), d_bad.data(), 2, 3, -100, lse.data()), std::out_of_range);
}

TEST_F(CudaKernels, AdamMatchesCpu)
{
    for (bool decoupled : {true, false}) {
        AdamOptions o;
        o.lr = 1e-3f;
        o.weight_decay = 0.1f;
        o.decoupled_weight_decay = decoupled;
        const std::size_t n = 100003;
        std::vector<float> p = random_vector(n, 1), m(n, 0.0f), v(n, 0.0f);
        auto d_p = to_device(p), d_m = to_device(m), d_v = to_device(v);
        for (int step = 1; step <= 5; ++step) {
            const auto g = random_vector(n, 10 + step);
            adam_step(p, g, m, v, step, o);
            auto d_g = to_device(g);
            cuda::adam_step_cuda(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, step, o);
        }
        expect_close(d_p.download(), p, 1e-7, 1e-6, "params");
        expect_close(d_m.download(), m, 1e-7, 1e-6, "exp_avg");
        expect_close(d_v.download(), v, 1e-7, 1e-6, "exp_avg_sq");
    }
}

}  // namespace
}  // namespace moesim::kernels
