// FLOPs of one training iteration in closed form: forward by op, backward (twice the
// forward), recomputation, with MoE expert work counted by routed tokens ("model" FLOPs,
// what MFU uses) and by capacity slots ("hardware" FLOPs, what the GPU executes).
// A multiply-add is 2 FLOPs; attention's score terms are counted over the full s x s
// matrix (no causal halving), as Megatron's formula does.
#pragma once

#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

// Forward FLOPs for one sequence of seq_len tokens, by op.
struct ForwardFlops {
  double qkv = 0;
  double attention_scores = 0;  // Q K^T and attention x V: 4 s^2 heads head_dim per layer
  double attention_out = 0;
  double dense_ffn = 0;
  double router = 0;
  double shared_experts = 0;
  double routed_experts = 0;  // by routed tokens (k per token)
  double output_head = 0;
  // Multi-token prediction modules: their layers are in the fields above; these are their
  // 2d -> d projections and their passes through the shared output head.
  double mtp_projection = 0;
  double mtp_head = 0;

  double total() const;
};

struct IterationFlops {
  ForwardFlops forward_per_sequence;
  double sequences = 0;     // global batch
  double forward = 0;       // whole iteration, all ranks
  double backward = 0;      // 2 x forward
  double recompute = 0;     // extra forward work under selective/full recomputation
  double model = 0;         // forward + backward, routed tokens only (MFU numerator)
  double hardware = 0;      // model + recompute + capacity padding of expert buffers
  double per_token_model = 0;
};

ForwardFlops forward_flops(const ModelSpec& model);
IterationFlops iteration_flops(const ModelSpec& model, const Plan& plan);

}  // namespace moesim
