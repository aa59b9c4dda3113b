// `moesim simulate --model M --cluster C --plan P [--profile F] [--routing R] [--tier T]
// [--trace out.json] [--json]`.
#include <iostream>
#include <memory>
#include <optional>

#include "src/cli/commands.hpp"
#include "src/model/model_json.hpp"
#include "src/profile/profile.hpp"
#include "src/simulate/analytic.hpp"
#include "src/simulate/event.hpp"
#include "src/simulate/report.hpp"

namespace moesim::cli {

namespace {
struct SimulateArgs {
  std::string model, cluster, plan, profile, routing = "uniform", tier = "analytic", trace;
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
                  "how tokens spread over experts: uniform, zipf:S (skew S >= 0) or trace:FILE (default uniform)");
  cmd->add_option("--tier", args->tier,
                  "analytic (closed forms, the default) or event (the timeline on the discrete-event engine)")
      ->check(CLI::IsMember({"analytic", "event"}));
  cmd->add_option("--trace", args->trace, "write the event tier's timeline as a Chrome trace (implies --tier event)");
  cmd->add_flag("--json", args->json, "print one JSON document on stdout");
  return {cmd, [args]() {
            const ModelSpec model = load_model(args->model);
            const ClusterSpec cluster = load_cluster(args->cluster);
            const Plan plan = load_plan(args->plan);
            check_plan(plan, model, args->plan);
            check_plan(plan, cluster, args->plan);
            const Profile profile =
                load_profile(args->profile.empty() ? default_profile_path(cluster) : args->profile);
            const RoutingSpec routing = parse_routing(args->routing);
            std::optional<ExpertLoad> load;
            if (model.is_moe())
              load = route_tokens(model, routing, static_cast<std::int64_t>(plan.mbs) * model.seq_len);
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
              std::cout << j.dump(2) << "\n";
            } else {
              std::cout << "model " << model.name << " on " << cluster.name << " (" << plan.world() << " GPUs, profile "
                        << profile.name << "), plan " << plan_to_inline(plan) << "\n";
              print_sim_result(r, std::cout);
            }
            return 0;
          }};
}

}  // namespace moesim::cli
