// The CPU compute backend: the kernels' CPU references (Eigen for the GEMMs), timed with a
// steady clock; one thread, as each CPU rank of the executor runs.
#include <chrono>
#include <cstring>
#include <fstream>

#include "kernels/activation.hpp"
#include "kernels/adam.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/gate.hpp"
#include "kernels/gemm.hpp"
#include "kernels/grouped_gemm.hpp"
#include "kernels/norm.hpp"
#include "kernels/permute.hpp"
#include "src/core/text.hpp"
#include "src/profiler/compute_backend.hpp"
#include "src/profiler/routing_inputs.hpp"

namespace moesim {
namespace {

using Clock = std::chrono::steady_clock;

template <class Fn>
double seconds_of(Fn&& fn) {
  const auto start = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::size_t sz(int a, int b) { return static_cast<std::size_t>(a) * static_cast<std::size_t>(b); }

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return std::string(trim(line.substr(line.find(':') + 1)));
  return "unknown CPU";
}

void require_fp32(DType dtype) {
  if (dtype != DType::fp32) throw std::invalid_argument("the CPU backend computes in fp32 only");
}

class CpuBackend final : public ComputeBackend {
 public:
  explicit CpuBackend(const TimingOptions& t) : timing_(t) {}

  std::string kind() const override { return "cpu"; }
  std::string device() const override { return cpu_model_name(); }
  std::vector<DType> gemm_dtypes() const override { return {DType::fp32}; }

  double gemm(int m, int n, int k, DType dtype) override {
    require_fp32(dtype);
    const auto x = random_floats(sz(m, k), 1), w = random_floats(sz(n, k), 2);
    std::vector<float> y(sz(m, n));
    return median_time(timing_, [&] {
      return seconds_of([&] { kernels::gemm(kernels::Trans::No, kernels::Trans::Yes, m, n, k, 1.0f, x, w, 0.0f, y); });
    });
  }

  double grouped_gemm(std::span<const int> counts, int k, int n, DType dtype) override {
    require_fp32(dtype);
    std::vector<int> offsets{0};
    for (int c : counts) offsets.push_back(offsets.back() + c);
    const int rows = offsets.back(), groups = static_cast<int>(counts.size());
    const auto x = random_floats(sz(rows, k), 3), w = random_floats(sz(groups, n) * static_cast<std::size_t>(k), 4);
    std::vector<float> y(sz(rows, n));
    const kernels::GroupRows g{offsets, counts, rows};
    return median_time(timing_, [&] {
      return seconds_of([&] { kernels::grouped_gemm(g, x, k, w, kernels::Trans::Yes, n, 0.0f, y); });
    });
  }

  double permute(int tokens, int d, int k, int experts) override {
    const kernels::Dispatch dispatch = uniform_dispatch(tokens, experts, k, 5);
    const auto x = random_floats(sz(tokens, d), 6);
    std::vector<float> y(sz(dispatch.rows, d));
    return median_time(timing_, [&] { return seconds_of([&] { kernels::permute(x, d, dispatch, y); }); });
  }

  double unpermute(int tokens, int d, int k, int experts) override {
    const kernels::GateResult gate = uniform_routing(tokens, experts, k, 7);
    const kernels::Dispatch dispatch = kernels::make_dispatch(gate, kernels::DispatchLayout::Packed);
    const auto y = random_floats(sz(dispatch.rows, d), 8);
    std::vector<float> out(sz(tokens, d));
    return median_time(timing_,
                       [&] { return seconds_of([&] { kernels::unpermute(y, d, dispatch, gate.weight, out); }); });
  }

  double gate(int tokens, int experts, int k) override {
    const auto logits = random_floats(sz(tokens, experts), 9);
    kernels::GateOptions options;
    options.k = k;
    options.capacity = tokens;
    options.second_policy = kernels::SecondExpertPolicy::All;
    return median_time(timing_, [&] {
      return seconds_of([&] {
        const kernels::GateResult r = kernels::gate_forward(logits, tokens, experts, options);
        sink_ += r.aux_loss;
      });
    });
  }

  double layer_norm(int rows, int cols) override {
    const auto x = random_floats(sz(rows, cols), 10), gamma = random_floats(static_cast<std::size_t>(cols), 11),
               beta = random_floats(static_cast<std::size_t>(cols), 12);
    std::vector<float> y(sz(rows, cols)), mean(static_cast<std::size_t>(rows)), rstd(static_cast<std::size_t>(rows));
    return median_time(timing_, [&] {
      return seconds_of([&] { kernels::layer_norm(x, gamma, beta, rows, cols, 1e-5f, y, mean, rstd); });
    });
  }

  double bias_gelu(int rows, int cols) override {
    const auto x = random_floats(sz(rows, cols), 13), bias = random_floats(static_cast<std::size_t>(cols), 14);
    std::vector<float> y(sz(rows, cols));
    return median_time(timing_, [&] {
      return seconds_of([&] { kernels::bias_gelu(x, bias, rows, cols, kernels::Gelu::Erf, y); });
    });
  }

  double cross_entropy(int rows, int classes) override {
    const auto logits = random_floats(sz(rows, classes), 15);
    std::vector<std::int32_t> targets(static_cast<std::size_t>(rows));
    for (int i = 0; i < rows; ++i) targets[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7919) % classes);
    std::vector<float> lse(static_cast<std::size_t>(rows));
    return median_time(timing_, [&] {
      return seconds_of([&] { sink_ += kernels::cross_entropy(logits, targets, rows, classes, -100, lse).loss_sum; });
    });
  }

  double adam(std::size_t params) override {
    auto p = random_floats(params, 16), g = random_floats(params, 17), m = random_floats(params, 18, 0.01f),
         v = random_floats(params, 19, 0.01f);
    for (float& x : v) x *= x;
    const kernels::AdamOptions options;
    int step = 0;
    return median_time(timing_, [&] { return seconds_of([&] { kernels::adam_step(p, g, m, v, ++step, options); }); });
  }

  double copy(std::size_t bytes) override {
    const std::size_t n = bytes / sizeof(float);
    const auto src = random_floats(n, 20);
    std::vector<float> dst(n);
    return median_time(timing_,
                       [&] { return seconds_of([&] { std::memcpy(dst.data(), src.data(), n * sizeof(float)); }); });
  }

 private:
  TimingOptions timing_;
  double sink_ = 0;  // keeps results observable so no call is optimised away
};

}  // namespace

std::unique_ptr<ComputeBackend> make_cpu_backend(const TimingOptions& timing) {
  return std::make_unique<CpuBackend>(timing);
}

}  // namespace moesim
