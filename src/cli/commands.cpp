// Wires the subcommands into the app and dispatches to the one selected.
#include "src/cli/commands.hpp"

#include <vector>

namespace moesim::cli {

std::function<int()> register_commands(CLI::App& app) {
  std::vector<Command> commands{add_describe(app), add_simulate(app), add_search(app), add_import(app), add_profile(app), add_report(app), add_run(app)};
  return [commands]() {
    for (const Command& c : commands)
      if (c.app->parsed()) return c.run();
    return 2;  // unreachable: the app requires one subcommand
  };
}

}  // namespace moesim::cli
