// Which layers carry an MoE FFN, as foreign files write it: a 0/1 pattern per layer,
// a list of layer indices, or Megatron's --moe-layer-freq list expression
// "([0]+[1]*23)"; turned into moesim's MoeLayers ({every, offset} when regular).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "src/model/model_spec.hpp"

namespace moesim::importers {

// {every, offset} when the MoE layers are offset, offset+every, ... up to the last
// layer; otherwise the explicit list. `is_moe` must name at least one layer.
MoeLayers moe_layers_from_pattern(const std::vector<bool>& is_moe);

// Evaluates a Python expression over integers and lists of integers with [..], (..),
// + (concatenate or add) and * (repeat or multiply), as Megatron evaluates
// --moe-layer-freq: "([0]+[1]*23)", "([1]*3+[0]*1)*3". The result must be a list of
// 0/1 of at most `max_len` entries; errors are InputError naming `file` and `field`.
std::vector<bool> eval_layer_list_expression(std::string_view expr, std::size_t max_len, const std::string& file,
                                             const std::string& field);

}  // namespace moesim::importers
