// A small aligned-column table for terminal output (numbers right-aligned).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace moesim {

class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void add_row(std::vector<std::string> cells);
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// 908423168 -> "908,423,168".
std::string with_commas(long long value);
// Bytes as "10.40 GiB" (binary units, two decimals).
std::string human_bytes(double bytes);
// Counts as "4.10B", "68.9M".
std::string human_count(double value);
// FLOPs as "1.23 PFLOP".
std::string human_flops(double flops);
// "850 ns", "12.3 us", "4.56 ms", "1.23 s".
std::string human_seconds(double seconds);

}  // namespace moesim
