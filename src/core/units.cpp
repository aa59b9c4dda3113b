// Unit parsing for config values; the only place where unit prefixes become factors.
#include "src/core/units.hpp"
#include "src/core/text.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <string>
#include <utility>

namespace moesim {
namespace {

// Sub-units divide (2.5 / 1e6 is the correctly rounded 2.5e-6; 2.5 * 1e-6 is not).
struct Unit {
  std::string_view name;
  double factor;
  bool divide = false;
};

constexpr std::array kBytes{
    Unit{"B", 1.0},      Unit{"KB", 1e3},     Unit{"MB", 1e6},     Unit{"GB", 1e9},
    Unit{"TB", 1e12},    Unit{"KiB", 1024.0}, Unit{"MiB", 1048576.0}, Unit{"GiB", 1073741824.0},
    Unit{"TiB", 1099511627776.0}};
constexpr std::array kSeconds{Unit{"s", 1.0}, Unit{"ms", 1e3, true}, Unit{"us", 1e6, true}, Unit{"ns", 1e9, true}};
constexpr std::array kBandwidth{
    Unit{"Bps", 1.0},     Unit{"KBps", 1e3},    Unit{"MBps", 1e6},   Unit{"GBps", 1e9},
    Unit{"TBps", 1e12},   Unit{"B/s", 1.0},     Unit{"KB/s", 1e3},   Unit{"MB/s", 1e6},
    Unit{"GB/s", 1e9},    Unit{"TB/s", 1e12},   Unit{"bps", 0.125},  Unit{"Kbps", 125.0},
    Unit{"Mbps", 1.25e5}, Unit{"Gbps", 1.25e8}, Unit{"Tbps", 1.25e11}, Unit{"b/s", 0.125},
    Unit{"Gb/s", 1.25e8}, Unit{"Tb/s", 1.25e11}};
constexpr std::array kFlops{Unit{"FLOPS", 1.0},     Unit{"GFLOPS", 1e9},  Unit{"TFLOPS", 1e12},
                            Unit{"PFLOPS", 1e15},   Unit{"FLOP/s", 1.0},  Unit{"GFLOP/s", 1e9},
                            Unit{"TFLOP/s", 1e12},  Unit{"PFLOP/s", 1e15}};

template <std::size_t N>
std::optional<Unit> find_unit(std::string_view unit, const std::array<Unit, N>& units) {
  for (const Unit& u : units)
    if (u.name == unit) return u;
  return std::nullopt;
}

std::optional<Unit> unit_for(std::string_view unit, Dimension dim) {
  switch (dim) {
    case Dimension::bytes: return find_unit(unit, kBytes);
    case Dimension::seconds: return find_unit(unit, kSeconds);
    case Dimension::bandwidth: return find_unit(unit, kBandwidth);
    case Dimension::flops: return find_unit(unit, kFlops);
  }
  return std::nullopt;
}

}  // namespace

std::optional<double> parse_quantity(std::string_view text, Dimension dim) {
  text = trim(text);
  double number = 0.0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  std::string_view unit = trim(std::string_view(end, static_cast<std::size_t>(text.data() + text.size() - end)));
  auto u = unit_for(unit, dim);
  if (!u) return std::nullopt;
  double value = u->divide ? number / u->factor : number * u->factor;
  if (!std::isfinite(value) || value < 0.0) return std::nullopt;
  return value;
}

std::string_view unit_example(Dimension dim) {
  switch (dim) {
    case Dimension::bytes: return "a size such as \"80GiB\" or \"40GB\"";
    case Dimension::seconds: return "a time such as \"2.5us\" or \"1ms\"";
    case Dimension::bandwidth: return "a bandwidth such as \"300GBps\" or \"200Gbps\"";
    case Dimension::flops: return "a rate such as \"312TFLOPS\"";
  }
  return "";
}

}  // namespace moesim
