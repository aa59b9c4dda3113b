// Reading a launch script or command line the way a shell would split it, without
// running anything: quotes, backslash-newline continuations, comments, variable
// assignments (scalars and arrays, `export`, `+=`), $VAR / ${VAR} / ${VAR:-default} /
// "${ARR[@]}" expansions with word splitting, $((arithmetic)), redirections and heredocs
// skipped. A value the script cannot give ($(command), $1, an unset variable) leaves the
// word marked unresolved with the variable's name, for the caller to report if it matters.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace moesim::importers {

struct ShellWord {
  std::string text;        // after expansion and quote removal
  std::string unresolved;  // non-empty: the variable ("NNODES", "$1", "$(...)") whose value is unknown
};

struct ShellCommand {
  std::vector<ShellWord> words;
  std::size_t line = 0;  // 1-based line of its first word
};

struct ShellScript {
  std::vector<ShellCommand> commands;  // simple commands in order (assignments excluded)
  std::vector<std::string> notes;      // what was read approximately (if/for blocks ...)
};

// Values from `lookup` (moesim's --set) take precedence over the script's own
// assignments. Syntax errors (an unterminated quote) are InputError naming `file` and
// the line; expansions are capped at 1 MiB so no input can exhaust memory.
ShellScript read_shell_script(std::string_view text, const std::string& file,
                              const std::function<const std::string*(const std::string&)>& lookup);

}  // namespace moesim::importers
