// Builds describe's JSON document and its human rendering from the accounting functions.
#include "src/describe/describe.hpp"

#include <algorithm>

#include "src/accounting/capacity.hpp"
#include "src/accounting/flops.hpp"
#include "src/accounting/memory.hpp"
#include "src/accounting/params.hpp"
#include "src/core/table.hpp"
#include "src/model/model_json.hpp"

namespace moesim {
namespace {

nlohmann::ordered_json breakdown_json(const ParamBreakdown& b) {
  return {{"embedding", b.embedding},   {"positions", b.positions},
          {"attention", b.attention},   {"norms", b.norms},
          {"dense_ffn", b.dense_ffn},   {"router", b.router},
          {"shared_experts", b.shared_experts}, {"routed_experts", b.routed_experts},
          {"output_head", b.output_head}, {"mtp_projection", b.mtp_projection}};
}

// The stage whose rank holds the most parameters.
const StageParams& largest_stage(const std::vector<StageParams>& stages) {
  return *std::max_element(stages.begin(), stages.end(),
                           [](const StageParams& a, const StageParams& b) { return a.total < b.total; });
}

nlohmann::ordered_json memory_json(const MemoryBreakdown& b) {
  return {{"weights", b.weights},
          {"grads", b.grads},
          {"optimizer", b.master + b.optimizer},
          {"master_weights", b.master},
          {"optimizer_moments", b.optimizer},
          {"activations", b.activations},
          {"dispatch_buffers", b.dispatch_buffers},
          {"total", b.total()}};
}

}  // namespace

DescribeInput load_describe_input(const std::string& model_path, const std::string& plan,
                                  const std::string& cluster_path) {
  DescribeInput in;
  in.model = load_model(model_path);
  if (!cluster_path.empty()) in.cluster = load_cluster(cluster_path);
  if (!plan.empty()) {
    in.plan = load_plan(plan);
    check_plan(*in.plan, in.model, plan);
    if (in.cluster) check_plan(*in.plan, *in.cluster, plan);
  }
  return in;
}

nlohmann::ordered_json describe_json(const DescribeInput& in) {
  const ModelSpec& m = in.model;
  nlohmann::ordered_json j;
  j["model"] = m.name;
  const ParamCounts pc = count_params(m);
  nlohmann::ordered_json params;
  params["total"] = pc.total;
  params["non_expert"] = pc.non_expert;
  params["expert"] = pc.expert;
  params["active"] = pc.active;
  params["per_expert"] = pc.per_expert;
  params["by_kind"] = breakdown_json(pc.by_kind);
  if (m.mtp_layers > 0) params["mtp"] = {{"total", pc.mtp_total}, {"active", pc.mtp_active}, {"by_kind", breakdown_json(pc.mtp)}};

  const ForwardFlops ff = forward_flops(m);
  nlohmann::ordered_json flops;
  flops["forward_per_sequence"] = ff.total();
  flops["model_per_token"] = 3 * ff.total() / static_cast<double>(m.seq_len);
  flops["forward_per_sequence_by_op"] = {
      {"qkv", ff.qkv},           {"attention_scores", ff.attention_scores}, {"attention_out", ff.attention_out},
      {"dense_ffn", ff.dense_ffn}, {"router", ff.router},                    {"shared_experts", ff.shared_experts},
      {"routed_experts", ff.routed_experts}, {"output_head", ff.output_head}};

  if (!in.plan) {
    j["params"] = params;
    j["flops"] = flops;
    return j;
  }
  const Plan& p = *in.plan;
  j["plan"] = plan_to_json(p);
  const auto stages = params_per_stage(m, p);
  const StageParams& big = largest_stage(stages);
  params["per_rank"] = {{"total", big.total}, {"non_expert", big.non_expert}, {"expert", big.expert},
                        {"stage", big.stage}, {"by_kind", breakdown_json(big.by_kind)}};
  j["params"] = params;

  const IterationFlops it = iteration_flops(m, p);
  flops["iteration"] = {{"sequences", it.sequences}, {"tokens", it.sequences * static_cast<double>(m.seq_len)},
                        {"forward", it.forward},     {"backward", it.backward},
                        {"recompute", it.recompute}, {"model", it.model},
                        {"hardware", it.hardware},   {"model_per_gpu", it.model / p.world()},
                        {"hardware_per_gpu", it.hardware / p.world()}};
  j["flops"] = flops;

  const auto mem = memory_per_stage(m, p);
  const StageMemory peak = peak_memory(m, p);
  nlohmann::ordered_json memory;
  nlohmann::ordered_json per_rank = memory_json(peak.bytes);
  per_rank["stage"] = peak.stage;
  per_rank["in_flight_micro_batches"] = peak.in_flight_micro_batches;
  memory["per_rank"] = per_rank;
  nlohmann::ordered_json per_stage = nlohmann::ordered_json::array();
  for (const StageMemory& s : mem) {
    nlohmann::ordered_json e = memory_json(s.bytes);
    e["stage"] = s.stage;
    per_stage.push_back(e);
  }
  memory["per_stage"] = per_stage;
  if (in.cluster) {
    memory["gpu_memory"] = in.cluster->gpu_memory_bytes;
    memory["fits"] = peak.bytes.total() <= in.cluster->gpu_memory_bytes;
  }
  j["memory"] = memory;

  if (m.is_moe()) {
    const std::int64_t tokens = routed_tokens(p, m);
    auto cap = expert_capacity(m.moe, tokens);
    j["moe"] = {{"tokens_per_rank_per_micro_batch", tokens},
                {"capacity_per_expert", cap ? nlohmann::ordered_json(*cap) : nlohmann::ordered_json(nullptr)},
                {"experts_per_rank", m.moe.experts / p.ep},
                {"expert_tensor_parallel", p.expert_tp()},
                {"expert_data_parallel", p.edp()}};
  }
  if (in.cluster) j["cluster"] = {{"name", in.cluster->name}, {"gpus", in.cluster->total_gpus()}, {"gpu", to_string(in.cluster->gpu)}};
  return j;
}

void describe_text(const DescribeInput& in, std::ostream& out) {
  const ModelSpec& m = in.model;
  const ParamCounts pc = count_params(m);
  out << "model " << m.name << ": " << m.layers << " layers, d_model " << m.d_model << ", " << m.heads << " heads";
  if (m.kv_heads != m.heads) out << " (" << m.kv_heads << " kv)";
  out << ", ffn " << m.ffn_dim << ", vocab " << m.vocab << ", seq " << m.seq_len;
  if (m.is_moe())
    out << "; " << m.moe_layer_count() << " MoE layers x " << m.moe.experts << " experts, top-" << m.moe.top_k;
  out << "\n\n";

  Table t({"parameters", "count", ""});
  t.add_row({"total", with_commas(pc.total), human_count(static_cast<double>(pc.total))});
  t.add_row({"non-expert", with_commas(pc.non_expert), human_count(static_cast<double>(pc.non_expert))});
  t.add_row({"expert", with_commas(pc.expert), human_count(static_cast<double>(pc.expert))});
  t.add_row({"active per token", with_commas(pc.active), human_count(static_cast<double>(pc.active))});
  if (m.mtp_layers > 0) {
    t.add_row({"MTP modules (apart)", with_commas(pc.mtp_total), human_count(static_cast<double>(pc.mtp_total))});
    t.add_row({"MTP active per token", with_commas(pc.mtp_active), human_count(static_cast<double>(pc.mtp_active))});
  }
  std::optional<StageParams> big;
  if (in.plan) {
    const auto stages = params_per_stage(m, *in.plan);
    big = *std::max_element(stages.begin(), stages.end(),
                            [](const StageParams& a, const StageParams& b) { return a.total < b.total; });
    t.add_row({"per rank: non-expert", with_commas(big->non_expert), human_count(static_cast<double>(big->non_expert))});
    t.add_row({"per rank: expert", with_commas(big->expert), human_count(static_cast<double>(big->expert))});
    t.add_row({"per rank: total", with_commas(big->total), human_count(static_cast<double>(big->total))});
  }
  t.print(out);
  const ForwardFlops ff = forward_flops(m);
  out << "\nforward FLOPs per sequence: " << human_flops(ff.total())
      << "; model FLOPs per token (fwd+bwd): " << human_flops(3 * ff.total() / static_cast<double>(m.seq_len)) << "\n";
  if (!in.plan) return;

  const Plan& p = *in.plan;
  const IterationFlops it = iteration_flops(m, p);
  out << "plan " << plan_to_inline(p) << "\n";
  out << "iteration: " << it.sequences << " sequences, model " << human_flops(it.model) << " ("
      << human_flops(it.model / p.world()) << " per GPU), hardware " << human_flops(it.hardware) << "\n\n";
  const StageMemory peak = peak_memory(m, p);
  const MemoryBreakdown& b = peak.bytes;
  Table mt({"memory per rank (stage " + std::to_string(peak.stage) + ")", "bytes", ""});
  auto row = [&](const char* name, double v) { mt.add_row({name, with_commas(static_cast<long long>(v)), human_bytes(v)}); };
  row("weights", b.weights);
  row("gradients", b.grads);
  row("master weights", b.master);
  row("optimizer moments", b.optimizer);
  row("activations", b.activations);
  row("dispatch buffers", b.dispatch_buffers);
  row("total", b.total());
  mt.print(out);
  if (in.cluster) {
    bool fits = b.total() <= in.cluster->gpu_memory_bytes;
    out << "\n" << (fits ? "fits" : "does NOT fit") << " in " << human_bytes(in.cluster->gpu_memory_bytes) << " per GPU ("
        << in.cluster->name << ", " << to_string(in.cluster->gpu) << ")\n";
  }
}

}  // namespace moesim
