// `moesim simulate --model M --cluster C --plan P [--profile F] [--routing R] [--tier T]
// [--trace out.json] [--step N] [--json]`.
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include "src/cli/commands.hpp"
#include "src/model/model_json.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/dense_to_sparse.hpp"
#include "src/simulate/analytic.hpp"
#include "src/simulate/event.hpp"
#include "src/simulate/report.hpp"

namespace moesim::cli {

namespace {
struct SimulateArgs {
  std::string model, cluster, plan, profile, routing = "uniform", tier = "analytic", trace;
  std::int64_t step = -1;
  bool json = false;
};
}  // namespace

Command add_simulate(CLI::App& app) {
  auto args = std::make_shared<SimulateArgs>();
  CLI::App* cmd = app.add_subcommand("simulate", "Predict iteration time, throughput, MFU and memory of a plan");
  cmd->add_option("--model", args->model, "model JSON")->required();
  cmd->add_option("--cluster", args->cluster, "cluster JSON")->required();
  cmd->add_option("--plan", args->plan, "plan JSON file, or inline: dp=8,ep=8,...")->required();
  cmd->add_option("--profile", args->profile, "profile JSON (default: profiles/<gpu>.json)");
  cmd->add_option("--routing", args->routing,
                  "how tokens spread over experts: uniform, balanced (forced even), zipf:S (skew S >= 0), aux_free:S (zipf:S balanced by DeepSeek-V3's bias) or trace:FILE (default uniform)");
  cmd->add_option("--tier", args->tier,
                  "analytic (closed forms, the default) or event (the timeline on the discrete-event engine)")
      ->check(CLI::IsMember({"analytic", "event"}));
  cmd->add_option("--trace", args->trace, "write the event tier's timeline as a Chrome trace (implies --tier event)");
  cmd->add_option("--step", args->step,
                  "training update to simulate, for models whose gate changes over training (EvoMoE's "
                  "dense-to-sparse schedule; default: the final gate)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", args->json, "print one JSON document on stdout");
  return {cmd, [args]() {
            const ModelSpec configured = load_model(args->model);
            const ClusterSpec cluster = load_cluster(args->cluster);
            const Plan plan = load_plan(args->plan);
            check_plan(plan, configured, args->plan);
            check_plan(plan, cluster, args->plan);
            const Profile profile =
                load_profile(args->profile.empty() ? default_profile_path(cluster) : args->profile);
            const RoutingSpec routing = parse_routing(args->routing);
            std::optional<GateAtStep> gate;
            if (args->step >= 0 && configured.is_moe() && configured.moe.dense_to_sparse)
              gate = gate_at_step(configured, routing, args->step);
            const ModelSpec model = gate ? model_at_step(configured, routing, args->step) : configured;
            std::optional<ExpertLoad> load;
            if (model.is_moe())
              load = route_tokens(model, routing, routed_tokens(plan, model));
            const ExpertLoad* l = load ? &*load : nullptr;
            SimResult r = args->tier == "event" || !args->trace.empty()
                              ? simulate_event(model, plan, cluster, profile, l, args->trace)
                              : simulate_analytic(model, plan, cluster, profile, l);
            r.balance.routing = to_string(routing);
            if (args->json) {
              nlohmann::ordered_json j = sim_result_json(r);
              j["model"] = model.name;
              j["cluster"] = cluster.name;
              j["profile"] = profile.name;
              j["plan"] = plan_to_json(plan);
              if (gate)
                j["gate_at_step"] = {{"step", args->step},
                                     {"phase", gate->phase},
                                     {"temperature", gate->temperature},
                                     {"active_experts", gate->active_experts},
                                     {"top_k", gate->top_k}};
              std::cout << j.dump(2) << "\n";
            } else {
              std::cout << "model " << model.name << " on " << cluster.name << " (" << plan.world() << " GPUs, profile "
                        << profile.name << "), plan " << plan_to_inline(plan) << "\n";
              if (gate) {
                char line[200];
                std::snprintf(line, sizeof line,
                              "EvoMoE gate at update %lld: %s, temperature %.3g, %.2f experts per token -> top-%d\n",
                              static_cast<long long>(args->step), gate->phase.c_str(), gate->temperature,
                              gate->active_experts, gate->top_k);
                std::cout << line;
              }
              print_sim_result(r, std::cout);
            }
            return 0;
          }};
}

}  // namespace moesim::cli
