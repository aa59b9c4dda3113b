// MoE FFN forward and backward with expert parallelism over a communicator.
#include "src/executor/moe_layer.hpp"

#include <numeric>

namespace moesim::exec {
namespace {

std::size_t z(long long n) { return static_cast<std::size_t>(n); }

std::vector<std::size_t> times(const std::vector<std::size_t>& rows, int d) {
  std::vector<std::size_t> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) out[i] = rows[i] * z(d);
  return out;
}

// Every peer learns how many rows of each of its local experts it gets from every peer:
// recv[p * L + l] = rows this rank's expert l receives from peer p.
std::vector<int> exchange_counts(Backend& backend, Communicator& comm, const std::vector<int>& slot_counts,
                                 int local) {
  const std::size_t n = slot_counts.size();
  std::vector<float> host(n);
  for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<float>(slot_counts[i]);  // exact below 2^24
  Array<float> send(backend, n), recv(backend, n);
  backend.upload(send.data(), host.data(), n * sizeof(float));
  comm.all_to_all(send.data(), recv.data(), z(local));
  comm.wait();
  backend.download(host.data(), recv.data(), n * sizeof(float));
  std::vector<int> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<int>(host[i]);
  return out;
}

// The backend's GEMMs in the router's precision while it lives.
class RouterPrecision {
 public:
  RouterPrecision(Backend& backend, kernels::GemmPrecision router)
      : backend_(backend), saved_(backend.gemm_precision()) {
    backend.set_gemm_precision(router);
  }
  ~RouterPrecision() { backend_.set_gemm_precision(saved_); }
  RouterPrecision(const RouterPrecision&) = delete;
  RouterPrecision& operator=(const RouterPrecision&) = delete;

 private:
  Backend& backend_;
  kernels::GemmPrecision saved_;
};

void sum_over(Backend& backend, Communicator& comm, float* x, std::size_t n) {
  if (comm.size() == 1) return;
  backend.synchronize();
  comm.all_reduce(x, n);
  comm.wait();
}

}  // namespace

void moe_forward(Backend& backend, Communicator& comm, const MoeLayerShape& s,
                 const kernels::GateOptions& gate, const MoeLayerWeights& w, const float* h,
                 float* out, MoeSaved& saved) {
  const int d = s.d;
  Array<float> logits(backend, z(s.tokens) * z(s.experts));
  {
    const RouterPrecision router(backend, s.router);
    backend.linear_forward(h, w.gate_w, nullptr, s.tokens, d, s.experts, logits.data());
  }
  saved.routing = backend.gate_forward(logits.data(), s.tokens, s.experts, gate);
  saved.map = backend.make_dispatch(saved.routing, s.slot_of_expert);
  const DispatchMap& map = saved.map;
  saved.x_perm = Array<float>(backend, z(map.rows) * z(d));
  backend.gather_rows(h, d, map.source.data(), map.rows, saved.x_perm.data());

  const int peers = comm.size();
  const int L = s.local_experts;
  int R = map.rows;
  if (peers == 1) {
    saved.expert_offsets.assign(map.offsets.begin(), map.offsets.begin() + L);
    saved.expert_counts = map.counts;
  } else {
    // Slots are owner-major, so peer p's rows are the contiguous block of its L slots.
    saved.send_rows.assign(z(peers), 0);
    for (int slot = 0; slot < s.experts; ++slot) saved.send_rows[z(slot / L)] += z(map.counts[z(slot)]);
    const std::vector<int> recv = exchange_counts(backend, comm, map.counts, L);
    saved.recv_rows.assign(z(peers), 0);
    for (int p = 0; p < peers; ++p)
      for (int l = 0; l < L; ++l) saved.recv_rows[z(p)] += z(recv[z(p * L + l)]);
    R = static_cast<int>(std::accumulate(saved.recv_rows.begin(), saved.recv_rows.end(), std::size_t{0}));
    Array<float> x_recv(backend, z(R) * z(d));
    backend.synchronize();  // NCCL reads on its own stream what this one wrote
    comm.all_to_all_v(saved.x_perm.data(), times(saved.send_rows, d), x_recv.data(), times(saved.recv_rows, d));
    comm.wait();
    // Received rows are peer-major (peer p's rows for expert 0, 1, ...); the grouped GEMM
    // wants them expert-major.
    std::vector<int> start(z(peers) * z(L));
    int pos = 0;
    for (int p = 0; p < peers; ++p)
      for (int l = 0; l < L; ++l) {
        start[z(p * L + l)] = pos;
        pos += recv[z(p * L + l)];
      }
    std::vector<int> regroup;
    regroup.reserve(z(R));
    saved.expert_offsets.assign(z(L), 0);
    saved.expert_counts.assign(z(L), 0);
    for (int l = 0; l < L; ++l) {
      saved.expert_offsets[z(l)] = static_cast<int>(regroup.size());
      for (int p = 0; p < peers; ++p)
        for (int r = 0; r < recv[z(p * L + l)]; ++r) regroup.push_back(start[z(p * L + l)] + r);
      saved.expert_counts[z(l)] = static_cast<int>(regroup.size()) - saved.expert_offsets[z(l)];
    }
    saved.regroup = Array<int>(backend, z(R));
    backend.upload(saved.regroup.data(), regroup.data(), z(R) * sizeof(int));
    saved.x_e = Array<float>(backend, z(R) * z(d));
    backend.gather_rows(x_recv.data(), d, saved.regroup.data(), R, saved.x_e.data());
  }
  const float* x_e = peers == 1 ? saved.x_perm.data() : saved.x_e.data();

  saved.pre = Array<float>(backend, z(R) * z(s.f));
  saved.act = Array<float>(backend, z(R) * z(s.f));
  Array<float> y_e(backend, z(R) * z(d));
  backend.expert_ffn_forward(saved.expert_offsets, saved.expert_counts, R, d, s.f, x_e, w.experts,
                             saved.pre.data(), saved.act.data(), y_e.data());

  if (peers == 1) {
    saved.y_perm = std::move(y_e);
  } else {
    Array<float> y_recv(backend, z(R) * z(d));
    backend.scatter_rows(y_e.data(), d, saved.regroup.data(), R, y_recv.data());
    saved.y_perm = Array<float>(backend, z(map.rows) * z(d));
    backend.synchronize();  // NCCL reads on its own stream what this one wrote
    comm.all_to_all_v(y_recv.data(), times(saved.recv_rows, d), saved.y_perm.data(), times(saved.send_rows, d));
    comm.wait();
  }
  backend.unpermute(saved.y_perm.data(), d, map, saved.routing.weight.data(), out);
}

void moe_backward(Backend& backend, Communicator& comm, Communicator& tp, const MoeLayerShape& s,
                  const kernels::GateOptions& gate, const MoeLayerWeights& w, const float* h,
                  const float* dout, float daux, MoeSaved& saved, float* dh, float* dgate_w,
                  Backend::ExpertGrads dexperts) {
  const int d = s.d;
  const DispatchMap& map = saved.map;
  const int peers = comm.size();
  Array<float> dy_perm(backend, z(map.rows) * z(d));
  Array<float> dweight(backend, z(s.tokens) * z(map.k));
  backend.unpermute_backward(dout, saved.y_perm.data(), d, map, saved.routing.weight.data(),
                             dy_perm.data(), dweight.data());
  // Under tensor parallelism y_perm holds this rank's partial expert outputs.
  sum_over(backend, tp, dweight.data(), z(s.tokens) * z(map.k));

  const int R = peers == 1 ? map.rows : static_cast<int>(saved.regroup.size());
  Array<float> dy_e, dx_e(backend, z(R) * z(d));
  if (peers > 1) {
    Array<float> dy_recv(backend, z(R) * z(d));
    backend.synchronize();  // NCCL reads on its own stream what this one wrote
    comm.all_to_all_v(dy_perm.data(), times(saved.send_rows, d), dy_recv.data(), times(saved.recv_rows, d));
    comm.wait();
    dy_e = Array<float>(backend, z(R) * z(d));
    backend.gather_rows(dy_recv.data(), d, saved.regroup.data(), R, dy_e.data());
  }
  const float* x_e = peers == 1 ? saved.x_perm.data() : saved.x_e.data();
  backend.expert_ffn_backward(saved.expert_offsets, saved.expert_counts, R, d, s.f,
                              peers == 1 ? dy_perm.data() : dy_e.data(), x_e, w.experts,
                              saved.pre.data(), saved.act.data(), dx_e.data(), dexperts);

  Array<float> dx_perm;
  if (peers > 1) {
    Array<float> dx_recv(backend, z(R) * z(d));
    backend.scatter_rows(dx_e.data(), d, saved.regroup.data(), R, dx_recv.data());
    dx_perm = Array<float>(backend, z(map.rows) * z(d));
    backend.synchronize();  // NCCL reads on its own stream what this one wrote
    comm.all_to_all_v(dx_recv.data(), times(saved.recv_rows, d), dx_perm.data(), times(saved.send_rows, d));
    comm.wait();
  }
  backend.permute_backward(peers == 1 ? dx_e.data() : dx_perm.data(), d, map, dh);
  sum_over(backend, tp, dh, z(s.tokens) * z(d));  // each rank's experts saw a slice of the FFN

  Array<float> dlogits(backend, z(s.tokens) * z(s.experts));
  backend.gate_backward(saved.routing, gate, dweight.data(), daux, dlogits.data());
  Array<float> dh_gate(backend, z(s.tokens) * z(d));
  {
    const RouterPrecision router(backend, s.router);
    backend.linear_backward(dlogits.data(), h, w.gate_w, s.tokens, d, s.experts, dh_gate.data(),
                            dgate_w, nullptr, /*accumulate=*/true);
  }
  backend.axpy(1.0f, dh_gate.data(), dh, z(s.tokens) * z(d));
}

}  // namespace moesim::exec
