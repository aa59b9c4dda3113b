// Megatron arguments -> ModelSpec and Plan. Two dialects share the argument names of
// the dense model: Megatron-Core's MoE flags (--num-experts N, --moe-router-topk,
// --moe-layer-freq, dropless unless --moe-expert-capacity-factor) and Megatron-DeepSpeed's
// (num_experts [N], topk, expert_interval, moe_train_capacity_factor, moe_min_capacity;
// DeepSpeed's gate keeps its weight in fp32). Defaults are Megatron's argparse defaults.
#include "src/importers/megatron.hpp"

#include <algorithm>

#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"
#include "src/importers/foreign_object.hpp"
#include "src/importers/layer_pattern.hpp"
#include "src/importers/megatron_args.hpp"
#include "src/importers/python_literal.hpp"
#include "src/model/model_json.hpp"

namespace moesim::importers {
namespace {

using L = ModelLimits;

std::string num(std::int64_t v) { return std::to_string(v); }
std::string num(double v) { return nlohmann::json(v).dump(); }
std::string yes(bool b) { return b ? "true" : "false"; }

std::string normalize(const std::string& key) {
  std::string out = key;
  for (char& c : out)
    if (c == '-') c = '_';
  return out;
}

// The expert count: an int (Megatron-Core) or a list per MoE layer group (Megatron-DeepSpeed).
std::int64_t read_experts(ForeignObject& a, bool& listed) {
  const nlohmann::json* v = a.raw("num_experts");
  listed = false;
  if (!v || v->is_null()) return 0;
  if (v->is_array()) {
    listed = true;
    if (v->empty()) return 0;
    const nlohmann::json first = (*v)[0];
    for (const nlohmann::json& x : *v)
      if (x != first)
        a.fail("num_experts", "expected the same expert count in every MoE layer (pyramid MoE is not modelled), got " + to_text(*v));
    if (!first.is_number_integer() || first.get<std::int64_t>() < 0 || first.get<std::int64_t>() > L::max_experts)
      a.fail("num_experts", "expected expert counts in [0, " + num(std::int64_t{L::max_experts}) + "], got " + to_text(*v));
    return first.get<std::int64_t>();
  }
  return a.integer("num_experts", 0, L::max_experts);
}

void map_model(ForeignObject& a, Overrides& set, ImportResult& out, int tp) {
  ModelSpec& m = out.model;
  ImportReport& rep = out.report;

  m.layers = static_cast<int>(a.integer("num_layers", 1, L::max_layers));
  rep.map("num_layers " + num(std::int64_t{m.layers}), "layers");
  m.d_model = a.integer("hidden_size", 1, L::max_d_model);
  rep.map("hidden_size " + num(m.d_model), "d_model");
  m.heads = static_cast<int>(a.integer("num_attention_heads", 1, L::max_heads));
  rep.map("num_attention_heads " + num(std::int64_t{m.heads}), "heads");
  if (auto kvc = a.opt_integer("kv_channels", 1, L::max_head_dim)) {
    m.head_dim = *kvc;
    rep.map("kv_channels " + num(*kvc), "head_dim");
  } else {
    if (m.d_model % m.heads != 0) a.fail("num_attention_heads", "expected a divisor of hidden_size or an explicit kv_channels");
    m.head_dim = m.d_model / m.heads;
    rep.defaults("head_dim", num(m.head_dim), "Megatron default kv_channels = hidden_size / num_attention_heads");
  }
  const bool gqa = a.opt_boolean("group_query_attention").value_or(false);
  if (gqa) {
    m.kv_heads = static_cast<int>(a.integer("num_query_groups", 1, m.heads));
    rep.map("group_query_attention, num_query_groups " + num(std::int64_t{m.kv_heads}), "kv_heads");
  } else {
    m.kv_heads = m.heads;
    a.consume("num_query_groups");  // only read with group_query_attention
  }

  const bool swiglu = a.opt_boolean("swiglu").value_or(false);
  const bool squared_relu = a.opt_boolean("squared_relu").value_or(false);
  m.activation = swiglu ? Activation::swiglu : squared_relu ? Activation::relu : Activation::gelu;
  if (swiglu) rep.map("swiglu", "activation swiglu");
  else if (squared_relu) rep.note("squared_relu: mapped to relu (the same parameters and FLOPs)");
  else rep.defaults("activation", "gelu", "Megatron default (no --swiglu)");
  a.consume("openai_gelu");
  a.consume("bias_gelu_fusion");
  if (auto ffn = a.opt_integer("ffn_hidden_size", 1, L::max_ffn)) {
    m.ffn_dim = *ffn;
    rep.map("ffn_hidden_size " + num(*ffn), "ffn_dim");
  } else {
    // Megatron: 4h, or for SwiGLU int(4h * 2/3 / 64) * 64 so the FLOPs stay those of 4h.
    m.ffn_dim = swiglu ? (4 * m.d_model * 2 / 3) / 64 * 64 : 4 * m.d_model;
    rep.defaults("ffn_dim", num(m.ffn_dim), swiglu ? "Megatron default int(4h*2/3/64)*64 with --swiglu" : "Megatron default 4 * hidden_size");
  }

  if (!set.has("seq_len")) {
    std::optional<std::int64_t> seq = a.opt_integer("seq_length", 1, L::max_seq);
    if (seq) {
      rep.map("seq_length " + num(*seq), "seq_len");
    } else if ((seq = a.opt_integer("encoder_seq_length", 1, L::max_seq))) {
      rep.map("encoder_seq_length " + num(*seq), "seq_len");
    } else {
      a.fail("seq_length", "required setting is missing (or pass --set seq_len=N)");
    }
    m.seq_len = *seq;
  } else {
    a.consume("seq_length");
  }
  a.consume("encoder_seq_length");
  a.consume("decoder_seq_length");

  // Positions.
  const std::string pos_type = a.opt_string("position_embedding_type").value_or("");
  const bool rotary_flag = a.opt_boolean("use_rotary_position_embeddings").value_or(false) ||
                           a.opt_boolean("rotary_position_embeddings").value_or(false);
  if (pos_type == "rope" || pos_type == "mrope" || pos_type == "yarn" || rotary_flag) {
    m.positions = Positions::rotary;
    rep.map(pos_type.empty() ? std::string("rotary position embeddings") : "position_embedding_type " + pos_type, "positions rotary");
  } else if (pos_type == "none") {
    m.positions = Positions::sinusoidal;
    rep.note("position_embedding_type none: no position embeddings; mapped to sinusoidal (no parameters either way)");
  } else if (pos_type.empty() || pos_type == "learned_absolute") {
    m.positions = Positions::learned;
    if (pos_type.empty()) rep.defaults("positions", "learned", "Megatron default position_embedding_type learned_absolute");
    else rep.map("position_embedding_type learned_absolute", "positions learned");
  } else {
    a.fail("position_embedding_type", "expected learned_absolute, rope or none, got \"" + pos_type + "\"");
  }
  for (const char* k : {"no_position_embedding", "add_position_embedding", "rotary_percent", "rotary_base"}) a.consume(k);
  if (auto maxpos = a.opt_integer("max_position_embeddings", 1, L::max_seq)) {
    m.max_positions = *maxpos;
    if (m.positions == Positions::learned) rep.map("max_position_embeddings " + num(*maxpos), "max_positions");
  } else {
    m.max_positions = m.seq_len;
  }

  const std::string norm = a.opt_string("normalization").value_or("LayerNorm");
  if (norm == "LayerNorm") m.norm = Norm::layernorm;
  else if (norm == "RMSNorm") m.norm = Norm::rmsnorm;
  else a.fail("normalization", "expected LayerNorm or RMSNorm, got \"" + norm + "\"");
  if (a.has_value("normalization")) rep.map("normalization " + norm, std::string("norm ") + to_string(m.norm));
  else rep.defaults("norm", "layernorm", "Megatron default normalization LayerNorm");
  m.final_norm = true;

  const bool untie = a.opt_boolean("untie_embeddings_and_output_weights").value_or(false);
  m.tied_embeddings = !untie;
  if (a.has_value("untie_embeddings_and_output_weights")) rep.map("untie_embeddings_and_output_weights " + yes(untie), "tied_embeddings " + yes(!untie));
  else rep.defaults("tied_embeddings", "true", "Megatron default: the output layer shares the word embeddings");

  bool bias = true;
  if (a.opt_boolean("disable_bias_linear").value_or(false)) bias = false;
  if (auto add = a.opt_boolean("add_bias_linear")) bias = *add;
  m.bias = bias;
  if (a.has("disable_bias_linear") || a.has("add_bias_linear")) rep.map(bias ? "add_bias_linear" : "disable_bias_linear", "bias " + yes(bias));
  else rep.defaults("bias", "true", "Megatron default add_bias_linear");
  if (a.opt_boolean("add_qkv_bias").value_or(false) && !bias) {
    m.qkv_bias = true;
    rep.map("add_qkv_bias", "qkv_bias true");
  }
  if (a.opt_boolean("qk_layernorm").value_or(false)) {
    m.qk_norm = QkNorm::per_head;
    rep.map("qk_layernorm", "qk_norm per_head (Megatron-Core normalizes q and k over kv_channels)");
  }

  // MLA (Megatron-Core DeepSeek support; flag names as in Megatron-Core's arguments.py).
  if (a.opt_boolean("multi_latent_attention").value_or(false)) {
    MlaSpec mla;
    mla.q_lora_rank = a.opt_integer("q_lora_rank", 1, L::max_d_model).value_or(0);
    mla.kv_lora_rank = a.opt_integer("kv_lora_rank", 1, L::max_d_model).value_or(32);
    mla.qk_nope_head_dim = a.opt_integer("qk_head_dim", 1, L::max_head_dim).value_or(128);
    mla.qk_rope_head_dim = a.opt_integer("qk_pos_emb_head_dim", 1, L::max_head_dim).value_or(64);
    mla.v_head_dim = a.opt_integer("v_head_dim", 1, L::max_head_dim).value_or(128);
    m.mla = mla;
    m.head_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim;
    rep.map("multi_latent_attention (q_lora_rank " + num(mla.q_lora_rank) + ", kv_lora_rank " + num(mla.kv_lora_rank) +
                ", qk_head_dim " + num(mla.qk_nope_head_dim) + ", qk_pos_emb_head_dim " + num(mla.qk_rope_head_dim) +
                ", v_head_dim " + num(mla.v_head_dim) + ")",
            "mla (Megatron-Core defaults for the ranks not given: kv_lora_rank 32, qk_head_dim 128, qk_pos_emb_head_dim 64, v_head_dim 128)");
  }
  if (auto mtp = a.opt_integer("mtp_num_layers", 0, L::max_layers); mtp && *mtp > 0)
    rep.note("mtp_num_layers " + num(*mtp) + ": the multi-token-prediction module is not modelled yet (not counted)");

  // Vocabulary: the padded size when the dump has it, else Megatron's padding of the raw size.
  if (set.has("vocab")) {
    a.consume("padded_vocab_size");
    a.consume("vocab_size");
    a.consume("make_vocab_size_divisible_by");
  } else if (auto padded = a.opt_integer("padded_vocab_size", 1, L::max_vocab)) {
    m.vocab = *padded;
    rep.map("padded_vocab_size " + num(*padded), "vocab");
    a.consume("vocab_size");
    a.consume("make_vocab_size_divisible_by");
  } else if (auto raw = a.opt_integer("vocab_size", 1, L::max_vocab)) {
    const std::int64_t divisible = a.opt_integer("make_vocab_size_divisible_by", 1, 1 << 20).value_or(128);
    const std::int64_t multiple = divisible * tp;
    m.vocab = (*raw + multiple - 1) / multiple * multiple;
    if (m.vocab > L::max_vocab) a.fail("vocab_size", "expected a padded vocabulary of at most " + num(L::max_vocab));
    rep.map("vocab_size " + num(*raw) + ", make_vocab_size_divisible_by " + num(divisible) + " x tp " + num(std::int64_t{tp}),
            "vocab " + num(m.vocab) + " (padded as Megatron pads it)");
  } else {
    a.fail("padded_vocab_size", "required setting is missing: the vocabulary comes from the tokenizer; pass --set vocab=N "
                                "(or --vocab-size in the arguments)");
  }
}

void map_moe(ForeignObject& a, ImportResult& out, DType precision) {
  ModelSpec& m = out.model;
  ImportReport& rep = out.report;
  bool listed = false;
  const std::int64_t experts = read_experts(a, listed);
  // Megatron-DeepSpeed's dialect: num_experts as a list, or its own MoE argument names.
  const bool ds = listed || a.has("expert_interval") || a.has("moe_expert_parallel_size") || a.has("topk") ||
                  a.has("moe_train_capacity_factor");
  if (experts <= 1) {  // DeepSpeed's num_experts [1] means dense
    rep.note(experts == 1 ? "num_experts 1: a dense model" : "num_experts absent: a dense model");
    for (const char* k : {"topk", "expert_interval", "moe_router_topk", "moe_layer_freq", "moe_ffn_hidden_size",
                          "moe_train_capacity_factor", "moe_eval_capacity_factor", "moe_min_capacity", "moe_loss_coeff",
                          "moe_aux_loss_coeff", "moe_token_dropping", "moe_expert_capacity_factor"})
      a.consume(k);
    return;
  }
  MoeSpec& e = m.moe;
  e.experts = static_cast<int>(experts);
  rep.map("num_experts " + to_text(*a.raw("num_experts")), "moe.experts");
  const char* topk_key = ds && a.has("topk") ? "topk" : "moe_router_topk";
  if (auto k = a.opt_integer(topk_key, 1, experts)) {
    e.top_k = static_cast<int>(*k);
    rep.map(std::string(topk_key) + " " + num(*k), "moe.top_k");
  } else {
    e.top_k = ds ? 1 : 2;
    rep.defaults("moe.top_k", num(std::int64_t{e.top_k}), ds ? "Megatron-DeepSpeed default topk 1" : "Megatron-Core default moe_router_topk 2");
  }

  // Which layers.
  if (const nlohmann::json* freq = a.raw("moe_layer_freq"); freq && !freq->is_null()) {
    std::vector<bool> pattern;
    if (freq->is_number_integer()) {
      const std::int64_t f = a.integer("moe_layer_freq", 1, L::max_layers);
      e.layers.every = static_cast<int>(f);
      e.layers.offset = 0;
      rep.map("moe_layer_freq " + num(f), "moe.layers {every " + num(f) + ", offset 0} (Megatron-Core: MoE iff i % freq == 0)");
    } else {
      if (freq->is_array()) {
        for (const nlohmann::json& x : *freq) {
          if (!x.is_number_integer() || (x.get<std::int64_t>() != 0 && x.get<std::int64_t>() != 1))
            a.fail("moe_layer_freq", "expected a list of 0 and 1, got " + describe_value(*freq));
          pattern.push_back(x.get<std::int64_t>() == 1);
        }
      } else if (freq->is_string()) {
        pattern = eval_layer_list_expression(freq->get<std::string>(), L::max_layers, a.file(), a.field("moe_layer_freq"));
      } else {
        a.fail("moe_layer_freq", "expected an integer or a list expression like ([0]+[1]*23), got " + describe_value(*freq));
      }
      if (pattern.size() != static_cast<std::size_t>(m.layers))
        a.fail("moe_layer_freq", "expected one entry per layer (" + num(std::int64_t{m.layers}) + "), got " + num(static_cast<std::int64_t>(pattern.size())));
      if (std::find(pattern.begin(), pattern.end(), true) == pattern.end())
        a.fail("moe_layer_freq", "expected at least one MoE layer (a 1)");
      e.layers = moe_layers_from_pattern(pattern);
      rep.map("moe_layer_freq " + (freq->is_string() ? freq->get<std::string>() : to_text(*freq)),
              e.layers.list.empty() ? "moe.layers {every " + num(std::int64_t{e.layers.every}) + ", offset " + num(std::int64_t{e.layers.offset}) + "}"
                                    : std::string("moe.layers (explicit list)"));
    }
  } else if (ds) {
    const std::int64_t interval = a.opt_integer("expert_interval", 1, L::max_layers).value_or(2);
    if (interval > m.layers) a.fail("expert_interval", "expected at most num_layers (" + num(std::int64_t{m.layers}) + ")");
    e.layers.every = static_cast<int>(interval);
    e.layers.offset = static_cast<int>(interval - 1);
    const std::string why = "moe.layers {every " + num(interval) + ", offset " + num(interval - 1) +
                            "} (Megatron-DeepSpeed: layer i is MoE iff (i+1) % expert_interval == 0)";
    if (a.has("expert_interval")) rep.map("expert_interval " + num(interval), why);
    else rep.defaults("moe.layers", "{every 2, offset 1}", "Megatron-DeepSpeed default expert_interval 2");
  } else {
    rep.defaults("moe.layers", "every layer", "Megatron-Core default moe_layer_freq 1");
  }

  if (auto dim = a.opt_integer("moe_ffn_hidden_size", 1, L::max_ffn)) {
    e.expert_ffn_dim = *dim;
    rep.map("moe_ffn_hidden_size " + num(*dim), "moe.expert_ffn_dim");
  } else {
    rep.defaults("moe.expert_ffn_dim", "= ffn_dim", "Megatron default moe_ffn_hidden_size = ffn_hidden_size");
  }
  if (auto shared = a.opt_integer("moe_shared_expert_intermediate_size", 1, L::max_ffn)) {
    e.shared_experts = 1;
    e.shared_expert_ffn_dim = *shared;
    rep.map("moe_shared_expert_intermediate_size " + num(*shared), "moe.shared_experts 1 of that size (Megatron builds one shared MLP)");
    if (a.opt_boolean("moe_shared_expert_gate").value_or(false))
      rep.note("moe_shared_expert_gate: the shared expert's gate (" + num(m.d_model) + " per MoE layer) is not modelled");
  }
  if (auto mlp_type = a.opt_string("mlp_type"); mlp_type && *mlp_type == "residual")
    rep.note("mlp_type residual (PR-MoE): the residual MLP and its coefficient per MoE layer are not modelled (not counted)");

  // Capacity and balancing.
  if (ds) {
    const bool dropping = a.opt_boolean("moe_token_dropping").value_or(true);
    if (dropping) {
      e.capacity_factor = a.opt_number("moe_train_capacity_factor", 1e-3, 1e6).value_or(1.0);
      e.eval_capacity_factor = a.opt_number("moe_eval_capacity_factor", 1e-3, 1e6).value_or(1.0);
      e.min_capacity = a.opt_integer("moe_min_capacity", 0, L::max_seq).value_or(4);
      rep.map("moe_train_capacity_factor " + num(*e.capacity_factor) + ", moe_eval_capacity_factor " + num(*e.eval_capacity_factor) +
                  ", moe_min_capacity " + num(e.min_capacity),
              "moe.capacity_factor, eval_capacity_factor, min_capacity (DeepSpeed defaults 1.0, 1.0, 4 where absent)");
    } else {
      a.consume("moe_train_capacity_factor");
      a.consume("moe_eval_capacity_factor");
      a.consume("moe_min_capacity");
      rep.map("moe_token_dropping False", "moe.capacity_factor null (dropless)");
    }
    // DeepSpeed's top-k gate takes ceil(k * factor * S / E): one rounding for all choices.
    e.capacity_rounding = e.top_k == 1 ? CapacityRounding::per_choice : CapacityRounding::total;
    rep.defaults("moe.capacity_rounding", to_string(e.capacity_rounding),
                 "DeepSpeed top-k gating: capacity = ceil(k * capacity_factor * S / E), floored at min_capacity");
    e.aux_loss_weight = a.opt_number("moe_loss_coeff", 0.0, 1e6).value_or(0.01);
    rep.map("moe_loss_coeff " + num(e.aux_loss_weight), "moe.aux_loss_weight");
    e.gate_precision = DType::fp32;
    rep.defaults("moe.gate_precision", "fp32", "DeepSpeed TopKGate keeps wg in fp32");
    if (auto noisy = a.opt_string("noisy_gate_policy")) rep.note("noisy_gate_policy " + *noisy + ": not modelled");
  } else {
    if (auto cf = a.opt_number("moe_expert_capacity_factor", 1e-3, 1e6)) {
      e.capacity_factor = *cf;
      rep.map("moe_expert_capacity_factor " + num(*cf), "moe.capacity_factor");
    } else {
      e.capacity_factor = std::nullopt;
      rep.defaults("moe.capacity_factor", "null (dropless)", "Megatron-Core default moe_expert_capacity_factor None");
    }
    e.capacity_rounding = CapacityRounding::total;
    rep.defaults("moe.capacity_rounding", "total", "Megatron-Core: capacity = ceil(tokens * topk * factor / experts)");
    if (a.opt_boolean("moe_pad_expert_input_to_capacity").value_or(false))
      rep.note("moe_pad_expert_input_to_capacity: experts always compute the full capacity (not modelled)");
    e.aux_loss_weight = a.opt_number("moe_aux_loss_coeff", 0.0, 1e6).value_or(0.0);
    if (a.has_value("moe_aux_loss_coeff")) rep.map("moe_aux_loss_coeff " + num(e.aux_loss_weight), "moe.aux_loss_weight");
    else rep.defaults("moe.aux_loss_weight", "0", "Megatron-Core default moe_aux_loss_coeff 0.0");
    const std::string score = a.opt_string("moe_router_score_function").value_or("softmax");
    if (score == "softmax") e.router_score = RouterScore::softmax;
    else if (score == "sigmoid") e.router_score = RouterScore::sigmoid;
    else a.fail("moe_router_score_function", "expected softmax or sigmoid, got \"" + score + "\"");
    if (a.has_value("moe_router_score_function")) rep.map("moe_router_score_function " + score, "moe.router_score");
    const std::string router_dtype = a.opt_string("moe_router_dtype").value_or("");
    e.gate_precision = router_dtype == "fp32" || router_dtype == "fp64" ? DType::fp32 : precision;
    if (router_dtype.empty()) rep.defaults("moe.gate_precision", to_string(precision), "Megatron-Core: the router runs in the training precision unless --moe-router-dtype");
    else rep.map("moe_router_dtype " + router_dtype, std::string("moe.gate_precision ") + to_string(e.gate_precision));
  }
  for (const char* k : {"moe_z_loss_coeff", "moe_router_num_groups", "moe_router_group_topk", "moe_router_topk_scaling_factor",
                        "moe_router_enable_expert_bias", "moe_router_pre_softmax", "moe_router_load_balancing_type",
                        "moe_token_drop_policy", "moe_input_jitter_eps"})
    if (const nlohmann::json* v = a.raw(k); v && !v->is_null() && *v != false)
      rep.note(std::string(k) + " " + to_text(*v) + ": routing detail not modelled (no parameters)");
}

void map_plan(ForeignObject& a, ImportResult& out, std::optional<std::int64_t> launcher_world, DType precision, int tp) {
  ImportReport& rep = out.report;
  const ModelSpec& m = out.model;
  static const char* const plan_keys[] = {"tensor_model_parallel_size", "pipeline_model_parallel_size", "data_parallel_size",
                                          "world_size", "expert_model_parallel_size", "moe_expert_parallel_size",
                                          "micro_batch_size", "global_batch_size"};
  bool any = launcher_world.has_value();
  for (const char* k : plan_keys) any = any || a.has_value(k);
  if (!any) return;
  Plan p;
  constexpr std::int64_t kMax = 1 << 20;
  p.tp = tp;
  p.pp = static_cast<int>(a.opt_integer("pipeline_model_parallel_size", 1, kMax).value_or(1));
  a.consume("transformer_pipeline_model_parallel_size");
  const std::int64_t cp = a.opt_integer("context_parallel_size", 1, kMax).value_or(1);
  p.cp = static_cast<int>(cp);
  if (cp > 1) {
    rep.map("context_parallel_size " + num(cp), "plan.cp");
    // moesim's ring attention runs on fused kernels, as Megatron's (Transformer Engine) does.
    p.attention = AttentionImpl::flash;
  }
  const std::int64_t model_parallel = std::int64_t{p.tp} * p.pp * cp;
  if (auto dp = a.opt_integer("data_parallel_size", 1, kMax)) {
    p.dp = static_cast<int>(*dp);
    rep.map("data_parallel_size " + num(*dp), "plan.dp");
    a.consume("world_size");
  } else {
    std::optional<std::int64_t> world = a.opt_integer("world_size", 1, kMax);
    std::string from = "world_size";
    if (!world && launcher_world) {
      world = launcher_world;
      from = "the launcher's process count";
    }
    if (world) {
      if (*world % model_parallel != 0)
        a.fail("world_size", "expected a multiple of tp * pp * cp (" + num(model_parallel) + "), got " + num(*world));
      p.dp = static_cast<int>(*world / model_parallel);
      rep.map(from + " " + num(*world), "plan.dp " + num(std::int64_t{p.dp}) + " = world / (tp * pp" + (cp > 1 ? " * cp)" : ")"));
    } else {
      p.dp = 1;
      rep.defaults("plan.dp", "1", "the arguments carry no world size: pass --set world_size=N");
    }
  }
  rep.map("tensor_model_parallel_size " + num(std::int64_t{p.tp}) + ", pipeline_model_parallel_size " + num(std::int64_t{p.pp}), "plan.tp, plan.pp");
  const char* ep_key = a.has_value("expert_model_parallel_size") ? "expert_model_parallel_size" : "moe_expert_parallel_size";
  if (auto ep = a.opt_integer(ep_key, 1, kMax)) {
    p.ep = static_cast<int>(*ep);
    rep.map(std::string(ep_key) + " " + num(*ep), "plan.ep");
  }
  a.consume("expert_model_parallel_size");
  a.consume("moe_expert_parallel_size");
  if (auto etp = a.opt_integer("expert_tensor_parallel_size", 1, kMax); etp && *etp != p.tp) {
    p.etp = static_cast<int>(*etp);
    rep.map("expert_tensor_parallel_size " + num(*etp), "plan.etp");
  }
  p.mbs = static_cast<int>(a.opt_integer("micro_batch_size", 1, 1 << 16).value_or(1));
  rep.map("micro_batch_size " + num(std::int64_t{p.mbs}), "plan.mbs");
  if (auto gbs = a.opt_integer("global_batch_size", 1, INT64_C(1) << 40)) {
    p.gbs = *gbs;
    rep.map("global_batch_size " + num(*gbs), "plan.gbs");
  } else {
    p.gbs = std::int64_t{p.dp} * p.mbs;
    rep.defaults("plan.gbs", num(p.gbs), "Megatron default global_batch_size = micro_batch_size * dp");
  }
  // Recompute: --recompute-granularity, or the older --checkpoint-activations / --recompute-activations.
  const std::string gran = a.opt_string("recompute_granularity").value_or("");
  if (gran == "full" || a.opt_boolean("checkpoint_activations").value_or(false)) p.recompute = Recompute::full;
  else if (gran == "selective" || a.opt_boolean("recompute_activations").value_or(false)) p.recompute = Recompute::selective;
  else if (!gran.empty()) a.fail("recompute_granularity", "expected full or selective, got \"" + gran + "\"");
  rep.map("recompute_granularity " + (gran.empty() ? std::string("None") : gran), std::string("plan.recompute ") + to_string(p.recompute));
  p.precision = precision;
  p.master_weights = precision != DType::fp32;
  if (precision == DType::fp32) rep.defaults("plan.precision", "fp32", "Megatron default: neither --fp16 nor --bf16");
  else rep.map(std::string(precision == DType::bf16 ? "bf16" : "fp16") + " True", std::string("plan.precision ") + to_string(precision) + " (fp32 master weights)");
  if (a.opt_boolean("use_distributed_optimizer").value_or(false)) {
    p.zero = 1;
    rep.map("use_distributed_optimizer", "plan.zero 1");
  } else if (auto z = a.opt_integer("zero_stage", 0, 3)) {
    p.zero = static_cast<int>(*z);
    rep.map("zero_stage " + num(*z), "plan.zero");
  } else {
    for (int stage = 3; stage >= 1; --stage)
      if (a.opt_boolean("zero_" + std::to_string(stage) + "_memory_optimization").value_or(false) && p.zero == 0) {
        p.zero = stage;
        rep.map("zero_" + std::to_string(stage) + "_memory_optimization", "plan.zero " + std::to_string(stage));
      }
  }
  // Virtual pipeline: layers per virtual stage, or the stage count itself.
  if (auto per_stage = a.opt_integer("num_layers_per_virtual_pipeline_stage", 1, L::max_layers)) {
    const std::int64_t per_rank = m.layers / p.pp;
    if (m.layers % p.pp != 0 || per_rank % *per_stage != 0)
      a.fail("num_layers_per_virtual_pipeline_stage", "expected a divisor of num_layers / pipeline_model_parallel_size (" + num(per_rank) + ")");
    p.vpp = static_cast<int>(per_rank / *per_stage);
    rep.map("num_layers_per_virtual_pipeline_stage " + num(*per_stage), "plan.vpp " + num(std::int64_t{p.vpp}));
  } else if (auto v = a.opt_integer("virtual_pipeline_model_parallel_size", 1, 1024)) {
    p.vpp = static_cast<int>(*v);
    rep.map("virtual_pipeline_model_parallel_size " + num(*v), "plan.vpp");
  } else if (auto v2 = a.opt_integer("num_virtual_stages_per_pipeline_rank", 1, 1024)) {
    p.vpp = static_cast<int>(*v2);
    rep.map("num_virtual_stages_per_pipeline_rank " + num(*v2), "plan.vpp");
  }
  p.schedule = p.vpp > 1 ? Schedule::interleaved : Schedule::one_f_one_b;
  rep.defaults("plan.schedule", to_string(p.schedule), "Megatron runs 1F1B, interleaved with virtual stages");
  // Uneven end stages, given outright or by counting the embedding and the loss as layers.
  if (auto first = a.opt_integer("decoder_first_pipeline_num_layers", 1, kMax)) {
    p.first_stage_layers = static_cast<int>(*first);
    rep.map("decoder_first_pipeline_num_layers " + num(*first), "plan.first_stage_layers");
  }
  if (auto last = a.opt_integer("decoder_last_pipeline_num_layers", 1, kMax)) {
    p.last_stage_layers = static_cast<int>(*last);
    rep.map("decoder_last_pipeline_num_layers " + num(*last), "plan.last_stage_layers");
  }
  const bool embedding = a.opt_boolean("account_for_embedding_in_pipeline_split").value_or(false);
  const bool loss = a.opt_boolean("account_for_loss_in_pipeline_split").value_or(false);
  if ((embedding || loss) && p.pp > 1) {
    // Megatron splits layers + 1 per counted end evenly; the end stages hold one layer less.
    const std::int64_t units = m.layers + (embedding ? 1 : 0) + (loss ? 1 : 0);
    const char* key = embedding ? "account_for_embedding_in_pipeline_split" : "account_for_loss_in_pipeline_split";
    if (p.vpp > 1) a.fail(key, "expected no virtual pipeline stages: moesim splits uneven end stages per stage, not per chunk");
    if (units % p.pp != 0)
      a.fail(key, "expected num_layers plus the counted embedding and loss (" + num(units) +
                      ") to divide by pipeline_model_parallel_size (" + num(std::int64_t{p.pp}) + ")");
    const int per = static_cast<int>(units / p.pp);
    if (embedding) p.first_stage_layers = per - 1;
    if (loss) p.last_stage_layers = per - 1;
    rep.map(std::string(embedding ? "account_for_embedding_in_pipeline_split" : "") + (embedding && loss ? ", " : "") +
                (loss ? "account_for_loss_in_pipeline_split" : ""),
            "plan.first_stage_layers / last_stage_layers (" + num(std::int64_t{per}) + " units a stage, the end stages one layer less)");
  }
  if (a.opt_boolean("sequence_parallel").value_or(false) && p.tp > 1) {
    p.sp = true;
    rep.map("sequence_parallel", "plan.sp");
  }
  if (a.opt_boolean("accumulate_allreduce_grads_in_fp32").value_or(false) && precision != DType::fp32) {
    p.grad_dtype = DType::fp32;
    rep.map("accumulate_allreduce_grads_in_fp32", "plan.grad_dtype fp32");
  }
  if (const std::optional<std::string> format = a.opt_string("fp8_format"); format && !format->empty()) {
    if (*format == "e4m3") p.fp8 = Fp8::e4m3;
    else if (*format == "hybrid") p.fp8 = Fp8::hybrid;
    else a.fail("fp8_format", "expected e4m3 or hybrid, got \"" + *format + "\"");
    rep.map("fp8_format " + *format, "plan.fp8");
    const std::string recipe = a.opt_string("fp8_recipe").value_or("delayed");
    if (recipe == "delayed") p.fp8_recipe = Fp8Recipe::delayed;
    else if (recipe == "tensorwise") p.fp8_recipe = Fp8Recipe::tensorwise;
    else if (recipe == "blockwise") p.fp8_recipe = Fp8Recipe::blockwise;
    else a.fail("fp8_recipe", "expected delayed, tensorwise or blockwise (mxfp8 needs Blackwell GPUs, which moesim has no profile of), got \"" + recipe + "\"");
    if (a.has_value("fp8_recipe")) rep.map("fp8_recipe " + recipe, "plan.fp8_recipe");
    else rep.defaults("plan.fp8_recipe", "delayed", "Megatron default --fp8-recipe delayed");
  }
  a.consume("fp8_recipe");
  const bool flash = a.opt_boolean("use_flash_attn").value_or(false);
  const std::optional<std::string> backend = a.opt_string("attention_backend");
  if (flash || (backend && backend->find("unfused") == std::string::npos && backend->find("local") == std::string::npos)) {
    p.attention = AttentionImpl::flash;
    rep.map(flash ? "use_flash_attn" : "attention_backend " + *backend, "plan.attention flash");
  }
  // The plan must hold as moesim reads plans: the same checks as a plan file.
  out.plan = plan_from_json(nlohmann::json::parse(plan_to_json(p).dump()), a.file());
  check_plan(*out.plan, m, a.file());
}

}  // namespace

ImportResult import_megatron(std::string_view text, const std::string& file, Overrides& set) {
  ImportResult out;
  out.format = "megatron";
  MegatronArgs args = read_megatron_args(text, file, set);
  out.detail = args.shape;
  for (const std::string& n : args.notes) out.report.note(n);

  // --set keys that are neither model fields nor script variables override arguments.
  static const char* const model_keys[] = {"name", "vocab", "seq_len", "max_positions"};
  std::vector<std::pair<std::string, std::string>> arg_overrides;  // --set key, argument name
  for (const auto& [key, value] : set.all()) {
    if (std::find(std::begin(model_keys), std::end(model_keys), key) != std::end(model_keys)) continue;
    if (set.used(key)) continue;  // a variable of the script
    set.mark_used(key);
    const std::string name = normalize(key);
    args.values[name] = python_value_or_string(value);
    args.unresolved.erase(name);
    arg_overrides.emplace_back(key, name);
    out.report.map("--set " + key + "=" + value, "argument " + name);
  }
  ForeignObject a(args.values, file);
  for (const auto& [name, why] : args.unresolved) a.poison(name, why);

  const int tp = static_cast<int>(a.opt_integer("tensor_model_parallel_size", 1, 1 << 20).value_or(1));
  DType precision = DType::fp32;
  const bool bf16 = a.opt_boolean("bf16").value_or(false), fp16 = a.opt_boolean("fp16").value_or(false);
  if (bf16) precision = DType::bf16;
  else if (fp16) precision = DType::fp16;
  a.consume("params_dtype");

  map_model(a, set, out, tp);
  map_moe(a, out, precision);
  map_plan(a, out, args.launcher_world, precision, tp);

  const std::vector<std::string> unread = a.unread();
  for (const auto& [key, name] : arg_overrides)
    if (std::find(unread.begin(), unread.end(), name) != unread.end())
      throw InputError("--set", key, "not a model field (" + std::string(kModelOverrideKeys) +
                                         "), a variable of the script, or a Megatron argument this importer reads");
  for (const std::string& k : unread) out.report.ignore(k);
  return out;
}

}  // namespace moesim::importers
