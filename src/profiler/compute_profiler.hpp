// Compute profiling: runs each grid point on a backend, then fits every kernel's table
// against its ceiling (peak FLOP/s of its dtype, or memory bandwidth).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "src/profile/profile.hpp"
#include "src/profiler/compute_backend.hpp"
#include "src/profiler/op_grid.hpp"

namespace moesim {

struct MeasuredPoint {
  OpPoint point;
  OpSample sample;  // shape, work and median seconds
};

// Runs one point on the backend.
MeasuredPoint measure_point(ComputeBackend& backend, const OpPoint& point);

// Runs every point `passes` times, each pass in its own shuffled order, and keeps each
// point's median over the passes: a slow spell of a shared machine then lands on different
// points in each pass instead of on one region of the grid. `progress(done, total, label)`
// after each run (may be empty). Results in the order of `points`.
std::vector<MeasuredPoint> measure_points(ComputeBackend& backend, const std::vector<OpPoint>& points,
                                          const std::function<void(int, int, const std::string&)>& progress,
                                          int passes = 1);

// Groups the points by kernel and dtype into compute.ops entries, each fitted against
// `ceilings`' peak of its dtype (FLOP-bound) or memory bandwidth (byte-bound).
std::map<std::string, OpProfile> fit_ops(const std::vector<MeasuredPoint>& measured, const Profile& ceilings,
                                         const std::string& how);

}  // namespace moesim
