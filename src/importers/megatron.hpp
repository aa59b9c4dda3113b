// Importer for Megatron-LM / Megatron-Core and Megatron-DeepSpeed (PAI) arguments:
// the model (layers, sizes, MoE, MLA) and, when the arguments carry one, the parallel
// plan (TP, PP, DP, EP, micro/global batch, recompute, precision, distributed optimizer,
// virtual pipeline).
#pragma once

#include <string>
#include <string_view>

#include "src/importers/import_report.hpp"
#include "src/importers/overrides.hpp"

namespace moesim::importers {

// --set keys that are not model fields or script variables override Megatron arguments
// of the same name (dashes or underscores): --set world_size=64.
ImportResult import_megatron(std::string_view text, const std::string& file, Overrides& set);

}  // namespace moesim::importers
