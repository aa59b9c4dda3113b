// FasterTransformer config.ini -> ModelSpec. FT's GPT is GPT-2 shaped: learned positions
// (model.wpe.bin), word embeddings reused by the output (no separate head file), biases on
// every linear (the *.bias.bin files), LayerNorm, GELU unless activation_type says otherwise.
#include "src/importers/fastertransformer.hpp"

#include "src/core/error.hpp"
#include "src/importers/foreign_object.hpp"
#include "src/importers/ini_file.hpp"
#include "src/importers/layer_pattern.hpp"
#include "src/model/model_json.hpp"

namespace moesim::importers {

ImportResult import_fastertransformer(std::string_view text, const std::string& file, Overrides& set) {
  using L = ModelLimits;
  const std::vector<IniSection> sections = parse_ini(text, file);
  const nlohmann::json doc = ini_to_json(sections);
  if (!doc.contains("gpt")) {
    std::string found;
    for (const IniSection& s : sections) found += (found.empty() ? "" : ", ") + s.name;
    throw InputError(file, "gpt", "expected a [gpt] section (FasterTransformer GPT config.ini), found sections: " +
                                      (found.empty() ? std::string("none") : found));
  }
  ImportResult out;
  out.format = "ft";
  ImportReport& rep = out.report;
  ModelSpec& m = out.model;
  ForeignObject g(doc["gpt"], file, "gpt.");

  const std::int64_t heads = g.integer("head_num", 1, L::max_heads);
  const std::int64_t head_dim = g.integer("size_per_head", 1, L::max_head_dim);
  m.heads = static_cast<int>(heads);
  m.kv_heads = m.heads;
  m.head_dim = head_dim;
  m.d_model = heads * head_dim;
  if (m.d_model > L::max_d_model) g.fail("size_per_head", "expected head_num * size_per_head <= " + std::to_string(L::max_d_model));
  rep.map("gpt.head_num " + std::to_string(heads), "heads");
  rep.map("gpt.size_per_head " + std::to_string(head_dim), "head_dim; d_model = head_num * size_per_head = " + std::to_string(m.d_model));
  m.ffn_dim = g.integer("inter_size", 1, L::max_ffn);
  rep.map("gpt.inter_size " + std::to_string(m.ffn_dim), "ffn_dim");
  m.layers = static_cast<int>(g.integer("num_layer", 1, L::max_layers));
  rep.map("gpt.num_layer " + std::to_string(m.layers), "layers");
  m.max_positions = g.integer("max_pos_seq_len", 1, L::max_seq);
  m.seq_len = m.max_positions;
  rep.map("gpt.max_pos_seq_len " + std::to_string(m.max_positions), "max_positions and seq_len (FasterTransformer has no training length; override with --set seq_len=N)");
  if (!set.has("vocab")) {
    m.vocab = g.integer("vocab_size", 1, L::max_vocab);
    rep.map("gpt.vocab_size " + std::to_string(m.vocab), "vocab");
  } else {
    g.consume("vocab_size");
  }

  m.positions = Positions::learned;
  if (auto pos = g.opt_boolean("has_positional_encoding"); pos && !*pos) {
    m.positions = Positions::sinusoidal;
    rep.note("gpt.has_positional_encoding false: no position table; mapped to sinusoidal (no parameters either way)");
  } else {
    rep.defaults("positions", "learned", "FasterTransformer GPT: model.wpe.bin, max_pos_seq_len rows");
  }
  m.norm = Norm::layernorm;
  m.bias = true;
  m.tied_embeddings = true;
  m.final_norm = true;
  rep.defaults("norm", "layernorm, bias true", "FasterTransformer GPT: *.layernorm.{weight,bias}.bin and a bias on every linear");
  rep.defaults("tied_embeddings", "true", "FasterTransformer GPT: the output reuses model.wte.bin");
  if (auto post = g.opt_boolean("has_post_decoder_layernorm")) {
    m.final_norm = *post;
    rep.map("gpt.has_post_decoder_layernorm " + std::string(*post ? "true" : "false"), "final_norm");
  } else {
    rep.defaults("final_norm", "true", "FasterTransformer GPT: model.final_layernorm");
  }
  if (auto pre = g.opt_boolean("has_pre_decoder_layernorm"); pre && *pre)
    rep.note("gpt.has_pre_decoder_layernorm true: the norm after the embeddings is not modelled (2*d_model parameters missing)");
  if (auto lt = g.opt_string("layernorm_type"); lt && *lt != "pre_layernorm")
    rep.note("gpt.layernorm_type " + *lt + ": post-norm is not modelled (parameter counts are the same)");

  m.activation = Activation::gelu;
  if (auto act = g.opt_string("activation_type")) {
    if (*act == "Gelu" || *act == "gelu") m.activation = Activation::gelu;
    else if (*act == "Relu" || *act == "relu") m.activation = Activation::relu;
    else if (*act == "SiGLU" || *act == "Silu-GLU" || *act == "siglu") m.activation = Activation::swiglu;
    else g.fail("activation_type", "expected Gelu, Relu or SiGLU (GeGLU/ReGLU are not modelled), got \"" + *act + "\"");
    rep.map("gpt.activation_type " + *act, std::string("activation ") + to_string(m.activation));
  } else {
    rep.defaults("activation", "gelu", "FasterTransformer GPT default activation_type Gelu");
  }
  if (auto adapters = g.opt_boolean("has_adapters"); adapters && *adapters)
    g.fail("has_adapters", "expected False: adapter layers are not modelled");
  g.consume("adapter_inter_size");
  if (auto tp = g.opt_integer("tensor_para_size", 1, 1 << 20))
    rep.note("gpt.tensor_para_size " + std::to_string(*tp) + ": the checkpoint's inference sharding, not a training plan (no plan written)");
  if (auto dt = g.opt_string("weight_data_type"))
    rep.note("gpt.weight_data_type " + *dt + ": the checkpoint's storage precision, not part of the model");
  g.consume("layernorm_eps");
  for (const char* key : {"model_name", "start_id", "end_id"}) g.consume(key);

  // [structure]: the MoE layout.
  if (doc.contains("structure")) {
    ForeignObject s(doc["structure"], file, "structure.");
    const bool with_moe = s.opt_boolean("gpt_with_moe").value_or(false);
    if (with_moe) {
      m.moe.experts = static_cast<int>(s.integer("expert_num", 1, L::max_experts));
      rep.map("structure.expert_num " + std::to_string(m.moe.experts), "moe.experts");
      const nlohmann::json* layers = s.raw("moe_layers");
      if (!layers || !layers->is_array() || layers->empty())
        s.fail("moe_layers", "expected a list of layer indices like [1, 3, 5]");
      std::vector<bool> pattern(static_cast<std::size_t>(m.layers), false);
      for (const nlohmann::json& x : *layers) {
        if (!x.is_number_integer() || x.get<std::int64_t>() < 0 || x.get<std::int64_t>() >= m.layers)
          s.fail("moe_layers", "expected layer indices in [0, " + std::to_string(m.layers - 1) + "], got " + to_text(x));
        pattern[static_cast<std::size_t>(x.get<std::int64_t>())] = true;
      }
      m.moe.layers = moe_layers_from_pattern(pattern);
      rep.map("structure.moe_layers " + to_text(*layers), m.moe.layers.list.empty()
                                                           ? "moe.layers {every " + std::to_string(m.moe.layers.every) +
                                                                 ", offset " + std::to_string(m.moe.layers.offset) + "}"
                                                           : std::string("moe.layers (explicit list)"));
      std::optional<std::int64_t> k = s.opt_integer("moe_k", 1, m.moe.experts);
      if (!k) k = g.opt_integer("moe_k", 1, m.moe.experts);
      if (k) {
        m.moe.top_k = static_cast<int>(*k);
        rep.map("moe_k " + std::to_string(*k), "moe.top_k");
      } else {
        m.moe.top_k = 1;
        rep.defaults("moe.top_k", "1", "config.ini has no moe_k: FasterTransformer's MoE GPT examples route top-1 (Switch-style); check against the training config");
      }
      // FT runs every routed token (no capacity): the training capacity is not in the file.
      m.moe.capacity_factor = std::nullopt;
      rep.defaults("moe.capacity_factor", "null (dropless)", "FasterTransformer never drops tokens; the training capacity is not in config.ini");
      rep.defaults("moe.gate_bias", "false", "FasterTransformer: mlp.moe.gate.wg.weight.bin only");
    } else {
      s.consume("expert_num");
      s.consume("moe_layers");
    }
    for (const std::string& k : s.unread()) rep.ignore(k);
  }
  for (const std::string& k : g.unread()) rep.ignore(k);
  for (const IniSection& sec : sections)
    if (sec.name != "gpt" && sec.name != "structure") rep.ignore("[" + sec.name + "]");
  return out;
}

}  // namespace moesim::importers
