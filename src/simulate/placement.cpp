// Node coverage of the parallel groups under Megatron's rank order.
#include "src/simulate/placement.hpp"

#include <set>

namespace moesim {

GroupPlacement strided_group(int size, int stride, int gpus_per_node) {
  std::set<long> nodes;
  for (long i = 0; i < size; ++i) nodes.insert(i * stride / gpus_per_node);
  return {size, static_cast<int>(nodes.size())};
}

GroupLayout group_layout(const Plan& p, const ClusterSpec& c) {
  const int g = c.gpus_per_node;
  GroupLayout l;
  l.tp = strided_group(p.tp, 1, g);
  l.cp = strided_group(p.cp, p.tp, g);
  l.dp = strided_group(p.dense_replicas(), p.tp, g);
  const int etp = p.expert_tp();
  l.etp = strided_group(etp, 1, g);
  l.ep = strided_group(p.ep, etp, g);
  l.edp = strided_group(p.edp(), etp * p.ep, g);
  l.pp_crosses_nodes = p.pp > 1 && p.dp * p.tp * p.cp >= g;
  return l;
}

}  // namespace moesim
