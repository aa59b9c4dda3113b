// Parsing Python literals (what repr() prints: dicts, lists, tuples, strings, numbers,
// True/False/None) into JSON, for fairseq's printed cfg dicts and Megatron's argument dumps.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace moesim::importers {

// Nesting deeper than this is rejected (the input is untrusted; recursion stays bounded).
inline constexpr int kMaxLiteralDepth = 128;

// Parses `text` as exactly one literal (surrounding whitespace allowed). dict -> object
// (non-string keys become their repr: 1 -> "1"), list and tuple -> array, None -> null,
// integers beyond 64 bits -> double. Errors are InputError naming `source` and the byte
// offset (plus `base_offset`, for a literal cut out of a larger file).
nlohmann::json parse_python_literal(std::string_view text, const std::string& source, std::size_t base_offset = 0);

// Parses one literal starting at text[pos] and leaves pos just past it; text after it
// is the caller's business.
nlohmann::json parse_python_literal_at(std::string_view text, std::size_t& pos, const std::string& source,
                                       std::size_t base_offset = 0);

// Best effort for a foreign value written as text: a Python literal if it parses
// ("1e-05", "[64]", "False", "None"), otherwise the text itself as a JSON string.
nlohmann::json python_value_or_string(std::string_view text);

}  // namespace moesim::importers
