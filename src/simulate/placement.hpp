// Where the ranks of each parallel group sit. Ranks are laid out as Megatron does: tensor
// parallel fastest, then data parallel (the expert-parallel group is a contiguous block of
// it), then pipeline stages; GPUs fill nodes in rank order.
#pragma once

#include "src/cluster/cluster_spec.hpp"
#include "src/cost/comm_model.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

struct GroupLayout {
  GroupPlacement tp, dp, ep, edp;
  bool pp_crosses_nodes = false;  // neighbouring stages on different nodes
};

// `size` ranks spaced `stride` apart from rank 0: how many nodes they cover.
GroupPlacement strided_group(int size, int stride, int gpus_per_node);
GroupLayout group_layout(const Plan& plan, const ClusterSpec& cluster);

}  // namespace moesim
