// CUDA gate: route (softmax, choices; one warp per token), locate (per-expert scans in
// token order; one block per expert), combine (weights; one thread per token), then the
// per-expert tallies go to the host where gate.cpp's shared formulas make l_aux and the
// balance metrics. Semantics in kernels/gate.hpp.
#include "kernels/cuda/gate_cuda.hpp"

#include <cfloat>
#include <cmath>
#include <string>

#include <algorithm>

#include "kernels/check.hpp"
#include "kernels/counter_rng.hpp"
#include "kernels/top2_weight_grad.hpp"
#include "kernels/cuda/reduce.cuh"

namespace moesim::kernels::cuda {

namespace {

using detail::block_exclusive_scan;
using detail::block_sum;
using detail::check_launch;
using detail::grid_for;
using detail::kFullMask;
using detail::warp_sum;

constexpr int kWarpsPerBlock = 4;

struct ArgMax {
    float value;
    int index;  // -1: none yet
};

// The larger value wins; ties go to the lower index (torch's argmax, gate.cpp's loop).
__device__ ArgMax better(ArgMax a, ArgMax b)
{
    if (b.index < 0) {
        return a;
    }
    if (a.index < 0 || b.value > a.value || (b.value == a.value && b.index < a.index)) {
        return b;
    }
    return a;
}

__device__ ArgMax warp_argmax(ArgMax a)
{
    for (int offset = 16; offset > 0; offset /= 2) {
        ArgMax other;
        other.value = __shfl_xor_sync(kFullMask, a.value, offset);
        other.index = __shfl_xor_sync(kFullMask, a.index, offset);
        a = better(a, other);
    }
    return a;
}

__global__ void gate_route_kernel(const float* logits, int tokens, int experts, int k,
                                  SecondExpertPolicy policy, bool normalize_before,
                                  unsigned long long seed, const std::uint8_t* padding,
                                  float* probs, int* expert, int* location, float* prenorm,
                                  double* entropy)
{
    const int t = static_cast<int>((blockIdx.x * blockDim.x + threadIdx.x) / 32);
    const int lane = static_cast<int>(threadIdx.x % 32);
    if (t >= tokens) {
        return;  // whole warps leave together: a warp is one token
    }
    const std::size_t row0 = static_cast<std::size_t>(t) * experts;
    const float* x = logits + row0;
    ArgMax first{0.0f, -1};
    for (int e = lane; e < experts; e += 32) {
        first = better(first, ArgMax{x[e], e});
    }
    first = warp_argmax(first);
    const float mx = first.value;
    float sum = 0.0f;
    for (int e = lane; e < experts; e += 32) {
        sum += expf(x[e] - mx);
    }
    sum = warp_sum(sum);
    double h = 0.0;
    for (int e = lane; e < experts; e += 32) {
        const float p = expf(x[e] - mx) / sum;
        probs[row0 + e] = p;
        const float clamped = fminf(fmaxf(p, FLT_EPSILON), 1.0f - FLT_EPSILON);
        h -= static_cast<double>(p) * log(static_cast<double>(clamped));
    }
    h = warp_sum(h);

    const int e1 = first.index;
    int e2 = -1;
    if (k == 2) {
        ArgMax second{0.0f, -1};
        for (int e = lane; e < experts; e += 32) {
            if (e != e1) {
                const float v = policy == SecondExpertPolicy::Sampling ? x[e] + gumbel(seed, row0 + e)
                                                                       : x[e];
                second = better(second, ArgMax{v, e});
            }
        }
        e2 = warp_argmax(second).index;
    }
    if (lane != 0) {
        return;
    }
    entropy[t] = h;
    const bool pad = padding != nullptr && padding[t] != 0;
    float g1 = expf(x[e1] - mx) / sum;
    const std::size_t c = static_cast<std::size_t>(t) * k;
    expert[c] = e1;
    location[c] = pad ? -1 : 0;  // 0 marks "routed"; the locate kernel places it
    if (k == 2) {
        float g2 = expf(x[e2] - mx) / sum;
        if (normalize_before) {
            const float denom = fmaxf(g1 + g2, FLT_EPSILON);
            g1 /= denom;
            g2 /= denom;
        }
        bool routed2 = !pad;
        if (policy == SecondExpertPolicy::Random) {
            routed2 = routed2 && 2.0f * g2 > uniform01(seed, RngStream::SecondExpertKeep,
                                                       static_cast<std::uint64_t>(t));
        }
        expert[c + 1] = e2;
        location[c + 1] = routed2 ? 0 : -1;
        prenorm[c + 1] = g2;
    }
    prenorm[c] = g1;
}

// One block per expert: scans its routed choices in token order, first choices before
// second choices, and tallies what the host needs.
__global__ void gate_locate_kernel(const int* expert, int* location, const float* probs,
                                   int tokens, int experts, int k, int capacity, int* demand,
                                   int* hist, double* prob_sum, int* counts, float* ce)
{
    const int e = static_cast<int>(blockIdx.x);
    int base = 0;
    int first_demand = 0;
    for (int j = 0; j < k; ++j) {
        int running = base;
        int mine = 0;
        for (int t0 = 0; t0 < tokens; t0 += static_cast<int>(blockDim.x)) {
            const int t = t0 + static_cast<int>(threadIdx.x);
            const std::size_t c = static_cast<std::size_t>(t) * k + j;
            const bool is_e = t < tokens && expert[c] == e;
            const int flag = is_e && location[c] >= 0 ? 1 : 0;
            mine += is_e ? 1 : 0;
            int total = 0;
            const int prefix = block_exclusive_scan(flag, &total);
            if (flag) {
                location[c] = running + prefix;
            }
            running += total;
        }
        const int h = block_sum(mine);
        if (threadIdx.x == 0) {
            demand[j * experts + e] = running - base;
            hist[j * experts + e] = h;
        }
        if (j == 0) {
            first_demand = running;
        }
        base = running;
    }
    double s = 0.0;
    for (int t = static_cast<int>(threadIdx.x); t < tokens; t += static_cast<int>(blockDim.x)) {
        s += probs[static_cast<std::size_t>(t) * experts + e];
    }
    s = block_sum(s);
    if (threadIdx.x == 0) {
        prob_sum[e] = s;
        counts[e] = min(base, capacity);
        ce[e] = tokens > 0 ? static_cast<float>(static_cast<double>(first_demand) / tokens) : 0.0f;
    }
}

__global__ void gate_combine_kernel(const int* location, const float* prenorm, int tokens, int k,
                                    int capacity, bool normalize_before, std::uint8_t* kept,
                                    float* weight)
{
    const int t = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    if (t >= tokens) {
        return;
    }
    const std::size_t c = static_cast<std::size_t>(t) * k;
    bool keep[2] = {false, false};
    for (int j = 0; j < k; ++j) {
        const int loc = location[c + j];
        keep[j] = loc >= 0 && loc < capacity;
        kept[c + j] = keep[j] ? 1 : 0;
    }
    if (k == 1 || normalize_before) {
        for (int j = 0; j < k; ++j) {
            weight[c + j] = keep[j] ? prenorm[c + j] : 0.0f;
        }
    } else {
        const float a = keep[0] ? prenorm[c] : 0.0f;
        const float b = keep[1] ? prenorm[c + 1] : 0.0f;
        const float denom = fmaxf(a + b, FLT_EPSILON);
        weight[c] = a / denom;
        weight[c + 1] = b / denom;
    }
}

__global__ void sum_kernel(const double* v, int n, double* out)
{
    double s = 0.0;
    for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) {
        s += v[i];
    }
    s = block_sum(s);
    if (threadIdx.x == 0) {
        *out = s;
    }
}

__global__ void gate_backward_kernel(const float* probs, const int* expert, const std::uint8_t* kept,
                                     const float* ce, int tokens, int experts, int k,
                                     bool normalize_before, const float* dweight, float daux,
                                     float* dlogits)
{
    const int t = static_cast<int>((blockIdx.x * blockDim.x + threadIdx.x) / 32);
    const int lane = static_cast<int>(threadIdx.x % 32);
    if (t >= tokens) {
        return;
    }
    const std::size_t row0 = static_cast<std::size_t>(t) * experts;
    const float* p = probs + row0;
    const std::size_t c = static_cast<std::size_t>(t) * k;
    const int e1 = expert[c];
    int e2 = -1;
    float dg1 = 0.0f, dg2 = 0.0f;
    if (k == 1) {
        dg1 = kept[c] ? dweight[c] : 0.0f;
    } else {
        e2 = expert[c + 1];
        top2_weight_grad(p[e1], p[e2], dweight[c], dweight[c + 1], kept[c], kept[c + 1], normalize_before, dg1, dg2);
    }
    const auto dp_of = [&](int e) {
        float dp = static_cast<float>(static_cast<double>(daux) * experts * ce[e] / tokens);
        dp += e == e1 ? dg1 : 0.0f;
        dp += e == e2 ? dg2 : 0.0f;
        return dp;
    };
    double dot = 0.0;
    for (int e = lane; e < experts; e += 32) {
        dot += static_cast<double>(p[e]) * dp_of(e);
    }
    dot = warp_sum(dot);
    for (int e = lane; e < experts; e += 32) {
        dlogits[row0 + e] = p[e] * (dp_of(e) - static_cast<float>(dot));
    }
}

template <class T>
T* device_alloc(std::size_t n, cudaStream_t stream)
{
    void* p = nullptr;
    check(cudaMallocAsync(&p, (n > 0 ? n : 1) * sizeof(T), stream), "cudaMallocAsync");
    return static_cast<T*>(p);
}

}  // namespace

GateHostSummary gate_forward_cuda(const float* logits, int tokens, int experts,
                                  const GateOptions& options, const std::uint8_t* padding,
                                  const GateDeviceOutputs& out, cudaStream_t stream)
{
    const char* fn = "gate_forward_cuda";
    kernels::detail::require(tokens >= 0 && experts >= 1, fn, "needs tokens >= 0 and experts >= 1");
    kernels::detail::require(options.k == 1 || options.k == 2, fn, "k must be 1 or 2");
    kernels::detail::require(options.k <= experts, fn, "k = 2 needs at least two experts");
    kernels::detail::require(options.capacity >= 0, fn, "capacity must be >= 0");
    const int k = options.k;
    const std::size_t e_count = static_cast<std::size_t>(experts);

    float* prenorm = device_alloc<float>(static_cast<std::size_t>(tokens) * k, stream);
    double* entropy = device_alloc<double>(static_cast<std::size_t>(tokens), stream);
    int* tallies = device_alloc<int>(4 * e_count, stream);  // demand (2E) then hist (2E)
    double* sums = device_alloc<double>(e_count + 1, stream);  // prob_sum (E), entropy sum
    check(cudaMemsetAsync(tallies, 0, 4 * e_count * sizeof(int), stream), "cudaMemsetAsync");
    check(cudaMemsetAsync(sums, 0, (e_count + 1) * sizeof(double), stream), "cudaMemsetAsync");

    if (tokens > 0) {
        const int threads = 32 * kWarpsPerBlock;
        gate_route_kernel<<<grid_for(static_cast<std::size_t>(tokens), kWarpsPerBlock), threads, 0, stream>>>(
            logits, tokens, experts, k, options.second_policy, options.normalize_before_dropping,
            options.seed, padding, out.probs, out.expert, out.location, prenorm, entropy);
        check_launch("gate_route_kernel");
    }
    gate_locate_kernel<<<static_cast<unsigned>(experts), 256, 0, stream>>>(
        out.expert, out.location, out.probs, tokens, experts, k, options.capacity, tallies,
        tallies + 2 * e_count, sums, out.counts, out.ce);
    check_launch("gate_locate_kernel");
    if (tokens > 0) {
        gate_combine_kernel<<<grid_for(static_cast<std::size_t>(tokens), 256), 256, 0, stream>>>(
            out.location, prenorm, tokens, k, options.capacity, options.normalize_before_dropping,
            out.kept, out.weight);
        check_launch("gate_combine_kernel");
    }
    sum_kernel<<<1, 1024, 0, stream>>>(entropy, tokens, sums + e_count);
    check_launch("sum_kernel");

    std::vector<int> host_tallies(4 * e_count);
    std::vector<double> host_sums(e_count + 1);
    check(cudaMemcpyAsync(host_tallies.data(), tallies, host_tallies.size() * sizeof(int),
                          cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(tallies)");
    check(cudaMemcpyAsync(host_sums.data(), sums, host_sums.size() * sizeof(double),
                          cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(sums)");
    check(cudaFreeAsync(prenorm, stream), "cudaFreeAsync");
    check(cudaFreeAsync(entropy, stream), "cudaFreeAsync");
    check(cudaFreeAsync(tallies, stream), "cudaFreeAsync");
    check(cudaFreeAsync(sums, stream), "cudaFreeAsync");
    check(cudaStreamSynchronize(stream), "gate_forward_cuda: cudaStreamSynchronize");

    const std::span<const int> all(host_tallies);
    const auto demand1 = all.subspan(0, e_count), demand2 = all.subspan(e_count, e_count);
    const auto hist1 = all.subspan(2 * e_count, e_count), hist2 = all.subspan(3 * e_count, e_count);
    GateHostSummary summary;
    summary.aux_loss = aux_loss_from_sums(std::span<const double>(host_sums).subspan(0, e_count),
                                          demand1, tokens);
    summary.stats = gate_stats_from_tallies(hist1, k == 2 ? hist2 : std::span<const int>(), demand1,
                                            k == 2 ? demand2 : std::span<const int>(), tokens,
                                            options.capacity, host_sums[e_count]);
    summary.demand.resize(e_count);
    summary.counts.resize(e_count);
    for (std::size_t e = 0; e < e_count; ++e) {
        summary.demand[e] = demand1[e] + demand2[e];
        summary.counts[e] = std::min(summary.demand[e], options.capacity);
    }
    return summary;
}

void gate_backward_cuda(const float* probs, const int* expert, const std::uint8_t* kept,
                        const float* ce, int tokens, int experts, const GateOptions& options,
                        const float* dweight, float daux, float* dlogits, cudaStream_t stream)
{
    if (tokens == 0) {
        return;
    }
    gate_backward_kernel<<<grid_for(static_cast<std::size_t>(tokens), kWarpsPerBlock), 32 * kWarpsPerBlock, 0,
                           stream>>>(probs, expert, kept, ce, tokens, experts, options.k,
                                     options.normalize_before_dropping, dweight, daux, dlogits);
    check_launch("gate_backward_kernel");
}

}  // namespace moesim::kernels::cuda
