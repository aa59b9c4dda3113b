// The CUDA side of the executor's compute seam: device memory from the stream-ordered
// allocator, one CUDA stream with one cuBLAS handle bound to it, and the kernels of
// kernels/cuda/ (plus a few small ones beside this file). fp32 arrays throughout, TF32
// off, so a run agrees with the CPU backend to rounding; under GemmPrecision bf16 (fp16) the
// kernels round each GEMM's operands to bf16 (fp16) (stream-ordered scratch, not counted in
// live_bytes) and cuBLAS multiplies them on the tensor cores into fp32, as the CPU backend
// rounds them before Eigen. Without the CUDA toolkit only a make_cuda_backend that throws
// is built.
//
// Ordering: all work is issued on the backend's stream. upload, download and the host
// results (sum_squares, cross_entropy_forward, gate_forward, make_dispatch) synchronise
// it; a communicator on its own stream (NCCL) may read a buffer only after
// synchronize(), which the model calls before each collective.
#include <stdexcept>

#include "src/executor/backend.hpp"

#if MOESIM_KERNELS_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cuda/activation_cuda.hpp"
#include "kernels/cuda/adam_cuda.hpp"
#include "kernels/cuda/attention_cuda.hpp"
#include "kernels/cuda/cross_entropy_cuda.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/embedding_cuda.hpp"
#include "kernels/cuda/expert_ffn_cuda.hpp"
#include "kernels/cuda/gate_cuda.hpp"
#include "kernels/cuda/gemm_cuda.hpp"
#include "kernels/cuda/norm_cuda.hpp"
#include "kernels/cuda/permute_cuda.hpp"
#include "kernels/cuda/rotary_cuda.hpp"
#include "kernels/cuda/swiglu_cuda.hpp"
#include "src/executor/cuda_backend_kernels.hpp"
#endif

namespace moesim::exec {

#if MOESIM_KERNELS_CUDA
namespace {

namespace kc = kernels::cuda;
namespace cd = cuda_detail;
using kc::check;
using kernels::Trans;

std::size_t sz(long long a, long long b = 1) { return static_cast<std::size_t>(a * b); }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
      cudaGetLastError();  // clear the error so later calls start clean
      throw std::runtime_error("--device cuda: no GPU is visible to the CUDA runtime");
    }
    if (device < 0 || device >= count)
      throw std::runtime_error("--device cuda: device " + std::to_string(device) + " is not one of the " +
                               std::to_string(count) + " visible GPUs");
    check(cudaSetDevice(device), "cudaSetDevice");
    // Keep freed blocks in the device's pool instead of returning them at every
    // synchronisation: the training step frees and allocates the same sizes each micro-batch.
    cudaMemPool_t pool = nullptr;
    check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
    std::uint64_t keep = std::numeric_limits<std::uint64_t>::max();
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    try {
      check(cublasCreate(&blas_), "cublasCreate");
      check(cublasSetStream(blas_, stream_), "cublasSetStream");
      // Plain fp32 GEMMs (no TF32), so the CUDA and CPU backends agree to fp32 rounding.
      check(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
      // sum_squares' scratch: the backend's own, not counted among the arrays' bytes.
      check(cudaMalloc(reinterpret_cast<void**>(&partial_), sz(cd::kSumSquaresBlocks + 1) * sizeof(double)), "cudaMalloc");
    } catch (...) {
      if (blas_ != nullptr) cublasDestroy(blas_);
      cudaStreamDestroy(stream_);
      throw;
    }
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cudaFree(partial_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string kind() const override { return "cuda"; }

  // Stream-ordered: a block freed by one kernel's Array is reused by the next without a
  // device-wide synchronisation. Zero-byte arrays still get a pointer.
  void* allocate_bytes(std::size_t bytes) override {
    void* p = nullptr;
    check(cudaMallocAsync(&p, bytes > 0 ? bytes : 1, stream_), "cudaMallocAsync");
    count_allocation(static_cast<std::ptrdiff_t>(bytes));
    return p;
  }
  // Called from destructors: a failure here cannot be thrown, and the next checked call
  // on the stream reports a sticky error anyway.
  void release_bytes(void* p, std::size_t bytes) override {
    cudaFreeAsync(p, stream_);
    count_allocation(-static_cast<std::ptrdiff_t>(bytes));
  }
  // Synchronous: the host buffer may go away on return, and the device data is ready for
  // any stream.
  void upload(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync(host to device)");
    synchronize();
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(device to host)");
    synchronize();
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync(device to device)");
  }
  void zero(void* dst, std::size_t bytes) override {
    if (bytes == 0) return;
    check(cudaMemsetAsync(dst, 0, bytes, stream_), "cudaMemsetAsync");
  }
  void synchronize() override { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

  void axpy(float alpha, const float* x, float* y, std::size_t n) override { cd::axpy(alpha, x, y, n, stream_); }
  void scale(float alpha, float* x, std::size_t n) override { cd::scale(alpha, x, n, stream_); }
  double sum_squares(const float* x, std::size_t n) override {
    double* result = partial_ + cd::kSumSquaresBlocks;
    cd::sum_squares(x, n, partial_, result, stream_);
    double host = 0;
    download(&host, result, sizeof host);
    return host;
  }

  void embedding_forward(const std::int32_t* tokens, int rows, int seq, const float* wte,
                         const float* wpe, int vocab, int d, float* y) override {
    kc::embedding_forward_cuda(tokens, wte, wpe, rows, seq, vocab, d, y, stream_);
  }
  void embedding_backward(const float* dy, const std::int32_t* tokens, int rows, int seq,
                          int vocab, int d, float* dwte, float* dwpe) override {
    kc::embedding_backward_cuda(dy, tokens, rows, seq, vocab, d, dwte, dwpe, stream_);
  }

  void linear_forward(const float* x, const float* w, const float* b, int rows, int in, int out,
                      float* y) override {
    kc::gemm_cuda(blas_, Trans::No, Trans::Yes, rows, out, in, 1.0f, x, w, 0.0f, y, gemm_precision());
    if (b != nullptr) cd::add_bias(y, b, rows, out, stream_);
  }
  void linear_backward(const float* dy, const float* x, const float* w, int rows, int in, int out,
                       float* dx, float* dw, float* db, bool accumulate) override {
    if (dx != nullptr)
      kc::gemm_cuda(blas_, Trans::No, Trans::No, rows, in, out, 1.0f, dy, w, 0.0f, dx, gemm_precision());
    if (dw != nullptr)
      kc::gemm_cuda(blas_, Trans::Yes, Trans::No, out, in, rows, 1.0f, dy, x, accumulate ? 1.0f : 0.0f, dw,
                    gemm_precision());
    if (db != nullptr) column_sum(dy, rows, out, accumulate, db);
  }

  void norm_forward(const float* x, const float* gamma, const float* beta, int rows, int cols,
                    float eps, float* y, float* mean, float* rstd) override {
    if (beta != nullptr)
      kc::layer_norm_cuda(x, gamma, beta, rows, cols, eps, y, mean, rstd, stream_);
    else
      kc::rms_norm_cuda(x, gamma, rows, cols, eps, y, rstd, stream_);
  }
  void norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                     const float* rstd, int rows, int cols, float* dx, float* dgamma,
                     float* dbeta) override {
    // The kernels overwrite dgamma and dbeta; the seam adds to them.
    Array<float> g(*this, sz(cols)), b(*this, dbeta != nullptr ? sz(cols) : 0);
    if (dbeta != nullptr)
      kc::layer_norm_backward_cuda(dy, x, gamma, mean, rstd, rows, cols, dx, g.data(), b.data(), stream_);
    else
      kc::rms_norm_backward_cuda(dy, x, gamma, rstd, rows, cols, dx, g.data(), stream_);
    cd::axpy(1.0f, g.data(), dgamma, sz(cols), stream_);
    if (dbeta != nullptr) cd::axpy(1.0f, b.data(), dbeta, sz(cols), stream_);
  }

  void bias_gelu_forward(const float* x, const float* b, int rows, int cols, float* y) override {
    kc::bias_gelu_cuda(x, b, rows, cols, kernels::Gelu::Erf, y, stream_);
  }
  void bias_gelu_backward(const float* dy, const float* x, const float* b, int rows, int cols,
                          float* dx, float* db) override {
    kc::bias_gelu_backward_cuda(dy, x, b, rows, cols, kernels::Gelu::Erf, dx, nullptr, stream_);
    if (db != nullptr) column_sum(dx, rows, cols, /*accumulate=*/true, db);
  }

  void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                         int ld_in, float* ctx, int ld_out, float* probs) override {
    kc::attention_forward_cuda(blas_, kernel_shape(s), q, k, v, ld_in, ctx, ld_out, probs, gemm_precision());
  }
  void attention_backward(const AttentionShape& s, const float* dctx, int ld_out, const float* q,
                          const float* k, const float* v, int ld_in, const float* probs,
                          float* dq, float* dk, float* dv, int ld_grad) override {
    kc::attention_backward_cuda(blas_, kernel_shape(s), dctx, ld_out, q, k, v, ld_in, probs, dq, dk, dv, ld_grad,
                                gemm_precision());
  }

  void add_bias(float* y, const float* b, int rows, int cols) override { cd::add_bias(y, b, rows, cols, stream_); }

  void rotary_forward(float* x, int ld, int rows, int seq, int heads, int head_dim, double theta) override {
    kc::rotary_forward_cuda({rows, seq, heads, head_dim, theta}, x, ld, stream_);
  }
  void rotary_backward(float* dx, int ld, int rows, int seq, int heads, int head_dim, double theta) override {
    kc::rotary_backward_cuda({rows, seq, heads, head_dim, theta}, dx, ld, stream_);
  }
  void swiglu_forward(const float* x, int rows, int f, float* y) override {
    kc::swiglu_forward_cuda(x, rows, f, y, stream_);
  }
  void swiglu_backward(const float* dy, const float* x, int rows, int f, float* dx) override {
    kc::swiglu_backward_cuda(dy, x, rows, f, dx, stream_);
  }

  Routing gate_forward(const float* logits, int tokens, int experts,
                       const kernels::GateOptions& options) override {
    Routing r;
    r.tokens = tokens;
    r.experts = experts;
    r.k = options.k;
    r.capacity = options.capacity;
    const std::size_t choices = sz(tokens, options.k);
    r.probs = Array<float>(*this, sz(tokens, experts));
    r.expert = Array<int>(*this, choices);
    r.location = Array<int>(*this, choices);
    r.kept = Array<std::uint8_t>(*this, choices);
    r.weight = Array<float>(*this, choices);
    r.ce = Array<float>(*this, sz(experts));
    Array<int> counts(*this, sz(experts));
    const kc::GateDeviceOutputs out{r.probs.data(), r.expert.data(), r.location.data(), r.kept.data(),
                                    r.weight.data(), counts.data(),  r.ce.data()};
    kc::GateHostSummary summary =
        kc::gate_forward_cuda(logits, tokens, experts, options, /*padding=*/nullptr, out, stream_);
    r.counts = std::move(summary.counts);
    r.demand = std::move(summary.demand);
    r.aux_loss = summary.aux_loss;
    r.stats = summary.stats;
    return r;
  }
  void gate_backward(const Routing& r, const kernels::GateOptions& options, const float* dweight,
                     float daux, float* dlogits) override {
    kc::gate_backward_cuda(r.probs.data(), r.expert.data(), r.kept.data(), r.ce.data(), r.tokens, r.experts,
                           options, dweight, daux, dlogits, stream_);
  }
  DispatchMap make_dispatch(const Routing& r, const std::vector<int>& slot_of_expert) override {
    // Experts are grouped by slot: map the routed expert ids through the table first.
    const int* slot = r.expert.data();
    Array<int> table, slots;
    if (!slot_of_expert.empty()) {
      table = Array<int>(*this, slot_of_expert.size());
      upload(table.data(), slot_of_expert.data(), slot_of_expert.size() * sizeof(int));
      slots = Array<int>(*this, r.expert.size());
      cd::map_indices(r.expert.data(), table.data(), r.expert.size(), slots.data(), stream_);
      slot = slots.data();
    }
    DispatchMap m;
    m.tokens = r.tokens;
    m.experts = r.experts;
    m.k = r.k;
    const int bound = kernels::dispatch_rows_bound(r.tokens, r.experts, r.k, r.capacity,
                                                   kernels::DispatchLayout::Packed);
    Array<int> counts(*this, sz(r.experts)), offsets(*this, sz(r.experts) + 1);
    m.source = Array<int>(*this, sz(bound));
    m.row = Array<int>(*this, sz(r.tokens, r.k));
    const kc::DispatchDevice out{counts.data(), offsets.data(), m.source.data(), m.row.data()};
    m.rows = kc::make_dispatch_cuda(slot, r.location.data(), r.kept.data(), r.tokens, r.experts, r.k,
                                    r.capacity, kernels::DispatchLayout::Packed, out, stream_);
    m.counts.resize(sz(r.experts));
    m.offsets.resize(sz(r.experts) + 1);
    download(m.counts.data(), counts.data(), m.counts.size() * sizeof(int));
    download(m.offsets.data(), offsets.data(), m.offsets.size() * sizeof(int));
    return m;
  }
  void gather_rows(const float* x, int d, const int* source, int rows, float* y) override {
    if (rows > 0) kc::permute_cuda(x, d, source, rows, y, stream_);
  }
  void scatter_rows(const float* dy, int d, const int* source, int rows, float* dx) override {
    cd::scatter_rows(dy, d, source, rows, dx, stream_);
  }
  void permute_backward(const float* dy, int d, const DispatchMap& map, float* dx) override {
    kc::permute_backward_cuda(dy, d, map.row.data(), map.tokens, map.k, dx, stream_);
  }
  void unpermute(const float* y, int d, const DispatchMap& map, const float* weight,
                 float* out) override {
    kc::unpermute_cuda(y, d, map.row.data(), weight, map.tokens, map.k, out, stream_);
  }
  void unpermute_backward(const float* dout, const float* y, int d, const DispatchMap& map,
                          const float* weight, float* dy, float* dweight) override {
    kc::unpermute_backward_cuda(dout, y, d, map.source.data(), map.row.data(), map.rows, weight, map.tokens,
                                map.k, dy, dweight, stream_);
  }

  void expert_ffn_forward(const std::vector<int>& offsets, const std::vector<int>& counts, int rows,
                          int d, int f, const float* x, ExpertWeights w, float* pre, float* act,
                          float* y) override {
    const auto groups = static_cast<int>(counts.size());
    if (groups == 0) return;
    // The kernels read both biases: zeros stand in for absent ones.
    Array<float> zeros;
    if (w.b1 == nullptr || w.b2 == nullptr) {
      zeros = Array<float>(*this, sz(groups, std::max(d, f)));
      zero(zeros.data(), zeros.size() * sizeof(float));
    }
    const kc::ExpertFfnDeviceWeights dw{w.w1, w.b1 ? w.b1 : zeros.data(), w.w2, w.b2 ? w.b2 : zeros.data()};
    kc::expert_ffn_forward_cuda(blas_, {groups, d, f, kernels::Gelu::Erf}, {offsets, counts, rows}, x, dw, pre,
                                act, y, gemm_precision());
  }
  void expert_ffn_backward(const std::vector<int>& offsets, const std::vector<int>& counts, int rows,
                           int d, int f, const float* dy, const float* x, ExpertWeights w,
                           const float* pre, const float* act, float* dx, ExpertGrads g) override {
    const auto groups = static_cast<int>(counts.size());
    if (groups == 0) return;
    // Absent biases: zeros in, a discarded sink for their gradients.
    Array<float> zeros, sink;
    if (w.b1 == nullptr || w.b2 == nullptr || g.b1 == nullptr || g.b2 == nullptr) {
      zeros = Array<float>(*this, sz(groups, std::max(d, f)));
      sink = Array<float>(*this, zeros.size());
      zero(zeros.data(), zeros.size() * sizeof(float));
    }
    const kc::ExpertFfnDeviceWeights dw{w.w1, w.b1 ? w.b1 : zeros.data(), w.w2, w.b2 ? w.b2 : zeros.data()};
    const kc::ExpertFfnDeviceGrads dg{g.w1, g.b1 ? g.b1 : sink.data(), g.w2, g.b2 ? g.b2 : sink.data()};
    kc::expert_ffn_backward_cuda(blas_, {groups, d, f, kernels::Gelu::Erf}, {offsets, counts, rows}, dy, x, dw,
                                 pre, act, dx, dg, /*accumulate=*/true, gemm_precision());
  }

  double cross_entropy_forward(const float* logits, const std::int32_t* targets, int rows,
                               int classes, float* lse) override {
    return kc::cross_entropy_cuda(logits, targets, rows, classes, -1, lse, stream_).loss_sum;
  }
  void cross_entropy_backward(const float* logits, const std::int32_t* targets, const float* lse,
                              int rows, int classes, float grad_scale, float* dlogits) override {
    kc::cross_entropy_backward_cuda(logits, targets, lse, rows, classes, -1, grad_scale, dlogits, stream_);
  }

  void adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq,
                 std::size_t n, int step, const kernels::AdamOptions& options) override {
    kc::adam_step_cuda(params, grads, exp_avg, exp_avg_sq, n, step, options, stream_);
  }

 private:
  static kernels::AttentionShape kernel_shape(const AttentionShape& s) {
    return {s.batch, s.seq, s.heads, s.kv_heads, s.head_dim, s.scale};
  }
  // out (+)= column sums of m (rows x cols), in double as the CPU backend sums them.
  void column_sum(const float* m, int rows, int cols, bool accumulate, float* out) {
    Array<double> scratch(*this, cd::column_sum_scratch(rows, cols));
    cd::column_sum(m, rows, cols, accumulate, scratch.data(), out, stream_);
  }

  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  double* partial_ = nullptr;  // kSumSquaresBlocks partial sums, then the total
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

#else

std::unique_ptr<Backend> make_cuda_backend(int /*device*/) {
  throw std::runtime_error("moesim was built without CUDA");
}

#endif

}  // namespace moesim::exec
