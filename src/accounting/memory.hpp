// Memory per rank in closed form: weights, gradients, master weights and optimizer state
// by precision and ZeRO stage (non-expert weights shard over the data-parallel group,
// expert weights over their own expert-data-parallel group), activations per layer with
// and without recomputation (after Korthikanti et al., "Reducing Activation Recomputation
// in Large Transformer Models", generalised to GQA, SwiGLU and MoE), in-flight
// micro-batches of the pipeline schedule, and the all-to-all dispatch buffers.
// Bytes throughout. The simulator refines the activation peak from its timeline.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

int bytes_of(DType d);
// An activation in FP8 as DeepSeek-V3 quantizes it (technical report, section 3.3.2,
// fine-grained quantization): one byte an element plus an fp32 scale per 1 x 128 tile.
inline constexpr double kFp8TileElements = 128;
inline constexpr double kFp8BytesPerElement = 1.0 + 4.0 / kFp8TileElements;
// A weight in FP8 under the blockwise recipe: an fp32 scale per 128 x 128 block.
inline constexpr double kFp8BlockElements = 128.0 * 128.0;

// Bytes an element of a linear layer's input takes when saved for backward: Transformer
// Engine keeps the FP8 copy it fed the GEMM (one byte, tile scales under blockwise), else
// the precision's.
double gemm_input_bytes(const Plan& plan);

struct MemoryBreakdown {
  double weights = 0;
  double grads = 0;
  double master = 0;     // fp32 master weights under fp16/bf16
  double optimizer = 0;  // Adam's two moments
  double activations = 0;
  double dispatch_buffers = 0;  // one MoE layer's all-to-all send+receive buffers (reused)

  double states() const { return weights + grads + master + optimizer; }
  double total() const { return states() + activations + dispatch_buffers; }
};

// Activations saved for backward by one layer for one micro-batch on one tp rank.
struct LayerActivations {
  double attention = 0;  // attention block incl. its norm input and dropout mask
  double ffn = 0;        // FFN or MoE block incl. its norm input and dropout mask
  double total() const { return attention + ffn; }
};

LayerActivations layer_activations(const ModelSpec& model, const Plan& plan, int layer);

struct StageMemory {
  int stage = 0;
  double in_flight_micro_batches = 0;  // micro-batches whose activations a stage holds at its peak
  MemoryBreakdown bytes;
};

// Memory of one rank of each pipeline stage. `in_flight`, one per stage, replaces the
// schedule's closed form for the micro-batches held at the peak (the event tier counts
// them on its timeline); empty: the closed form.
std::vector<StageMemory> memory_per_stage(const ModelSpec& model, const Plan& plan,
                                          std::span<const double> in_flight = {});
// The stage whose rank needs the most memory.
StageMemory peak_memory(const ModelSpec& model, const Plan& plan, std::span<const double> in_flight = {});

// Micro-batches (of a chunk of layers, for interleaved) in flight on `stage` at the peak.
double in_flight_micro_batches(const Plan& plan, int stage);

}  // namespace moesim
