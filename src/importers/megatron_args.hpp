// Megatron arguments in the three shapes users have: (a) `name:value` dumps (args.txt of
// Megatron-DeepSpeed checkpoints, seed 003), (b) the `---- arguments ----` block of a
// training log (`  name ........ value`), (c) a command line or launch script
// (`--flag value`, `--flag=value`, store-true flags, shell variables and arrays).
// All three become argparse destination names (dashes as underscores) -> values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/importers/overrides.hpp"

namespace moesim::importers {

struct MegatronArgs {
  // Values read as Python literals where they parse ("1e-05" -> 1e-05, "[64]" -> [64],
  // "None" -> null, "False" -> false), strings otherwise; a store-true flag is true and
  // a flag with several values (--data-path 0.5 a 0.5 b) a list.
  nlohmann::json values = nlohmann::json::object();
  // Arguments whose value came from a variable the script could not give: name -> message.
  std::map<std::string, std::string> unresolved;
  // GPUs from the launcher (torchrun --nproc_per_node x --nnodes, deepspeed --num_gpus x
  // --num_nodes), when the script starts one.
  std::optional<std::int64_t> launcher_world;
  std::string shape;  // "name:value dump" | "arguments block" | "command line"
  std::vector<std::string> notes;
};

// Whether the text looks like any of the three shapes (for format detection).
bool looks_like_megatron(std::string_view text);

// Reads the arguments; `set` supplies shell variables (taking precedence over the
// script's own assignments). An unresolved variable standing where flags would be is an
// InputError naming it; one in a flag's value is recorded in `unresolved`.
MegatronArgs read_megatron_args(std::string_view text, const std::string& file, Overrides& set);

}  // namespace moesim::importers
