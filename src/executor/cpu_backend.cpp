// The CPU side of the executor's compute seam: host memory and the kernels' CPU
// references (Eigen GEMMs), exactly what the kernel tests check. Under bf16 the kernels
// round the GEMMs' operands to bf16 values before the fp32 Eigen products, so a CPU run
// computes what the CUDA backend's bf16 tensor-core GEMMs do, to summation order.
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>

#include "kernels/activation.hpp"
#include "kernels/adam.hpp"
#include "kernels/attention.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/embedding.hpp"
#include "kernels/expert_ffn.hpp"
#include "kernels/gate.hpp"
#include "kernels/linear.hpp"
#include "kernels/norm.hpp"
#include "kernels/permute.hpp"
#include "kernels/rotary.hpp"
#include "kernels/swiglu.hpp"
#include "src/executor/backend.hpp"

namespace moesim::exec {
namespace {

template <typename T>
std::span<T> view(T* p, std::size_t n) { return {p, n}; }
template <typename T>
std::span<const T> cview(const T* p, std::size_t n) { return {p, n}; }
template <typename T>
std::span<const T> maybe(const T* p, std::size_t n) { return p ? std::span<const T>(p, n) : std::span<const T>(); }

std::size_t sz(long long a, long long b = 1) { return static_cast<std::size_t>(a * b); }

// The kernels' dispatch from the backend's map (host vectors; a copy of O(tokens * k) ints).
kernels::Dispatch to_kernel(const DispatchMap& map) {
  kernels::Dispatch d;
  d.tokens = map.tokens;
  d.experts = map.experts;
  d.k = map.k;
  d.rows = map.rows;
  d.counts = map.counts;
  d.offsets = map.offsets;
  d.source.assign(map.source.data(), map.source.data() + map.rows);
  d.row.assign(map.row.data(), map.row.data() + sz(map.tokens, map.k));
  return d;
}

template <typename T>
Array<T> host_copy(Backend& backend, const std::vector<T>& v) {
  Array<T> out(backend, v.size());
  if (!v.empty()) std::memcpy(out.data(), v.data(), v.size() * sizeof(T));
  return out;
}

// Elements a strided attention operand spans: (rows - 1) * ld + its width.
struct Extents {
  Extents(const AttentionShape& s, int ld_in, int ld_out) {
    const std::size_t rows = sz(s.batch, s.seq);
    const auto span = [&](int ld, int width) { return rows == 0 ? 0 : (rows - 1) * sz(ld) + sz(width); };
    q = span(ld_in, s.heads * s.head_dim);
    kv = span(ld_in, s.kv_heads * s.head_dim);
    out = span(ld_out, s.heads * s.head_dim);
    probs = sz(s.batch, s.heads) * sz(s.seq, s.seq);
  }
  std::size_t q, kv, out, probs;
};

std::size_t rotary_extent(int rows, int ld, int heads, int head_dim) {
  return rows == 0 ? 0 : sz(rows - 1, ld) + sz(heads, head_dim);
}

class CpuBackend final : public Backend {
 public:
  std::string kind() const override { return "cpu"; }

  void* allocate_bytes(std::size_t bytes) override {
    // 64-byte alignment for Eigen's vector loads; zero-size arrays still get a pointer.
    const std::size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded > 0 ? rounded : 64);
    if (p == nullptr) throw std::bad_alloc();
    count_allocation(static_cast<std::ptrdiff_t>(bytes));
    return p;
  }
  void release_bytes(void* p, std::size_t bytes) override {
    std::free(p);
    count_allocation(-static_cast<std::ptrdiff_t>(bytes));
  }
  void upload(void* dst, const void* src, std::size_t bytes) override { if (bytes) std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, std::size_t bytes) override { if (bytes) std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, std::size_t bytes) override { if (bytes) std::memmove(dst, src, bytes); }
  void zero(void* dst, std::size_t bytes) override { if (bytes) std::memset(dst, 0, bytes); }

  void add_bias(float* y, const float* b, int rows, int cols) override {
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) y[sz(r, cols) + sz(c)] += b[c];
  }
  void axpy(float alpha, const float* x, float* y, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  }
  void scale(float alpha, float* x, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) x[i] *= alpha;
  }
  double sum_squares(const float* x, std::size_t n) override {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
    return s;
  }

  void embedding_forward(const std::int32_t* tokens, int rows, int seq, const float* wte,
                         const float* wpe, int vocab, int d, float* y) override {
    kernels::embedding_forward(cview(tokens, sz(rows)), cview(wte, sz(vocab, d)), maybe(wpe, sz(seq, d)),
                               rows, seq, vocab, d, view(y, sz(rows, d)));
  }
  void embedding_backward(const float* dy, const std::int32_t* tokens, int rows, int seq,
                          int vocab, int d, float* dwte, float* dwpe) override {
    kernels::embedding_backward(cview(dy, sz(rows, d)), cview(tokens, sz(rows)), rows, seq, vocab,
                                d, view(dwte, sz(vocab, d)),
                                dwpe ? view(dwpe, sz(seq, d)) : std::span<float>());
  }

  void linear_forward(const float* x, const float* w, const float* b, int rows, int in, int out,
                      float* y) override {
    kernels::linear_forward(cview(x, sz(rows, in)), cview(w, sz(out, in)), maybe(b, sz(out)), rows,
                            in, out, view(y, sz(rows, out)), gemm_precision());
  }
  void linear_backward(const float* dy, const float* x, const float* w, int rows, int in, int out,
                       float* dx, float* dw, float* db, bool accumulate) override {
    kernels::linear_backward(cview(dy, sz(rows, out)), cview(x, sz(rows, in)), cview(w, sz(out, in)),
                             rows, in, out, dx ? view(dx, sz(rows, in)) : std::span<float>(),
                             dw ? view(dw, sz(out, in)) : std::span<float>(),
                             db ? view(db, sz(out)) : std::span<float>(), accumulate, gemm_precision());
  }

  void norm_forward(const float* x, const float* gamma, const float* beta, int rows, int cols,
                    float eps, float* y, float* mean, float* rstd) override {
    if (beta != nullptr)
      kernels::layer_norm(cview(x, sz(rows, cols)), cview(gamma, sz(cols)), cview(beta, sz(cols)),
                          rows, cols, eps, view(y, sz(rows, cols)), view(mean, sz(rows)),
                          view(rstd, sz(rows)));
    else
      kernels::rms_norm(cview(x, sz(rows, cols)), cview(gamma, sz(cols)), rows, cols, eps,
                        view(y, sz(rows, cols)), view(rstd, sz(rows)));
  }
  void norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                     const float* rstd, int rows, int cols, float* dx, float* dgamma,
                     float* dbeta) override {
    std::vector<float> g(sz(cols)), b(dbeta ? sz(cols) : 0);
    if (dbeta != nullptr)
      kernels::layer_norm_backward(cview(dy, sz(rows, cols)), cview(x, sz(rows, cols)),
                                   cview(gamma, sz(cols)), cview(mean, sz(rows)),
                                   cview(rstd, sz(rows)), rows, cols, view(dx, sz(rows, cols)), g, b);
    else
      kernels::rms_norm_backward(cview(dy, sz(rows, cols)), cview(x, sz(rows, cols)),
                                 cview(gamma, sz(cols)), cview(rstd, sz(rows)), rows, cols,
                                 view(dx, sz(rows, cols)), g);
    for (int c = 0; c < cols; ++c) dgamma[c] += g[sz(c)];
    if (dbeta != nullptr)
      for (int c = 0; c < cols; ++c) dbeta[c] += b[sz(c)];
  }

  void bias_gelu_forward(const float* x, const float* b, int rows, int cols, float* y) override {
    kernels::bias_gelu(cview(x, sz(rows, cols)), maybe(b, sz(cols)), rows, cols, kernels::Gelu::Erf,
                       view(y, sz(rows, cols)));
  }
  void bias_gelu_backward(const float* dy, const float* x, const float* b, int rows, int cols,
                          float* dx, float* db) override {
    std::vector<float> bias_grad(db ? sz(cols) : 0);
    kernels::bias_gelu_backward(cview(dy, sz(rows, cols)), cview(x, sz(rows, cols)),
                                maybe(b, sz(cols)), rows, cols, kernels::Gelu::Erf,
                                view(dx, sz(rows, cols)), bias_grad);
    if (db != nullptr)
      for (int c = 0; c < cols; ++c) db[c] += bias_grad[sz(c)];
  }

  void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                         int ld_in, float* ctx, int ld_out, float* probs) override {
    const Extents e(s, ld_in, ld_out);
    kernels::attention_forward(kernel_shape(s), cview(q, e.q), cview(k, e.kv), cview(v, e.kv), ld_in,
                               view(ctx, e.out), ld_out, view(probs, e.probs), gemm_precision());
  }
  void attention_backward(const AttentionShape& s, const float* dctx, int ld_out, const float* q,
                          const float* k, const float* v, int ld_in, const float* probs,
                          float* dq, float* dk, float* dv, int ld_grad) override {
    const Extents e(s, ld_in, ld_out);
    const Extents g(s, ld_grad, ld_out);
    kernels::attention_backward(kernel_shape(s), cview(dctx, e.out), ld_out, cview(q, e.q), cview(k, e.kv),
                                cview(v, e.kv), ld_in, cview(probs, e.probs), view(dq, g.q),
                                view(dk, g.kv), view(dv, g.kv), ld_grad, gemm_precision());
  }

  void rotary_forward(float* x, int ld, int rows, int seq, int heads, int head_dim, double theta) override {
    const kernels::RotaryShape shape{rows, seq, heads, head_dim, theta};
    kernels::rotary_forward(shape, view(x, rotary_extent(rows, ld, heads, head_dim)), ld);
  }
  void rotary_backward(float* dx, int ld, int rows, int seq, int heads, int head_dim, double theta) override {
    const kernels::RotaryShape shape{rows, seq, heads, head_dim, theta};
    kernels::rotary_backward(shape, view(dx, rotary_extent(rows, ld, heads, head_dim)), ld);
  }
  void swiglu_forward(const float* x, int rows, int f, float* y) override {
    kernels::swiglu_forward(cview(x, sz(rows, 2 * f)), rows, f, view(y, sz(rows, f)));
  }
  void swiglu_backward(const float* dy, const float* x, int rows, int f, float* dx) override {
    kernels::swiglu_backward(cview(dy, sz(rows, f)), cview(x, sz(rows, 2 * f)), rows, f, view(dx, sz(rows, 2 * f)));
  }

  Routing gate_forward(const float* logits, int tokens, int experts,
                       const kernels::GateOptions& options) override {
    kernels::GateResult g =
        kernels::gate_forward(cview(logits, sz(tokens, experts)), tokens, experts, options);
    Routing r;
    r.tokens = g.tokens;
    r.experts = g.experts;
    r.k = g.k;
    r.capacity = g.capacity;
    r.probs = host_copy(*this, g.probs);
    r.expert = host_copy(*this, g.expert);
    r.location = host_copy(*this, g.location);
    r.kept = host_copy(*this, g.kept);
    r.weight = host_copy(*this, g.weight);
    r.ce = host_copy(*this, g.ce);
    r.counts = std::move(g.counts);
    r.demand = std::move(g.demand);
    r.aux_loss = g.aux_loss;
    r.stats = g.stats;
    return r;
  }
  void gate_backward(const Routing& r, const kernels::GateOptions& options, const float* dweight,
                     float daux, float* dlogits) override {
    // The kernel's backward reads probs, expert, kept and ce of a GateResult.
    kernels::GateResult g;
    g.tokens = r.tokens;
    g.experts = r.experts;
    g.k = r.k;
    g.capacity = r.capacity;
    g.probs.assign(r.probs.data(), r.probs.data() + r.probs.size());
    g.expert.assign(r.expert.data(), r.expert.data() + r.expert.size());
    g.location.assign(r.location.data(), r.location.data() + r.location.size());
    g.kept.assign(r.kept.data(), r.kept.data() + r.kept.size());
    g.weight.assign(r.weight.data(), r.weight.data() + r.weight.size());
    g.ce.assign(r.ce.data(), r.ce.data() + r.ce.size());
    g.counts = r.counts;
    g.demand = r.demand;
    kernels::gate_backward(g, options, cview(dweight, sz(r.tokens, r.k)), daux,
                           view(dlogits, sz(r.tokens, r.experts)));
  }
  DispatchMap make_dispatch(const Routing& r, const std::vector<int>& slot_of_expert) override {
    std::vector<int> slot(r.expert.data(), r.expert.data() + r.expert.size());
    if (!slot_of_expert.empty())
      for (int& e : slot) e = slot_of_expert[sz(e)];
    const kernels::Dispatch d = kernels::make_dispatch(
        slot, cview(r.location.data(), r.location.size()),
        cview(r.kept.data(), r.kept.size()), r.tokens, r.experts, r.k, r.capacity,
        kernels::DispatchLayout::Packed);
    DispatchMap m;
    m.tokens = d.tokens;
    m.experts = d.experts;
    m.k = d.k;
    m.rows = d.rows;
    m.counts = d.counts;
    m.offsets = d.offsets;
    m.source = host_copy(*this, d.source);
    m.row = host_copy(*this, d.row);
    return m;
  }
  void gather_rows(const float* x, int d, const int* source, int rows, float* y) override {
    for (int r = 0; r < rows; ++r) std::memcpy(y + sz(r, d), x + sz(source[r], d), sz(d) * sizeof(float));
  }
  void scatter_rows(const float* dy, int d, const int* source, int rows, float* dx) override {
    for (int r = 0; r < rows; ++r) std::memcpy(dx + sz(source[r], d), dy + sz(r, d), sz(d) * sizeof(float));
  }
  void permute_backward(const float* dy, int d, const DispatchMap& map, float* dx) override {
    kernels::permute_backward(cview(dy, sz(map.rows, d)), d, to_kernel(map), view(dx, sz(map.tokens, d)));
  }
  void unpermute(const float* y, int d, const DispatchMap& map, const float* weight,
                 float* out) override {
    kernels::unpermute(cview(y, sz(map.rows, d)), d, to_kernel(map), cview(weight, sz(map.tokens, map.k)),
                       view(out, sz(map.tokens, d)));
  }
  void unpermute_backward(const float* dout, const float* y, int d, const DispatchMap& map,
                          const float* weight, float* dy, float* dweight) override {
    kernels::unpermute_backward(cview(dout, sz(map.tokens, d)), cview(y, sz(map.rows, d)), d,
                                to_kernel(map), cview(weight, sz(map.tokens, map.k)),
                                view(dy, sz(map.rows, d)), view(dweight, sz(map.tokens, map.k)));
  }

  void expert_ffn_forward(const std::vector<int>& offsets, const std::vector<int>& counts, int rows,
                          int d, int f, const float* x, ExpertWeights w, float* pre, float* act,
                          float* y) override {
    const auto groups = static_cast<int>(counts.size());
    const kernels::ExpertFfnShape shape{groups, d, f, kernels::Gelu::Erf};
    const kernels::GroupRows g{offsets, counts, rows};
    kernels::expert_ffn_forward(shape, g, cview(x, sz(rows, d)), weights(w, groups, d, f),
                                view(pre, sz(rows, f)), view(act, sz(rows, f)), view(y, sz(rows, d)),
                                gemm_precision());
  }
  void expert_ffn_backward(const std::vector<int>& offsets, const std::vector<int>& counts, int rows,
                           int d, int f, const float* dy, const float* x, ExpertWeights w,
                           const float* pre, const float* act, float* dx, ExpertGrads g) override {
    const auto groups = static_cast<int>(counts.size());
    const kernels::ExpertFfnShape shape{groups, d, f, kernels::Gelu::Erf};
    const kernels::GroupRows gr{offsets, counts, rows};
    const kernels::ExpertFfnGrads grads{view(g.w1, sz(groups, sz(f, d))), view(g.b1, sz(groups, f)),
                                        view(g.w2, sz(groups, sz(d, f))), view(g.b2, sz(groups, d))};
    kernels::expert_ffn_backward(shape, gr, cview(dy, sz(rows, d)), cview(x, sz(rows, d)),
                                 weights(w, groups, d, f), cview(pre, sz(rows, f)),
                                 cview(act, sz(rows, f)), view(dx, sz(rows, d)), grads,
                                 /*accumulate=*/true, gemm_precision());
  }

  double cross_entropy_forward(const float* logits, const std::int32_t* targets, int rows,
                               int classes, float* lse) override {
    return kernels::cross_entropy(cview(logits, sz(rows, classes)), cview(targets, sz(rows)), rows,
                                  classes, -1, view(lse, sz(rows)))
        .loss_sum;
  }
  void cross_entropy_backward(const float* logits, const std::int32_t* targets, const float* lse,
                              int rows, int classes, float grad_scale, float* dlogits) override {
    kernels::cross_entropy_backward(cview(logits, sz(rows, classes)), cview(targets, sz(rows)),
                                    cview(lse, sz(rows)), rows, classes, -1, grad_scale,
                                    view(dlogits, sz(rows, classes)));
  }

  void adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq,
                 std::size_t n, int step, const kernels::AdamOptions& options) override {
    kernels::adam_step(view(params, n), cview(grads, n), view(exp_avg, n), view(exp_avg_sq, n), step,
                       options);
  }

 private:
  static kernels::AttentionShape kernel_shape(const AttentionShape& s) {
    return {s.batch, s.seq, s.heads, s.kv_heads, s.head_dim, s.scale};
  }
  static kernels::ExpertFfnWeights weights(ExpertWeights w, int groups, int d, int f) {
    return {cview(w.w1, sz(groups, sz(f, d))), cview(w.b1, sz(groups, f)),
            cview(w.w2, sz(groups, sz(d, f))), cview(w.b2, sz(groups, d))};
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace moesim::exec
