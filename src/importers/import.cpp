// Format detection, dispatch to the importers, and the checks every import ends with.
#include "src/importers/import.hpp"
#include "src/core/text.hpp"

#include <cctype>
#include <fstream>
#include <stdexcept>

#include "src/core/error.hpp"
#include "src/importers/fairseq.hpp"
#include "src/importers/fastertransformer.hpp"
#include "src/importers/huggingface.hpp"
#include "src/importers/megatron.hpp"
#include "src/importers/megatron_args.hpp"
#include "src/importers/overrides.hpp"
#include "src/model/model_json.hpp"

namespace moesim::importers {
namespace {

constexpr std::size_t kMaxInputBytes = std::size_t{64} << 20;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool has_line(std::string_view text, std::string_view wanted) {
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    if (trim(text.substr(0, nl)) == wanted) return true;
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  }
  return false;
}

std::string valid_utf8(const std::string& s) {
  return nlohmann::json::parse(nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .get<std::string>();
}

}  // namespace

std::string detect_format(const std::string& path, std::string_view text) {
  const std::string_view body = trim(text);
  if (ends_with(path, ".ini") || has_line(text, "[gpt]")) return "ft";
  if (!body.empty() && body.front() == '{' && nlohmann::json::accept(body)) {
    const nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_object() && (doc.contains("model_type") || doc.contains("architectures") || doc.contains("text_config")))
      return "hf";
  }
  if (body.substr(0, 2) == "{'" || text.find("'_name':") != std::string_view::npos || has_line(text, "cfg:") ||
      looks_like_fairseq_command(text))
    return "fairseq";
  if (looks_like_megatron(text)) return "megatron";
  throw InputError(path, "",
                   "could not tell the format; tried ft (a .ini file or a [gpt] section), hf (a JSON object with "
                   "model_type or architectures), fairseq (a {'_name': ...} dict, a printed cfg: block or a fairseq-train command line), megatron "
                   "(name:value lines, an arguments block or --flags): pass --format fairseq|ft|megatron|hf");
}

std::string name_from_path(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::size_t slash = p.find_last_of('/');
  std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  if (base == "config.json" || base == "args.txt" || base == "config.ini" || base == "config.yaml") {
    const std::string dir = slash == std::string::npos ? std::string() : p.substr(0, slash);
    if (!dir.empty() && dir != ".") return name_from_path(dir);
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (const char* ext : {".json", ".ini", ".txt", ".sh", ".yaml", ".yml", ".log", ".config", ".args", ".dict", ".cfg"})
      if (ends_with(base, ext) && base.size() > std::string_view(ext).size()) {
        base.resize(base.size() - std::string_view(ext).size());
        changed = true;
      }
  }
  return base.empty() ? std::string("imported") : base;
}

ImportResult import_text(std::string_view text, const std::string& path, const ImportOptions& options) {
  const std::string format = options.format.empty() ? detect_format(path, text) : options.format;
  Overrides set(options.set);
  ImportResult r;
  if (format == "fairseq") r = import_fairseq(text, path, set);
  else if (format == "ft") r = import_fastertransformer(text, path, set);
  else if (format == "megatron") r = import_megatron(text, path, set);
  else if (format == "hf") r = import_huggingface(text, path, set);
  else throw InputError("--format", "", std::string("expected one of ") + kFormats + ", got '" + format + "'");
  r.format = format;

  ModelSpec& m = r.model;
  m.name = name_from_path(path);
  apply_model_overrides(m, set, r.report);
  if (!options.name.empty()) m.name = options.name;
  set.finish(std::string("a model field (") + kModelOverrideKeys + ")" +
             (format == "megatron" ? ", a variable of the script or a Megatron argument" : ""));
  if (m.max_positions == 0 || m.positions != Positions::learned) m.max_positions = m.seq_len;
  m.source = "imported by moesim import from " + path + " (format " + format + (r.detail.empty() ? "" : ", " + r.detail) + ")";
  // A file name or --name may hold bytes that are not UTF-8; JSON strings cannot.
  m.name = valid_utf8(m.name);
  m.source = valid_utf8(m.source);
  validate(m, path);

  // The written file must read back to the same model.
  const nlohmann::ordered_json written = model_to_json(m);
  const ModelSpec back = model_from_json(nlohmann::json::parse(written.dump()), path);
  if (model_to_json(back) != written) throw std::logic_error("imported model does not survive a JSON round trip: " + path);
  return r;
}

ImportResult import_file(const std::string& path, const ImportOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "", "cannot open the file for reading");
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxInputBytes) throw InputError(path, "", "larger than 64 MiB: not a config file");
  }
  if (in.bad()) throw InputError(path, "", "cannot read the file");
  return import_text(text, path, options);
}

}  // namespace moesim::importers
