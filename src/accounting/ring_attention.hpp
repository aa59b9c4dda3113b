// Context parallelism's ring attention in closed form: what one rank sends to its ring
// neighbour, per layer and micro-batch (after Megatron-Core / Transformer Engine's
// load-balanced ring: each rank holds 2 of the sequence's 2*cp chunks and passes its
// keys and values round the cp group, cp - 1 hops, overlapping each hop with one block
// of attention).
#pragma once

#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

struct RingExchange {
  int steps = 0;              // hops of the ring, each way: cp - 1
  double step_bytes = 0;      // forward: one rank's keys and values, sent at each hop
  double forward_bytes = 0;   // steps * step_bytes
  double backward_bytes = 0;  // keys and values again, plus their gradients: 2 * forward
};

// Key and value elements per token that attention reads: 2 * kv_heads * head_dim, or for
// MLA the up-projected per-head keys (nope + rope) and values.
double kv_width(const ModelSpec& model);

RingExchange ring_attention_exchange(const ModelSpec& model, const Plan& plan);

}  // namespace moesim
