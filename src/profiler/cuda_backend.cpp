// The CUDA compute backend: cuBLAS GEMMs (fp32, and fp16/bf16 with fp32 accumulation)
// and the kernels/cuda kernels, timed with CUDA events on the default stream.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "src/profiler/compute_backend.hpp"

#if MOESIM_KERNELS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/activation_cuda.hpp"
#include "kernels/cuda/adam_cuda.hpp"
#include "kernels/cuda/cross_entropy_cuda.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/gate_cuda.hpp"
#include "kernels/cuda/gemm_cuda.hpp"
#include "kernels/cuda/grouped_gemm_cuda.hpp"
#include "kernels/cuda/norm_cuda.hpp"
#include "kernels/cuda/permute_cuda.hpp"
#include "src/profiler/routing_inputs.hpp"
#endif

namespace moesim {

#if MOESIM_KERNELS_CUDA
namespace {

namespace kc = kernels::cuda;

std::size_t sz(int a, int b) { return static_cast<std::size_t>(a) * static_cast<std::size_t>(b); }

// Round-to-nearest-even fp32 -> bf16 / fp16 bits on the host, to upload random operands.
std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
std::uint16_t to_fp16(float f) {
  // Inputs are N(0,1): normal range only; subnormals flush to zero, which no timing notices.
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const int exp = static_cast<int>((u >> 23) & 0xFF) - 127 + 15;
  if (exp <= 0) return static_cast<std::uint16_t>(sign);
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7C00u);
  std::uint32_t mant = u & 0x7FFFFFu;
  std::uint32_t h = sign | (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  const std::uint32_t rest = mant & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(h);
}

cudaDataType_t cuda_type(DType d) {
  switch (d) {
    case DType::fp32: return CUDA_R_32F;
    case DType::fp16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw std::invalid_argument("the CUDA backend computes GEMMs in fp32, fp16 or bf16");
  }
}

// Device bytes holding n random values in `dtype`.
kc::DeviceBuffer<std::uint8_t> random_device(std::size_t n, DType dtype, std::uint64_t seed) {
  const std::vector<float> v = random_floats(n, seed);
  if (dtype == DType::fp32) {
    kc::DeviceBuffer<std::uint8_t> buf(n * 4);
    kc::check(cudaMemcpy(buf.data(), v.data(), n * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    return buf;
  }
  std::vector<std::uint16_t> h(n);
  for (std::size_t i = 0; i < n; ++i) h[i] = dtype == DType::bf16 ? to_bf16(v[i]) : to_fp16(v[i]);
  kc::DeviceBuffer<std::uint8_t> buf(n * 2);
  kc::check(cudaMemcpy(buf.data(), h.data(), n * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
  return buf;
}

template <class T>
kc::DeviceBuffer<T> upload(const std::vector<T>& v) {
  return kc::DeviceBuffer<T>(std::span<const T>(v));
}

class Events {
 public:
  Events() {
    kc::check(cudaEventCreate(&start_), "cudaEventCreate");
    kc::check(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  ~Events() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Events(const Events&) = delete;
  Events& operator=(const Events&) = delete;

  template <class Fn>
  double time(Fn&& fn) {
    kc::check(cudaEventRecord(start_, nullptr), "cudaEventRecord");
    fn();
    kc::check(cudaGetLastError(), "kernel launch");
    kc::check(cudaEventRecord(stop_, nullptr), "cudaEventRecord");
    kc::check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
    float ms = 0;
    kc::check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return ms * 1e-3;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

class CudaBackend final : public ComputeBackend {
 public:
  explicit CudaBackend(const TimingOptions& t) : timing_(t) {}

  std::string kind() const override { return "cuda"; }
  std::string device() const override {
    cudaDeviceProp prop{};
    kc::check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    return prop.name;
  }
  std::vector<DType> gemm_dtypes() const override { return {DType::bf16, DType::fp32}; }
  std::map<std::string, std::string> versions() const override {
    int driver = 0, runtime = 0;
    kc::check(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
    kc::check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
    auto text = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
    // The kernel module's version (580.159.04) is what `nvidia-smi` shows; the driver API
    // version is what the runtime checks against.
    std::string module;
    std::ifstream in("/proc/driver/nvidia/version");
    std::string line, word;
    if (std::getline(in, line)) {
      // "NVRM version: NVIDIA UNIX [Open ]Kernel Module for x86_64  580.159.04  Release ...":
      // the first word of digits and dots after "Module".
      std::istringstream words(line.substr(std::min(line.size(), line.find("Module"))));
      while (words >> word)
        if (!word.empty() && word.find_first_not_of("0123456789.") == std::string::npos && word.find('.') != std::string::npos) {
          module = word;
          break;
        }
    }
    return {{"driver", (module.empty() ? "" : module + ", ") + "CUDA driver API " + text(driver)},
            {"cuda", text(runtime)}};
  }

  double gemm(int m, int n, int k, DType dtype) override {
    const auto x = random_device(sz(m, k), dtype, 1), w = random_device(sz(n, k), dtype, 2);
    kc::DeviceBuffer<std::uint8_t> y(sz(m, n) * static_cast<std::size_t>(dtype == DType::fp32 ? 4 : 2));
    return timed([&] {
      kc::gemm_cuda_typed(blas_.get(), cuda_type(dtype), kernels::Trans::No, kernels::Trans::Yes, m, n, k, 1.0f,
                          x.data(), w.data(), 0.0f, y.data());
    });
  }

  double grouped_gemm(std::span<const int> counts, int k, int n, DType dtype) override {
    std::vector<int> offsets{0};
    for (int c : counts) offsets.push_back(offsets.back() + c);
    const int rows = offsets.back(), groups = static_cast<int>(counts.size());
    const auto x = random_device(sz(rows, k), dtype, 3);
    const auto w = random_device(sz(groups, n) * static_cast<std::size_t>(k), dtype, 4);
    kc::DeviceBuffer<std::uint8_t> y(sz(rows, n) * static_cast<std::size_t>(dtype == DType::fp32 ? 4 : 2));
    const kernels::GroupRows g{offsets, counts, rows};
    return timed([&] {
      kc::grouped_gemm_cuda_typed(blas_.get(), cuda_type(dtype), g, x.data(), k, w.data(), kernels::Trans::Yes, n,
                                  0.0f, y.data());
    });
  }

  double permute(int tokens, int d, int k, int experts) override {
    const kernels::Dispatch dispatch = uniform_dispatch(tokens, experts, k, 5);
    const auto source = upload(dispatch.source);
    const auto x = upload(random_floats(sz(tokens, d), 6));
    kc::DeviceBuffer<float> y(sz(dispatch.rows, d));
    return timed([&] { kc::permute_cuda(x.data(), d, source.data(), dispatch.rows, y.data()); });
  }

  double unpermute(int tokens, int d, int k, int experts) override {
    const kernels::GateResult gate = uniform_routing(tokens, experts, k, 7);
    const kernels::Dispatch dispatch = kernels::make_dispatch(gate, kernels::DispatchLayout::Packed);
    const auto row = upload(dispatch.row);
    const auto weight = upload(gate.weight);
    const auto y = upload(random_floats(sz(dispatch.rows, d), 8));
    kc::DeviceBuffer<float> out(sz(tokens, d));
    return timed([&] { kc::unpermute_cuda(y.data(), d, row.data(), weight.data(), tokens, k, out.data()); });
  }

  double gate(int tokens, int experts, int k) override {
    const auto logits = upload(random_floats(sz(tokens, experts), 9));
    kc::DeviceBuffer<float> probs(sz(tokens, experts)), weight(sz(tokens, k)), ce(static_cast<std::size_t>(experts));
    kc::DeviceBuffer<int> expert(sz(tokens, k)), location(sz(tokens, k)), counts(static_cast<std::size_t>(experts));
    kc::DeviceBuffer<std::uint8_t> kept(sz(tokens, k));
    const kc::GateDeviceOutputs out{probs.data(), expert.data(), location.data(), kept.data(),
                                    weight.data(), counts.data(), ce.data()};
    kernels::GateOptions options;
    options.k = k;
    options.capacity = tokens;
    options.second_policy = kernels::SecondExpertPolicy::All;
    // The gate returns its balance summary to the host, as training reads l_aux: the
    // copy and synchronisation are part of its cost.
    return timed([&] { kc::gate_forward_cuda(logits.data(), tokens, experts, options, nullptr, out); });
  }

  double layer_norm(int rows, int cols) override {
    const auto x = upload(random_floats(sz(rows, cols), 10));
    const auto gamma = upload(random_floats(static_cast<std::size_t>(cols), 11));
    const auto beta = upload(random_floats(static_cast<std::size_t>(cols), 12));
    kc::DeviceBuffer<float> y(sz(rows, cols)), mean(static_cast<std::size_t>(rows)), rstd(static_cast<std::size_t>(rows));
    return timed([&] {
      kc::layer_norm_cuda(x.data(), gamma.data(), beta.data(), rows, cols, 1e-5f, y.data(), mean.data(), rstd.data());
    });
  }

  double bias_gelu(int rows, int cols) override {
    const auto x = upload(random_floats(sz(rows, cols), 13));
    const auto bias = upload(random_floats(static_cast<std::size_t>(cols), 14));
    kc::DeviceBuffer<float> y(sz(rows, cols));
    return timed([&] { kc::bias_gelu_cuda(x.data(), bias.data(), rows, cols, kernels::Gelu::Erf, y.data()); });
  }

  double cross_entropy(int rows, int classes) override {
    const auto logits = upload(random_floats(sz(rows, classes), 15));
    std::vector<std::int32_t> t(static_cast<std::size_t>(rows));
    for (int i = 0; i < rows; ++i) t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7919) % classes);
    const auto targets = upload(t);
    kc::DeviceBuffer<float> lse(static_cast<std::size_t>(rows));
    return timed([&] { kc::cross_entropy_cuda(logits.data(), targets.data(), rows, classes, -100, lse.data()); });
  }

  double adam(std::size_t params) override {
    auto p = upload(random_floats(params, 16)), g = upload(random_floats(params, 17));
    auto m = upload(random_floats(params, 18, 0.01f));
    std::vector<float> v_host = random_floats(params, 19, 0.01f);
    for (float& x : v_host) x *= x;
    auto v = upload(v_host);
    const kernels::AdamOptions options;
    int step = 0;
    return timed([&] { kc::adam_step_cuda(p.data(), g.data(), m.data(), v.data(), params, ++step, options); });
  }

  double copy(std::size_t bytes) override {
    const auto src = random_device(bytes / 4, DType::fp32, 20);
    kc::DeviceBuffer<std::uint8_t> dst(src.size());
    return timed([&] {
      kc::check(cudaMemcpyAsync(dst.data(), src.data(), src.size(), cudaMemcpyDeviceToDevice, nullptr),
                "cudaMemcpyAsync");
    });
  }

 private:
  template <class Fn>
  double timed(Fn&& fn) {
    return median_time(timing_, [&] { return events_.time(fn); });
  }

  TimingOptions timing_;
  kc::CublasHandle blas_;
  Events events_;
};

}  // namespace

std::unique_ptr<ComputeBackend> make_cuda_backend(const TimingOptions& timing) {
  if (!kernels::cuda::device_available()) throw std::runtime_error("--device cuda: no GPU is visible to the CUDA runtime");
  return std::make_unique<CudaBackend>(timing);
}

#else

std::unique_ptr<ComputeBackend> make_cuda_backend(const TimingOptions&) {
  throw std::runtime_error("--device cuda: this moesim was built without the CUDA toolkit");
}

#endif

}  // namespace moesim
