// Registration of the CLI subcommands; each lives in its own <name>_command.cpp.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace moesim::cli {

// A registered subcommand and what runs it once parsed (returns the exit code).
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Command add_describe(CLI::App& app);
Command add_import(CLI::App& app);
Command add_simulate(CLI::App& app);
Command add_profile(CLI::App& app);
Command add_search(CLI::App& app);
Command add_report(CLI::App& app);
Command add_run(CLI::App& app);

// Adds every subcommand to `app`; the returned function runs the one that was parsed.
std::function<int()> register_commands(CLI::App& app);

}  // namespace moesim::cli
