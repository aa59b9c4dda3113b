// A rank's coordinates in the plan's grid.
#include "src/executor/rank_grid.hpp"

namespace moesim::exec {

RankGrid rank_grid(const Plan& plan, int world_rank) {
  RankGrid g;
  g.world = world_rank;
  g.tp = world_rank % plan.tp;
  g.dp = (world_rank / plan.tp) % plan.dp;
  g.pp = world_rank / (plan.tp * plan.dp);
  g.ep = g.dp % plan.ep;
  g.edp = g.dp / plan.ep;
  return g;
}

}  // namespace moesim::exec
