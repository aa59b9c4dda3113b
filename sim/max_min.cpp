// Progressive filling, written for clarity rather than speed: every round scans all links
// for the lowest fair share and freezes the flows on every link at that share.
#include "sim/max_min.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "sim/error.hpp"

namespace moesim::sim {

std::vector<BytesPerSecond> max_min_rates(std::span<const BytesPerSecond> capacities,
                                          std::span<const Path> flow_paths) {
  const std::size_t n_links = capacities.size();
  for (std::size_t l = 0; l < n_links; ++l) {
    if (!(capacities[l] > 0) || !std::isfinite(capacities[l])) {
      std::ostringstream msg;
      msg << "max_min_rates: link " << l << " capacity must be positive and finite, got " << capacities[l];
      throw Error(msg.str());
    }
  }
  std::vector<double> left(capacities.begin(), capacities.end());
  std::vector<std::size_t> unfrozen(n_links, 0);
  std::vector<BytesPerSecond> rate(flow_paths.size(), std::numeric_limits<double>::infinity());
  std::vector<bool> frozen(flow_paths.size(), false);
  std::size_t remaining = 0;
  for (std::size_t f = 0; f < flow_paths.size(); ++f) {
    for (const LinkId l : flow_paths[f]) {
      if (l >= n_links) {
        std::ostringstream msg;
        msg << "max_min_rates: flow " << f << " crosses link " << l << ", which does not exist (" << n_links
            << " links)";
        throw Error(msg.str());
      }
      ++unfrozen[l];
    }
    if (flow_paths[f].empty()) {
      frozen[f] = true;
    } else {
      ++remaining;
    }
  }
  while (remaining > 0) {
    double level = std::numeric_limits<double>::infinity();
    for (std::size_t l = 0; l < n_links; ++l) {
      if (unfrozen[l] > 0) level = std::min(level, std::max(left[l], 0.0) / static_cast<double>(unfrozen[l]));
    }
    std::vector<bool> full(n_links, false);
    for (std::size_t l = 0; l < n_links; ++l) {
      full[l] = unfrozen[l] > 0 && std::max(left[l], 0.0) / static_cast<double>(unfrozen[l]) == level;
    }
    for (std::size_t f = 0; f < flow_paths.size(); ++f) {
      if (frozen[f]) continue;
      bool hits_full = false;
      for (const LinkId l : flow_paths[f]) hits_full = hits_full || full[l];
      if (!hits_full) continue;
      frozen[f] = true;
      rate[f] = level;
      --remaining;
      for (const LinkId l : flow_paths[f]) {
        left[l] -= level;
        --unfrozen[l];
      }
    }
  }
  return rate;
}

}  // namespace moesim::sim
