// Importer for fairseq MoE language models (seeds 000, 001): the model's cfg dict as
// fairseq prints it ({'_name': 'transformer_lm_gpt', 'decoder_layers': 12, ...}), the
// whole printed `cfg:` block whose `model` line holds that dict, or a fairseq-train /
// fairseq_cli/train.py command line (the arch's defaults fill what the flags omit). The
// vocabulary is not in any of them (it is the dictionary's size): pass it with
// --set vocab=N (--task dummy_lm alone says it).
#pragma once

#include <string>
#include <string_view>

#include "src/importers/import_report.hpp"
#include "src/importers/overrides.hpp"

namespace moesim::importers {

ImportResult import_fairseq(std::string_view text, const std::string& file, Overrides& set);

// Whether a command line is fairseq's (for format detection, ahead of Megatron's).
bool looks_like_fairseq_command(std::string_view text);

}  // namespace moesim::importers
