// Where the ranks of each parallel group sit. Ranks are laid out as Megatron-Core does
// (tp-cp-ep-dp-pp): tensor parallel fastest, then context parallel, then data parallel,
// then pipeline stages; the MoE layers read the same stage's ranks as expert tensor
// parallel fastest, then expert parallel, then expert data parallel. GPUs fill nodes in
// rank order.
#pragma once

#include "src/cluster/cluster_spec.hpp"
#include "src/cost/comm_model.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

struct GroupLayout {
  GroupPlacement tp, cp, dp, ep, edp;  // dp: the dense weights' replicas, dp x cp
  GroupPlacement etp;                  // the routed experts' tensor-parallel ranks (adjacent)
  bool pp_crosses_nodes = false;  // neighbouring stages on different nodes
};

// `size` ranks spaced `stride` apart from rank 0: how many nodes they cover.
GroupPlacement strided_group(int size, int stride, int gpus_per_node);
GroupLayout group_layout(const Plan& plan, const ClusterSpec& cluster);

}  // namespace moesim
