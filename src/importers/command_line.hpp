// The arguments of a training command given as a command line or a launch script
// (Megatron's pretrain_gpt.py, fairseq's train.py): `--flag value`, `--flag=value`,
// store-true flags, several values per flag, shell variables and arrays resolved as a
// shell would (shell_script.hpp), and the launcher's process count.
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

struct CommandLineArgs {
  // argparse destination names (dashes as underscores) -> values read as Python
  // literals where they parse, strings otherwise; true for a flag without a value, a
  // list for a flag with several.
  nlohmann::json values = nlohmann::json::object();
  // Flags whose value came from a variable the script could not give: name -> message.
  std::map<std::string, std::string> unresolved;
  // torchrun --nproc_per_node x --nnodes, deepspeed --num_gpus x --num_nodes.
  std::optional<std::int64_t> launcher_world;
  std::vector<std::string> notes;
};

// Whether the text has a `--name` flag at a word start.
bool has_long_flags(std::string_view text);

// The training command is the last one running a .py script, else the one with the
// most flags. `set` supplies shell variables. An unresolved variable standing where
// flags would be is an InputError naming it; `what` names the expected arguments.
CommandLineArgs read_command_line(std::string_view text, const std::string& file, Overrides& set, const std::string& what);

}  // namespace moesim::importers
