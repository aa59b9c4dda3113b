// The one exception type of the engine: thrown for anything the input can cause (a cycle,
// a link that does not exist, a negative duration...), always with a message that names
// the offending task, link or value. Bugs in the engine itself are assertions instead.
#pragma once

#include <stdexcept>
#include <string>

namespace moesim::sim {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace moesim::sim
