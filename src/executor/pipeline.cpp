// Pipeline schedules and their point-to-point traffic.
#include "src/executor/pipeline.hpp"

#include <algorithm>
#include <map>
#include <utility>

namespace moesim::exec {

namespace {

// Megatron's get_model_chunk_id and the micro-batch of its data iterator: the k-th op of a
// kind on a stage. Python's modulo: Megatron asks about k < 0 (a stage ahead of its ring
// neighbour by stages - 1 ops), which falls in the last group.
PipelineOp interleaved_op(int k, bool forward, int stages, int vpp) {
  const int group = stages * vpp;
  const int in_group = ((k % group) + group) % group;
  int chunk = in_group / stages;
  if (!forward) chunk = vpp - 1 - chunk;
  const int first = k >= 0 ? k / group : -((-k + group - 1) / group);
  return {forward, first * stages + in_group % stages, chunk};
}

// Megatron's warm-up, capped at every forward as the simulator's stage_order caps it
// (Megatron-Core also makes m = stages all warm-up on the last stage; the ops are the same,
// that stage only turns to backwards earlier here).
int interleaved_warmup(int stage, int stages, int vpp, int m) {
  return std::min(2 * (stages - stage - 1) + (vpp - 1) * stages, m * vpp);
}

}  // namespace

std::vector<PipelineOp> pipeline_order(Schedule schedule, int stage, int stages, int m, int vpp) {
  std::vector<PipelineOp> ops;
  if (schedule == Schedule::interleaved) {
    const int total = m * vpp, warmup = interleaved_warmup(stage, stages, vpp, m);
    for (int k = 0; k < warmup; ++k) ops.push_back(interleaved_op(k, true, stages, vpp));
    for (int k = 0; k < total - warmup; ++k) {
      ops.push_back(interleaved_op(warmup + k, true, stages, vpp));
      ops.push_back(interleaved_op(k, false, stages, vpp));
    }
    for (int k = total - warmup; k < total; ++k) ops.push_back(interleaved_op(k, false, stages, vpp));
    return ops;
  }
  const int warmup = schedule == Schedule::gpipe ? m : std::min(stages - stage - 1, m);
  for (int i = 0; i < warmup; ++i) ops.push_back({true, i});
  for (int i = 0; i < m - warmup; ++i) {
    ops.push_back({true, warmup + i});
    ops.push_back({false, i});
  }
  for (int i = m - warmup; i < m; ++i) ops.push_back({false, i});
  return ops;
}

std::vector<PipelineStep> interleaved_steps(int stage, int stages, int vpp, int m) {
  // forward_backward_pipelining_with_interleaving without overlap_p2p_comm, step by step.
  // Its first and last stage (of the ring) decide what to receive from their neighbour's
  // position in the schedule; everything else receives for its next op.
  const bool first = stage == 0, last = stage == stages - 1;
  const int total = m * vpp, warmup = interleaved_warmup(stage, stages, vpp, m), steady = total - warmup;
  auto op = [&](int k, bool forward) { return interleaved_op(k, forward, stages, vpp); };
  // Megatron queues receives per chunk, and each chunk runs the micro-batches in order: a
  // chunk's j-th receive of a kind is for micro-batch j.
  std::vector<int> inputs(static_cast<std::size_t>(vpp), 0), grads(inputs);
  auto recv = [&](bool forward, int chunk) {
    int& next = (forward ? inputs : grads)[static_cast<std::size_t>(chunk)];
    return PipelineTransfer{false, forward, chunk, next++};
  };
  // The model's last chunk sends no activation on, its first no gradient back.
  auto send = [&](std::vector<PipelineTransfer>& out, const PipelineOp& o) {
    if (o.forward && last && o.chunk == vpp - 1) return;
    if (!o.forward && first && o.chunk == 0) return;
    out.push_back({true, o.forward, o.chunk, o.mb});
  };

  std::vector<PipelineStep> steps(1);
  if (!first) steps[0].transfers.push_back(recv(true, 0));
  for (int k = 0; k < warmup; ++k) {
    PipelineStep s;
    s.ops.push_back(op(k, true));
    send(s.transfers, s.ops.back());
    const int next_chunk = op(k + 1, true).chunk;
    if (!(first && next_chunk == 0) && k != total - 1) s.transfers.push_back(recv(true, next_chunk));
    // The last warm-up step also takes the gradient of the first backward (the last chunk).
    if (k == warmup - 1 && !last) s.transfers.push_back(recv(false, vpp - 1));
    steps.push_back(std::move(s));
  }
  for (int k = 0; k < steady; ++k) {
    PipelineStep s;
    const int forward_k = warmup + k;
    s.ops = {op(forward_k, true), op(k, false)};
    send(s.transfers, s.ops[0]);
    send(s.transfers, s.ops[1]);
    // Stage 0 receives what the last stage, stages - 1 forwards behind it, sends now.
    bool recv_prev = true;
    int next_forward = op(forward_k + 1, true).chunk;
    if (first) {
      next_forward = op(forward_k - (stages - 1), true).chunk;
      if (next_forward == vpp - 1) recv_prev = false;
      ++next_forward;
    }
    // And the last stage what stage 0, stages - 1 backwards behind it, sends back now.
    bool recv_next = true;
    int next_backward = op(k + 1, false).chunk;
    if (last) {
      next_backward = op(k - (stages - 1), false).chunk;
      if (next_backward == 0) recv_next = false;
      --next_backward;
    }
    if (k == steady - 1) recv_prev = false;
    if (recv_prev) s.transfers.push_back(recv(true, next_forward));
    if (recv_next) s.transfers.push_back(recv(false, next_backward));
    steps.push_back(std::move(s));
  }
  for (int k = steady; k < total; ++k) {
    PipelineStep s;
    s.ops.push_back(op(k, false));
    send(s.transfers, s.ops.back());
    const int next_chunk = op(k + 1, false).chunk;
    if (!(last && next_chunk == vpp - 1) && k != total - 1) s.transfers.push_back(recv(false, next_chunk));
    steps.push_back(std::move(s));
  }
  return steps;
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

namespace {

// Runs interleaved_steps: the activations and gradients received wait, by chunk and
// micro-batch, for the op that reads them.
void run_interleaved(int vpp, int m, Communicator& pp, Backend& B, std::size_t n, const StageWork& work) {
  const int stage = pp.rank(), stages = pp.size();
  const int next = (stage + 1) % stages, prev = (stage + stages - 1) % stages;
  // Tags keep the two directions apart where the next and previous stage are one rank.
  constexpr int kForwardTag = 0, kBackwardTag = 1;
  std::map<std::pair<int, int>, Array<float>> inputs, grads;
  auto take = [](std::map<std::pair<int, int>, Array<float>>& from, const PipelineOp& op) {
    const auto it = from.find({op.chunk, op.mb});
    if (it == from.end()) return Array<float>();
    Array<float> a = std::move(it->second);
    from.erase(it);
    return a;
  };
  for (const PipelineStep& step : interleaved_steps(stage, stages, vpp, m)) {
    Array<float> out, dx;  // of the step's forward and backward
    for (const PipelineOp& op : step.ops) {
      if (op.forward)
        out = work.forward(op.chunk, op.mb, take(inputs, op));
      else
        dx = work.backward(op.chunk, op.mb, take(grads, op));
    }
    std::vector<Communicator::Transfer> transfers;
    for (const PipelineTransfer& t : step.transfers) {
      const int tag = t.forward ? kForwardTag : kBackwardTag;
      if (t.send) {
        transfers.push_back({true, (t.forward ? out : dx).data(), n, t.forward ? next : prev, tag});
        continue;
      }
      Array<float> buf(B, n);
      transfers.push_back({false, buf.data(), n, t.forward ? prev : next, tag});
      (t.forward ? inputs : grads)[{t.chunk, t.mb}] = std::move(buf);
    }
    if (transfers.empty()) continue;
    B.synchronize();
    pp.exchange(transfers);
  }
}

}  // namespace

void run_pipeline(Schedule schedule, int m, Communicator& pp, Backend& backend, std::size_t elements,
                  const StageWork& work, int vpp) {
  if (schedule == Schedule::interleaved) {
    run_interleaved(vpp, m, pp, backend, elements, work);
    return;
  }
  Links link{pp, backend, elements};
  if (pp.size() == 1) {
    for (int i = 0; i < m; ++i) {
      work.forward(0, i, {});
      work.backward(0, i, {});
    }
    return;
  }
  if (schedule == Schedule::gpipe) {
    for (int i = 0; i < m; ++i) link.send_forward(work.forward(0, i, link.recv_forward()));
    for (int i = 0; i < m; ++i) link.send_backward(work.backward(0, i, link.recv_backward()));
    return;
  }
  // 1F1B, as Megatron's forward_backward_pipelining_without_interleaving.
  const int warmup = std::min(pp.size() - link.stage - 1, m);
  for (int i = 0; i < warmup; ++i) link.send_forward(work.forward(0, i, link.recv_forward()));
  Array<float> input;
  if (m > warmup) input = link.recv_forward();
  for (int i = 0; i < m - warmup; ++i) {
    Array<float> grad = link.send_forward_recv_backward(work.forward(0, warmup + i, std::move(input)));
    Array<float> dx = work.backward(0, i, std::move(grad));
    if (i == m - warmup - 1)
      link.send_backward(dx);
    else
      input = link.send_backward_recv_forward(dx);
  }
  for (int i = m - warmup; i < m; ++i) link.send_backward(work.backward(0, i, link.recv_backward()));
}

}  // namespace moesim::exec
