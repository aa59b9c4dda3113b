// HF config.json -> ModelSpec, one mapping per family, written from each family's
// transformers modeling code: all six are pre-norm RMSNorm decoders with rotary
// positions, gated SiLU MLPs (hidden_act "silu" = SwiGLU), no linear biases except
// Qwen2-MoE's q/k/v, dropless routing, and a final norm.
#include "src/importers/huggingface.hpp"

#include <algorithm>

#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"
#include "src/importers/foreign_object.hpp"
#include "src/importers/layer_pattern.hpp"
#include "src/model/model_json.hpp"

namespace moesim::importers {
namespace {

using L = ModelLimits;

std::string family_from_architectures(const nlohmann::json& doc) {
  static const std::pair<const char*, const char*> table[] = {
      {"MixtralForCausalLM", "mixtral"},         {"Qwen2MoeForCausalLM", "qwen2_moe"},
      {"Qwen3MoeForCausalLM", "qwen3_moe"},      {"DeepseekV2ForCausalLM", "deepseek_v2"},
      {"DeepseekV3ForCausalLM", "deepseek_v3"},  {"OlmoeForCausalLM", "olmoe"},
      {"GptOssForCausalLM", "gpt_oss"}};
  auto it = doc.find("architectures");
  if (it == doc.end() || !it->is_array()) return "";
  for (const nlohmann::json& a : *it)
    if (a.is_string())
      for (const auto& [arch, family] : table)
        if (a.get<std::string>() == arch) return family;
  return "";
}

std::string num(std::int64_t v) { return std::to_string(v); }
std::string num(double v) { return nlohmann::json(v).dump(); }

// Keys that describe inference, tokenizers or numerics, not the parameter structure.
const char* const kHarmless[] = {"architectures", "model_type", "torch_dtype", "dtype", "transformers_version",
                                 "use_cache", "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range",
                                 "attention_dropout", "output_router_logits", "auto_map", "rms_norm_eps",
                                 "rope_scaling", "rope_parameters", "pretraining_tp", "_name_or_path"};

}  // namespace

ImportResult import_huggingface(std::string_view text, const std::string& file, Overrides& set) {
  ImportResult out;
  out.format = "hf";
  ImportReport& rep = out.report;
  ModelSpec& m = out.model;

  nlohmann::json doc = parse_json_text(text, file);
  if (!doc.is_object()) throw InputError(file, "", "expected a JSON object (a HuggingFace config.json)");
  nlohmann::json top;
  if (doc.contains("text_config") && doc["text_config"].is_object()) {
    top = doc;
    doc = top["text_config"];
    rep.note("multimodal wrapper (model_type " + top.value("model_type", std::string("?")) +
             "): the text_config is imported, the other top-level settings are not");
  }
  std::string family;
  if (doc.contains("model_type") && doc["model_type"].is_string()) family = doc["model_type"].get<std::string>();
  if (family.empty()) family = family_from_architectures(doc);
  const std::string field = top.is_object() ? "text_config.model_type" : "model_type";
  const bool known = family == "mixtral" || family == "qwen2_moe" || family == "qwen3_moe" || family == "deepseek_v2" ||
                     family == "deepseek_v3" || family == "olmoe" || family == "gpt_oss";
  if (!known)
    throw InputError(file, field, std::string("expected one of the supported families (") + kHfFamilies + "), got " +
                                      (family.empty() ? std::string("none (no model_type or known architectures)")
                                                      : "\"" + family + "\""));
  out.detail = family;
  ForeignObject c(doc, file, top.is_object() ? "text_config." : "");
  for (const char* k : kHarmless) c.consume(k);
  const bool deepseek = family == "deepseek_v2" || family == "deepseek_v3";
  const bool qwen = family == "qwen2_moe" || family == "qwen3_moe";
  const bool gpt_oss = family == "gpt_oss";

  // The shared decoder shape.
  m.layers = static_cast<int>(c.integer("num_hidden_layers", 1, L::max_layers));
  rep.map("num_hidden_layers " + num(std::int64_t{m.layers}), "layers");
  m.d_model = c.integer("hidden_size", 1, L::max_d_model);
  rep.map("hidden_size " + num(m.d_model), "d_model");
  m.heads = static_cast<int>(c.integer("num_attention_heads", 1, L::max_heads));
  rep.map("num_attention_heads " + num(std::int64_t{m.heads}), "heads");
  if (auto kv = c.opt_integer("num_key_value_heads", 1, m.heads)) {
    m.kv_heads = static_cast<int>(*kv);
    rep.map("num_key_value_heads " + num(*kv), "kv_heads");
  } else {
    m.kv_heads = m.heads;
    rep.defaults("kv_heads", num(std::int64_t{m.heads}), "transformers default num_key_value_heads = num_attention_heads");
  }
  if (auto hd = c.opt_integer("head_dim", 1, L::max_head_dim)) {
    m.head_dim = *hd;
    rep.map("head_dim " + num(*hd), "head_dim");
  } else if (!deepseek) {
    if (m.d_model % m.heads != 0) c.fail("num_attention_heads", "expected a divisor of hidden_size or an explicit head_dim");
    m.head_dim = m.d_model / m.heads;
  }
  if (!set.has("vocab")) {
    m.vocab = c.integer("vocab_size", 1, L::max_vocab);
    rep.map("vocab_size " + num(m.vocab), "vocab");
  } else {
    c.consume("vocab_size");
  }
  if (!set.has("seq_len")) {
    m.seq_len = c.integer("max_position_embeddings", 1, L::max_seq);
    rep.map("max_position_embeddings " + num(m.seq_len), "seq_len (the longest context; --set seq_len=N to train shorter)");
  } else {
    c.consume("max_position_embeddings");
  }
  m.max_positions = m.seq_len;
  m.positions = Positions::rotary;
  if (auto theta = c.opt_number("rope_theta", 1.0, 1e12)) {
    m.rope_theta = *theta;
    rep.map("rope_theta " + num(*theta), "rope_theta");
  }
  m.norm = Norm::rmsnorm;
  m.final_norm = true;
  m.bias = false;
  rep.defaults("positions", "rotary; norm rmsnorm; final_norm true; bias false",
               family + " modeling code: rotary embeddings, RMSNorm, nn.Linear(bias=False)");
  const std::string act = c.opt_string("hidden_act").value_or("silu");
  if (act != "silu") c.fail("hidden_act", "expected \"silu\" (the gated SiLU MLP of " + family + "), got \"" + act + "\"");
  m.activation = Activation::swiglu;
  rep.map("hidden_act silu", "activation swiglu (gate, up and down projections)");
  if (auto tied = c.opt_boolean("tie_word_embeddings")) {
    m.tied_embeddings = *tied;
    rep.map(std::string("tie_word_embeddings ") + (*tied ? "true" : "false"), "tied_embeddings");
  } else if (top.is_object() && top.contains("tie_word_embeddings") && top["tie_word_embeddings"].is_boolean()) {
    m.tied_embeddings = top["tie_word_embeddings"].get<bool>();
    rep.map(std::string("tie_word_embeddings ") + (m.tied_embeddings ? "true" : "false") + " (top level)", "tied_embeddings");
  } else {
    m.tied_embeddings = false;
    rep.defaults("tied_embeddings", "false", family + " config class default tie_word_embeddings=False");
  }
  if (c.opt_boolean("attention_bias").value_or(false)) {
    if (gpt_oss) {
      m.bias = true;  // every layer is MoE, so this touches only q/k/v/o (and the experts, below)
      rep.map("attention_bias true", "bias (q, k, v and o projections; gpt_oss has no dense FFN)");
    } else if (deepseek) {
      rep.note("attention_bias true: DeepSeek's biases on q_a/kv_a/o projections are not modelled");
    } else {
      m.qkv_bias = true;
      rep.note("attention_bias true: q/k/v biases modelled, the o_proj bias (" + num(m.d_model) + " per layer) is not");
    }
  }
  if (family == "qwen2_moe") {
    m.qkv_bias = true;  // Qwen2MoeAttention: q/k/v Linear(bias=True), o_proj bias=False
    rep.defaults("qkv_bias", "true", "transformers Qwen2MoeAttention: q_proj, k_proj, v_proj have bias=True");
  }
  if (family == "qwen3_moe") {
    m.qk_norm = QkNorm::per_head;
    rep.defaults("qk_norm", "per_head", "transformers Qwen3MoeAttention: q_norm and k_norm are RMSNorm(head_dim)");
  }
  if (family == "olmoe") {
    m.qk_norm = QkNorm::full;
    rep.defaults("qk_norm", "full", "transformers OlmoeAttention: q_norm RMSNorm(hidden), k_norm RMSNorm(kv_heads*head_dim)");
    if (auto clip = c.raw("clip_qkv"); clip && !clip->is_null()) rep.note("clip_qkv " + to_text(*clip) + ": a clamp, no parameters");
  }
  if (gpt_oss) {
    rep.note("attention sinks: one learned logit per head per layer (" + num(std::int64_t{m.heads} * m.layers) +
             " parameters) are not modelled");
    if (const nlohmann::json* lim = c.raw("swiglu_limit")) rep.note("swiglu_limit " + to_text(*lim) + ": a clamp, no parameters");
    if (auto sw = c.raw("sliding_window"); sw && !sw->is_null())
      rep.note("sliding_window " + to_text(*sw) + " on the sliding_attention layers: attention is costed over the full sequence");
    for (const char* k : {"layer_types", "initial_context_length", "experts_per_token"}) c.consume(k);
    c.consume("sliding_window");
  }
  if (qwen || family == "mixtral") {
    if (auto sw = c.raw("sliding_window"); sw && !sw->is_null() && c.opt_boolean("use_sliding_window").value_or(family == "mixtral"))
      rep.note("sliding_window " + to_text(*sw) + ": attention is costed over the full sequence");
    c.consume("use_sliding_window");
    c.consume("sliding_window");
    c.consume("max_window_layers");
  }

  // MLA (DeepSeek).
  if (deepseek) {
    MlaSpec a;
    a.q_lora_rank = c.opt_integer("q_lora_rank", 1, L::max_d_model).value_or(0);
    a.kv_lora_rank = c.integer("kv_lora_rank", 1, L::max_d_model);
    a.qk_nope_head_dim = c.integer("qk_nope_head_dim", 1, L::max_head_dim);
    a.qk_rope_head_dim = c.integer("qk_rope_head_dim", 1, L::max_head_dim);
    a.v_head_dim = c.integer("v_head_dim", 1, L::max_head_dim);
    m.mla = a;
    rep.map("q_lora_rank " + (a.q_lora_rank ? num(a.q_lora_rank) : std::string("null")) + ", kv_lora_rank " +
                num(a.kv_lora_rank) + ", qk_nope_head_dim " + num(a.qk_nope_head_dim) + ", qk_rope_head_dim " +
                num(a.qk_rope_head_dim) + ", v_head_dim " + num(a.v_head_dim),
            "mla (q_lora_rank null -> 0: full-rank query)");
    m.head_dim = a.qk_nope_head_dim + a.qk_rope_head_dim;
    rep.defaults("head_dim", num(m.head_dim), "MLA: qk_nope_head_dim + qk_rope_head_dim, the query/key width per head");
  }

  // Experts.
  MoeSpec& e = m.moe;
  const char* experts_key =
      family == "mixtral" || gpt_oss ? "num_local_experts" : deepseek ? "n_routed_experts" : "num_experts";
  const std::int64_t experts = c.opt_integer(experts_key, 0, L::max_experts).value_or(0);
  m.ffn_dim = c.integer("intermediate_size", 1, L::max_ffn);
  if (experts == 0) {
    rep.map(std::string(experts_key) + " absent or 0", "a dense model");
    rep.map("intermediate_size " + num(m.ffn_dim), "ffn_dim");
  } else {
    e.experts = static_cast<int>(experts);
    rep.map(std::string(experts_key) + " " + num(experts), "moe.experts");
    e.top_k = static_cast<int>(c.integer("num_experts_per_tok", 1, experts));
    rep.map("num_experts_per_tok " + num(std::int64_t{e.top_k}), "moe.top_k");
    if (family == "mixtral" || family == "olmoe" || gpt_oss) {
      rep.map("intermediate_size " + num(m.ffn_dim), "ffn_dim and the expert FFN dim (every layer is MoE)");
      if (gpt_oss) {
        e.expert_bias = true;
        rep.defaults("moe.expert_bias", "true", "transformers GptOssExperts: gate_up_proj_bias and down_proj_bias");
      }
    } else {
      rep.map("intermediate_size " + num(m.ffn_dim), "ffn_dim (dense layers)");
      e.expert_ffn_dim = c.integer("moe_intermediate_size", 1, L::max_ffn);
      rep.map("moe_intermediate_size " + num(e.expert_ffn_dim), "moe.expert_ffn_dim");
    }
    // Which layers are MoE.
    if (deepseek) {
      const std::int64_t k = c.opt_integer("first_k_dense_replace", 0, m.layers).value_or(0);
      const std::int64_t f = c.opt_integer("moe_layer_freq", 1, L::max_layers).value_or(1);
      // HF: layer i is MoE iff i >= first_k_dense_replace and i % moe_layer_freq == 0.
      const std::int64_t offset = (k + f - 1) / f * f;
      if (offset >= m.layers) c.fail("first_k_dense_replace", "expected at least one MoE layer below num_hidden_layers");
      e.layers.every = static_cast<int>(f);
      e.layers.offset = static_cast<int>(offset);
      rep.map("first_k_dense_replace " + num(k) + ", moe_layer_freq " + num(f),
              "moe.layers {every " + num(f) + ", offset " + num(offset) + "} (MoE iff i >= k and i % freq == 0)");
    } else if (qwen) {
      const std::int64_t step = c.opt_integer("decoder_sparse_step", 1, L::max_layers).value_or(1);
      std::vector<bool> pattern(static_cast<std::size_t>(m.layers), false);
      for (int i = 0; i < m.layers; ++i) pattern[static_cast<std::size_t>(i)] = (i + 1) % step == 0;
      std::string only = "[]";
      if (const nlohmann::json* mlp_only = c.raw("mlp_only_layers"); mlp_only && !mlp_only->is_null()) {
        if (!mlp_only->is_array()) c.fail("mlp_only_layers", "expected a list of layer indices");
        for (const nlohmann::json& x : *mlp_only) {
          if (!x.is_number_integer() || x.get<std::int64_t>() < 0 || x.get<std::int64_t>() >= m.layers)
            c.fail("mlp_only_layers", "expected layer indices in [0, " + num(std::int64_t{m.layers - 1}) + "], got " + to_text(x));
          pattern[static_cast<std::size_t>(x.get<std::int64_t>())] = false;
        }
        only = to_text(*mlp_only);
      }
      if (std::find(pattern.begin(), pattern.end(), true) == pattern.end())
        c.fail("decoder_sparse_step", "expected at least one MoE layer (decoder_sparse_step and mlp_only_layers leave none)");
      if (only == "[]") {
        e.layers = moe_layers_from_pattern(pattern);
      } else {  // dense exceptions: listed layer by layer, as the config lists them
        for (int i = 0; i < m.layers; ++i)
          if (pattern[static_cast<std::size_t>(i)]) e.layers.list.push_back(i);
      }
      rep.map("decoder_sparse_step " + num(step) + ", mlp_only_layers " + only,
              e.layers.list.empty() ? "moe.layers {every " + num(std::int64_t{e.layers.every}) + ", offset " +
                                          num(std::int64_t{e.layers.offset}) + "}"
                                    : std::string("moe.layers (explicit list)"));
    } else {
      rep.defaults("moe.layers", "every layer", family + ": every decoder layer is sparse");
    }
    // Shared experts.
    if (deepseek) {
      const std::int64_t shared = c.opt_integer("n_shared_experts", 0, L::max_shared_experts).value_or(0);
      if (shared > 0) {
        e.shared_experts = static_cast<int>(shared);
        e.shared_expert_ffn_dim = e.expert_ffn_dim;
        rep.map("n_shared_experts " + num(shared), "moe.shared_experts, each of moe_intermediate_size");
      }
    } else if (family == "qwen2_moe") {
      const std::int64_t shared = c.opt_integer("shared_expert_intermediate_size", 0, L::max_ffn).value_or(0);
      if (shared > 0) {
        e.shared_experts = 1;
        e.shared_expert_ffn_dim = shared;
        rep.map("shared_expert_intermediate_size " + num(shared), "moe.shared_experts 1, moe.shared_expert_ffn_dim");
        rep.note("qwen2_moe's shared expert has its own sigmoid gate Linear(hidden, 1, bias=False): " + num(m.d_model) +
                 " parameters per MoE layer are not modelled");
      }
    }
    // Router.
    const std::string scoring = c.opt_string("scoring_func").value_or(family == "deepseek_v3" ? "sigmoid" : "softmax");
    if (scoring == "sigmoid") e.router_score = RouterScore::sigmoid;
    else if (scoring == "softmax") e.router_score = RouterScore::softmax;
    else c.fail("scoring_func", "expected softmax or sigmoid, got \"" + scoring + "\"");
    if (deepseek) rep.map("scoring_func " + scoring, "moe.router_score");
    else rep.defaults("moe.router_score", "softmax", family + " router: softmax over the experts");
    const char* aux_key = deepseek ? "aux_loss_alpha" : "router_aux_loss_coef";
    if (auto aux = c.opt_number(aux_key, 0.0, 1e6)) {
      e.aux_loss_weight = *aux;
      rep.map(std::string(aux_key) + " " + num(*aux), "moe.aux_loss_weight");
    }
    e.capacity_factor = std::nullopt;
    e.eval_capacity_factor = std::nullopt;
    rep.defaults("moe.capacity_factor", "null (dropless)", "transformers' " + family + " MoE block runs every routed token");
    if (gpt_oss) {
      e.gate_bias = true;
      rep.defaults("moe.gate_bias", "true", "transformers GptOssTopKRouter: a weight and a bias per expert");
    } else {
      rep.defaults("moe.gate_bias", "false", family + " router: Linear(hidden, experts, bias=False)");
    }
    rep.defaults("moe.gate_precision", "fp32", "moesim default; transformers computes the router in the model dtype");
    // Group-limited routing: n_group groups, topk_group of them per token (1 group: no limit).
    const std::int64_t groups = c.opt_integer("n_group", 1, L::max_experts).value_or(1);
    const std::int64_t per_token = c.opt_integer("topk_group", 1, L::max_experts).value_or(groups);
    if (groups > 1 && per_token < groups) {
      e.expert_groups = static_cast<int>(groups);
      e.groups_per_token = static_cast<int>(per_token);
      rep.map("n_group " + num(groups) + ", topk_group " + num(per_token), "moe.expert_groups, moe.groups_per_token");
      if (c.opt_string("topk_method").value_or("") == "group_limited_greedy")
        rep.note("topk_method group_limited_greedy scores a group by its best expert; moesim scores it by its best two (DeepSeek-V3's noaux_tc)");
    }
    // Routing details moesim does not model: listed, not silently dropped.
    for (const char* k : {"norm_topk_prob", "routed_scaling_factor", "topk_method", "seq_aux",
                          "router_jitter_noise", "ep_size"})
      if (const nlohmann::json* v = c.raw(k)) rep.note(std::string(k) + " " + to_text(*v) + ": routing detail not modelled (no parameters)");
    if (family == "deepseek_v3" && c.opt_string("topk_method").value_or("noaux_tc") == "noaux_tc")
      rep.note("noaux_tc routing: the gate's e_score_correction_bias (" + num(std::int64_t{e.experts}) +
               " per MoE layer) is not counted");
  }
  if (auto mtp = c.opt_integer("num_nextn_predict_layers", 0, L::max_layers); mtp && *mtp > 0) {
    m.mtp_layers = static_cast<int>(*mtp);
    rep.map("num_nextn_predict_layers " + num(*mtp), "mtp_layers (counted apart from the model's parameters)");
  }
  if (const nlohmann::json* q = c.raw("quantization_config"); q && !q->is_null())
    rep.note("quantization_config: the checkpoint's storage format, irrelevant to training cost");

  for (const std::string& k : c.unread()) rep.ignore(k);
  if (top.is_object())
    for (const auto& [k, v] : top.items())
      if (k != "text_config") rep.ignore(k);
  return out;
}

}  // namespace moesim::importers
