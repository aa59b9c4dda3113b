// Helpers shared by the sim tests: small networks and a line that prints a closed form
// beside the simulated value before a test asserts on them.
#pragma once

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "sim/network.hpp"

namespace moesim::sim::testing {

// Joins printable parts into a string ("ep", 3 -> "ep3"). Tests build names this way
// rather than with `"ep" + std::to_string(i)`, which GCC 12 at -O3 misreports as an
// overlapping copy (-Wrestrict) and so breaks Release builds with -Werror.
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// Prints "what: closed form X, simulated Y" (17 significant digits).
inline void report(const std::string& what, double closed_form, double simulated) {
  std::printf("  %-48s closed form %.17g  simulated %.17g\n", what.c_str(), closed_form, simulated);
}

// p endpoints on one switch: endpoint i has an uplink i->switch and a downlink
// switch->i, each with `bandwidth` and `latency`. Endpoints are nodes 0..p-1.
inline Network star(int p, double bandwidth, double latency) {
  Network net;
  for (int i = 0; i < p; ++i) net.add_node(concat("ep", i));
  const NodeId sw = net.add_node("switch");
  for (int i = 0; i < p; ++i) net.add_duplex_link(static_cast<NodeId>(i), sw, bandwidth, latency);
  return net;
}

// p endpoints with a direct link each way between every pair.
inline Network full_mesh(int p, double bandwidth, double latency) {
  Network net;
  for (int i = 0; i < p; ++i) net.add_node(concat("ep", i));
  for (int i = 0; i < p; ++i) {
    for (int j = 0; j < p; ++j) {
      if (i != j) net.add_link(static_cast<NodeId>(i), static_cast<NodeId>(j), bandwidth, latency);
    }
  }
  return net;
}

inline std::vector<NodeId> first_nodes(int p) {
  std::vector<NodeId> v;
  for (int i = 0; i < p; ++i) v.push_back(static_cast<NodeId>(i));
  return v;
}

inline bool is_power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace moesim::sim::testing
