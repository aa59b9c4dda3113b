// Strict loader and canonical writer for model JSON files.
#include "src/model/model_json.hpp"

#include "src/core/json_reader.hpp"
#include "src/model/enum_names.hpp"

namespace moesim {
namespace {

using L = ModelLimits;
using namespace names;

MoeLayers read_moe_layers(ObjectReader& r, int layers) {
  MoeLayers out;
  if (!r.has("layers")) return out;
  const nlohmann::json& v = r.raw("layers");
  if (v.is_array()) {
    if (v.empty()) r.fail("layers", "expected a non-empty list of layer indices");
    for (const auto& x : v) {
      if (!x.is_number_integer() || x.get<std::int64_t>() < 0 || x.get<std::int64_t>() >= layers)
        r.fail("layers", "expected layer indices in [0, " + std::to_string(layers - 1) + "], got " + describe_value(x));
      out.list.push_back(static_cast<int>(x.get<std::int64_t>()));
    }
    return out;
  }
  if (!v.is_object()) r.fail("layers", "expected {\"every\": N, \"offset\": K} or a list of layer indices");
  ObjectReader sel(v, r.file(), r.field("layers"));
  out.every = static_cast<int>(sel.integer("every", 1, L::max_layers));
  out.offset = static_cast<int>(sel.integer_or("offset", 0, 0, layers - 1));
  sel.finish();
  return out;
}

MoeSpec read_moe(ObjectReader r, int layers) {
  MoeSpec e;
  e.experts = static_cast<int>(r.integer("experts", 1, L::max_experts));
  e.top_k = static_cast<int>(r.integer("top_k", 1, e.experts));
  e.layers = read_moe_layers(r, layers);
  e.expert_ffn_dim = r.integer_or("expert_ffn_dim", 0, 1, L::max_ffn);
  if (r.has("expert_activation"))
    e.expert_activation = r.choice("expert_activation", kActivations);
  if (r.has("expert_bias")) e.expert_bias = r.boolean("expert_bias");
  e.shared_experts = static_cast<int>(r.integer_or("shared_experts", 0, 0, L::max_shared_experts));
  e.shared_expert_ffn_dim = r.integer_or("shared_expert_ffn_dim", 0, 1, L::max_ffn);
  e.capacity_factor = r.nullable_number("capacity_factor", 1e-3, 1e6);
  e.eval_capacity_factor = r.nullable_number("eval_capacity_factor", 1e-3, 1e6);
  e.min_capacity = r.integer_or("min_capacity", 0, 0, L::max_seq);
  e.capacity_rounding = r.choice_or("capacity_rounding", CapacityRounding::per_choice, kCapacityRoundings);
  e.second_expert_policy = r.choice_or("second_expert_policy", SecondExpertPolicy::all, kSecondExpertPolicies);
  e.gate_precision = r.choice_or("gate_precision", DType::fp32, kDTypes);
  e.router_score = r.choice_or("router_score", RouterScore::softmax, kRouterScores);
  e.expert_groups = static_cast<int>(r.integer_or("expert_groups", 0, 1, e.experts));
  e.groups_per_token = static_cast<int>(r.integer_or("groups_per_token", 0, 1, e.experts));
  e.gate_bias = r.boolean_or("gate_bias", false);
  e.aux_loss_weight = r.number_or("aux_loss_weight", 0.0, 0.0, 1e6);
  if (r.has("dense_to_sparse")) {
    ObjectReader d = r.object("dense_to_sparse");
    DenseToSparse s;
    s.dense_steps = d.integer("dense_steps", 0, INT64_C(1) << 40);
    s.anneal_steps = d.integer("anneal_steps", 0, INT64_C(1) << 40);
    s.temperature_start = d.number("temperature_start", 1e-6, 1e6);
    s.temperature_end = d.number("temperature_end", 1e-6, 1e6);
    s.threshold = d.number_or("threshold", 0.0, 0.0, 1.0);
    d.finish();
    e.dense_to_sparse = s;
  }
  r.finish();
  return e;
}

}  // namespace

ModelSpec model_from_json(const nlohmann::json& doc, const std::string& file) {
  ObjectReader r(doc, file);
  ModelSpec m;
  m.name = r.string("name");
  m.source = r.string_or("source", "");
  m.layers = static_cast<int>(r.integer("layers", 1, L::max_layers));
  m.d_model = r.integer("d_model", 1, L::max_d_model);
  m.heads = static_cast<int>(r.integer("heads", 1, L::max_heads));
  m.kv_heads = static_cast<int>(r.integer_or("kv_heads", m.heads, 1, m.heads));
  if (r.has("head_dim")) {
    m.head_dim = r.integer("head_dim", 1, L::max_head_dim);
  } else {
    if (m.d_model % m.heads != 0)
      r.fail("heads", "expected a divisor of d_model (" + std::to_string(m.d_model) + ") or an explicit head_dim");
    m.head_dim = m.d_model / m.heads;
  }
  m.ffn_dim = r.integer("ffn_dim", 1, L::max_ffn);
  m.vocab = r.integer("vocab", 1, L::max_vocab);
  m.seq_len = r.integer("seq_len", 1, L::max_seq);
  m.positions = r.choice("positions", kPositions);
  m.max_positions = r.integer_or("max_positions", m.seq_len, 1, L::max_seq);
  m.rope_theta = r.number_or("rope_theta", m.rope_theta, 1.0, 1e12);
  m.norm = r.choice("norm", kNorms);
  m.activation = r.choice("activation", kActivations);
  m.tied_embeddings = r.boolean("tied_embeddings");
  m.bias = r.boolean("bias");
  m.final_norm = r.boolean_or("final_norm", true);
  m.qkv_bias = r.boolean_or("qkv_bias", false);
  m.qk_norm = r.choice_or("qk_norm", QkNorm::none, kQkNorms);
  m.mtp_layers = static_cast<int>(r.integer_or("mtp_layers", 0, 0, L::max_layers));
  if (r.has("mla")) {
    ObjectReader a = r.object("mla");
    MlaSpec mla;
    mla.q_lora_rank = a.integer_or("q_lora_rank", 0, 0, L::max_d_model);
    mla.kv_lora_rank = a.integer("kv_lora_rank", 1, L::max_d_model);
    mla.qk_nope_head_dim = a.integer("qk_nope_head_dim", 1, L::max_head_dim);
    mla.qk_rope_head_dim = a.integer("qk_rope_head_dim", 1, L::max_head_dim);
    mla.v_head_dim = a.integer("v_head_dim", 1, L::max_head_dim);
    a.finish();
    m.mla = mla;
  }
  if (r.has("moe")) m.moe = read_moe(r.object("moe"), m.layers);
  r.finish();
  validate(m, file);
  return m;
}

ModelSpec load_model(const std::string& path) { return model_from_json(read_json_file(path), path); }

nlohmann::ordered_json model_to_json(const ModelSpec& m) {
  nlohmann::ordered_json j;
  j["name"] = m.name;
  if (!m.source.empty()) j["source"] = m.source;
  j["layers"] = m.layers;
  j["d_model"] = m.d_model;
  j["heads"] = m.heads;
  j["kv_heads"] = m.kv_heads;
  j["head_dim"] = m.head_dim;
  j["ffn_dim"] = m.ffn_dim;
  j["vocab"] = m.vocab;
  j["seq_len"] = m.seq_len;
  j["positions"] = to_string(m.positions);
  if (m.positions == Positions::learned) j["max_positions"] = m.max_positions;
  if (m.positions == Positions::rotary) j["rope_theta"] = m.rope_theta;
  j["norm"] = to_string(m.norm);
  j["activation"] = to_string(m.activation);
  j["tied_embeddings"] = m.tied_embeddings;
  j["bias"] = m.bias;
  j["final_norm"] = m.final_norm;
  if (m.qkv_bias) j["qkv_bias"] = true;
  if (m.qk_norm != QkNorm::none) j["qk_norm"] = to_string(m.qk_norm);
  if (m.mtp_layers > 0) j["mtp_layers"] = m.mtp_layers;
  if (m.mla) {
    const MlaSpec& a = *m.mla;
    j["mla"] = {{"q_lora_rank", a.q_lora_rank}, {"kv_lora_rank", a.kv_lora_rank},
                {"qk_nope_head_dim", a.qk_nope_head_dim}, {"qk_rope_head_dim", a.qk_rope_head_dim},
                {"v_head_dim", a.v_head_dim}};
  }
  if (!m.is_moe()) return j;
  const MoeSpec& e = m.moe;
  nlohmann::ordered_json moe;
  moe["experts"] = e.experts;
  moe["top_k"] = e.top_k;
  if (e.layers.list.empty())
    moe["layers"] = {{"every", e.layers.every}, {"offset", e.layers.offset}};
  else
    moe["layers"] = e.layers.list;
  if (e.expert_ffn_dim > 0) moe["expert_ffn_dim"] = e.expert_ffn_dim;
  if (e.expert_activation) moe["expert_activation"] = to_string(*e.expert_activation);
  if (e.expert_bias) moe["expert_bias"] = *e.expert_bias;
  if (e.shared_experts > 0) {
    moe["shared_experts"] = e.shared_experts;
    if (e.shared_expert_ffn_dim > 0) moe["shared_expert_ffn_dim"] = e.shared_expert_ffn_dim;
  }
  moe["capacity_factor"] = e.capacity_factor ? nlohmann::ordered_json(*e.capacity_factor) : nullptr;
  moe["eval_capacity_factor"] = e.eval_capacity_factor ? nlohmann::ordered_json(*e.eval_capacity_factor) : nullptr;
  moe["min_capacity"] = e.min_capacity;
  moe["capacity_rounding"] = to_string(e.capacity_rounding);
  moe["second_expert_policy"] = to_string(e.second_expert_policy);
  moe["gate_precision"] = to_string(e.gate_precision);
  moe["router_score"] = to_string(e.router_score);
  if (e.expert_groups > 0) {
    moe["expert_groups"] = e.expert_groups;
    moe["groups_per_token"] = e.groups_per_token;
  }
  moe["gate_bias"] = e.gate_bias;
  moe["aux_loss_weight"] = e.aux_loss_weight;
  if (e.dense_to_sparse) {
    const DenseToSparse& d = *e.dense_to_sparse;
    moe["dense_to_sparse"] = {{"dense_steps", d.dense_steps},
                              {"anneal_steps", d.anneal_steps},
                              {"temperature_start", d.temperature_start},
                              {"temperature_end", d.temperature_end},
                              {"threshold", d.threshold}};
  }
  j["moe"] = moe;
  return j;
}

}  // namespace moesim
