// The executor's compute seam: every kernel a GPT-MoE training step runs, on memory the
// backend owns (host memory on CPU, device memory on CUDA). The model code in
// gpt_moe.cpp and moe_layer.cpp is written once against this interface. All arrays are
// fp32; the precision of the GEMMs' operands is the backend's one setting (fp32, bf16, fp16).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/adam.hpp"
#include "kernels/gate.hpp"
#include "kernels/gemm.hpp"

namespace moesim::exec {

class Backend;

// An array in the backend's memory, released with it. Move-only.
template <typename T>
class Array {
 public:
  Array() = default;
  Array(Backend& backend, std::size_t size);
  Array(Array&& other) noexcept { swap(other); }
  Array& operator=(Array&& other) noexcept { swap(other); return *this; }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;
  ~Array();

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  void swap(Array& other) noexcept {
    std::swap(backend_, other.backend_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
  }
  Backend* backend_ = nullptr;
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

// Shape of causal self-attention over a micro-batch: tokens are rows, batch-major.
struct AttentionShape {
  int batch = 0;
  int seq = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  float scale = 0;  // applied to q k^T, normally 1 / sqrt(head_dim)
};

// A gate's routing kept for the backward: device arrays laid out as kernels::GateResult's
// (tokens x k token-major per choice), and the small per-expert results on the host.
struct Routing {
  int tokens = 0, experts = 0, k = 0, capacity = 0;
  Array<float> probs;              // tokens x experts
  Array<int> expert;               // tokens x k
  Array<int> location;             // tokens x k
  Array<std::uint8_t> kept;        // tokens x k
  Array<float> weight;             // tokens x k combine weights
  Array<float> ce;                 // experts
  std::vector<int> counts;         // kept choices per expert
  std::vector<int> demand;         // routed choices per expert
  float aux_loss = 0;
  kernels::GateStats stats;
};

// Rows of an expert-ordered (packed) buffer: expert e owns [offsets[e], offsets[e]+counts[e]).
struct DispatchMap {
  int tokens = 0, experts = 0, k = 0, rows = 0;
  std::vector<int> counts, offsets;  // host
  Array<int> source;                 // rows: token of each row
  Array<int> row;                    // tokens x k: row of each choice, -1 if dropped
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string kind() const = 0;  // "cpu" or "cuda"

  // What every GEMM below rounds its operands to (kernels/gemm.hpp): the linear layers,
  // the attention's q k^T and P v and their backward products, and the expert FFNs. They
  // accumulate and write fp32 either way, and nothing else changes: bf16 and fp16 are
  // autocast-style mixed precision over fp32 tensors (fp16 with the trainer's loss scaling). fp32 until set; train() sets it from the plan, and
  // moe_layer.cpp sets the router's for its linear (the model's moe.gate_precision).
  void set_gemm_precision(kernels::GemmPrecision p) { gemm_precision_ = p; }
  kernels::GemmPrecision gemm_precision() const { return gemm_precision_; }

  // Memory. Bytes live now and the most ever live, as the executor's gb_allocated.
  virtual void* allocate_bytes(std::size_t bytes) = 0;
  virtual void release_bytes(void* p, std::size_t bytes) = 0;
  std::size_t live_bytes() const { return live_; }
  std::size_t peak_bytes() const { return peak_; }
  void reset_peak() { peak_ = live_; }
  virtual void upload(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void download(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void zero(void* dst, std::size_t bytes) = 0;
  // Returns once all issued work is complete (timing, host reads).
  virtual void synchronize() {}

  // y (rows x cols) += b broadcast over rows.
  virtual void add_bias(float* y, const float* b, int rows, int cols) = 0;
  // y += alpha * x; x *= alpha; sum of squares in double.
  virtual void axpy(float alpha, const float* x, float* y, std::size_t n) = 0;
  virtual void scale(float alpha, float* x, std::size_t n) = 0;
  virtual double sum_squares(const float* x, std::size_t n) = 0;

  // y (rows x d) = wte[token] + wpe[row % seq] (wpe null: no positions).
  virtual void embedding_forward(const std::int32_t* tokens, int rows, int seq, const float* wte,
                                 const float* wpe, int vocab, int d, float* y) = 0;
  // dwte[token] += dy; dwpe[row % seq] += dy (dwpe null: none).
  virtual void embedding_backward(const float* dy, const std::int32_t* tokens, int rows, int seq,
                                  int vocab, int d, float* dwte, float* dwpe) = 0;

  // y (rows x out) = x W^T + b (W out x in; b null: none).
  virtual void linear_forward(const float* x, const float* w, const float* b, int rows, int in,
                              int out, float* y) = 0;
  // dx = dy W (null: skip); dW (+)= dy^T x; db (+)= colsum(dy) (null: skip); accumulate adds.
  virtual void linear_backward(const float* dy, const float* x, const float* w, int rows, int in,
                               int out, float* dx, float* dw, float* db, bool accumulate) = 0;

  // LayerNorm (beta non-null) or RMSNorm (beta null; mean unused) over rows x cols.
  virtual void norm_forward(const float* x, const float* gamma, const float* beta, int rows,
                            int cols, float eps, float* y, float* mean, float* rstd) = 0;
  // dx overwritten; dgamma, dbeta added to (accumulated over micro-batches).
  virtual void norm_backward(const float* dy, const float* x, const float* gamma,
                             const float* mean, const float* rstd, int rows, int cols, float* dx,
                             float* dgamma, float* dbeta) = 0;

  // y = gelu(x + b) (erf form); backward: dx = dy gelu'(x + b), db (+)= colsum(dx).
  virtual void bias_gelu_forward(const float* x, const float* b, int rows, int cols, float* y) = 0;
  virtual void bias_gelu_backward(const float* dy, const float* x, const float* b, int rows,
                                  int cols, float* dx, float* db) = 0;

  // q, k, v: row stride ld_in; ctx: ld_out; probs: batch x heads x seq x seq, saved.
  virtual void attention_forward(const AttentionShape& shape, const float* q, const float* k,
                                 const float* v, int ld_in, float* ctx, int ld_out,
                                 float* probs) = 0;
  virtual void attention_backward(const AttentionShape& shape, const float* dctx, int ld_out,
                                  const float* q, const float* k, const float* v, int ld_in,
                                  const float* probs, float* dq, float* dk, float* dv,
                                  int ld_grad) = 0;

  // Rotary positions (open_lm's rotate_half), in place on `heads` heads of head_dim
  // columns from x with row stride ld (q and k side by side in a fused QKV buffer);
  // position = row % seq. The backward applies the inverse rotation to the gradient.
  virtual void rotary_forward(float* x, int ld, int rows, int seq, int heads, int head_dim, double theta) = 0;
  virtual void rotary_backward(float* dx, int ld, int rows, int seq, int heads, int head_dim, double theta) = 0;
  // SwiGLU: x rows x 2f ([gate | value]), y rows x f = silu(gate) * value; dx rows x 2f.
  virtual void swiglu_forward(const float* x, int rows, int f, float* y) = 0;
  virtual void swiglu_backward(const float* dy, const float* x, int rows, int f, float* dx) = 0;

  // fairseq's gate from logits (tokens x experts).
  virtual Routing gate_forward(const float* logits, int tokens, int experts,
                               const kernels::GateOptions& options) = 0;
  // dlogits (tokens x experts) from d(combine weights) (tokens x k) and d(l_aux).
  virtual void gate_backward(const Routing& routing, const kernels::GateOptions& options,
                             const float* dweight, float daux, float* dlogits) = 0;
  // The expert-ordered buffer of a routing, experts placed in the order `slot_of_expert`
  // gives (expert e's rows come slot_of_expert[e]-th; empty: expert order). DispatchMap's
  // counts and offsets are indexed by slot.
  virtual DispatchMap make_dispatch(const Routing& routing, const std::vector<int>& slot_of_expert) = 0;
  // y[r] = x[source[r]] for r < rows: permute, and any row gather.
  virtual void gather_rows(const float* x, int d, const int* source, int rows, float* y) = 0;
  // dx[source[r]] = dy[r] for r < rows (source a permutation of the rows of dx).
  virtual void scatter_rows(const float* dy, int d, const int* source, int rows, float* dx) = 0;
  virtual void permute_backward(const float* dy, int d, const DispatchMap& map, float* dx) = 0;
  virtual void unpermute(const float* y, int d, const DispatchMap& map, const float* weight,
                         float* out) = 0;
  virtual void unpermute_backward(const float* dout, const float* y, int d,
                                  const DispatchMap& map, const float* weight, float* dy,
                                  float* dweight) = 0;

  // Expert FFNs over groups of rows (group g: counts[g] rows from offsets[g]) with weights
  // w1 G x f x d, b1 G x f, w2 G x d x f, b2 G x d (b null: no biases).
  struct ExpertWeights { const float *w1, *b1, *w2, *b2; };
  struct ExpertGrads { float *w1, *b1, *w2, *b2; };
  virtual void expert_ffn_forward(const std::vector<int>& offsets, const std::vector<int>& counts,
                                  int rows, int d, int f, const float* x, ExpertWeights w,
                                  float* pre, float* act, float* y) = 0;
  // Gradients are added to (accumulated over micro-batches).
  virtual void expert_ffn_backward(const std::vector<int>& offsets,
                                   const std::vector<int>& counts, int rows, int d, int f,
                                   const float* dy, const float* x, ExpertWeights w,
                                   const float* pre, const float* act, float* dx,
                                   ExpertGrads g) = 0;

  // Sum of token losses (nats) over rows whose target is not ignore_index; lse saved.
  virtual double cross_entropy_forward(const float* logits, const std::int32_t* targets,
                                       int rows, int classes, float* lse) = 0;
  virtual void cross_entropy_backward(const float* logits, const std::int32_t* targets,
                                      const float* lse, int rows, int classes, float grad_scale,
                                      float* dlogits) = 0;

  // fairseq's Adam (kernels/adam.hpp); step counts from 1.
  virtual void adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq,
                         std::size_t n, int step, const kernels::AdamOptions& options) = 0;

 protected:
  void count_allocation(std::ptrdiff_t bytes) {
    live_ = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(live_) + bytes);
    if (live_ > peak_) peak_ = live_;
  }

 private:
  std::size_t live_ = 0, peak_ = 0;
  kernels::GemmPrecision gemm_precision_ = kernels::GemmPrecision::fp32;
};

template <typename T>
Array<T>::Array(Backend& backend, std::size_t size)
    : backend_(&backend),
      data_(static_cast<T*>(backend.allocate_bytes(size * sizeof(T)))),
      size_(size) {}

template <typename T>
Array<T>::~Array() {
  if (backend_ != nullptr && data_ != nullptr) backend_->release_bytes(data_, size_ * sizeof(T));
}

std::unique_ptr<Backend> make_cpu_backend();
// Throws std::runtime_error when built without CUDA or when no GPU is visible.
std::unique_ptr<Backend> make_cuda_backend(int device);

}  // namespace moesim::exec
