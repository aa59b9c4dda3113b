// Profiler grids and the work accounting of each kernel; see op_grid.hpp.
#include "src/profiler/op_grid.hpp"

#include <algorithm>

#include "src/accounting/memory.hpp"
#include "src/model/enum_names.hpp"

namespace moesim {
namespace {

using Shape = std::map<std::string, std::int64_t>;

double at(const Shape& s, const char* key) { return static_cast<double>(s.at(key)); }

struct Dims {
  std::int64_t d, ffn, expert_ffn, experts, k, vocab;
};

Dims dims_of(const ModelSpec& m) {
  const bool moe = m.moe.experts > 1;
  return {m.d_model, m.ffn_dim, m.expert_ffn(), moe ? m.moe.experts : 1, moe ? m.moe.top_k : 1, m.vocab};
}

void add_layer_points(std::vector<OpPoint>& out, const Dims& m, const GridOptions& o, const std::vector<std::int64_t>& tokens,
                      const std::vector<std::int64_t>& per_expert, const std::vector<std::int64_t>& head_tokens) {
  for (DType dt : o.gemm_dtypes) {
    for (std::int64_t t : tokens) {
      // QKV, attention output, dense FFN in and out: the linear layers of a block.
      for (auto [n, k] : {std::pair{3 * m.d, m.d}, {m.d, m.d}, {m.ffn, m.d}, {m.d, m.ffn}})
        out.push_back({"gemm", dt, {{"m", t}, {"n", n}, {"k", k}}});
    }
    for (std::int64_t t : head_tokens) out.push_back({"gemm", dt, {{"m", t}, {"n", m.vocab}, {"k", m.d}}});
    for (std::int64_t c : per_expert)
      for (auto [n, k] : {std::pair{m.expert_ffn, m.d}, {m.d, m.expert_ffn}})
        out.push_back({"grouped_gemm", dt, {{"experts", m.experts}, {"tokens_per_expert", c}, {"n", n}, {"k", k}}});
  }
  const DType s = DType::fp32;  // the streaming kernels are fp32 (kernels/)
  for (std::int64_t t : tokens) {
    if (m.experts > 1) {
      out.push_back({"gate", s, {{"tokens", t}, {"experts", m.experts}, {"top_k", m.k}}});
      out.push_back({"permute", s, {{"tokens", t}, {"d", m.d}, {"top_k", m.k}, {"experts", m.experts}}});
      out.push_back({"unpermute", s, {{"tokens", t}, {"d", m.d}, {"top_k", m.k}, {"experts", m.experts}}});
    }
    out.push_back({"layer_norm", s, {{"rows", t}, {"cols", m.d}}});
    out.push_back({"bias_gelu", s, {{"rows", t}, {"cols", m.expert_ffn}}});
  }
  for (std::int64_t t : head_tokens) out.push_back({"cross_entropy", s, {{"rows", t}, {"classes", m.vocab}}});
}

}  // namespace

std::string op_key(const std::string& kernel, DType dtype) { return kernel + "_" + to_string(dtype); }

OpBound bound_of(const std::string& kernel) {
  return kernel == "gemm" || kernel == "grouped_gemm" ? OpBound::flops : OpBound::bytes;
}

Work work_of(const OpPoint& p) {
  const Shape& s = p.shape;
  const double e = bytes_of(p.dtype);
  if (p.kernel == "gemm") {
    const double m = at(s, "m"), n = at(s, "n"), k = at(s, "k");
    return {2 * m * n * k, e * (m * k + n * k + m * n)};
  }
  if (p.kernel == "grouped_gemm") {
    const double g = at(s, "experts"), rows = g * at(s, "tokens_per_expert"), n = at(s, "n"), k = at(s, "k");
    return {2 * rows * n * k, e * (rows * k + g * n * k + rows * n)};
  }
  if (p.kernel == "permute" || p.kernel == "unpermute") {
    // Every choice's row is read once and written once; the combine also reads a weight
    // per choice. Both read and write one int index per choice.
    const double rows = at(s, "tokens") * at(s, "top_k"), d = at(s, "d");
    const double extra = p.kernel == "unpermute" ? rows * (4 + 4) : rows * 4;
    return {p.kernel == "unpermute" ? 2 * rows * d : 0.0, 2 * e * rows * d + extra};
  }
  if (p.kernel == "gate") {
    // Read logits, write probabilities; per choice an expert, a location, a flag, a weight.
    const double t = at(s, "tokens"), x = at(s, "experts"), k = at(s, "top_k");
    return {5 * t * x, 2 * 4 * t * x + t * k * 13};
  }
  if (p.kernel == "layer_norm" || p.kernel == "bias_gelu") {
    const double r = at(s, "rows"), c = at(s, "cols");
    return {(p.kernel == "layer_norm" ? 8.0 : 20.0) * r * c, 2 * e * r * c + e * c * 2 + 8 * r};
  }
  if (p.kernel == "cross_entropy") {
    const double r = at(s, "rows"), c = at(s, "classes");
    return {4 * r * c, e * r * c + 8 * r};
  }
  if (p.kernel == "adam") {
    const double n = at(s, "params");  // read w, g, m, v; write w, m, v
    return {12 * n, 7 * e * n};
  }
  if (p.kernel == "copy") return {0.0, 2 * at(s, "bytes")};
  throw std::invalid_argument("work_of: unknown kernel " + p.kernel);
}

std::vector<OpPoint> profile_grid(const ModelSpec& model, const GridOptions& o) {
  const Dims m = dims_of(model);
  std::vector<OpPoint> out;
  const bool gpu = o.device != "cpu";
  std::vector<std::int64_t> tokens, per_expert, head, adam, copy;
  if (gpu) {
    tokens = o.quick ? std::vector<std::int64_t>{256, 2048, 16384} : std::vector<std::int64_t>{128, 512, 2048, 8192, 16384};
    per_expert = o.quick ? std::vector<std::int64_t>{0, 256, 4096} : std::vector<std::int64_t>{0, 64, 256, 1024, 4096};
    head = o.quick ? std::vector<std::int64_t>{2048} : std::vector<std::int64_t>{512, 4096};
    adam = {1 << 20, 1 << 24, 1 << 27};
    copy = {1 << 20, 1 << 24, 1 << 28, std::int64_t{1} << 30};
  } else {
    tokens = o.quick ? std::vector<std::int64_t>{32, 256, 1024} : std::vector<std::int64_t>{16, 64, 256, 1024, 2048};
    per_expert = o.quick ? std::vector<std::int64_t>{0, 16, 256} : std::vector<std::int64_t>{0, 8, 32, 128, 512};
    head = o.quick ? std::vector<std::int64_t>{64} : std::vector<std::int64_t>{32, 256};
    adam = {1 << 16, 1 << 20, 1 << 23};
    copy = {1 << 20, 1 << 24, 1 << 27};
  }
  add_layer_points(out, m, o, tokens, per_expert, head);
  if (gpu && std::find(o.gemm_dtypes.begin(), o.gemm_dtypes.end(), DType::bf16) != o.gemm_dtypes.end())
    out.push_back({"gemm", DType::bf16, {{"m", 8192}, {"n", 8192}, {"k", 8192}}});  // the dense peak of this device
  for (std::int64_t n : adam) out.push_back({"adam", DType::fp32, {{"params", n}}});
  for (std::int64_t b : copy) out.push_back({"copy", DType::fp32, {{"bytes", b}}});
  return out;
}

std::vector<OpPoint> held_out_grid(const ModelSpec& model, const GridOptions& o) {
  const Dims m = dims_of(model);
  std::vector<OpPoint> out;
  // Token counts between the grid's (quick or full): neither grid measures them.
  const std::vector<std::int64_t> tokens = o.device == "cpu" ? std::vector<std::int64_t>{96, 640} : std::vector<std::int64_t>{768, 6144};
  const std::vector<std::int64_t> per_expert = o.device == "cpu" ? std::vector<std::int64_t>{48} : std::vector<std::int64_t>{768};
  const std::vector<std::int64_t> head = o.device == "cpu" ? std::vector<std::int64_t>{128} : std::vector<std::int64_t>{1024};
  GridOptions one = o;
  one.gemm_dtypes = {o.gemm_dtypes.front()};  // the training dtype: bf16 on a GPU, fp32 on a CPU
  add_layer_points(out, m, one, tokens, per_expert, head);
  out.push_back({"adam", DType::fp32, {{"params", o.device == "cpu" ? 3 << 20 : 3 << 24}}});
  return out;
}

}  // namespace moesim
