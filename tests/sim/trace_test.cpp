// The Chrome trace: valid JSON, one named track per resource, every task as a complete
// event with its arguments, flows on their own non-overlapping tracks, atomic writes.
#include "sim/trace.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "sim/collectives.hpp"
#include "sim/engine.hpp"
#include "sim/error.hpp"
#include "tests/sim/sim_test_util.hpp"

namespace moesim::sim {
namespace {

using nlohmann::json;

struct Fixture {
  Network net = testing::star(4, 1e9, 1e-6);
  Workload w;
  Result r;
  Fixture() {
    std::vector<ResourceId> gpu, comm;
    for (int i = 0; i < 4; ++i) {
      gpu.push_back(w.add_resource(testing::concat("gpu", i, " compute"), {.group = testing::concat("rank ", i)}));
      comm.push_back(w.add_resource(testing::concat("gpu", i, " comm"), {.group = testing::concat("rank ", i)}));
    }
    const ResourceId copy = w.add_resource("copy engines", {.capacity = 2, .group = "host"});
    std::vector<TaskId> gemm;
    for (int i = 0; i < 4; ++i) {
      gemm.push_back(w.add_delay(testing::concat("gemm \"quoted\" ", i), 1e-3 * (i + 1),
                                 {.category = "gemm", .resource = gpu[i]}));
      w.add_arg(gemm.back(), "shape", "[4096, 4096]");
    }
    const TaskId a2a = w.add_collective(
        "all_to_all", CollectiveSpec{comm, testing::first_nodes(4), 64e6, direct_all_to_all(shortest_path_routes(net))},
        {.category = "a2a"});
    for (const TaskId g : gemm) w.add_dependency(g, a2a);
    for (int i = 0; i < 3; ++i) w.add_delay(testing::concat("memcpy", i), 2e-3, {.category = "copy", .resource = copy});
    const TaskId x = w.add_transfer("send", 1e6, net.shortest_path(0, 1), {.category = "p2p"});
    w.add_dependency(a2a, x);
    w.add_delay("", 1e-3);  // unnamed, no resource
    r = simulate(w, net);
  }
};

json parse(const std::string& text) { return json::parse(text); }

TEST(Trace, IsValidJsonWithTracksTasksAndFlows) {
  Fixture f;
  std::ostringstream out;
  write_chrome_trace(out, f.w, f.net, f.r);
  const json doc = parse(out.str());
  ASSERT_TRUE(doc.contains("traceEvents"));
  const json& events = doc["traceEvents"];

  std::map<int, std::string> process;
  std::map<std::pair<int, int>, std::string> thread;
  std::vector<json> complete;
  for (const json& e : events) {
    if (e["ph"] == "M" && e["name"] == "process_name") process[e["pid"]] = e["args"]["name"];
    if (e["ph"] == "M" && e["name"] == "thread_name") thread[{e["pid"], e["tid"]}] = e["args"]["name"];
    if (e["ph"] == "X") complete.push_back(e);
  }
  std::set<std::string> process_names;
  for (const auto& [pid, name] : process) process_names.insert(name);
  EXPECT_TRUE(process_names.count("rank 0"));
  EXPECT_TRUE(process_names.count("host"));
  EXPECT_TRUE(process_names.count("flows"));
  EXPECT_TRUE(process_names.count("tasks without a resource"));
  std::set<std::string> thread_names;
  for (const auto& [key, name] : thread) thread_names.insert(name);
  EXPECT_TRUE(thread_names.count("gpu0 compute"));
  EXPECT_TRUE(thread_names.count("gpu3 comm"));
  EXPECT_TRUE(thread_names.count("copy engines #0"));
  EXPECT_TRUE(thread_names.count("copy engines #1"));

  // Every task appears (a collective once per party), with ts/dur in microseconds.
  std::map<std::string, int> seen;
  for (const json& e : complete) {
    seen[e["name"]]++;
    const int pid = e["pid"], tid = e["tid"];
    EXPECT_TRUE(thread.count({pid, tid})) << e.dump();
  }
  EXPECT_EQ(seen["all_to_all"], 4 + 0);  // one per party; its flows are named "all_to_all: ..."
  EXPECT_EQ(seen["gemm \"quoted\" 2"], 1);
  EXPECT_EQ(seen["send"], 2);  // the task (no resource) and its flow
  EXPECT_EQ(seen[testing::concat("task ", f.w.task_count() - 1)], 1);
  int a2a_flows = 0;
  for (const auto& [name, count] : seen) {
    if (name.rfind("all_to_all: ", 0) == 0) a2a_flows += count;
  }
  EXPECT_EQ(a2a_flows, 12);
  for (const json& e : complete) {
    if (e["name"] == "gemm \"quoted\" 2") {
      EXPECT_EQ(e["cat"], "gemm");
      EXPECT_EQ(e["args"]["shape"], "[4096, 4096]");
      EXPECT_NEAR(e["dur"].get<double>(), 3000.0, 1e-9);
      EXPECT_NEAR(e["ts"].get<double>(), 0.0, 1e-9);
    }
  }
  // Events on one track never overlap (they nest trivially).
  std::map<std::pair<int, int>, std::vector<std::pair<double, double>>> by_track;
  for (const json& e : complete) {
    by_track[{e["pid"], e["tid"]}].emplace_back(e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>());
  }
  for (auto& [track, spans] : by_track) {
    std::sort(spans.begin(), spans.end());
    for (std::size_t k = 1; k < spans.size(); ++k) EXPECT_LE(spans[k - 1].second, spans[k].first + 1e-6);
  }
}

TEST(Trace, FileIsWrittenAtomically) {
  Fixture f;
  const auto dir = std::filesystem::temp_directory_path() / (testing::concat("moesim_trace_test_", ::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "trace.json";
  write_chrome_trace(path, f.w, f.net, f.r);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NO_THROW(parse(text.str()));
  EXPECT_FALSE(std::filesystem::exists(dir / "trace.json.tmp"));
  // Into a directory that does not exist: an Error, and nothing written.
  EXPECT_THROW(write_chrome_trace(dir / "missing" / "t.json", f.w, f.net, f.r), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "missing"));
  std::filesystem::remove_all(dir);
}

TEST(Trace, RejectsAResultOfAnotherWorkload) {
  Fixture f;
  Workload other;
  other.add_delay("x", 1);
  std::ostringstream out;
  EXPECT_THROW(write_chrome_trace(out, other, f.net, f.r), Error);
}

}  // namespace
}  // namespace moesim::sim
