// Reading the arguments of a training command from a command line or a launch script:
// the shell-like word reading of shell_script, then argparse-style --flags.
#include "src/importers/command_line.hpp"

#include <cctype>

#include "src/core/error.hpp"
#include "src/importers/python_literal.hpp"
#include "src/importers/shell_script.hpp"

namespace moesim::importers {
namespace {

bool is_ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }

std::string normalize(std::string_view flag) {
  std::string out(flag);
  for (char& c : out)
    if (c == '-') c = '_';
  return out;
}

bool is_flag(const ShellWord& w) { return w.text.size() > 2 && w.text[0] == '-' && w.text[1] == '-' && is_ident_start(w.text[2]); }

std::string basename(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Reads the launcher's process counts (torchrun / torch.distributed.launch / deepspeed).
void read_launcher(const std::vector<ShellWord>& words, CommandLineArgs& out) {
  std::optional<std::int64_t> per_node, nodes;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (!is_flag(words[i])) continue;
    std::string body = words[i].text.substr(2);
    std::string value;
    const ShellWord* vw = nullptr;
    if (const std::size_t eq = body.find('='); eq != std::string::npos) {
      value = body.substr(eq + 1);
      body = body.substr(0, eq);
      vw = &words[i];
    } else if (i + 1 < words.size() && !is_flag(words[i + 1])) {
      vw = &words[i + 1];
      value = vw->text;
    }
    const std::string name = normalize(body);
    const bool count = name == "nproc_per_node" || name == "num_gpus" || name == "nnodes" || name == "num_nodes";
    if (!count || !vw) continue;
    if (!vw->unresolved.empty()) {
      out.notes.push_back("launcher --" + body + " comes from unresolved " + vw->unresolved +
                          ": the world size is not known from the launcher");
      continue;
    }
    nlohmann::json v = python_value_or_string(value);
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > (1 << 20)) {
      out.notes.push_back("launcher --" + body + " " + value + " is not a process count: ignored");
      continue;
    }
    (name == "nproc_per_node" || name == "num_gpus" ? per_node : nodes) = v.get<std::int64_t>();
  }
  if (per_node) out.launcher_world = *per_node * nodes.value_or(1);
}

}  // namespace

bool has_long_flags(std::string_view text) {
  for (std::size_t i = 0; i + 2 < text.size(); ++i)
    if (text[i] == '-' && text[i + 1] == '-' && is_ident_start(text[i + 2]) &&
        (i == 0 || std::isspace(static_cast<unsigned char>(text[i - 1]))))
      return true;
  return false;
}

CommandLineArgs read_command_line(std::string_view text, const std::string& file, Overrides& set, const std::string& what) {
  CommandLineArgs out;
  ShellScript script = read_shell_script(text, file, [&set](const std::string& name) { return set.get(name); });
  out.notes.insert(out.notes.end(), script.notes.begin(), script.notes.end());
  // The training command: the last one running a .py script; else the one with the most flags.
  const ShellCommand* cmd = nullptr;
  std::size_t script_at = 0;
  for (const ShellCommand& c : script.commands)
    for (std::size_t i = 0; i < c.words.size(); ++i)
      if (c.words[i].unresolved.empty() && ends_with(c.words[i].text, ".py")) {
        cmd = &c;
        script_at = i;
        break;
      }
  std::size_t first = 0;
  if (cmd) {
    first = script_at + 1;
    read_launcher(std::vector<ShellWord>(cmd->words.begin(), cmd->words.begin() + static_cast<std::ptrdiff_t>(script_at)), out);
    out.notes.push_back("arguments of " + basename(cmd->words[script_at].text) + " (line " + std::to_string(cmd->line) + ")");
  } else {
    std::size_t best = 0;
    for (const ShellCommand& c : script.commands) {
      std::size_t flags = 0;
      for (const ShellWord& w : c.words) flags += is_flag(w) ? 1 : 0;
      if (flags > best) {
        best = flags;
        cmd = &c;
      }
    }
    if (!cmd) throw InputError(file, "", "expected " + what + ": no --flags found");
    while (first < cmd->words.size() && !is_flag(cmd->words[first])) ++first;
  }
  const std::vector<ShellWord>& w = cmd->words;
  std::size_t positional = 0;
  for (std::size_t i = first; i < w.size();) {
    if (!is_flag(w[i])) {
      if (!w[i].unresolved.empty())
        throw InputError(file, w[i].unresolved,
                         "unresolved shell variable where " + what + " are expected (line " + std::to_string(cmd->line) +
                             "): pass --set " + (w[i].unresolved[0] == '$' ? std::string("NAME") : w[i].unresolved) + "=VALUE");
      if (w[i].text != "--") ++positional;
      ++i;
      continue;
    }
    std::string body = w[i].text.substr(2);
    std::vector<const ShellWord*> vals;
    std::string eq_value;
    const bool has_eq = body.find('=') != std::string::npos;
    if (has_eq) {
      eq_value = body.substr(body.find('=') + 1);
      body = body.substr(0, body.find('='));
    }
    const std::string name = normalize(body);
    std::string unresolved = has_eq ? w[i].unresolved : "";
    ++i;
    if (!has_eq)
      while (i < w.size() && !is_flag(w[i])) vals.push_back(&w[i++]);
    nlohmann::json value;
    if (has_eq) {
      value = python_value_or_string(eq_value);
    } else if (vals.empty()) {
      value = true;  // store_true
    } else if (vals.size() == 1) {
      value = python_value_or_string(vals[0]->text);
    } else {
      value = nlohmann::json::array();
      for (const ShellWord* v : vals) value.push_back(python_value_or_string(v->text));
    }
    for (const ShellWord* v : vals)
      if (unresolved.empty()) unresolved = v->unresolved;
    out.values[name] = value;
    if (!unresolved.empty()) {
      const std::string var = unresolved[0] == '$' || unresolved[0] == '`' ? unresolved : "$" + unresolved;
      out.unresolved[name] = "its value comes from " + var + ", which the script does not set" +
                             (unresolved[0] == '$' || unresolved[0] == '`' ? std::string()
                                                                           : " (pass --set " + unresolved + "=VALUE)");
    } else {
      out.unresolved.erase(name);
    }
  }
  if (positional) out.notes.push_back(std::to_string(positional) + " positional word(s) among the flags ignored");
  return out;
}

}  // namespace moesim::importers
