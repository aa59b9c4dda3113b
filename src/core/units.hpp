// Quantities with units, parsed in one place: "80GiB", "900GBps", "200Gbps",
// "2.5us", "989TFLOPS". Values are returned in base units (bytes, seconds,
// bytes per second, FLOP per second) so no call site multiplies by 1e9.
#pragma once

#include <optional>
#include <string_view>

namespace moesim {

enum class Dimension { bytes, seconds, bandwidth, flops };

// Parses "<number><unit>" (spaces allowed between) for the given dimension.
// Bandwidth accepts bytes ("GBps", "GB/s") and bits ("Gbps", "Gb/s"); decimal
// prefixes are powers of 1000, binary ones (KiB, MiB, GiB, TiB) powers of 1024.
// Returns nullopt when the text is not a finite, non-negative quantity of that dimension.
std::optional<double> parse_quantity(std::string_view text, Dimension dim);

// The units accepted for a dimension, for error messages ("e.g. 80GiB").
std::string_view unit_example(Dimension dim);

}  // namespace moesim
