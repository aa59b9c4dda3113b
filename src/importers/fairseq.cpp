// fairseq cfg dict -> ModelSpec, following fairseq's TransformerDecoder (moe branch):
// layer i is MoE iff (i+1) % moe_freq == 0; Top2Gate's training capacity is
// 2*ceil(S/E) (capacity factor 1.0 per choice); every Linear has a bias, the gate's wg
// has none; the final LayerNorm exists when decoder_normalize_before and not
// no_decoder_final_norm.
#include "src/importers/fairseq.hpp"
#include "src/core/text.hpp"

#include <cctype>
#include <cmath>
#include <map>

#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"
#include "src/importers/command_line.hpp"
#include "src/importers/foreign_object.hpp"
#include "src/importers/python_literal.hpp"
#include "src/model/model_json.hpp"

namespace moesim::importers {
namespace {

// The printed `cfg:` block: one "name  value" line per group (common, model, task ...).
// Returns the groups whose values parse as Python literals; the others are skipped.
nlohmann::json read_cfg_block(std::string_view text) {
  nlohmann::json groups = nlohmann::json::object();
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    std::size_t i = 0;
    while (i < line.size() && (std::isalnum(static_cast<unsigned char>(line[i])) || line[i] == '_')) ++i;
    if (i == 0 || i == line.size() || !std::isspace(static_cast<unsigned char>(line[i]))) continue;
    groups[std::string(line.substr(0, i))] = python_value_or_string(trim(line.substr(i)));
  }
  return groups;
}

bool looks_like_cfg_block(std::string_view text) {
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line == "cfg:") return true;
    if (line.size() > 6 && line.substr(0, 5) == "model" && std::isspace(static_cast<unsigned char>(line[5]))) return true;
  }
  return false;
}

// Defaults of fairseq's language-model architectures (fairseq/models/transformer_lm.py):
// each arch sets these unless given, then base_lm_architecture fills the rest and forces
// decoder_normalize_before. Archs whose defaults differ between fairseq forks are left out.
struct ArchDefaults {
  const char* arch;
  std::int64_t embed, ffn, layers, heads;
  const char* activation;
};
const ArchDefaults kArchs[] = {
    {"transformer_lm", 512, 2048, 6, 8, "relu"},
    {"transformer_lm_gpt", 768, 3072, 12, 12, "gelu"},
    {"transformer_lm_gpt2_tiny", 64, 64, 2, 1, "gelu"},
    {"transformer_lm_gpt2_small", 1024, 4096, 24, 16, "gelu"},
    {"transformer_lm_gpt2_medium", 1280, 5120, 36, 20, "gelu"},
};

// Command-line flags carry only what differs from the arch: fill in the arch's defaults.
void apply_arch_defaults(nlohmann::json& args, const std::string& file, ImportReport& rep) {
  if (!args.contains("arch") || !args["arch"].is_string()) {
    rep.note("no --arch: every model dimension must be given as a flag");
    return;
  }
  const std::string arch = args["arch"].get<std::string>();
  args["_name"] = arch;
  args.erase("arch");
  for (const ArchDefaults& a : kArchs) {
    if (arch != a.arch) continue;
    const std::pair<const char*, nlohmann::json> defaults[] = {
        {"decoder_embed_dim", a.embed}, {"decoder_ffn_embed_dim", a.ffn}, {"decoder_layers", a.layers},
        {"decoder_attention_heads", a.heads}, {"activation_fn", a.activation}, {"decoder_learned_pos", false},
        {"share_decoder_input_output_embed", false}, {"no_decoder_final_norm", false}, {"moe_freq", 0},
        {"moe_expert_count", 0}, {"moe_top1_expert", false}};
    for (const auto& [key, value] : defaults)
      if (!args.contains(key)) {
        args[key] = value;
        rep.defaults(key, to_text(value), "fairseq " + arch + " / base_lm_architecture default");
      }
    args["decoder_normalize_before"] = true;
    rep.defaults("decoder_normalize_before", "true", "forced by fairseq's base_lm_architecture");
    return;
  }
  if (arch.rfind("transformer_lm", 0) != 0)
    throw InputError(file, "arch", "expected a transformer_lm architecture (a GPT decoder), got \"" + arch + "\"");
  rep.note("--arch " + arch + ": its defaults are not known to moesim; every model dimension must be given as a flag");
  args["decoder_normalize_before"] = true;
}

}  // namespace

bool looks_like_fairseq_command(std::string_view text) {
  if (!has_long_flags(text)) return false;
  for (const char* marker : {"fairseq", "--arch transformer_lm", "--decoder-layers", "--decoder-embed-dim", "--moe-expert-count"})
    if (text.find(marker) != std::string_view::npos) return true;
  return false;
}

ImportResult import_fairseq(std::string_view text, const std::string& file, Overrides& set) {
  using L = ModelLimits;
  ImportResult out;
  out.format = "fairseq";
  ImportReport& rep = out.report;
  ModelSpec& m = out.model;

  // Find the model's dict: the whole text, the cfg block's `model` line, or the first
  // {'_name': ...} dict in the text.
  nlohmann::json dict;
  nlohmann::json block;
  std::map<std::string, std::string> unresolved;  // command-line flags whose variable is unknown
  const std::string_view body = trim(text);
  if (!body.empty() && body.front() == '{') {
    dict = parse_python_literal(text, file);
    out.detail = "cfg dict";
  } else if (looks_like_cfg_block(text)) {
    block = read_cfg_block(text);
    if (!block.contains("model")) throw InputError(file, "model", "expected a 'model' line in the printed cfg block");
    dict = block["model"];
    if (dict.is_null())
      throw InputError(file, "model",
                       "the cfg block's model is None (eval_lm prints it so): pass the model's cfg dict "
                       "({'_name': 'transformer_lm_gpt', ...}) instead");
    out.detail = "cfg block";
  } else if (const std::size_t at = text.find("{'_name'"); at != std::string_view::npos) {
    std::size_t pos = at;
    dict = parse_python_literal_at(text, pos, file);
    out.detail = "cfg dict at byte " + std::to_string(at);
  } else if (has_long_flags(text)) {
    CommandLineArgs cl = read_command_line(text, file, set, "fairseq arguments (--arch ... --decoder-layers ...)");
    dict = std::move(cl.values);
    unresolved = std::move(cl.unresolved);
    for (const std::string& n : cl.notes) rep.note(n);
    apply_arch_defaults(dict, file, rep);
    out.detail = "command line";
  } else {
    throw InputError(file, "", "expected a fairseq cfg dict {'_name': ..., 'decoder_layers': ...}, a printed cfg: block "
                               "or a fairseq-train command line");
  }
  if (!dict.is_object()) throw InputError(file, "model", "expected a dict of model settings, got " + describe_value(dict));
  ForeignObject d(dict, file);
  for (const auto& [name, why] : unresolved) d.poison(name, why);

  if (auto arch = d.opt_string("_name")) rep.map("_name " + *arch, "(architecture, for the record)");
  m.layers = static_cast<int>(d.integer("decoder_layers", 1, L::max_layers));
  rep.map("decoder_layers " + std::to_string(m.layers), "layers");
  m.d_model = d.integer("decoder_embed_dim", 1, L::max_d_model);
  rep.map("decoder_embed_dim " + std::to_string(m.d_model), "d_model");
  for (const char* key : {"decoder_input_dim", "decoder_output_dim"})
    if (auto dim = d.opt_integer(key, 1, L::max_d_model); dim && *dim != m.d_model)
      d.fail(key, "expected decoder_embed_dim (" + std::to_string(m.d_model) + "): input/output projections are not modelled");
  m.ffn_dim = d.integer("decoder_ffn_embed_dim", 1, L::max_ffn);
  rep.map("decoder_ffn_embed_dim " + std::to_string(m.ffn_dim), "ffn_dim");
  m.heads = static_cast<int>(d.integer("decoder_attention_heads", 1, L::max_heads));
  m.kv_heads = m.heads;
  if (m.d_model % m.heads != 0) d.fail("decoder_attention_heads", "expected a divisor of decoder_embed_dim (" + std::to_string(m.d_model) + ")");
  m.head_dim = m.d_model / m.heads;
  rep.map("decoder_attention_heads " + std::to_string(m.heads), "heads (head_dim " + std::to_string(m.head_dim) + ")");

  // Sequence: tokens_per_sample in the model dict, else the task's.
  std::optional<std::int64_t> seq = d.opt_integer("tokens_per_sample", 1, L::max_seq);
  if (seq) {
    rep.map("tokens_per_sample " + std::to_string(*seq), "seq_len");
  } else if (block.is_object() && block.contains("task") && block["task"].is_object()) {
    ForeignObject task(block["task"], file, "task.");
    seq = task.opt_integer("tokens_per_sample", 1, L::max_seq);
    if (seq) rep.map("task.tokens_per_sample " + std::to_string(*seq), "seq_len");
  }
  const std::optional<std::int64_t> max_target = d.opt_integer("max_target_positions", 1, L::max_seq);
  if (!seq && !set.has("seq_len")) {
    if (!max_target) d.fail("tokens_per_sample", "required setting is missing (or pass --set seq_len=N)");
    seq = max_target;
    rep.defaults("seq_len", std::to_string(*seq), "from max_target_positions: tokens_per_sample is missing");
  }
  m.seq_len = seq.value_or(1);

  const std::string act = d.opt_string("activation_fn").value_or("relu");
  if (act == "gelu" || act == "gelu_fast" || act == "gelu_accurate") m.activation = Activation::gelu;
  else if (act == "relu") m.activation = Activation::relu;
  else d.fail("activation_fn", "expected gelu, gelu_fast, gelu_accurate or relu, got \"" + act + "\"");
  if (d.has("activation_fn")) rep.map("activation_fn " + act, std::string("activation ") + to_string(m.activation));
  else rep.defaults("activation", "relu", "fairseq TransformerLanguageModelConfig default activation_fn");

  m.norm = Norm::layernorm;
  m.bias = true;
  rep.defaults("norm", "layernorm with bias; bias true on every Linear", "fairseq TransformerDecoderLayer: LayerNorm(elementwise_affine) and nn.Linear(bias=True)");

  const bool pre_norm = d.opt_boolean("decoder_normalize_before").value_or(false);
  const bool no_final = d.opt_boolean("no_decoder_final_norm").value_or(false);
  m.final_norm = pre_norm && !no_final;
  rep.map("decoder_normalize_before " + std::string(pre_norm ? "True" : "False") + ", no_decoder_final_norm " +
              (no_final ? "True" : "False"),
          std::string("final_norm ") + (m.final_norm ? "true" : "false"));
  if (!pre_norm) rep.note("decoder_normalize_before False: post-norm layers are not modelled (parameter counts are the same)");

  m.tied_embeddings = d.opt_boolean("share_decoder_input_output_embed").value_or(false);
  rep.map("share_decoder_input_output_embed " + std::string(m.tied_embeddings ? "True" : "False"),
          std::string("tied_embeddings ") + (m.tied_embeddings ? "true" : "false"));

  const bool no_positions = d.opt_boolean("no_token_positional_embeddings").value_or(false);
  const bool learned = d.opt_boolean("decoder_learned_pos").value_or(false);
  if (no_positions) {
    m.positions = Positions::sinusoidal;
    rep.note("no_token_positional_embeddings True: no position embeddings; mapped to sinusoidal (no parameters either way)");
  } else if (learned) {
    m.positions = Positions::learned;
    const std::int64_t rows = max_target.value_or(m.seq_len);
    // fairseq's LearnedPositionalEmbedding has padding_idx + 1 = 2 extra rows.
    m.max_positions = rows + 2;
    rep.map("decoder_learned_pos True, max_target_positions " + std::to_string(rows),
            "positions learned, max_positions " + std::to_string(m.max_positions) + " (+2: padding_idx 1 + 1)");
  } else {
    m.positions = Positions::sinusoidal;
    rep.map("decoder_learned_pos False", "positions sinusoidal");
  }

  // Structures moesim does not model change the parameter count: refuse them.
  if (auto cutoff = d.raw("adaptive_softmax_cutoff"); cutoff && !cutoff->is_null())
    d.fail("adaptive_softmax_cutoff", "expected None: adaptive softmax is not modelled");
  for (const char* key : {"adaptive_input", "character_embeddings"})
    if (d.opt_boolean(key).value_or(false)) d.fail(key, "expected False: not modelled");
  if (auto keep = d.raw("decoder_layers_to_keep"); keep && !keep->is_null())
    d.fail("decoder_layers_to_keep", "expected None: pruned layer stacks are not modelled");
  if (d.opt_integer("alternate_decoder_ffn_embed_dim", 0, L::max_ffn).value_or(0) != 0)
    d.fail("alternate_decoder_ffn_embed_dim", "expected 0: alternating FFN sizes are not modelled");
  if (d.opt_integer("base_layers", 0, L::max_layers).value_or(0) != 0)
    d.fail("base_layers", "expected 0: BASE layers are not modelled");
  if (d.opt_boolean("layernorm_embedding").value_or(false))
    rep.note("layernorm_embedding True: the LayerNorm after the embeddings is not modelled (" +
             std::to_string(2 * m.d_model) + " parameters missing)");
  if (d.opt_boolean("use_stable_embedding").value_or(false))
    rep.note("use_stable_embedding True: StableEmbedding's LayerNorm is not modelled (" + std::to_string(2 * m.d_model) +
             " parameters missing)");

  // MoE.
  const std::int64_t freq = d.opt_integer("moe_freq", 0, L::max_layers).value_or(0);
  const std::int64_t experts = d.opt_integer("moe_expert_count", 0, L::max_experts).value_or(0);
  if (freq > 0) {
    if (experts < 1) d.fail("moe_expert_count", "expected at least 1 expert when moe_freq > 0");
    if (freq > m.layers) d.fail("moe_freq", "expected at most decoder_layers (" + std::to_string(m.layers) + ")");
    MoeSpec& e = m.moe;
    e.experts = static_cast<int>(experts);
    e.layers.every = static_cast<int>(freq);
    e.layers.offset = static_cast<int>(freq - 1);
    rep.map("moe_expert_count " + std::to_string(experts), "moe.experts");
    rep.map("moe_freq " + std::to_string(freq), "moe.layers {every " + std::to_string(freq) + ", offset " +
                                                   std::to_string(freq - 1) + "} (layer i is MoE iff (i+1) % moe_freq == 0)");
    const bool top1 = d.opt_boolean("moe_top1_expert").value_or(false);
    e.top_k = top1 ? 1 : 2;
    rep.map("moe_top1_expert " + std::string(top1 ? "True" : "False"), "moe.top_k " + std::to_string(e.top_k));
    if (e.top_k > e.experts) d.fail("moe_expert_count", "expected at least top_k (" + std::to_string(e.top_k) + ") experts");
    if (auto dim = d.opt_integer("moe_expert_ffn_dim", 1, L::max_ffn)) {
      e.expert_ffn_dim = *dim;
      rep.map("moe_expert_ffn_dim " + std::to_string(*dim), "moe.expert_ffn_dim");
    } else {
      rep.map("moe_expert_ffn_dim None", "moe.expert_ffn_dim = ffn_dim");
    }
    e.capacity_factor = 1.0;
    e.capacity_rounding = CapacityRounding::per_choice;
    rep.defaults("moe.capacity_factor", "1.0, capacity_rounding per_choice",
                 "fairseq Top2Gate/Top1Gate training capacity k * ceil(S/E)");
    const double fraction = d.opt_number("moe_eval_capacity_token_fraction", -1.0, 1.0).value_or(-1.0);
    if (fraction > 0.0) {
      e.eval_capacity_factor = fraction * e.experts / e.top_k;
      rep.map("moe_eval_capacity_token_fraction " + nlohmann::json(fraction).dump(),
              "moe.eval_capacity_factor " + nlohmann::json(*e.eval_capacity_factor).dump() + " = fraction * E / k");
      rep.note("eval capacity is approximate: fairseq's eval capacity is ceil(fraction * S) per expert; moesim's "
               "k * ceil(factor * S / E) with factor = fraction * E / k differs by rounding only");
    } else {
      rep.map("moe_eval_capacity_token_fraction " + nlohmann::json(fraction).dump(), "moe.eval_capacity_factor null (as in training)");
    }
    if (auto policy = d.opt_string("moe_second_expert_policy")) {
      if (*policy == "all") e.second_expert_policy = SecondExpertPolicy::all;
      else if (*policy == "sampling") e.second_expert_policy = SecondExpertPolicy::sampling;
      else if (*policy == "random") e.second_expert_policy = SecondExpertPolicy::random;
      else d.fail("moe_second_expert_policy", "expected all, sampling or random, got \"" + *policy + "\"");
      rep.map("moe_second_expert_policy " + *policy, "moe.second_expert_policy");
    } else {
      e.second_expert_policy = SecondExpertPolicy::sampling;
      rep.defaults("moe.second_expert_policy", "sampling", "fairseq default moe_second_expert_policy");
    }
    const bool fp32_gate = d.opt_boolean("moe_gating_use_fp32").value_or(false);
    if (fp32_gate) {
      e.gate_precision = DType::fp32;
    } else if (d.opt_boolean("bf16").value_or(false)) {
      e.gate_precision = DType::bf16;
    } else if (d.opt_boolean("fp16").value_or(!d.has("fp16")) || d.opt_boolean("memory_efficient_fp16").value_or(false)) {
      e.gate_precision = DType::fp16;
    } else {
      e.gate_precision = DType::fp32;
    }
    rep.map("moe_gating_use_fp32 " + std::string(fp32_gate ? "True" : "False"),
            std::string("moe.gate_precision ") + to_string(e.gate_precision));
    rep.defaults("moe.gate_bias", "false", "fairseq Top2Gate: wg = Linear(d, E, bias=False)");
    // The gate-loss weight belongs to the criterion: the dict, the cfg block's criterion, or its default.
    std::optional<double> wt = d.opt_number("moe_gate_loss_wt", 0.0, 1e6);
    if (!wt && block.is_object() && block.contains("criterion") && block["criterion"].is_object()) {
      ForeignObject crit(block["criterion"], file, "criterion.");
      wt = crit.opt_number("moe_gate_loss_wt", 0.0, 1e6);
    }
    if (wt) {
      e.aux_loss_weight = *wt;
      rep.map("moe_gate_loss_wt " + nlohmann::json(*wt).dump(), "moe.aux_loss_weight");
    } else {
      e.aux_loss_weight = 1.0;
      rep.defaults("moe.aux_loss_weight", "1.0", "fairseq MoECriterionConfig default moe_gate_loss_wt; the cfg dict does not carry it");
    }
  } else {
    d.consume("moe_expert_count");
    rep.note("moe_freq 0: a dense model");
  }

  // The vocabulary is fairseq's dictionary, which the cfg dict does not carry; only
  // --task dummy_lm says it: dict_size words (default 49996) plus 4 special symbols.
  if (!set.has("vocab")) {
    if (d.opt_string("task").value_or("") == "dummy_lm") {
      const std::int64_t words = d.opt_integer("dict_size", 1, L::max_vocab - 4).value_or(49996);
      m.vocab = words + 4;
      rep.defaults("vocab", std::to_string(m.vocab), "fairseq dummy_lm: dict_size " + std::to_string(words) +
                                                          " + 4 special symbols (bos, pad, eos, unk)");
    } else {
      throw InputError(file, "vocab", "pass --set vocab=N: fairseq's dictionary size is not in the config dict "
                                      "(the model's Embedding(N, d) rows, e.g. 50264 in seed 000)");
    }
  }

  for (const std::string& k : d.unread()) rep.ignore(k);
  return out;
}

}  // namespace moesim::importers
