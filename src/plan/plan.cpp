// Plan parsing (file and inline forms), writing, and validation against model and cluster.
#include "src/plan/plan.hpp"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <set>

#include "src/core/json_reader.hpp"
#include "src/model/enum_names.hpp"

namespace moesim {
namespace {

using names::kDTypes;
constexpr std::pair<std::string_view, Recompute> kRecompute[] = {
    {"none", Recompute::none}, {"selective", Recompute::selective}, {"full", Recompute::full}};
constexpr std::pair<std::string_view, Schedule> kSchedules[] = {
    {"gpipe", Schedule::gpipe}, {"1f1b", Schedule::one_f_one_b}, {"interleaved", Schedule::interleaved}};
constexpr std::pair<std::string_view, AttentionImpl> kAttention[] = {
    {"unfused", AttentionImpl::unfused}, {"flash", AttentionImpl::flash}};
constexpr std::pair<std::string_view, Fp8> kFp8[] = {{"none", Fp8::none}, {"e4m3", Fp8::e4m3}, {"hybrid", Fp8::hybrid}};
constexpr std::pair<std::string_view, Fp8Recipe> kFp8Recipes[] = {
    {"delayed", Fp8Recipe::delayed}, {"tensorwise", Fp8Recipe::tensorwise}, {"blockwise", Fp8Recipe::blockwise}};
constexpr std::pair<std::string_view, ExpertPlacement> kPlacement[] = {
    {"contiguous", ExpertPlacement::contiguous}, {"round_robin", ExpertPlacement::round_robin}};

// Keys whose inline values are integers; everything else stays a string, except booleans.
const std::set<std::string, std::less<>> kIntegerKeys{"dp", "tp", "pp", "ep", "cp", "etp", "mbs", "gbs", "zero", "vpp",
                                                      "first_stage_layers", "last_stage_layers"};
const std::set<std::string, std::less<>> kBooleanKeys{"master_weights", "sp", "dist_opt", "fp8_dispatch"};
// Keys plan_to_json writes only when they differ from their default, and a spelling of zero=1.
const std::set<std::string, std::less<>> kOptionalKeys{"cp", "etp", "sp", "grad_dtype", "dist_opt", "fp8", "fp8_recipe",
                                                       "fp8_dispatch", "first_stage_layers", "last_stage_layers"};

constexpr std::int64_t kMaxDegree = 1 << 20;

}  // namespace

void check_plan_rules(const Plan& p, const std::string& source) {
  auto fail = [&](const char* field, const std::string& msg) { throw InputError(source, field, msg); };
  if (static_cast<std::int64_t>(p.dp) * p.tp * p.pp * p.cp > kMaxDegree)
    fail("dp", "expected dp*tp*pp*cp <= " + std::to_string(kMaxDegree));
  // The MoE layers refold a stage's tp*cp*dp ranks as etp*ep*edp (plan.hpp); with etp
  // unset that is ep dividing dp*cp.
  const std::int64_t stage_ranks = static_cast<std::int64_t>(p.tp) * p.cp * p.dp;
  if (p.etp == 0 && (p.dp * p.cp) % p.ep != 0)
    fail("ep", std::string("expected a divisor of dp") + (p.cp > 1 ? "*cp" : "") + " (" + std::to_string(p.dp * p.cp) +
                   "): experts are sharded inside the data-parallel group, got " + std::to_string(p.ep));
  if (p.etp > 0 && stage_ranks % (static_cast<std::int64_t>(p.etp) * p.ep) != 0)
    fail("etp", "expected etp*ep (" + std::to_string(static_cast<std::int64_t>(p.etp) * p.ep) +
                    ") to divide the tp*cp*dp GPUs of a pipeline stage (" + std::to_string(stage_ranks) + ")");
  if (p.cp > 1 && p.attention != AttentionImpl::flash)
    fail("cp", "expected 1 with attention unfused: ring attention runs on fused attention kernels (attention=flash)");
  std::int64_t per_step = static_cast<std::int64_t>(p.dp) * p.mbs;
  if (p.gbs > 0 && p.gbs % per_step != 0)
    fail("gbs", "expected a multiple of dp*mbs (" + std::to_string(per_step) + "), got " + std::to_string(p.gbs));
  if (p.schedule == Schedule::interleaved && p.vpp < 2) fail("vpp", "expected at least 2 virtual stages with schedule interleaved");
  if (p.schedule != Schedule::interleaved && p.vpp != 1) fail("vpp", "expected 1 unless schedule is interleaved");
  if (p.schedule == Schedule::interleaved && p.micro_batches() % p.pp != 0)
    fail("gbs", "expected micro-batches (" + std::to_string(p.micro_batches()) + ") divisible by pp (" +
                    std::to_string(p.pp) + ") for the interleaved schedule");
  if (p.precision == DType::fp32 && p.master_weights) fail("master_weights", "expected false with precision fp32");
  if (p.grads() != DType::fp32 && p.grads() != p.precision)
    fail("grad_dtype", std::string("expected fp32 or the precision (") + to_string(p.precision) + ")");
  if (p.fp8 != Fp8::none && p.precision == DType::fp32)
    fail("fp8", "expected precision bf16 or fp16 (FP8 GEMMs keep their weights in 16 bits), got fp32");
  if (p.fp8_recipe != Fp8Recipe::delayed && p.fp8 == Fp8::none)
    fail("fp8_recipe", std::string("expected fp8 e4m3 or hybrid: ") + to_string(p.fp8_recipe) + " scales FP8 tensors");
  if (p.fp8_dispatch && p.fp8 == Fp8::none)
    fail("fp8_dispatch", "expected fp8 e4m3 or hybrid: the dispatch is quantized as the FP8 GEMMs' inputs are");
  for (const auto& [field, n] : {std::pair{"first_stage_layers", p.first_stage_layers}, {"last_stage_layers", p.last_stage_layers}}) {
    if (n == 0) continue;
    if (p.pp < 2) fail(field, "expected 0 unless pp > 1");
    if (n % p.vpp != 0)
      fail(field, "expected a multiple of vpp (" + std::to_string(p.vpp) + "): a stage splits its layers evenly over its virtual stages");
  }
  if (p.sp && p.tp < 2) fail("sp", "expected tp > 1: sequence parallelism splits what tensor parallelism replicates");
}

namespace {

// The fields of a plan document, each checked for type and range, without the rules
// that relate them.
Plan plan_fields_from_json(const nlohmann::json& doc, const std::string& file) {
  ObjectReader r(doc, file);
  Plan p;
  p.dp = static_cast<int>(r.integer_or("dp", 1, 1, kMaxDegree));
  p.tp = static_cast<int>(r.integer_or("tp", 1, 1, kMaxDegree));
  p.pp = static_cast<int>(r.integer_or("pp", 1, 1, kMaxDegree));
  p.ep = static_cast<int>(r.integer_or("ep", 1, 1, kMaxDegree));
  p.cp = static_cast<int>(r.integer_or("cp", 1, 1, kMaxDegree));
  p.etp = static_cast<int>(r.integer_or("etp", 0, 1, kMaxDegree));
  p.mbs = static_cast<int>(r.integer_or("mbs", 1, 1, 1 << 16));
  p.gbs = r.integer_or("gbs", 0, 1, INT64_C(1) << 40);
  p.zero = static_cast<int>(r.integer_or("zero", 0, 0, 3));
  p.recompute = r.choice_or("recompute", Recompute::none, kRecompute);
  p.schedule = r.choice_or("schedule", Schedule::one_f_one_b, kSchedules);
  p.vpp = static_cast<int>(r.integer_or("vpp", 1, 1, 1024));
  p.precision = r.choice_or("precision", DType::fp32, kDTypes);
  p.master_weights = r.boolean_or("master_weights", p.precision != DType::fp32);
  p.optimizer_dtype = r.choice_or("optimizer_dtype", DType::fp32, kDTypes);
  if (r.has("grad_dtype")) p.grad_dtype = r.choice_or("grad_dtype", p.precision, kDTypes);
  if (p.grad_dtype == p.precision) p.grad_dtype.reset();  // one spelling of the default
  // Megatron's --use-distributed-optimizer: master weights and Adam's moments sharded over
  // the data-parallel group, which is ZeRO 1.
  if (r.boolean_or("dist_opt", false)) {
    if (r.has("zero") && p.zero != 1) r.fail("dist_opt", "expected zero 1 or no zero: the distributed optimizer is ZeRO 1");
    p.zero = 1;
  }
  p.attention = r.choice_or("attention", AttentionImpl::unfused, kAttention);
  p.placement = r.choice_or("placement", ExpertPlacement::contiguous, kPlacement);
  p.sp = r.boolean_or("sp", false);
  p.fp8 = r.choice_or("fp8", Fp8::none, kFp8);
  p.fp8_recipe = r.choice_or("fp8_recipe", Fp8Recipe::delayed, kFp8Recipes);
  p.fp8_dispatch = r.boolean_or("fp8_dispatch", false);
  p.first_stage_layers = static_cast<int>(r.integer_or("first_stage_layers", 0, 0, 1 << 20));
  p.last_stage_layers = static_cast<int>(r.integer_or("last_stage_layers", 0, 0, 1 << 20));
  r.finish();
  return p;
}

// An inline value typed as the file form has it: integers, booleans, else strings.
nlohmann::json inline_value(const std::string& source, const std::string& key, std::string_view value) {
  if (kIntegerKeys.contains(key)) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size())
      throw InputError(source, key, "expected an integer, got '" + std::string(value) + "'");
    return v;
  }
  if (kBooleanKeys.contains(key)) {
    if (value == "true" || value == "1") return true;
    if (value == "false" || value == "0") return false;
    throw InputError(source, key, "expected true or false, got '" + std::string(value) + "'");
  }
  return std::string(value);
}

}  // namespace

Plan plan_from_json(const nlohmann::json& doc, const std::string& file) {
  Plan p = plan_fields_from_json(doc, file);
  check_plan_rules(p, file);
  return p;
}

Plan with_field(const Plan& plan, const std::string& key, std::string_view value, const std::string& source) {
  const nlohmann::ordered_json fields = plan_to_json(plan);
  if (!fields.contains(key) && !kOptionalKeys.contains(key)) {
    std::string keys;
    for (const auto& [k, v] : fields.items()) keys += (keys.empty() ? "" : ", ") + k;
    throw InputError(source, key, "expected a plan field (" + keys + ")");
  }
  nlohmann::json doc = fields;
  doc[key] = inline_value(source, key, value);
  // As in the file form, the precision decides whether there is a master copy.
  if (key == "precision") doc["master_weights"] = value != "fp32";
  return plan_fields_from_json(doc, source);
}

Plan parse_inline_plan(const std::string& text) {
  const std::string source = "--plan '" + text + "'";
  nlohmann::json doc = nlohmann::json::object();
  std::string_view rest = text;
  while (!rest.empty()) {
    std::size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (comma != std::string_view::npos && rest.empty()) throw InputError(source, "", "expected key=value after the last ','");
    std::size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size())
      throw InputError(source, std::string(item), "expected key=value");
    std::string key(item.substr(0, eq));
    std::string_view value = item.substr(eq + 1);
    if (doc.contains(key)) throw InputError(source, key, "given twice");
    doc[key] = inline_value(source, key, value);
  }
  return plan_from_json(doc, source);
}

Plan load_plan(const std::string& file_or_inline) {
  std::error_code ec;
  if (file_or_inline.find('=') != std::string::npos && !std::filesystem::exists(file_or_inline, ec))
    return parse_inline_plan(file_or_inline);
  return plan_from_json(read_json_file(file_or_inline), file_or_inline);
}

nlohmann::ordered_json plan_to_json(const Plan& p) {
  nlohmann::ordered_json j;
  j["dp"] = p.dp;
  j["tp"] = p.tp;
  j["pp"] = p.pp;
  j["ep"] = p.ep;
  j["mbs"] = p.mbs;
  j["gbs"] = p.global_batch();
  j["zero"] = p.zero;
  j["recompute"] = to_string(p.recompute);
  j["schedule"] = to_string(p.schedule);
  j["vpp"] = p.vpp;
  j["precision"] = to_string(p.precision);
  j["master_weights"] = p.master_weights;
  j["optimizer_dtype"] = to_string(p.optimizer_dtype);
  j["attention"] = to_string(p.attention);
  j["placement"] = to_string(p.placement);
  // Written only when they differ from their defaults, so plans without them read as before.
  if (p.cp > 1) j["cp"] = p.cp;
  if (p.etp > 0) j["etp"] = p.etp;
  if (p.grads() != p.precision) j["grad_dtype"] = to_string(p.grads());
  if (p.sp) j["sp"] = true;
  if (p.fp8 != Fp8::none) j["fp8"] = to_string(p.fp8);
  if (p.fp8_recipe != Fp8Recipe::delayed) j["fp8_recipe"] = to_string(p.fp8_recipe);
  if (p.fp8_dispatch) j["fp8_dispatch"] = true;
  if (p.first_stage_layers > 0) j["first_stage_layers"] = p.first_stage_layers;
  if (p.last_stage_layers > 0) j["last_stage_layers"] = p.last_stage_layers;
  return j;
}

std::string plan_to_inline(const Plan& p) {
  std::string out;
  const nlohmann::ordered_json j = plan_to_json(p);  // items() must not outlive its object
  for (const auto& [key, value] : j.items()) {
    if (!out.empty()) out += ',';
    out += key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out;
}

void check_plan(const Plan& p, const ModelSpec& m, const std::string& source) {
  auto fail = [&](const char* field, const std::string& msg) { throw InputError(source, field, msg); };
  auto divides = [&](const char* field, std::int64_t by, std::int64_t what, const std::string& what_name) {
    if (what % by != 0)
      fail(field, "expected a divisor of " + what_name + " (" + std::to_string(what) + "), got " + std::to_string(by));
  };
  divides("tp", p.tp, m.heads, "the model's heads");
  divides("tp", p.tp, m.kv_heads, "the model's kv_heads");
  divides("tp", p.tp, m.ffn_dim, "the model's ffn_dim");
  if (p.first_stage_layers == 0 && p.last_stage_layers == 0) {
    divides("pp", static_cast<std::int64_t>(p.pp) * p.vpp, m.layers, "the model's layers (pp*vpp)");
  } else {
    // The stages between the first and last split what those two leave.
    const int ends = p.first_stage_layers + p.last_stage_layers;
    const int middle = p.pp - (p.first_stage_layers > 0) - (p.last_stage_layers > 0);
    const int rest = m.layers - ends;
    const char* field = p.last_stage_layers > 0 ? "last_stage_layers" : "first_stage_layers";
    if (rest < middle || (middle == 0 && rest != 0) || (middle > 0 && rest % (static_cast<std::int64_t>(middle) * p.vpp) != 0))
      fail(field, "expected the model's " + std::to_string(m.layers) + " layers less first_stage_layers and last_stage_layers (" +
                      std::to_string(rest) + ") to split evenly over the other " + std::to_string(middle) + " stages" +
                      (p.vpp > 1 ? " and their " + std::to_string(p.vpp) + " virtual stages" : "") + ", at least one each");
  }
  // Megatron's load-balanced context parallelism cuts each sequence into 2*cp chunks.
  if (m.seq_len % (2 * static_cast<std::int64_t>(p.cp)) != 0 && p.cp > 1)
    fail("cp", "expected 2*cp to divide the model's seq_len (" + std::to_string(m.seq_len) + "), got cp " + std::to_string(p.cp));
  if (p.ep > 1 && !m.is_moe()) fail("ep", "expected 1 for a dense model, got " + std::to_string(p.ep));
  if (p.etp > 0 && !m.is_moe()) fail("etp", "expected no etp for a dense model, got " + std::to_string(p.etp));
  if (m.is_moe()) {
    divides("ep", p.ep, m.moe.experts, "the model's experts");
    divides(p.etp > 0 ? "etp" : "tp", p.expert_tp(), m.expert_ffn(), "the model's expert_ffn_dim");
    if (m.moe.shared_experts > 0) divides("tp", p.tp, m.shared_ffn(), "the model's shared_expert_ffn_dim");
  }
}

void check_plan(const Plan& p, const ClusterSpec& c, const std::string& source) {
  if (p.world() > c.total_gpus())
    throw InputError(source, "dp", std::string("expected dp*tp*pp") + (p.cp > 1 ? "*cp" : "") + " (" + std::to_string(p.world()) + ") at most the cluster's " +
                                       std::to_string(c.total_gpus()) + " GPUs");
  bool volta = c.gpu == GpuModel::v100_sxm2_16gb || c.gpu == GpuModel::v100_sxm2_32gb;
  if (volta && (p.precision == DType::bf16 || p.optimizer_dtype == DType::bf16))
    throw InputError(source, "precision", "expected fp32 or fp16 on V100 (Volta has no bf16), got bf16");
  const bool hopper = c.gpu == GpuModel::h100_sxm5_80gb || c.gpu == GpuModel::h100_pcie_80gb || c.gpu == GpuModel::h200_sxm_141gb;
  if (p.fp8 != Fp8::none && !hopper)
    throw InputError(source, "fp8", std::string("expected a GPU with FP8 tensor cores (H100, H200); ") + to_string(c.gpu) +
                                        " has none");
}

double attention_tokens(const Plan& p, const ModelSpec& m) {
  return static_cast<double>(p.mbs) * static_cast<double>(m.seq_len) / p.cp;
}

double expert_layer_tokens(const Plan& p, const ModelSpec& m) {
  return attention_tokens(p, m) * p.expert_tp() / p.tp;
}

std::int64_t routed_tokens(const Plan& p, const ModelSpec& m) { return std::llround(expert_layer_tokens(p, m)); }

const char* to_string(Recompute r) { return name_of(r, kRecompute); }
const char* to_string(Schedule s) { return name_of(s, kSchedules); }
const char* to_string(Fp8 f) { return name_of(f, kFp8); }
const char* to_string(Fp8Recipe r) { return name_of(r, kFp8Recipes); }
const char* to_string(AttentionImpl a) { return name_of(a, kAttention); }
const char* to_string(ExpertPlacement p) { return name_of(p, kPlacement); }

}  // namespace moesim
