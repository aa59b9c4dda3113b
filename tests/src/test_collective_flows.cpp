// Collectives as flows over the cluster network (src/simulate/collective_flows.hpp): the
// routes the cluster graph gives, agreement with the analytic cost model on uncontended
// collectives, what sharing a link costs in closed form, and the event tier putting its
// data-parallel reduction on the cluster's links.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/engine.hpp"
#include "sim/workload.hpp"
#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/simulate/collective_flows.hpp"
#include "src/simulate/event.hpp"

namespace moesim {
namespace {

std::vector<int> ranks(int first, int count, int stride = 1) {
  std::vector<int> g;
  for (int i = 0; i < count; ++i) g.push_back(first + i * stride);
  return g;
}

std::string route_names(const ClusterNetwork& net, int a, int b) {
  std::string out;
  for (const sim::LinkId l : net.route(a, b)) out += net.network().link_name(l) + " ";
  return out;
}

// The makespan of collectives that all start at 0 and share the network.
double run(const ClusterNetwork& net, const ClusterSpec& c, const Profile& prof, const std::vector<CollectiveFlows>& cs,
           double share = 1.0) {
  sim::Workload w;
  for (const CollectiveFlows& f : cs) {
    sim::CollectiveSpec spec;
    spec.expansion = [&net, &c, &prof, f, share](const sim::CollectiveContext&, sim::StepBuilder& b) {
      emit_collective_flows(b, net, c, prof, f, share);
    };
    w.add_collective("collective", std::move(spec));
  }
  return sim::simulate(w, net.network()).makespan;
}

double modelled(const ClusterNetwork& net, const ClusterSpec& c, const Profile& prof, const CollectiveFlows& f) {
  return collective_cost(prof, c, f.op, placement_of(f.groups.front(), net), f.bytes).seconds;
}

TEST(CollectiveFlows, RoutesFollowTheClusterGraphOnEveryNode) {
  const ClusterSpec c = load_cluster("configs/clusters/dgx-a100-8node.json");
  const Profile prof = load_profile("profiles/a100-sxm4-40gb.json");
  const ClusterNetwork net(c, prof);
  EXPECT_EQ(net.gpus(), 64);
  EXPECT_EQ(route_names(net, 0, 1), "node0.gpu0->node0.nvswitch node0.nvswitch->node0.gpu1 ");
  EXPECT_EQ(route_names(net, 0, 8), "node0.gpu0->node0.nic0 node0.nic0->network network->node1.nic0 node1.nic0->node1.gpu0 ");
  // The same shape moved to other nodes, and GPU i keeps to NIC i.
  EXPECT_EQ(route_names(net, 13, 42), "node1.gpu5->node1.nic5 node1.nic5->network network->node5.nic2 node5.nic2->node5.gpu2 ");
  EXPECT_EQ(route_names(net, 62, 57), "node7.gpu6->node7.nvswitch node7.nvswitch->node7.gpu1 ");
  EXPECT_TRUE(net.route(5, 5).empty());
  // Links run at the cluster's bandwidth times the profile's efficiency for their class.
  const sim::Path& p = net.route(0, 8);
  EXPECT_DOUBLE_EQ(net.network().link(p[0]).bandwidth, c.pcie_bandwidth * prof.comm.pcie_efficiency.value);
  EXPECT_DOUBLE_EQ(net.network().link(p[1]).bandwidth, c.nic_bandwidth * prof.comm.net_efficiency.value);
  EXPECT_DOUBLE_EQ(net.network().link(net.route(0, 1)[0]).bandwidth, c.nvlink_bandwidth * prof.comm.nvlink_efficiency.value);
  EXPECT_EQ(net.network().link(p[0]).latency, 0.0);
}

TEST(CollectiveFlows, AnUncontendedCollectiveTakesTheCostModelsTime) {
  // NVSwitch nodes with a NIC per GPU: the links' achieved bandwidths are the cost model's,
  // so flows and alpha-beta agree to rounding, one group or several side by side.
  const ClusterSpec c = load_cluster("configs/clusters/dgx-a100-8node.json");
  const Profile prof = load_profile("profiles/a100-sxm4-40gb.json");
  const ClusterNetwork net(c, prof);
  std::vector<std::vector<std::vector<int>>> layouts = {
      {ranks(0, 8)},                                   // one node
      {ranks(0, 16)},                                  // two nodes
      {ranks(0, 64)},                                  // the cluster
      {ranks(3, 8, 8)},                                // one GPU per node
  };
  std::vector<std::vector<int>> across;  // eight of those, one per local GPU: eight NICs
  for (int t = 0; t < 8; ++t) across.push_back(ranks(t, 8, 8));
  layouts.push_back(across);
  for (const Collective op : {Collective::all_reduce, Collective::all_gather, Collective::reduce_scatter, Collective::all_to_all}) {
    for (const auto& groups : layouts) {
      const CollectiveFlows f{op, groups, 96e6};
      SCOPED_TRACE(std::string(to_string(op)) + " over " + std::to_string(groups.size()) + " group(s) of " +
                   std::to_string(groups.front().size()));
      EXPECT_NEAR(run(net, c, prof, {f}) / modelled(net, c, prof, f), 1.0, 1e-12);
    }
  }
  for (const auto& pairs : std::vector<std::vector<std::vector<int>>>{{{0, 1}}, {{0, 8}}, {{0, 8}, {1, 9}, {2, 10}}}) {
    const CollectiveFlows f{Collective::send_recv, pairs, 32e6};
    EXPECT_NEAR(run(net, c, prof, {f}) / modelled(net, c, prof, f), 1.0, 1e-12);
  }
}

TEST(CollectiveFlows, MeasuredFitsAndCubeMeshRingsAreMatchedExactly) {
  // The CPU profile's collectives are measured: the flows are scaled to the fits.
  const ClusterSpec cpu = load_cluster("configs/clusters/local-cpu.json");
  const Profile cpu_prof = load_profile("profiles/cpu.json");
  const ClusterNetwork cpu_net(cpu, cpu_prof);
  for (const Collective op : {Collective::all_reduce, Collective::all_gather, Collective::reduce_scatter, Collective::all_to_all}) {
    const CollectiveFlows f{op, {{0, 1}}, 8e6};
    ASSERT_NE(measured_fit(cpu_prof, op, placement_of(f.groups.front(), cpu_net)), nullptr) << to_string(op);
    EXPECT_NEAR(run(cpu_net, cpu, cpu_prof, {f}) / modelled(cpu_net, cpu, cpu_prof, f), 1.0, 1e-12) << to_string(op);
  }
  // DGX-1: the cost model counts all of a GPU's NVLinks (NCCL's several rings); one ring of
  // flows is scaled to it.
  const ClusterSpec v = load_cluster("configs/clusters/dgx1-v100.json");
  const Profile v_prof = load_profile("profiles/v100-sxm2-32gb.json");
  const ClusterNetwork v_net(v, v_prof);
  EXPECT_EQ(v_net.route(0, 3).size(), 1u);  // a direct NVLink pair
  const CollectiveFlows f{Collective::all_reduce, {ranks(0, 8)}, 64e6};
  EXPECT_NEAR(run(v_net, v, v_prof, {f}) / modelled(v_net, v, v_prof, f), 1.0, 1e-12);
}

TEST(CollectiveFlows, CollectivesSharingALinkShareItsBandwidth) {
  const ClusterSpec c = load_cluster("configs/clusters/dgx-a100-8node.json");
  const Profile prof = load_profile("profiles/a100-sxm4-40gb.json");
  const ClusterNetwork net(c, prof);
  const double bytes = 64e6;
  const CollectiveCost one = collective_cost(prof, c, Collective::send_recv, {2, 2}, bytes);
  const CollectiveFlows a{Collective::send_recv, {{0, 8}}, bytes}, b{Collective::send_recv, {{1, 9}}, bytes};
  // Two sends over NIC 0 at once: each at half its rate.
  EXPECT_NEAR(run(net, c, prof, {a, a}), one.latency + 2 * (one.seconds - one.latency), 1e-12);
  // Over NICs 0 and 1: no sharing.
  EXPECT_NEAR(run(net, c, prof, {a, b}), one.seconds, 1e-12);
  // A data-parallel ring over the eight nodes and a send out of node 0 on the same NIC: the
  // send takes half the NIC while both run, the ring's boundary flows slow down with it.
  const CollectiveFlows ring{Collective::all_reduce, {ranks(0, 8, 8)}, bytes};
  const double alone = modelled(net, c, prof, ring);
  EXPECT_GT(run(net, c, prof, {ring, a}), alone * (1 + 1e-3));
  EXPECT_NEAR(run(net, c, prof, {ring, b}), alone, 1e-12);
  // A share of a collective (a bucket) takes that share of its latency and transfer time.
  EXPECT_NEAR(run(net, c, prof, {ring}, 0.25), 0.25 * alone, 1e-12);
}

TEST(CollectiveFlows, GpusSharingANicShareItThroughTheFlows) {
  // Two DGX-1 nodes, four NICs per eight GPUs: GPUs 0 and 1 share NIC 0. The cost model
  // always charges half a NIC per GPU; the flows give a lone send the whole NIC and two
  // sends at once half each, which is the cost model's figure.
  ClusterSpec c = load_cluster("configs/clusters/dgx1-v100.json");
  c.nodes = 2;
  const Profile prof = load_profile("profiles/v100-sxm2-32gb.json");
  const ClusterNetwork net(c, prof);
  const double bytes = 50e6, nic = c.nic_bandwidth * prof.comm.net_efficiency.value;
  const CollectiveCost cost = collective_cost(prof, c, Collective::send_recv, {2, 2}, bytes);
  const CollectiveFlows a{Collective::send_recv, {{0, 8}}, bytes}, b{Collective::send_recv, {{1, 9}}, bytes};
  EXPECT_NEAR(run(net, c, prof, {a}), cost.latency + bytes / nic, 1e-12);
  EXPECT_NEAR(run(net, c, prof, {a, b}), cost.seconds, 1e-12);
  const CollectiveFlows both{Collective::send_recv, {{0, 8}, {1, 9}}, bytes};
  EXPECT_NEAR(run(net, c, prof, {both}), cost.seconds, 1e-12);
}

TEST(CollectiveFlows, TheEventTierReducesGradientsOverTheClusterLinks) {
  // Data parallel over two DGX A100 nodes: the ring's flows cross from node 0's GPU 7 to
  // node 1's GPU 0 through both NICs, and the trace shows them.
  const ModelSpec m = load_model("configs/models/fairseq-moe-4.1b.json");
  ClusterSpec c = load_cluster("configs/clusters/dgx-a100-8node.json");
  c.nodes = 2;
  const Profile prof = load_profile("profiles/a100-sxm4-40gb.json");
  const Plan p = load_plan("dp=16,ep=16,mbs=4,gbs=64");
  const std::string path = ::testing::TempDir() + "collective_flows_trace.json";
  const SimResult r = simulate_event(m, p, c, prof, nullptr, path);
  EXPECT_GT(r.iteration_s, 0);
  std::ifstream in(path);
  const nlohmann::json trace = nlohmann::json::parse(in);
  int crossing = 0;
  for (const auto& e : trace["traceEvents"]) {
    if (e.value("ph", "") != "X" || !e.contains("args") || !e["args"].contains("src")) continue;
    if (e["args"]["src"] == "node0.gpu7" && e["args"]["dst"] == "node1.gpu0") {
      EXPECT_EQ(e["args"]["hops"], 4);
      ++crossing;
    }
  }
  EXPECT_GT(crossing, 0);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace moesim
