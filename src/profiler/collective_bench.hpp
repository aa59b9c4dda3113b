// The communication benchmark of `moesim profile`: times the collectives of an MoE step
// over a Communicator at a ladder of sizes, with nccl-tests' definitions of size, algbw
// and busbw (NVIDIA/nccl-tests doc/PERFORMANCE.md), so its numbers compare with theirs.
#pragma once

#include <functional>
#include <vector>

#include "src/comm/communicator.hpp"

namespace moesim {

enum class BenchCollective { all_reduce, all_gather, reduce_scatter, all_to_all, all_to_all_v };

const char* to_string(BenchCollective c);  // "all_reduce", ..., "all_to_all_v"

// One timed point. `bytes` is nccl-tests' "size": all_reduce the buffer, all_gather the
// gathered output, reduce_scatter the input, all_to_all(_v) what one rank sends in total.
// `seconds` is the median over iterations of the slowest rank's time; algbw = bytes /
// seconds and busbw = algbw * bus_factor(op, ranks), both in bytes per second.
struct CollectiveSample {
  BenchCollective op;
  int ranks;
  double bytes;
  double seconds;
  double algbw;
  double busbw;
};

// The sizes and iteration counts of a run. Sizes go min_bytes, min_bytes * factor, ...
// up to max_bytes, each rounded down to whole floats divisible by ranks^2 (so every
// op's blocks are whole; a size that rounds to zero is skipped).
struct CollectiveGrid {
  double min_bytes = 1024;      // bytes
  double max_bytes = 1 << 30;   // bytes
  double factor = 4;            // > 1
  int warmup = 2;               // untimed iterations per point
  int min_iterations = 3;       // timed iterations per point, at least
  double target_seconds = 0.25; // more iterations while their total time is below this
  int max_iterations = 10000;   // bounds a point whose operation takes microseconds
  std::vector<BenchCollective> ops = {BenchCollective::all_reduce, BenchCollective::all_gather,
                                      BenchCollective::reduce_scatter, BenchCollective::all_to_all,
                                      BenchCollective::all_to_all_v};
};

// nccl-tests' bus bandwidth factor: all_reduce 2(n-1)/n; all_gather, reduce_scatter and
// all_to_all(_v) (n-1)/n. Zero for one rank: nothing crosses a link.
double bus_factor(BenchCollective op, int ranks);

// Runs every op of `grid` at every size, collectively on all ranks of `comm` (each rank
// must pass the same grid). Returns the samples on every rank, identical in (op, bytes),
// grouped by op in grid order with sizes ascending. all_to_all_v splits each rank's
// total unevenly: rank r sends peer p a share proportional to 1 + (r + p) mod n, the
// rounding remainder to the last peer. `progress(done, total)` is called on rank 0
// after each point (may be empty). Throws InputError for an invalid grid.
std::vector<CollectiveSample> measure_collectives(Communicator& comm, const CollectiveGrid& grid,
                                                  const std::function<void(int, int)>& progress);

}  // namespace moesim
