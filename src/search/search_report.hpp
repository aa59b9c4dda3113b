// A search result for tools (JSON, the contract of `search --json`, docs/search.md) and
// for people (the ranked table, the winner against the runner-up, the best plans under
// other constraints, and the user's own plans).
#pragma once

#include <cstddef>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "src/search/search.hpp"

namespace moesim {

// The searched fields only, in inline syntax: "dp=8,tp=1,pp=1,ep=8,mbs=4,zero=3,recompute=full"
// (schedule and vpp when pp > 1, placement when it is not contiguous).
std::string short_plan(const Plan& p);

nlohmann::ordered_json search_result_json(const SearchResult& r, const SearchOptions& options, std::size_t top);
void print_search_result(const SearchResult& r, const SearchOptions& options, std::size_t top, std::ostream& out);

}  // namespace moesim
