// `moesim import`'s library half: detect the format of a foreign config, run its
// importer, apply --set overrides, name the model, record its source, and check the
// result is a valid moesim model that survives a write/read round trip.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "src/importers/import_report.hpp"

namespace moesim::importers {

struct ImportOptions {
  std::string format;            // fairseq | ft | megatron | hf; empty: detect
  std::string name;              // --name; empty: from --set name= or the file name
  std::vector<std::string> set;  // --set key=value items
};

inline constexpr const char* kFormats = "fairseq, ft, megatron, hf";

// The format of `text` (read from `path`): .ini or a [gpt] section -> ft; a JSON object
// with model_type, architectures or text_config -> hf; a {'...': ...} dict, '_name': or a
// printed cfg: block -> fairseq; name:value lines, an arguments block or --flags ->
// megatron. Otherwise an InputError saying which formats were tried.
std::string detect_format(const std::string& path, std::string_view text);

// Reads `path` (at most 64 MiB) and imports it. Bad input is an InputError.
ImportResult import_file(const std::string& path, const ImportOptions& options);
ImportResult import_text(std::string_view text, const std::string& path, const ImportOptions& options);

// A model name from a file name: "fixtures/mixtral-8x7b.config.json" -> "mixtral-8x7b";
// a bare config.json / args.txt / config.ini takes its folder's name.
std::string name_from_path(const std::string& path);

}  // namespace moesim::importers
