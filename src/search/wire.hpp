// What the search's MPI ranks send each other, as plain bytes: per-plan scores and the
// routing samples. A rank's bytes decode to the same values on every rank (same build,
// same machine type), which is what keeps a distributed search identical to a serial one.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "src/comm/communicator.hpp"
#include "src/routing/routing_model.hpp"

namespace moesim::wire {

// One plan's score on one tier.
struct Score {
  std::uint64_t index = 0;  // in the enumeration
  double seconds = 0;       // iteration time (0 when it does not fit)
  double memory = 0;        // peak bytes per GPU
  std::uint8_t fits = 0;
};

// Every rank's scores, on rank 0, ordered by index (empty on other ranks).
std::vector<Score> gather_scores(Communicator& comm, const std::vector<Score>& mine);

// Rank 0's indices, on every rank.
std::vector<std::uint64_t> broadcast_indices(Communicator& comm, const std::vector<std::uint64_t>& indices);

// Routing samples keyed by the tokens a rank routes per micro-batch: each rank's own,
// merged, on every rank.
std::map<std::int64_t, ExpertLoad> share_loads(Communicator& comm, const std::map<std::int64_t, ExpertLoad>& mine);

std::string pack_load(const ExpertLoad& load);
// Reads one load from `bytes` at `at`, advancing it; throws std::runtime_error when short.
ExpertLoad unpack_load(const std::string& bytes, std::size_t& at);

}  // namespace moesim::wire
