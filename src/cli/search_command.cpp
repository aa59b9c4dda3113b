// `moesim search --model M --cluster C [--gbs N] [--baseline P]... [--fix k=v,...]
// [--max-pp N] [--max-tp N] [--max-cp N] [--headroom F] [--rerank K] [--top N] [--json]
// [--emit-plan F]`: the best plan for a model on a cluster, and why. Under mpirun the
// plan space is dealt out over the ranks and rank 0 prints the result.
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>

#include "src/cli/commands.hpp"
#include "src/cli/progress_bar.hpp"
#include "src/cli/world.hpp"
#include "src/core/atomic_file.hpp"
#include "src/core/error.hpp"
#include "src/core/table.hpp"
#include "src/model/model_json.hpp"
#include "src/profile/profile.hpp"
#include "src/search/search.hpp"
#include "src/search/search_report.hpp"

namespace moesim::cli {

namespace {

struct SearchArgs {
  std::string model, cluster, profile, routing = "uniform", base, fix, emit_plan;
  std::vector<std::string> baselines;
  std::int64_t gbs = 0;
  int gpus = 0, max_pp = 0, max_tp = 0, max_cp = 0, max_mbs = 64, rerank = 32, top = 10;
  double headroom = 0, tie = 0.01;
  bool json = false;
};

// Precision, master weights and attention: from --base, else the first baseline, else
// bf16 with flash attention (fp16 on V100, which has no bf16).
Plan base_plan(const SearchArgs& a, const ClusterSpec& cluster) {
  if (!a.base.empty()) return load_plan(a.base);
  if (!a.baselines.empty()) return load_plan(a.baselines.front());
  Plan p;
  const bool volta = cluster.gpu == GpuModel::v100_sxm2_16gb || cluster.gpu == GpuModel::v100_sxm2_32gb;
  p.precision = volta ? DType::fp16 : DType::bf16;
  p.master_weights = true;
  p.attention = volta ? AttentionImpl::unfused : AttentionImpl::flash;
  return p;
}

}  // namespace

Command add_search(CLI::App& app) {
  auto a = std::make_shared<SearchArgs>();
  CLI::App* cmd = app.add_subcommand("search", "Find the fastest plan that fits, and say why it wins");
  cmd->add_option("--model", a->model, "model JSON")->required();
  cmd->add_option("--cluster", a->cluster, "cluster JSON")->required();
  cmd->add_option("--profile", a->profile, "profile JSON (default: profiles/<gpu>.json)");
  cmd->add_option("--gbs", a->gbs, "global batch in sequences (default: the --base or first --baseline plan's)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--gpus", a->gpus, "GPUs every plan uses (default: all of the cluster)")->check(CLI::PositiveNumber);
  cmd->add_option("--base", a->base,
                  "plan (file or inline) giving the fields not searched: precision, master_weights, optimizer_dtype, "
                  "attention, gbs");
  cmd->add_option("--baseline", a->baselines,
                  "a plan you run today (file or inline; repeatable): scored beside the winner");
  cmd->add_option("--fix", a->fix, "pin plan fields, inline syntax: tp=1,zero=3");
  cmd->add_option("--max-pp", a->max_pp, "largest pipeline degree")->check(CLI::PositiveNumber);
  cmd->add_option("--max-tp", a->max_tp, "largest tensor-parallel degree (default: GPUs per node)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-cp", a->max_cp, "largest context-parallel degree (default: GPUs per node)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-mbs", a->max_mbs, "largest micro-batch (default 64)")->check(CLI::PositiveNumber);
  cmd->add_option("--headroom", a->headroom, "fraction of GPU memory to leave free (default 0)")
      ->check(CLI::Range(0.0, 0.95));
  cmd->add_option("--routing", a->routing, "uniform, balanced, zipf:S, aux_free:S or trace:FILE (default uniform)");
  cmd->add_option("--rerank", a->rerank, "candidates re-ranked on the event tier (default 32)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--tie", a->tie, "plans within this fraction of the winner tie (default 0.01)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top", a->top, "rows of the ranked table (default 10)")->check(CLI::PositiveNumber);
  cmd->add_option("--emit-plan", a->emit_plan, "write the winner as a plan file");
  cmd->add_flag("--json", a->json, "print one JSON document on stdout");
  return {cmd, [a]() {
            World ranks;
            open_world(ranks, "cpu");  // the search computes on host cores only
            Communicator* comm = &ranks.get();
            const bool root = comm->rank() == 0;
            const ModelSpec model = load_model(a->model);
            const ClusterSpec cluster = load_cluster(a->cluster);
            const Profile profile = load_profile(a->profile.empty() ? default_profile_path(cluster) : a->profile);
            const RoutingSpec routing = parse_routing(a->routing);
            if (a->gpus > cluster.total_gpus())
              throw InputError("--gpus", "", "expected at most the cluster's " + std::to_string(cluster.total_gpus()) +
                                                 " GPUs, got " + std::to_string(a->gpus));

            SearchSpace space;
            space.gpus = a->gpus;
            space.base = base_plan(*a, cluster);
            if (a->gbs > 0) space.base.gbs = a->gbs;
            space.max_pp = a->max_pp;
            space.max_tp = a->max_tp;
            space.max_cp = a->max_cp;
            space.max_mbs = a->max_mbs;
            space.placements = model.is_moe() && (routing.kind == RoutingKind::zipf || routing.kind == RoutingKind::aux_free ||
                                                        routing.kind == RoutingKind::trace);
            if (!a->fix.empty()) apply_fixed(space, a->fix, "--fix");

            SearchOptions options;
            options.rerank = a->rerank;
            options.tie = a->tie;
            options.headroom = a->headroom;
            for (const std::string& b : a->baselines) {
              Plan p = load_plan(b);
              check_plan(p, model, b);
              check_plan(p, cluster, b);
              options.baselines.push_back(p);
              options.baseline_names.push_back(b);
            }
            ProgressBar bar;
            bar.on = bar.on && root;
            options.progress = [&bar](std::size_t done, std::size_t total, const std::string& phase) {
              bar(static_cast<long long>(done), static_cast<long long>(total), phase);
            };

            const auto start = std::chrono::steady_clock::now();
            const SearchResult result = search_plans(model, cluster, profile, routing, space, options, *comm);
            const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (!root) return 0;
            if (result.ranked.empty())
              throw InputError(a->model, "", "expected a plan that fits: none of the " +
                                                 std::to_string(result.enumerated) + " plans on " +
                                                 std::to_string(space.gpus > 0 ? space.gpus : cluster.total_gpus()) +
                                                 " GPUs fits in " + human_bytes(result.memory_limit) + " per GPU");
            if (!a->emit_plan.empty())
              write_file_atomically(a->emit_plan, plan_to_json(result.ranked.front().plan).dump(2) + "\n");
            const auto top = static_cast<std::size_t>(a->top);
            if (a->json) {
              nlohmann::ordered_json j;
              j["model"] = model.name;
              j["cluster"] = cluster.name;
              j["profile"] = profile.name;
              j["gpus"] = space.gpus > 0 ? space.gpus : cluster.total_gpus();
              j["gbs"] = space.base.gbs;
              j["routing"] = to_string(routing);
              j.update(search_result_json(result, options, top));
              std::cout << j.dump(2) << "\n";
            } else {
              std::cout << "search: " << model.name << " on " << cluster.name << " ("
                        << (space.gpus > 0 ? space.gpus : cluster.total_gpus()) << " GPUs, profile " << profile.name
                        << "), global batch " << space.base.gbs << " sequences, " << to_string(routing)
                        << " routing; " << human_seconds(took) << " on " << comm->size()
                        << (comm->size() == 1 ? " process" : " MPI ranks") << "\n";
              print_search_result(result, options, top, std::cout);
              if (!a->emit_plan.empty()) std::cout << "\nwinner written to " << a->emit_plan << "\n";
            }
            return 0;
          }};
}

}  // namespace moesim::cli
