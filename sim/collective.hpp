// The mechanism for multi-party tasks (collectives): a collective holds all its party
// resources from start to end and runs as a small graph of steps (transfers and delays)
// that a pluggable Expansion emits into a StepBuilder. Algorithms live in collectives.hpp
// (generic ones) or in src/ (topology-aware ones).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sim/network.hpp"
#include "sim/types.hpp"

namespace moesim::sim {

// A step of one collective, by its index in emission order (0, 1, 2...).
using StepRef = std::uint32_t;
inline constexpr StepRef kNoStep = std::numeric_limits<StepRef>::max();

enum class StepKind : std::uint8_t { kDelay, kTransfer };

// What an expansion sees of the collective it expands.
struct CollectiveContext {
  std::string_view name;                   // the collective task's name
  Bytes bytes = 0;                         // CollectiveSpec::bytes
  std::span<const NodeId> endpoints = {};  // CollectiveSpec::endpoints, one per rank
  const Network& network;
};

// Collects the steps of one collective. A step may only wait for steps emitted before it,
// so a collective's steps can never form a cycle. Steps hold no resources: the collective
// holds its parties for all of them.
class StepBuilder {
 public:
  struct Step {
    StepKind kind = StepKind::kDelay;
    double value = 0;                                // kDelay: seconds; kTransfer: bytes
    std::uint32_t path_offset = 0, path_size = 0;    // into paths()
    std::uint32_t after_offset = 0, after_size = 0;  // into afters()
    std::string label = {};
  };

  // `owner` names the collective in error messages.
  StepBuilder(const Network& network, std::string owner);

  // A transfer of `bytes` over `path` (may be empty: a local copy, which takes no time),
  // starting when every step in `after` has ended (kNoStep entries are ignored).
  StepRef transfer(Bytes bytes, std::span<const LinkId> path, std::span<const StepRef> after = {},
                   std::string_view label = {});
  StepRef transfer(Bytes bytes, std::span<const LinkId> path, std::initializer_list<StepRef> after,
                   std::string_view label = {}) {
    return transfer(bytes, path, std::span<const StepRef>(after.begin(), after.size()), label);
  }
  // A fixed delay (e.g. a reduction kernel, or 0 to join several steps into one).
  StepRef delay(Seconds duration, std::span<const StepRef> after = {}, std::string_view label = {});
  StepRef delay(Seconds duration, std::initializer_list<StepRef> after, std::string_view label = {}) {
    return delay(duration, std::span<const StepRef>(after.begin(), after.size()), label);
  }

  std::size_t size() const { return steps_.size(); }
  const std::vector<Step>& steps() const { return steps_; }
  const std::vector<LinkId>& paths() const { return paths_; }
  const std::vector<StepRef>& afters() const { return afters_; }
  const Network& network() const { return network_; }

 private:
  StepRef add(StepKind kind, double value, std::span<const LinkId> path, std::span<const StepRef> after,
              std::string_view label);

  const Network& network_;
  std::string owner_;
  std::vector<Step> steps_;
  std::vector<LinkId> paths_;
  std::vector<StepRef> afters_;
};

// Turns one collective into steps. Called once per collective per simulate().
using Expansion = std::function<void(const CollectiveContext&, StepBuilder&)>;

// The description of a multi-party task, given to Workload::add_collective.
struct CollectiveSpec {
  // Resources held from the collective's start to its end (e.g. each rank's communication
  // stream). It starts when all its dependencies are done and every party can start it.
  std::vector<ResourceId> parties = {};
  // Network endpoints, one per rank, handed to the expansion (often one per party).
  std::vector<NodeId> endpoints = {};
  // The buffer size the algorithm works on (e.g. each rank's all-reduce buffer), bytes.
  Bytes bytes = 0;
  // Emits the steps. An empty expansion, or one that emits no step, takes no time.
  Expansion expansion = {};
};

}  // namespace moesim::sim
