// Pipeline schedules and their point-to-point traffic.
#include "src/executor/pipeline.hpp"

#include <algorithm>

namespace moesim::exec {

std::vector<PipelineOp> pipeline_order(Schedule schedule, int stage, int stages, int m) {
  std::vector<PipelineOp> ops;
  const int warmup = schedule == Schedule::gpipe ? m : std::min(stages - stage - 1, m);
  for (int i = 0; i < warmup; ++i) ops.push_back({true, i});
  for (int i = 0; i < m - warmup; ++i) {
    ops.push_back({true, warmup + i});
    ops.push_back({false, i});
  }
  for (int i = m - warmup; i < m; ++i) ops.push_back({false, i});
  return ops;
}

namespace {

// Megatron's p2p pairs over the pipeline group; a missing neighbour (first or last stage)
// turns an exchange into a one-way transfer or nothing.
struct Links {
  Communicator& pp;
  Backend& B;
  std::size_t n;
  int stage = pp.rank();
  bool first = stage == 0;
  bool last = stage == pp.size() - 1;

  Array<float> recv_from(int peer) {
    Array<float> in(B, n);
    pp.recv(in.data(), n, peer);
    return in;
  }
  void send_to(const Array<float>& out, int peer) {
    B.synchronize();
    pp.send(out.data(), n, peer);
  }
  Array<float> recv_forward() { return first ? Array<float>() : recv_from(stage - 1); }
  void send_forward(const Array<float>& out) {
    if (!last) send_to(out, stage + 1);
  }
  Array<float> recv_backward() { return last ? Array<float>() : recv_from(stage + 1); }
  void send_backward(const Array<float>& dx) {
    if (!first) send_to(dx, stage - 1);
  }
  // To the next stage, and its gradient for an earlier micro-batch back.
  Array<float> send_forward_recv_backward(const Array<float>& out) {
    if (last) return {};
    Array<float> grad(B, n);
    B.synchronize();
    pp.send_recv(out.data(), n, stage + 1, grad.data(), n, stage + 1);
    return grad;
  }
  // To the previous stage, and its next micro-batch's activations back.
  Array<float> send_backward_recv_forward(const Array<float>& dx) {
    if (first) return {};
    Array<float> in(B, n);
    B.synchronize();
    pp.send_recv(dx.data(), n, stage - 1, in.data(), n, stage - 1);
    return in;
  }
};

}  // namespace

void run_pipeline(Schedule schedule, int m, Communicator& pp, Backend& backend, std::size_t elements,
                  const StageWork& work) {
  Links link{pp, backend, elements};
  if (pp.size() == 1) {
    for (int i = 0; i < m; ++i) {
      work.forward(i, {});
      work.backward(i, {});
    }
    return;
  }
  if (schedule == Schedule::gpipe) {
    for (int i = 0; i < m; ++i) link.send_forward(work.forward(i, link.recv_forward()));
    for (int i = 0; i < m; ++i) link.send_backward(work.backward(i, link.recv_backward()));
    return;
  }
  // 1F1B, as Megatron's forward_backward_pipelining_without_interleaving.
  const int warmup = std::min(pp.size() - link.stage - 1, m);
  for (int i = 0; i < warmup; ++i) link.send_forward(work.forward(i, link.recv_forward()));
  Array<float> input;
  if (m > warmup) input = link.recv_forward();
  for (int i = 0; i < m - warmup; ++i) {
    Array<float> grad = link.send_forward_recv_backward(work.forward(warmup + i, std::move(input)));
    Array<float> dx = work.backward(i, std::move(grad));
    if (i == m - warmup - 1)
      link.send_backward(dx);
    else
      input = link.send_backward_recv_forward(dx);
  }
  for (int i = m - warmup; i < m; ++i) link.send_backward(work.backward(i, link.recv_backward()));
}

}  // namespace moesim::exec
