// `moesim import FILE [--format F] --out MODEL.json [--name N] [--set k=v ...] [--plan-out PLAN.json]`:
// a foreign config (fairseq, FasterTransformer, Megatron, HuggingFace) -> a moesim model file.
// The report of what was mapped, defaulted and ignored goes to stderr; the parameter
// counts to stdout.
#include <iostream>
#include <memory>

#include "src/accounting/params.hpp"
#include "src/cli/commands.hpp"
#include "src/core/atomic_file.hpp"
#include "src/core/error.hpp"
#include "src/core/table.hpp"
#include "src/importers/import.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"

namespace moesim::cli {

namespace {
struct ImportArgs {
  std::string file;
  std::string out;
  std::string plan_out;
  importers::ImportOptions options;
};
}  // namespace

Command add_import(CLI::App& app) {
  auto args = std::make_shared<ImportArgs>();
  CLI::App* cmd = app.add_subcommand("import", "Convert a fairseq, FasterTransformer, Megatron or HuggingFace config to a moesim model");
  cmd->add_option("file", args->file, "the foreign config: fairseq cfg dict, config.ini, Megatron args/script/log, HF config.json")
      ->required();
  cmd->add_option("--format", args->options.format, "fairseq | ft | megatron | hf (default: detected)")
      ->check(CLI::IsMember({"fairseq", "ft", "megatron", "hf"}));
  cmd->add_option("--out", args->out, "the model JSON to write")->required();
  cmd->add_option("--name", args->options.name, "the model's name (default: from the file name)");
  cmd->add_option("--set", args->options.set,
                  "key=value: a model field the file lacks (vocab, seq_len, max_positions, name), a script variable or a Megatron argument; repeatable")
      ->allow_extra_args(false);  // one key=value per --set, so a FILE after it stays the positional
  cmd->add_option("--plan-out", args->plan_out, "also write the parallel plan the input carries (Megatron arguments)");
  return {cmd, [args]() {
    importers::ImportResult r = importers::import_file(args->file, args->options);
    std::cerr << "moesim import: " << args->file << " (format " << r.format << (r.detail.empty() ? "" : ", " + r.detail)
              << ") -> " << args->out << "\n";
    importers::print_report(r.report, std::cerr);
    if (!args->plan_out.empty() && !r.plan)
      throw InputError(args->file, "", "--plan-out given, but the input carries no parallel plan (only Megatron arguments do)");
    // Both files are checked before either is written; each is written whole or not at all.
    const std::string model_text = model_to_json(r.model).dump(2) + "\n";
    if (!args->plan_out.empty()) write_file_atomically(args->plan_out, plan_to_json(*r.plan).dump(2) + "\n");
    write_file_atomically(args->out, model_text);
    if (r.plan) std::cerr << "plan: " << plan_to_inline(*r.plan) << (args->plan_out.empty() ? " (not written: no --plan-out)" : "") << "\n";

    const ParamCounts pc = count_params(r.model);
    Table t({"parameters", "count", ""});
    t.add_row({"total", with_commas(pc.total), human_count(static_cast<double>(pc.total))});
    t.add_row({"non-expert", with_commas(pc.non_expert), human_count(static_cast<double>(pc.non_expert))});
    t.add_row({"expert", with_commas(pc.expert), human_count(static_cast<double>(pc.expert))});
    t.add_row({"active", with_commas(pc.active), human_count(static_cast<double>(pc.active))});
    std::cout << r.model.name << "\n";
    t.print(std::cout);
    return 0;
  }};
}

}  // namespace moesim::cli
