// Time of the compute ops of a GPT-MoE layer from a profile: a roofline (FLOPs over peak
// times the fitted GEMM efficiency, or bytes over the achieved memory bandwidth, whichever
// is longer) plus the profile's fixed cost per kernel. Small ops are dominated by that
// fixed cost, which is what makes small models slow per token.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"

namespace moesim {

// One kernel (or a fused group of kernels counted as one launch each).
struct OpCost {
  std::string name;      // trace name: "qkv", "attention", "expert_gemm" ...
  std::string category;  // breakdown bucket: "attention", "ffn", "moe", "norm", ...
  double flops = 0;      // per execution
  double bytes = 0;      // memory traffic per execution
  int kernels = 1;       // launches, each paying the profile's kernel overhead
  std::string kernel;    // the profiled kernel it runs ("gemm", "grouped_gemm", "permute", ...), if any
  std::map<std::string, std::int64_t> shape;  // its dimensions, named as the profiler names them
  double seconds = 0;    // filled by the compute model
};

// Seconds of a kernel from the profile's measured table (compute.ops): the kernel's fit,
// times the measured-over-fit ratio of the nearest samples (a Gaussian-weighted mean of
// log ratios over the distance in log shape, or in log work when no shape is given), so
// shapes between measured ones interpolate. A
// FLOP-bound kernel needs its own dtype measured; a byte-bound one takes any dtype (its
// efficiency is per byte). nullopt when the profile did not measure the kernel.
std::optional<double> measured_seconds(const Profile& profile, const std::string& kernel, DType dtype, double flops,
                                       double bytes, const std::map<std::string, std::int64_t>& shape = {});

// C[m x n] = A[m x k] B[k x n] in the plan's precision.
double gemm_seconds(const Profile& profile, double m, double n, double k, DType dtype);
// A memory-bound kernel moving `bytes`.
double streaming_seconds(const Profile& profile, double bytes, int kernels = 1);
// Fills op.seconds: measured_seconds() when the profile measured op.kernel, else
// max(flops / (efficiency * peak), bytes / (memory efficiency * bandwidth)) + kernels * overhead.
void price(const Profile& profile, DType dtype, double efficiency, OpCost& op);

// The forward ops of one layer on one rank for one micro-batch of `tokens` tokens,
// `expert_tokens` the token slots its experts compute (E/ep experts' buffers; the most
// loaded rank's). Backward is priced as twice each op's forward (two GEMMs per GEMM).
std::vector<OpCost> layer_forward_ops(const Profile& profile, const ModelSpec& model, const Plan& plan, int layer,
                                      double tokens, double expert_tokens);

// Embedding lookup and output head + loss, forward, on the first and last stage.
std::vector<OpCost> embedding_forward_ops(const Profile& profile, const ModelSpec& model, const Plan& plan, double tokens);
std::vector<OpCost> head_forward_ops(const Profile& profile, const ModelSpec& model, const Plan& plan, double tokens);
// One multi-token prediction module's own forward ops beside its layer and its pass
// through the output head: the two norms of its inputs and their 2d -> d projection.
std::vector<OpCost> mtp_forward_ops(const Profile& profile, const ModelSpec& model, const Plan& plan, double tokens);
// The optimizer step over `params` parameters held by this rank (after ZeRO sharding).
OpCost optimizer_op(const Profile& profile, const Plan& plan, double params);

}  // namespace moesim
