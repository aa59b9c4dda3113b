// ModelSpec: a GPT decoder with Mixture-of-Experts layers, as plain data. Loaded
// from configs/models/*.json (model_json.cpp) or built by an importer; validate()
// checks it whole. Every size is a count (not bytes) unless its name says otherwise.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moesim {

enum class Positions { sinusoidal, learned, rotary };
enum class QkNorm { none, per_head, full };  // norms on q and k: per head (Qwen3) or over all heads (OLMoE)
enum class Norm { layernorm, gain_only_layernorm, rmsnorm };
enum class Activation { gelu, relu, swiglu };
enum class DType { fp32, fp16, bf16 };
enum class SecondExpertPolicy { all, sampling, random };  // fairseq's Top2Gate policies
enum class RouterScore { softmax, sigmoid };
// How capacity rounds: fairseq takes k * ceil(cf * S / E); Megatron and DeepSpeed
// (whose top-2 gate doubles the factor) take ceil(k * cf * S / E).
enum class CapacityRounding { per_choice, total };

// Which layers carry an MoE FFN: layer i (0-based) is MoE iff i >= offset and
// (i - offset) % every == 0, unless an explicit list is given.
struct MoeLayers {
  int every = 1;
  int offset = 0;
  std::vector<int> list;  // non-empty: exactly these layers
};

// EvoMoE's dense-to-sparse gate (arXiv 2112.14397): every expert is active for the
// first dense_steps updates, then the gate temperature anneals from start to end over
// anneal_steps while fewer experts pass the threshold, ending at top_k experts.
struct DenseToSparse {
  std::int64_t dense_steps = 0;
  std::int64_t anneal_steps = 0;
  double temperature_start = 1.0;
  double temperature_end = 1.0;
  double threshold = 0.0;
};

struct MoeSpec {
  int experts = 0;  // routed experts per MoE layer; 0 = dense model
  int top_k = 1;
  MoeLayers layers;
  std::int64_t expert_ffn_dim = 0;         // 0 = the model's ffn_dim
  // Experts may be a different MLP than the dense layers (open_lm's MegaBlocks experts
  // are 2-matrix GELU without biases beside SwiGLU dense layers); unset = the model's.
  std::optional<Activation> expert_activation;
  std::optional<bool> expert_bias;
  int shared_experts = 0;                  // DeepSeek-style, always active
  std::int64_t shared_expert_ffn_dim = 0;  // per shared expert; 0 = expert_ffn_dim
  std::optional<double> capacity_factor;   // training; nullopt = dropless
  std::optional<double> eval_capacity_factor;
  std::int64_t min_capacity = 0;
  CapacityRounding capacity_rounding = CapacityRounding::per_choice;
  SecondExpertPolicy second_expert_policy = SecondExpertPolicy::all;
  DType gate_precision = DType::fp32;
  RouterScore router_score = RouterScore::softmax;
  // Group-limited routing (DeepSeek-V3's n_group / topk_group): the experts form
  // `expert_groups` equal groups; a token first picks its `groups_per_token` groups by the
  // sum of each group's two best scores, then its top_k experts inside them. 0: no limit.
  int expert_groups = 0;
  int groups_per_token = 0;
  bool gate_bias = false;
  double aux_loss_weight = 0.0;
  std::optional<DenseToSparse> dense_to_sparse;
};

// Multi-head latent attention (DeepSeek-V2/V3): queries through an optional low-rank
// bottleneck, keys and values from one compressed latent plus a shared rope key.
struct MlaSpec {
  std::int64_t q_lora_rank = 0;  // 0 = full-rank query projection
  std::int64_t kv_lora_rank = 0;
  std::int64_t qk_nope_head_dim = 0;
  std::int64_t qk_rope_head_dim = 0;
  std::int64_t v_head_dim = 0;
};

struct ModelSpec {
  std::string name;
  std::string source;  // where the numbers came from (seed, paper, config file)

  int layers = 0;
  std::int64_t d_model = 0;
  int heads = 0;
  int kv_heads = 0;           // = heads unless grouped-query attention
  std::int64_t head_dim = 0;  // = d_model / heads unless given
  std::int64_t ffn_dim = 0;   // dense FFN hidden size
  std::int64_t vocab = 0;
  std::int64_t seq_len = 0;
  std::int64_t max_positions = 0;  // learned positions table rows; = seq_len unless given
  Positions positions = Positions::learned;
  // Rotary base: open_lm's and Llama's 10000 (open_lm/positional_embedding/rotary.py);
  // HF configs carry it as rope_theta (Qwen3: 1e6).
  double rope_theta = 10000.0;
  Norm norm = Norm::layernorm;
  Activation activation = Activation::gelu;
  bool tied_embeddings = true;
  bool bias = true;        // biases on the attention and FFN linears
  bool qkv_bias = false;   // biases on q, k, v only (Qwen2); implied by bias
  QkNorm qk_norm = QkNorm::none;
  std::optional<MlaSpec> mla;  // set: multi-head latent attention replaces q/k/v
  bool final_norm = true;  // a norm after the last layer
  // DeepSeek-V3's multi-token prediction depth (num_nextn_predict_layers): each module k
  // predicts token i+k+1 from the previous depth's hidden state and the embedding of token
  // i+k (enorm, hnorm, a 2d -> d projection, one transformer layer like the model's last,
  // a norm before the shared output head). Trained beside the main model on its last
  // pipeline stage; its parameters are counted apart from the model's.
  int mtp_layers = 0;
  MoeSpec moe;

  bool is_moe() const { return moe.experts > 0; }
  bool is_moe_layer(int layer) const;
  int moe_layer_count() const;
  std::int64_t expert_ffn() const { return moe.expert_ffn_dim > 0 ? moe.expert_ffn_dim : ffn_dim; }
  Activation expert_act() const { return moe.expert_activation.value_or(activation); }
  bool expert_has_bias() const { return moe.expert_bias.value_or(bias); }
  std::int64_t shared_ffn() const {
    return moe.shared_expert_ffn_dim > 0 ? moe.shared_expert_ffn_dim : expert_ffn();
  }
};

// Checks ranges and consistency (heads divide d_model when head_dim is derived, kv_heads
// divide heads, top_k <= experts, MoE layers inside the model ...); throws InputError
// naming `file` and the field.
void validate(const ModelSpec& model, const std::string& file);

const char* to_string(Positions p);
const char* to_string(Norm n);
const char* to_string(QkNorm n);
const char* to_string(Activation a);
const char* to_string(DType d);
const char* to_string(SecondExpertPolicy p);
const char* to_string(RouterScore r);
const char* to_string(CapacityRounding r);

}  // namespace moesim
