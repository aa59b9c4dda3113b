// The `moesim` binary: one CLI11 app with a subcommand per job. Exit codes follow
// DESIGN.md: 0 success, 2 bad input (one line naming file, field, expectation), 1 other.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "src/cli/commands.hpp"
#include "src/core/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"moesim: profile, simulate, search and run Mixture-of-Experts GPT training plans"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moesim 0.1.0");
  auto run = moesim::cli::register_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11's own codes (104, 105, 106 ...) are not the contract's: bad usage is bad input.
    std::cerr << "moesim: " << e.what() << "\n";
    return 2;
  }
  try {
    return run();
  } catch (const moesim::InputError& e) {
    std::cerr << "moesim: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "moesim: error: " << e.what() << "\n";
    return 1;
  }
}
