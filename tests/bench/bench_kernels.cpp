// Google Benchmark programs for the MoE kernels: CPU references always; CUDA versions are
// registered only when the build has them (MOESIM_KERNELS_CUDA) and a GPU is visible.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/expert_ffn.hpp"
#include "kernels/gate.hpp"
#include "kernels/norm.hpp"
#include "kernels/permute.hpp"

#if defined(MOESIM_KERNELS_CUDA)
#include <cuda_runtime_api.h>

#include "kernels/cuda/device.hpp"
#include "kernels/cuda/expert_ffn_cuda.hpp"
#include "kernels/cuda/gate_cuda.hpp"
#include "kernels/cuda/gemm_cuda.hpp"
#include "kernels/cuda/grouped_gemm_cuda.hpp"
#include "kernels/cuda/norm_cuda.hpp"
#include "kernels/cuda/permute_cuda.hpp"
#endif

namespace {

using namespace moesim::kernels;

std::vector<float> random_vector(std::size_t n, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) {
        x = dist(rng);
    }
    return v;
}

GateOptions top2_options(int tokens, int experts)
{
    GateOptions o;
    o.k = 2;
    o.capacity = top2_capacity(tokens, experts);
    o.second_policy = SecondExpertPolicy::Sampling;
    o.seed = 1;
    return o;
}

// Args: tokens, experts.
void BM_GateTop2Cpu(benchmark::State& state)
{
    const int tokens = static_cast<int>(state.range(0)), experts = static_cast<int>(state.range(1));
    const auto logits = random_vector(static_cast<std::size_t>(tokens) * experts, 1);
    const GateOptions o = top2_options(tokens, experts);
    for (auto _ : state) {
        benchmark::DoNotOptimize(gate_forward(logits, tokens, experts, o));
    }
    state.SetItemsProcessed(state.iterations() * tokens);
}
BENCHMARK(BM_GateTop2Cpu)->Args({4096, 8})->Args({4096, 64})->Args({16384, 64})->Unit(benchmark::kMicrosecond);

// Args: tokens, experts, model_dim. Permute then unpermute (dispatch + combine).
void BM_PermuteUnpermuteCpu(benchmark::State& state)
{
    const int tokens = static_cast<int>(state.range(0)), experts = static_cast<int>(state.range(1));
    const int d = static_cast<int>(state.range(2));
    const auto logits = random_vector(static_cast<std::size_t>(tokens) * experts, 1);
    const GateResult g = gate_forward(logits, tokens, experts, top2_options(tokens, experts));
    const Dispatch disp = make_dispatch(g, DispatchLayout::Packed);
    const auto x = random_vector(static_cast<std::size_t>(tokens) * d, 2);
    std::vector<float> y(static_cast<std::size_t>(disp.rows) * d), out(x.size());
    for (auto _ : state) {
        permute(x, d, disp, y);
        unpermute(y, d, disp, g.weight, out);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(4 * sizeof(float)) *
                            disp.rows * d);
}
BENCHMARK(BM_PermuteUnpermuteCpu)->Args({4096, 8, 512})->Args({4096, 64, 1024})->Unit(benchmark::kMicrosecond);

// Args: tokens, experts, model_dim, ffn_dim. Expert FFN forward over a top-2 dispatch.
void BM_ExpertFfnForwardCpu(benchmark::State& state)
{
    const int tokens = static_cast<int>(state.range(0)), experts = static_cast<int>(state.range(1));
    const int d = static_cast<int>(state.range(2)), f = static_cast<int>(state.range(3));
    const auto logits = random_vector(static_cast<std::size_t>(tokens) * experts, 1);
    const GateResult g = gate_forward(logits, tokens, experts, top2_options(tokens, experts));
    const Dispatch disp = make_dispatch(g, DispatchLayout::Packed);
    const auto x = random_vector(static_cast<std::size_t>(disp.rows) * d, 2);
    const auto w1 = random_vector(static_cast<std::size_t>(experts) * f * d, 3);
    const auto b1 = random_vector(static_cast<std::size_t>(experts) * f, 4);
    const auto w2 = random_vector(static_cast<std::size_t>(experts) * d * f, 5);
    const auto b2 = random_vector(static_cast<std::size_t>(experts) * d, 6);
    std::vector<float> pre(static_cast<std::size_t>(disp.rows) * f), act(pre.size()), y(x.size());
    const GroupRows groups{disp.offsets, disp.counts, disp.rows};
    const ExpertFfnShape shape{experts, d, f, Gelu::Erf};
    for (auto _ : state) {
        expert_ffn_forward(shape, groups, x, {w1, b1, w2, b2}, pre, act, y);
        benchmark::ClobberMemory();
    }
    state.counters["FLOPS"] = benchmark::Counter(4.0 * disp.rows * d * f * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ExpertFfnForwardCpu)->Args({1024, 8, 256, 1024})->Args({2048, 4, 512, 2048})->Unit(benchmark::kMillisecond);

// Args: rows, cols.
void BM_LayerNormCpu(benchmark::State& state)
{
    const int rows = static_cast<int>(state.range(0)), cols = static_cast<int>(state.range(1));
    const auto x = random_vector(static_cast<std::size_t>(rows) * cols, 1);
    const std::vector<float> gamma(cols, 1.0f), beta(cols, 0.0f);
    std::vector<float> y(x.size()), mean(rows), rstd(rows);
    for (auto _ : state) {
        layer_norm(x, gamma, beta, rows, cols, 1e-5f, y, mean, rstd);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(2 * sizeof(float)) * rows * cols);
}
BENCHMARK(BM_LayerNormCpu)->Args({4096, 768})->Args({4096, 2048})->Unit(benchmark::kMicrosecond);

#if defined(MOESIM_KERNELS_CUDA)
// CUDA versions: each iteration synchronises the device, so times are wall-clock per call
// (launch overhead included, as the executor sees it).

template <class T>
moesim::kernels::cuda::DeviceBuffer<T> upload(const std::vector<T>& v)
{
    return moesim::kernels::cuda::DeviceBuffer<T>(std::span<const T>(v));
}

void sync()
{
    moesim::kernels::cuda::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

void BM_GateTop2Cuda(benchmark::State& state)
{
    using moesim::kernels::cuda::DeviceBuffer;
    const int tokens = static_cast<int>(state.range(0)), experts = static_cast<int>(state.range(1));
    const std::size_t te = static_cast<std::size_t>(tokens) * experts, tk = static_cast<std::size_t>(tokens) * 2;
    auto logits = upload(random_vector(te, 1));
    DeviceBuffer<float> probs(te), weight(tk), ce(experts);
    DeviceBuffer<int> expert(tk), location(tk), counts(experts);
    DeviceBuffer<std::uint8_t> kept(tk);
    const GateOptions o = top2_options(tokens, experts);
    for (auto _ : state) {
        benchmark::DoNotOptimize(moesim::kernels::cuda::gate_forward_cuda(
            logits.data(), tokens, experts, o, nullptr,
            {probs.data(), expert.data(), location.data(), kept.data(), weight.data(), counts.data(), ce.data()}));
    }
    state.SetItemsProcessed(state.iterations() * tokens);
}

void BM_PermuteUnpermuteCuda(benchmark::State& state)
{
    using moesim::kernels::cuda::DeviceBuffer;
    const int tokens = static_cast<int>(state.range(0)), experts = static_cast<int>(state.range(1));
    const int d = static_cast<int>(state.range(2));
    const auto logits = random_vector(static_cast<std::size_t>(tokens) * experts, 1);
    const GateResult g = gate_forward(logits, tokens, experts, top2_options(tokens, experts));
    const Dispatch disp = make_dispatch(g, DispatchLayout::Packed);
    auto source = upload(disp.source);
    auto row = upload(disp.row);
    auto weight = upload(g.weight);
    auto x = upload(random_vector(static_cast<std::size_t>(tokens) * d, 2));
    DeviceBuffer<float> y(static_cast<std::size_t>(disp.rows) * d), out(static_cast<std::size_t>(tokens) * d);
    for (auto _ : state) {
        moesim::kernels::cuda::permute_cuda(x.data(), d, source.data(), disp.rows, y.data());
        moesim::kernels::cuda::unpermute_cuda(y.data(), d, row.data(), weight.data(), tokens, 2, out.data());
        sync();
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(4 * sizeof(float)) * disp.rows * d);
}

void BM_ExpertFfnForwardCuda(benchmark::State& state)
{
    using moesim::kernels::cuda::DeviceBuffer;
    const int tokens = static_cast<int>(state.range(0)), experts = static_cast<int>(state.range(1));
    const int d = static_cast<int>(state.range(2)), f = static_cast<int>(state.range(3));
    const auto logits = random_vector(static_cast<std::size_t>(tokens) * experts, 1);
    const GateResult g = gate_forward(logits, tokens, experts, top2_options(tokens, experts));
    const Dispatch disp = make_dispatch(g, DispatchLayout::Packed);
    const std::size_t e = static_cast<std::size_t>(experts);
    auto x = upload(random_vector(static_cast<std::size_t>(disp.rows) * d, 2));
    auto w1 = upload(random_vector(e * f * d, 3)), b1 = upload(random_vector(e * f, 4));
    auto w2 = upload(random_vector(e * d * f, 5)), b2 = upload(random_vector(e * d, 6));
    DeviceBuffer<float> pre(static_cast<std::size_t>(disp.rows) * f), act(pre.size()), y(x.size());
    const GroupRows groups{disp.offsets, disp.counts, disp.rows};
    const ExpertFfnShape shape{experts, d, f, Gelu::Erf};
    moesim::kernels::cuda::CublasHandle handle;
    for (auto _ : state) {
        moesim::kernels::cuda::expert_ffn_forward_cuda(handle.get(), shape, groups, x.data(),
                                                       {w1.data(), b1.data(), w2.data(), b2.data()}, pre.data(),
                                                       act.data(), y.data());
        sync();
    }
    state.counters["FLOPS"] = benchmark::Counter(4.0 * disp.rows * d * f * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

void BM_LayerNormCuda(benchmark::State& state)
{
    using moesim::kernels::cuda::DeviceBuffer;
    const int rows = static_cast<int>(state.range(0)), cols = static_cast<int>(state.range(1));
    auto x = upload(random_vector(static_cast<std::size_t>(rows) * cols, 1));
    auto gamma = upload(std::vector<float>(cols, 1.0f)), beta = upload(std::vector<float>(cols, 0.0f));
    DeviceBuffer<float> y(x.size()), mean(rows), rstd(rows);
    for (auto _ : state) {
        moesim::kernels::cuda::layer_norm_cuda(x.data(), gamma.data(), beta.data(), rows, cols, 1e-5f, y.data(),
                                               mean.data(), rstd.data());
        sync();
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(2 * sizeof(float)) * rows * cols);
}

// bf16 expert GEMMs, 8 experts x `tokens` tokens each, d -> f, by algorithm (0: one
// cublasGemmEx per expert, 1: cublasGemmGroupedBatchedEx), next to the dense GEMM of all
// their rows with one weight (algorithm 2): the rate the grouped call should approach.
void BM_GroupedGemmBf16Cuda(benchmark::State& state)
{
    using moesim::kernels::cuda::DeviceBuffer;
    const int per = static_cast<int>(state.range(0)), d = static_cast<int>(state.range(1));
    const int f = static_cast<int>(state.range(2)), algo = static_cast<int>(state.range(3)), experts = 8;
    const int rows = per * experts;
    // Operands: uniform bits in bf16's normal range (never zeros).
    std::vector<std::uint16_t> xs(static_cast<std::size_t>(rows) * d), ws(static_cast<std::size_t>(experts) * f * d);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<std::uint16_t>(0x3C00u + (i * 2654435761u) % 0x0100u);
    for (std::size_t i = 0; i < ws.size(); ++i) ws[i] = static_cast<std::uint16_t>(0x3C00u + (i * 40503u) % 0x0100u);
    auto x = upload(xs), w = upload(ws);
    DeviceBuffer<std::uint16_t> y(static_cast<std::size_t>(rows) * f);
    std::vector<int> offsets, counts(experts, per);
    for (int g = 0; g < experts; ++g) offsets.push_back(g * per);
    const GroupRows groups{offsets, counts, rows};
    moesim::kernels::cuda::CublasHandle handle;
    auto run = [&] {
        if (algo == 2) {
            moesim::kernels::cuda::gemm_cuda_typed(handle.get(), CUDA_R_16BF, Trans::No, Trans::Yes, rows, f, d, 1.0f,
                                                   x.data(), w.data(), 0.0f, y.data());
        } else {
            moesim::kernels::cuda::grouped_gemm_cuda_typed(
                handle.get(), CUDA_R_16BF, groups, x.data(), d, w.data(), Trans::Yes, f, 0.0f, y.data(),
                algo == 0 ? moesim::kernels::cuda::GroupedAlgo::PerGroup : moesim::kernels::cuda::GroupedAlgo::GroupedBatched);
        }
    };
    run();
    sync();
    for (auto _ : state) {
        run();
        sync();
    }
    state.counters["FLOPS"] = benchmark::Counter(2.0 * rows * d * f * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

// Registered at start-up only when a GPU is visible, so the program runs anywhere.
const bool cuda_registered = [] {
    if (!moesim::kernels::cuda::device_available()) {
        return false;
    }
    benchmark::RegisterBenchmark("BM_GateTop2Cuda", BM_GateTop2Cuda)
        ->Args({4096, 8})->Args({16384, 64})->Args({65536, 512})->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_PermuteUnpermuteCuda", BM_PermuteUnpermuteCuda)
        ->Args({4096, 8, 512})->Args({16384, 64, 1024})->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_ExpertFfnForwardCuda", BM_ExpertFfnForwardCuda)
        ->Args({4096, 8, 1024, 4096})->Args({16384, 64, 1024, 4096})->UseRealTime()->Unit(benchmark::kMicrosecond);
    auto* grouped = benchmark::RegisterBenchmark("BM_GroupedGemmBf16Cuda", BM_GroupedGemmBf16Cuda);
    for (int per : {256, 1024, 4096})
        for (int algo : {0, 1, 2}) grouped->Args({per, 2048, 8192, algo});
    grouped->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_LayerNormCuda", BM_LayerNormCuda)
        ->Args({16384, 1024})->Args({16384, 4096})->UseRealTime()->Unit(benchmark::kMicrosecond);
    return true;
}();
#endif

}  // namespace
