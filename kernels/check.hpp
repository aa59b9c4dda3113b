// Argument checks shared by the kernels' host functions (internal to kernels/).
// A wrong size or shape passed to a kernel throws std::invalid_argument naming the
// function and the argument, so a caller's mistake never becomes a silent overrun.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace moesim::kernels::detail {

inline void require(bool ok, const char* function, const std::string& what)
{
    if (!ok) {
        throw std::invalid_argument(std::string("moesim::kernels::") + function + ": " + what);
    }
}

// Checks that a buffer holds exactly `expected` elements.
inline void require_size(std::size_t actual, std::size_t expected, const char* function,
                         const char* name)
{
    if (actual != expected) {
        throw std::invalid_argument(std::string("moesim::kernels::") + function + ": " + name +
                                    " has " + std::to_string(actual) + " elements, expected " +
                                    std::to_string(expected));
    }
}

// Element count of a rows x cols matrix, in size_t so that products never overflow int.
inline std::size_t elems(int rows, int cols)
{
    return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
}

}  // namespace moesim::kernels::detail
