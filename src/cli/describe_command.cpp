// `moesim describe --model FILE [--plan P] [--cluster FILE] [--json]`.
#include <iostream>
#include <memory>

#include "src/cli/commands.hpp"
#include "src/describe/describe.hpp"

namespace moesim::cli {

namespace {
struct DescribeArgs {
  std::string model;
  std::string plan;
  std::string cluster;
  bool json = false;
};
}  // namespace

Command add_describe(CLI::App& app) {
  auto args = std::make_shared<DescribeArgs>();
  CLI::App* cmd = app.add_subcommand("describe", "Parameter counts, FLOPs and memory per rank of a model under a plan");
  cmd->add_option("--model", args->model, "model JSON (configs/models/*.json)")->required();
  cmd->add_option("--plan", args->plan, "plan JSON file, or inline: dp=8,ep=8,mbs=4,...");
  cmd->add_option("--cluster", args->cluster, "cluster JSON (configs/clusters/*.json): checks the plan fits it");
  cmd->add_flag("--json", args->json, "print one JSON document on stdout");
  return {cmd, [args]() {
    const DescribeInput in = load_describe_input(args->model, args->plan, args->cluster);
    if (args->json)
      std::cout << describe_json(in).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    else
      describe_text(in, std::cout);
    return 0;
  }};
}

}  // namespace moesim::cli
