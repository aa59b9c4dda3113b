// SimResult as JSON (the contract of `simulate --json`, docs/simulate.md) and as text.
#pragma once

#include <ostream>

#include <nlohmann/json.hpp>

#include "src/simulate/result.hpp"

namespace moesim {

nlohmann::ordered_json sim_result_json(const SimResult& r);
void print_sim_result(const SimResult& r, std::ostream& out);

}  // namespace moesim
