// The moesim binary as a user runs it: describe's JSON contract on the seeds, exit codes
// and one-line messages for bad input, run's checkpoints, and a job losing a rank.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "tests/src/cli_test_util.hpp"

namespace {

using moesim::testing::Outcome;
using moesim::testing::run_command;

Outcome run(const std::string& args) { return run_command(std::string(MOESIM_BIN) + " " + args); }

TEST(Cli, DescribeReproducesSeed001PerGpuCounts) {
  // Acceptance: seed 001 logs 908,423,168 non-expert and 402,776,064 expert parameters per GPU.
  const Outcome r = run("describe --model configs/models/fairseq-moe-4.1b.json --plan dp=8,ep=8 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["params"]["non_expert"], 908423168);
  EXPECT_EQ(j["params"]["per_rank"]["expert"], 402776064);
  EXPECT_EQ(j["params"]["per_rank"]["total"], 908423168 + 402776064);
  EXPECT_EQ(j["params"]["total"], 908423168 + 8LL * 402776064);
  for (const char* k : {"total", "non_expert", "expert", "active"}) EXPECT_TRUE(j["params"][k].is_number_integer()) << k;
  for (const char* k : {"weights", "grads", "optimizer", "activations", "total"})
    EXPECT_TRUE(j["memory"]["per_rank"][k].is_number()) << k;
}

TEST(Cli, DescribeWithClusterSaysWhetherItFits) {
  const Outcome r = run("describe --model configs/models/fairseq-moe-4.1b.json --plan configs/plans/fairseq-moe-4.1b-8gpu.json "
                    "--cluster configs/clusters/dgx1-v100.json --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["memory"]["fits"].get<bool>());
  EXPECT_EQ(j["memory"]["gpu_memory"], 32.0 * 1024 * 1024 * 1024);
  const Outcome text = run("describe --model configs/models/fairseq-moe-4.1b.json --plan dp=8,ep=8");
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("908,423,168"), std::string::npos) << text.out;
}

struct BadRun {
  const char* args;
  const char* message;  // the start of the one line on stderr
};

TEST(Cli, BadInputExitsTwoWithOneLine) {
  const BadRun cases[] = {
      {"describe --model configs/models/missing.json", "moesim: configs/models/missing.json: cannot open the file"},
      {"describe --model configs/clusters/dgx-a100.json", "moesim: configs/clusters/dgx-a100.json: field 'layers': required field is missing"},
      {"describe --model configs/models/fairseq-moe-4.1b.json --plan dp=8,ep=3", "moesim: --plan 'dp=8,ep=3': field 'ep'"},
      {"describe --model configs/models/fairseq-moe-4.1b.json --plan tp=3", "moesim: tp=3: field 'tp': expected a divisor"},
      {"describe --model configs/models/fairseq-moe-4.1b.json --plan dp=16 --cluster configs/clusters/dgx-a100.json",
       "moesim: dp=16: field 'dp': expected dp*tp*pp (16) at most the cluster's 8 GPUs"},
      {"describe", "moesim: --model is required"},
      {"describe --model x --frobnicate", "moesim: The following argument was not expected: --frobnicate"},
      {"nosuchcommand", "moesim: "},
  };
  for (const BadRun& c : cases) {
    SCOPED_TRACE(c.args);
    const Outcome r = run(c.args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(r.err.rfind(c.message, 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(Cli, HelpAndVersionExitZero) {
  EXPECT_EQ(run("--help").code, 0);
  EXPECT_EQ(run("describe --help").code, 0);
  const Outcome v = run("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("moesim"), std::string::npos);
}

}  // namespace

namespace {

// Acceptance of the profiler on this machine: two MPI ranks write a complete CPU profile
// (every kernel of the layer, every collective on 2 ranks) that simulate then uses.
TEST(CliProfile, TwoMpiRanksWriteACompleteCpuProfileThatSimulateUses) {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string out = ::testing::TempDir() + "moesim_cpu_profile." + std::to_string(::getpid()) + ".json";
  const Outcome r = run_command(std::string(MOESIM_MPIEXEC) + " -n 2 --oversubscribe " + MOESIM_BIN +
                                " profile --device cpu --quick --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("written to " + out), std::string::npos) << r.out;
  std::ifstream in(out);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["provenance"]["kind"], "measured");
  EXPECT_FALSE(j["provenance"]["mpi"].get<std::string>().empty());
  for (const char* op : {"gemm_fp32", "grouped_gemm_fp32", "gate_fp32", "permute_fp32", "unpermute_fp32",
                         "layer_norm_fp32", "bias_gelu_fp32", "cross_entropy_fp32", "adam_fp32", "copy_fp32"})
    EXPECT_TRUE(j["compute"]["ops"].contains(op)) << op;
  std::vector<std::string> collectives;
  for (const auto& c : j["communication"]["collectives"]) {
    EXPECT_EQ(c["ranks"], 2);
    EXPECT_EQ(c["transport"], "mpi");
    collectives.push_back(c["op"]);
  }
  EXPECT_EQ(collectives,
            (std::vector<std::string>{"all_gather", "all_reduce", "all_to_all", "all_to_all_v", "reduce_scatter"}));
  const Outcome sim = run("simulate --model configs/models/openlm-41m-e8.json --cluster configs/clusters/local-cpu.json "
                          "--plan dp=2,ep=2,mbs=1,gbs=2,precision=fp32 --json --profile " + out);
  ASSERT_EQ(sim.code, 0) << sim.err;
  EXPECT_GT(nlohmann::json::parse(sim.out)["iteration_s"].get<double>(), 0);
  std::remove(out.c_str());
}

TEST(CliProfile, BadInputExitsTwo) {
  const Outcome model = run("profile --out /tmp/never.json --model configs/models/no-such-model.json --no-comm");
  EXPECT_EQ(model.code, 2);
  EXPECT_NE(model.err.find("configs/models/no-such-model.json"), std::string::npos) << model.err;
  EXPECT_EQ(std::count(model.err.begin(), model.err.end(), '\n'), 1) << model.err;
  const Outcome device = run("profile --out /tmp/never.json --device tpu");
  EXPECT_EQ(device.code, 2);
  EXPECT_NE(device.err.find("--device"), std::string::npos) << device.err;
  std::ifstream never("/tmp/never.json");
  EXPECT_FALSE(never.good());
}

}  // namespace

namespace {

const std::string kSeed001Search =
    "search --model configs/models/fairseq-moe-4.1b.json --cluster configs/clusters/dgx-a100.json "
    "--baseline configs/plans/fairseq-moe-4.1b-8gpu.json";

TEST(CliSearch, ExplainsTheWinnerAndScoresTheSeedPlan) {
  const Outcome r = run(kSeed001Search);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* text : {"plans enumerated", "winner: dp=", "  it ", " the runner-up ", "runner-up  difference",
                           "best without pipeline parallelism (pp=1): ", "best without tensor parallelism (tp=1): ",
                           "configs/plans/fairseq-moe-4.1b-8gpu.json: dp=8,tp=1,pp=1,ep=8,mbs=4,zero=3,recompute=full",
                           "  the winner is "})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;  // no progress bar off a terminal
}

TEST(CliSearch, EmittedPlanSimulatesToTheReportedTime) {
  const std::string plan = ::testing::TempDir() + "moesim_best." + std::to_string(::getpid()) + ".json";
  const Outcome r = run(kSeed001Search + " --json --top 3 --emit-plan " + plan);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ranked"].size(), 3u);
  EXPECT_EQ(j["baselines"][0]["in_space"], true);
  EXPECT_GT(j["baselines"][0]["winner_speedup"].get<double>(), 1.0);
  const Outcome sim = run("simulate --model configs/models/fairseq-moe-4.1b.json --cluster configs/clusters/dgx-a100.json "
                          "--tier event --json --plan " + plan);
  ASSERT_EQ(sim.code, 0) << sim.err;
  const auto s = nlohmann::json::parse(sim.out);
  EXPECT_EQ(s["plan"], j["winner"]["plan"]);
  EXPECT_EQ(s["iteration_s"], j["winner"]["result"]["iteration_s"]);
  EXPECT_EQ(s["iteration_s"], j["ranked"][0]["iteration_s"]);
  std::remove(plan.c_str());
}

TEST(CliSearch, MpiRanksFindTheSameResultAsOneProcess) {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string args = " search --model configs/models/openlm-41m-e8.json --cluster configs/clusters/dgx-a100.json "
                           "--gbs 64 --routing zipf:1.2 --json --top 50";
  const Outcome one = run(args);
  ASSERT_EQ(one.code, 0) << one.err;
  for (int ranks : {2, 3}) {
    const Outcome many = run_command(std::string(MOESIM_MPIEXEC) + " -n " + std::to_string(ranks) + " --oversubscribe " +
                                     MOESIM_BIN + args);
    ASSERT_EQ(many.code, 0) << many.err;
    EXPECT_EQ(many.out, one.out) << ranks << " ranks";
  }
}

TEST(CliSearch, BadInputExitsTwoWithOneLineAndWritesNothing) {
  const std::string plan = ::testing::TempDir() + "moesim_never." + std::to_string(::getpid()) + ".json";
  const BadRun cases[] = {
      {"--fix tpp=2", "moesim: --fix: field 'tpp': expected a plan field (dp, tp, pp"},
      {"--fix zero=9", "moesim: --fix: field 'zero': expected"},
      {"--gpus 16", "moesim: --gpus: expected at most the cluster's 8 GPUs, got 16"},
      {"--baseline dp=8,ep=3,gbs=32", "moesim: --plan 'dp=8,ep=3,gbs=32': field 'ep'"},
  };
  for (const BadRun& c : cases) {
    SCOPED_TRACE(c.args);
    const Outcome r = run(kSeed001Search + " --emit-plan " + plan + " " + c.args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(r.err.rfind(c.message, 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  const Outcome no_batch = run("search --model configs/models/openlm-41m-e8.json --cluster configs/clusters/dgx-a100.json");
  EXPECT_EQ(no_batch.code, 2);
  EXPECT_EQ(no_batch.err.rfind("moesim: --gbs: expected a global batch", 0), 0u) << no_batch.err;
  const Outcome too_big = run("search --model configs/models/fairseq-moe-142b.json --cluster configs/clusters/dgx1-v100.json "
                              "--gbs 8 --emit-plan " + plan);
  EXPECT_EQ(too_big.code, 2);
  EXPECT_EQ(too_big.err.rfind("moesim: configs/models/fairseq-moe-142b.json: expected a plan that fits: none of the ", 0), 0u)
      << too_big.err;
  std::ifstream never(plan);
  EXPECT_FALSE(never.good());
}

}  // namespace

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The JSON a page embeds for tools (and this test) under id="moesim-data".
nlohmann::json embedded_data(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"moesim-data\">";
  const std::size_t at = html.find(open);
  if (at == std::string::npos) return nullptr;
  const std::size_t from = at + open.size(), to = html.find("</script>", from);
  std::string text = html.substr(from, to - from);
  for (std::size_t p = text.find("<\\/"); p != std::string::npos; p = text.find("<\\/", p)) text.replace(p, 3, "</");
  return nlohmann::json::parse(text);
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') out.back() += '"', ++i;
    else if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) out.emplace_back();
    else out.back() += c;
  }
  return out;
}

// Seed 001's model and plan on the three DGX generations (event tier), and a search on
// the DGX A100: the inputs of a GPU-vs-GPU and a plan-vs-plan view.
std::vector<std::string> write_report_inputs(const std::string& dir) {
  std::vector<std::string> files;
  for (const char* cluster : {"dgx1-v100", "dgx-a100", "dgx-h100"}) {
    const std::string f = dir + "sim-" + cluster + ".json";
    const Outcome r = run("simulate --model configs/models/fairseq-moe-4.1b.json --cluster configs/clusters/" +
                          std::string(cluster) + ".json --plan configs/plans/fairseq-moe-4.1b-8gpu.json --tier event --json > " + f);
    EXPECT_EQ(r.code, 0) << r.err;
    files.push_back(f);
  }
  const std::string s = dir + "search.json";
  const Outcome r = run(kSeed001Search + " --json --top 5 > " + s);
  EXPECT_EQ(r.code, 0) << r.err;
  files.push_back(s);
  return files;
}

// The committed `moesim run --compare --json` documents of small-moe on 2 CPU ranks
// (reports/README.md has the commands): the inputs of a predicted-vs-measured view.
const char* const kRunInputs[] = {
    "reports/inputs/cpu-small-moe-dp2.json",         "reports/inputs/cpu-small-moe-dp2-ep2.json",
    "reports/inputs/cpu-small-moe-tp2.json",         "reports/inputs/cpu-small-moe-pp2.json",
    "reports/inputs/cpu-small-moe-pp2-gpipe.json",   "reports/inputs/cpu-small-moe-dp2-ep2-zero1.json",
    "reports/inputs/cpu-small-moe-dp2-ep2-recompute-full.json"};

// The cells of the Markdown table line that starts with `start` ("| run 1 | dp=2,... |"),
// split at '|'; empty when there is no such line.
std::vector<std::string> md_row(const std::string& md, const std::string& start) {
  std::vector<std::string> cells;
  const std::size_t at = md.find("\n" + start);
  if (at == std::string::npos) return cells;
  std::string cell;
  for (std::size_t i = at + 2; i < md.size() && md[i] != '\n'; ++i) {
    if (md[i] == '|' && md[i - 1] != '\\') cells.push_back(cell), cell.clear();
    else cell += md[i];
  }
  for (std::string& c : cells) {
    const std::size_t from = c.find_first_not_of(' ');
    c = from == std::string::npos ? "" : c.substr(from, c.find_last_not_of(' ') - from + 1);
  }
  return cells;
}

TEST(CliReport, MarkdownAndCsvCarryTheNumbersOfThePage) {
  const std::string dir = ::testing::TempDir() + "moesim_report_" + std::to_string(::getpid()) + "_";
  std::string args = "report --out " + dir + "r.html profiles/cpu.json";
  for (const std::string& f : write_report_inputs(dir)) args += " " + f;
  for (const char* f : kRunInputs) args += std::string(" ") + f;
  const Outcome r = run(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json data = embedded_data(slurp(dir + "r.html"));
  ASSERT_TRUE(data.is_object());
  ASSERT_EQ(data["views"].size(), 2u);
  EXPECT_EQ(data["views"][0]["kind"], "plans");
  EXPECT_EQ(data["views"][0]["rows"].size(), 6u);  // 5 ranked plans and the seed's baseline
  EXPECT_EQ(data["views"][1]["kind"], "gpus");
  EXPECT_EQ(data["views"][1]["rows"].size(), 3u);
  ASSERT_EQ(data["profiles"].size(), 1u);

  // The profile's points: its CSV carries them to the bit, measured and fitted.
  std::istringstream points(slurp(dir + "r.profiles.csv"));
  std::string point;
  std::getline(points, point);
  EXPECT_EQ(point, "profile,chart,series,x,measured,fitted");
  std::set<std::string> charts;
  for (const auto& q : data["profiles"][0]["points"]) {
    ASSERT_TRUE(std::getline(points, point));
    const std::vector<std::string> cells = split_csv_line(point);
    ASSERT_EQ(cells.size(), 6u);
    EXPECT_EQ(cells[1], q["chart"]);
    EXPECT_EQ(cells[2], q["series"]);
    EXPECT_EQ(std::stod(cells[3]), q["x"].get<double>());
    EXPECT_EQ(std::stod(cells[4]), q["measured"].get<double>());
    EXPECT_EQ(std::stod(cells[5]), q["fitted"].get<double>());
    EXPECT_GT(q["x"].get<double>(), 0);
    charts.insert(cells[1]);
  }
  EXPECT_FALSE(std::getline(points, point));
  EXPECT_EQ(charts, (std::set<std::string>{"collective", "gemm", "memory"}));

  // CSV: every row, in order, with the page's numbers to the bit.
  std::istringstream csv(slurp(dir + "r.csv"));
  std::string line;
  std::getline(csv, line);
  const std::vector<std::string> header = split_csv_line(line);
  std::size_t rows = 0;
  for (const auto& view : data["views"]) {
    for (const auto& row : view["rows"]) {
      ASSERT_TRUE(std::getline(csv, line));
      const std::vector<std::string> cells = split_csv_line(line);
      ASSERT_EQ(cells.size(), header.size());
      EXPECT_EQ(cells[1], row["label"]);
      for (const char* k : {"iteration_s", "wps", "mfu", "peak_memory_bytes", "gpu_memory_bytes"}) {
        const auto col = std::find(header.begin(), header.end(), k) - header.begin();
        EXPECT_EQ(std::stod(cells[static_cast<std::size_t>(col)]), row[k].get<double>()) << k;
      }
      for (const auto& [name, seconds] : row["breakdown_s"].items()) {
        const auto col = std::find(header.begin(), header.end(), name + " (s)") - header.begin();
        ASSERT_LT(static_cast<std::size_t>(col), header.size()) << name;
        EXPECT_EQ(std::stod(cells[static_cast<std::size_t>(col)]), seconds.get<double>()) << name;
      }
      ++rows;
    }
  }
  EXPECT_FALSE(std::getline(csv, line)) << "extra CSV line: " << line;
  EXPECT_EQ(rows, 9u);

  // Markdown: each row's line carries its numbers at the printed precision.
  const std::string md = slurp(dir + "r.md");
  for (const auto& view : data["views"]) {
    for (const auto& row : view["rows"]) {
      const std::size_t at = md.find("| " + row["key"].get<std::string>() + " | " + row["label"].get<std::string>() + " |");
      ASSERT_NE(at, std::string::npos) << row["label"];
      std::vector<std::string> cells;
      std::string cell;
      for (std::size_t i = at + 1; i < md.size() && md[i] != '\n'; ++i) {
        if (md[i] == '|') cells.push_back(cell), cell.clear();
        else cell += md[i];
      }
      ASSERT_EQ(cells.size(), 9u);
      EXPECT_NEAR(std::stod(cells[4]), row["iteration_s"].get<double>(), 5e-4 * row["iteration_s"].get<double>());
      EXPECT_NEAR(std::stod(cells[5]), row["wps"].get<double>(), 0.5);
      EXPECT_NEAR(std::stod(cells[6]), 100 * row["mfu"].get<double>(), 0.005);
      EXPECT_NEAR(std::stod(cells[7]), row["peak_memory_bytes"].get<double>() / (1 << 30), 0.005);
      EXPECT_NEAR(std::stod(cells[8]), row["gpu_memory_bytes"].get<double>() / (1 << 30), 0.005);
    }
  }

  // Predicted vs measured: the runs' CSVs to the bit, the Markdown at its precision.
  const auto& runs = data["runs"];
  ASSERT_EQ(runs["rows"].size(), std::size(kRunInputs));
  std::vector<double> errors;
  for (const auto& row : runs["rows"]) errors.push_back(std::abs(row["step_s"]["error"].get<double>()));
  std::sort(errors.begin(), errors.end());
  EXPECT_EQ(runs["median_abs_step_error"].get<double>(), errors[errors.size() / 2]);  // 7 runs: the middle one
  char median[64];
  std::snprintf(median, sizeof median, "run(s): %.1f%%", 100 * runs["median_abs_step_error"].get<double>());
  EXPECT_NE(md.find(median), std::string::npos) << median;
  const char* const figures[] = {"step_s", "wps", "tflops_per_gpu", "mfu", "peak_bytes"};
  std::istringstream runs_csv(slurp(dir + "r.runs.csv")), categories_csv(slurp(dir + "r.run-categories.csv")),
      timelines_csv(slurp(dir + "r.run-timelines.csv")), experts_csv(slurp(dir + "r.run-experts.csv"));
  std::getline(runs_csv, line);
  const std::vector<std::string> run_header = split_csv_line(line);
  EXPECT_EQ(run_header.size(), 8u + 3 * std::size(figures));
  std::getline(categories_csv, line);
  EXPECT_EQ(line, "label,category,predicted_s,measured_s,error");
  std::getline(timelines_csv, line);
  EXPECT_EQ(line, "label,side,name,category,start_ms,duration_ms");
  std::getline(experts_csv, line);
  EXPECT_EQ(line, "label,moe_layer,expert,tokens");
  auto near_pct = [](const std::string& cell, double fraction) { EXPECT_NEAR(std::stod(cell), 100 * fraction, 0.051) << cell; };
  for (const auto& row : runs["rows"]) {
    SCOPED_TRACE(row["label"].get<std::string>());
    const std::string key = row["key"], label = row["label"];
    ASSERT_TRUE(std::getline(runs_csv, line));
    std::vector<std::string> cells = split_csv_line(line);
    ASSERT_EQ(cells.size(), run_header.size());
    EXPECT_EQ(cells[0], label);
    EXPECT_EQ(cells[1], row["source"]);
    for (const char* f : figures)
      for (const char* side : {"predicted", "measured", "error"}) {
        const auto col = std::find(run_header.begin(), run_header.end(), std::string(f) + "_" + side) - run_header.begin();
        ASSERT_LT(static_cast<std::size_t>(col), run_header.size()) << f << side;
        EXPECT_EQ(std::stod(cells[static_cast<std::size_t>(col)]), row[f][side].get<double>()) << f << " " << side;
      }
    // | key | plan | step p | step m | step err | wps p | wps m | wps err | mfu p | mfu m | mfu err | peak p | peak m | peak err |
    cells = md_row(md, "| " + key + " | " + label + " | ");
    ASSERT_EQ(cells.size(), 14u);
    for (std::size_t i = 0; i < 2; ++i) {
      const double x = row["step_s"][i == 0 ? "predicted" : "measured"];
      EXPECT_NEAR(std::stod(cells[2 + i]), x, 5e-4 * x);
      EXPECT_NEAR(std::stod(cells[5 + i]), row["wps"][i == 0 ? "predicted" : "measured"].get<double>(), 0.5);
      EXPECT_NEAR(std::stod(cells[8 + i]), 100 * row["mfu"][i == 0 ? "predicted" : "measured"].get<double>(), 5e-4);
      EXPECT_NEAR(std::stod(cells[11 + i]), row["peak_bytes"][i == 0 ? "predicted" : "measured"].get<double>() / (1 << 20), 0.05);
    }
    near_pct(cells[4], row["step_s"]["error"]);
    near_pct(cells[7], row["wps"]["error"]);
    near_pct(cells[10], row["mfu"]["error"]);
    near_pct(cells[13], row["peak_bytes"]["error"]);

    ASSERT_GT(row["by_category"].size(), 0u);
    for (const auto& c : row["by_category"]) {
      ASSERT_TRUE(std::getline(categories_csv, line));
      cells = split_csv_line(line);
      ASSERT_EQ(cells.size(), 5u);
      EXPECT_EQ(cells[0], label);
      EXPECT_EQ(cells[1], c["category"]);
      EXPECT_EQ(std::stod(cells[2]), c["predicted_s"].get<double>());
      EXPECT_EQ(std::stod(cells[3]), c["measured_s"].get<double>());
      if (c["error"].is_null()) EXPECT_EQ(cells[4], "");
      else EXPECT_EQ(std::stod(cells[4]), c["error"].get<double>());
      const std::vector<std::string> md_cells = md_row(md, "| " + key + " | " + label + " | " + c["category"].get<std::string>() + " | ");
      ASSERT_EQ(md_cells.size(), 6u) << c["category"];
      EXPECT_NEAR(std::stod(md_cells[3]), c["predicted_s"].get<double>(), 5e-4 * c["predicted_s"].get<double>());
      EXPECT_NEAR(std::stod(md_cells[4]), c["measured_s"].get<double>(), 5e-4 * c["measured_s"].get<double>());
      if (c["error"].is_null()) EXPECT_EQ(md_cells[5], "n/a");
      else near_pct(md_cells[5], c["error"]);
    }
    for (const char* side : {"predicted", "measured"}) {
      ASSERT_GT(row["timeline"][side].size(), 0u) << side;
      for (const auto& op : row["timeline"][side]) {
        ASSERT_TRUE(std::getline(timelines_csv, line));
        cells = split_csv_line(line);
        ASSERT_EQ(cells.size(), 6u);
        EXPECT_EQ(cells[0], label);
        EXPECT_EQ(cells[1], side);
        EXPECT_EQ(cells[2], op["name"]);
        EXPECT_EQ(cells[3], op["category"]);
        EXPECT_EQ(std::stod(cells[4]), op["start_ms"].get<double>());
        EXPECT_EQ(std::stod(cells[5]), op["duration_ms"].get<double>());
      }
    }
    // small-moe: 2 MoE layers of 8 experts; every token of every update has one first choice.
    const auto& layers = row["expert1_per_layer"];
    ASSERT_EQ(layers.size(), 2u);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      ASSERT_EQ(layers[l].size(), 8u);
      double total = 0;
      std::string list;
      for (std::size_t e = 0; e < layers[l].size(); ++e) {
        ASSERT_TRUE(std::getline(experts_csv, line));
        cells = split_csv_line(line);
        ASSERT_EQ(cells.size(), 4u);
        EXPECT_EQ(cells[0], label);
        EXPECT_EQ(cells[1], std::to_string(l));
        EXPECT_EQ(cells[2], std::to_string(e));
        EXPECT_EQ(std::stod(cells[3]), layers[l][e].get<double>());
        total += layers[l][e].get<double>();
        list += (e ? " " : "") + std::to_string(layers[l][e].get<long long>());
      }
      EXPECT_EQ(total, 8.0 * 16 * 128);  // 8 updates of 16 sequences of 128 tokens
      cells = md_row(md, "| " + key + " | " + label + " | " + std::to_string(l) + " | ");
      ASSERT_EQ(cells.size(), 6u);
      EXPECT_EQ(std::stod(cells[3]), total);
      EXPECT_EQ(cells[5], list);
    }
  }
  for (std::istringstream* rest : {&runs_csv, &categories_csv, &timelines_csv, &experts_csv})
    EXPECT_FALSE(std::getline(*rest, line)) << "extra CSV line: " << line;
}

TEST(CliReport, BadInputExitsTwoAndWritesNothing) {
  const std::string dir = ::testing::TempDir() + "moesim_badreport_" + std::to_string(::getpid()) + "_";
  {
    std::ofstream(dir + "broken.json") << "{\"mode\": ";
    std::ofstream(dir + "other.json") << "{\"layers\": 4}";
    std::ofstream(dir + "nan.json") << "{\"mode\": \"event\", \"iteration_s\": \"fast\", \"plan\": {}}";
  }
  const BadRun cases[] = {
      {"configs/models/none.json", "moesim: configs/models/none.json: cannot open the file"},
      {"broken.json", "broken.json"},
      {"other.json", "other.json: expected the output of `moesim search --json`, `moesim simulate --json` or "
                     "`moesim run --compare --json`, or a profile"},
      {"nan.json", "nan.json: field 'iteration_s': expected a number"},
  };
  for (const BadRun& c : cases) {
    SCOPED_TRACE(c.args);
    const std::string input = std::string(c.args).rfind("configs/", 0) == 0 ? c.args : dir + c.args;
    const Outcome r = run("report --out " + dir + "r.html " + input);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  const Outcome wrong = run("report --out " + dir + "r.pdf " + dir + "other.json");
  EXPECT_EQ(wrong.code, 2);
  EXPECT_EQ(wrong.err.rfind("moesim: --out: expected a path ending in .html", 0), 0u) << wrong.err;
  for (const char* ext : {".html", ".md", ".csv"}) EXPECT_FALSE(std::ifstream(dir + "r" + ext).good()) << ext;
}

// A `run --json` document that is not a comparison, or whose comparison lacks a field or
// has one of the wrong type: exit 2, one line naming the file and the field, nothing written.
TEST(CliReport, MalformedRunInputExitsTwoAndWritesNothing) {
  const std::string dir = ::testing::TempDir() + "moesim_badrun_" + std::to_string(::getpid()) + "_";
  const nlohmann::json good = nlohmann::json::parse(slurp(kRunInputs[1]));
  ASSERT_TRUE(good.contains("compare"));
  struct Case {
    const char* name;
    void (*spoil)(nlohmann::json&);
    const char* message;
  };
  const Case cases[] = {
      {"no-compare.json", [](nlohmann::json& j) { j.erase("compare"); },
       "field 'compare': expected an object (the output of `moesim run --compare --json`)"},
      {"step-text.json", [](nlohmann::json& j) { j["compare"]["step_s"]["measured"] = "2 s"; },
       "field 'compare.step_s.measured': expected a number"},
      {"no-timeline.json", [](nlohmann::json& j) { j["compare"].erase("timeline"); },
       "field 'compare.timeline': expected an object"},
      {"op-start.json", [](nlohmann::json& j) { j["compare"]["timeline"]["measured"][1].erase("start_ms"); },
       "field 'compare.timeline.measured[1].start_ms': expected a number"},
      {"category-error.json", [](nlohmann::json& j) { j["compare"]["by_category"]["forward"]["error"] = "big"; },
       "field 'compare.by_category.forward.error': expected a number or null"},
      {"routing-layer.json", [](nlohmann::json& j) { j["routing"]["expert1_per_layer"][1] = 7; },
       "field 'routing.expert1_per_layer[1]': expected an array of tokens per expert"},
      {"ranks.json", [](nlohmann::json& j) { j["ranks"] = nullptr; }, "field 'ranks': expected a number"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    nlohmann::json doc = good;
    c.spoil(doc);
    const std::string input = dir + c.name;
    std::ofstream(input) << doc.dump(1);
    // The spoiled run beside a good one: nothing of either is written.
    const Outcome r = run("report --out " + dir + "r.html " + kRunInputs[0] + " " + input);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(r.err, "moesim: " + input + ": " + c.message + "\n");
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  for (const char* ext : {".html", ".md", ".csv", ".runs.csv", ".run-categories.csv", ".run-timelines.csv", ".run-experts.csv"})
    EXPECT_FALSE(std::ifstream(dir + "r" + ext).good()) << ext;
}

// Acceptance: each committed example (and a page made now) opens in headless Chromium
// with no console errors and every chart drawn; the screenshots are kept beside the test.
TEST(CliReport, PagesRenderEveryChartInHeadlessChromium) {
  if (std::system("command -v chromium > /dev/null 2>&1") != 0) GTEST_SKIP() << "chromium is not installed (scripts/setup installs it)";
  const std::string dir = ::testing::TempDir() + "moesim_chromium_" + std::to_string(::getpid()) + "_";
  std::string args = "report --out " + dir + "fresh.html profiles/cpu.json profiles/a100-sxm4-40gb.json";
  for (const std::string& f : write_report_inputs(dir)) args += " " + f;
  for (const char* f : kRunInputs) args += std::string(" ") + f;
  ASSERT_EQ(run(args).code, 0);
  const std::pair<std::string, std::string> pages[] = {
      {dir + "fresh.html", "fresh"},
      {"reports/seed001-gpus.html", "seed001-gpus"},
      {"reports/seed001-a100-search.html", "seed001-a100-search"},
      {"reports/cpu-predicted-vs-measured.html", "cpu-predicted-vs-measured"}};
  for (const auto& [page, name] : pages) {
    SCOPED_TRACE(page);
    const std::string html = slurp(page);
    ASSERT_FALSE(html.empty());
    std::size_t charts = 0;
    for (std::size_t at = html.find("class=\"chart\""); at != std::string::npos; at = html.find("class=\"chart\"", at + 1)) ++charts;
    ASSERT_GT(charts, 0u);
    const std::string chrome = "chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=20000 ";
    const Outcome dom = run_command(chrome + "--dump-dom " + page);
    ASSERT_EQ(dom.code, 0) << dom.err;
    EXPECT_NE(dom.out.find("data-charts-done=\"" + std::to_string(charts) + "\""), std::string::npos) << "not every chart finished";
    EXPECT_EQ(dom.out.find("class=\"console-error\""), std::string::npos) << dom.out.substr(dom.out.find("console-error"), 300);
    for (std::size_t i = 0; i < charts; ++i) {
      const std::size_t at = dom.out.find("id=\"chart-" + std::to_string(i) + "\"");
      ASSERT_NE(at, std::string::npos) << i;
      const std::size_t next = dom.out.find("class=\"chart\"", at + 1);
      const std::string body = dom.out.substr(at, next == std::string::npos ? std::string::npos : next - at);
      EXPECT_TRUE(body.find("<svg") != std::string::npos || body.find("<canvas") != std::string::npos) << "chart " << i;
      EXPECT_NE(body.find("<path"), std::string::npos) << "chart " << i << " drew nothing";
    }
    const std::string png = std::string(MOESIM_SCREENSHOT_DIR) + "/" + name + ".png";
    const Outcome shot = run_command(chrome + "--window-size=1280,3600 --screenshot=" + png + " " + page);
    EXPECT_EQ(shot.code, 0) << shot.err;
    EXPECT_TRUE(std::ifstream(png).good()) << png;
    std::printf("screenshot: %s\n", png.c_str());
  }
}

}  // namespace

namespace {

TEST(CliSimulate, EvoMoeCostFollowsTheDenseToSparseSchedule) {
  const std::string base = "simulate --model configs/models/evomoe-gptxl-16e.json --cluster configs/clusters/dgx-a100.json "
                           "--plan configs/plans/evomoe-8gpu.json --json";
  auto at = [&](const std::string& step) {
    const Outcome r = run(base + step);
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const auto dense = at(" --step 0"), mid = at(" --step 24000"), sparse = at(" --step 25000"), plain = at("");
  EXPECT_EQ(dense["gate_at_step"]["phase"], "dense");
  EXPECT_EQ(dense["gate_at_step"]["top_k"], 16);
  EXPECT_EQ(mid["gate_at_step"]["phase"], "annealing");
  EXPECT_EQ(sparse["gate_at_step"]["phase"], "sparse");
  EXPECT_FALSE(plain.contains("gate_at_step"));
  EXPECT_GT(dense["iteration_s"].get<double>(), mid["iteration_s"].get<double>());
  EXPECT_GT(mid["iteration_s"].get<double>(), sparse["iteration_s"].get<double>());
  EXPECT_EQ(sparse["iteration_s"], plain["iteration_s"]);  // the final gate is the configured one
  EXPECT_GT(dense["memory"]["dispatch_buffers"].get<double>(), sparse["memory"]["dispatch_buffers"].get<double>());
}

// docs/modern-models.md: each row runs, fits 80 GiB and reports a plausible MFU. An FP8 row
// is faster than its bf16 twin.
TEST(CliSimulate, TodaysModelsFitTheirPlansOnDgxH100) {
  struct Row {
    const char *model, *cluster, *plan;
  };
  const std::string bf16 = "precision=bf16,grad_dtype=fp32,attention=flash,";
  const Row rows[] = {
      {"olmoe-1b-7b-0924", "dgx-h100", "dp=8,ep=8,mbs=4,gbs=256,dist_opt=true"},
      {"qwen3-30b-a3b", "dgx-h100-8node", "dp=64,ep=8,mbs=1,gbs=512,dist_opt=true"},
      {"qwen3-30b-a3b", "dgx-h100-8node", "dp=64,ep=64,mbs=1,gbs=512,dist_opt=true"},
      {"mixtral-8x7b-v0.1", "dgx-h100-8node", "dp=8,tp=2,pp=4,ep=8,mbs=1,gbs=256,dist_opt=true,sp=true"},
      {"gpt-oss-120b", "dgx-h100-8node", "dp=16,pp=4,ep=16,mbs=1,gbs=256,dist_opt=true"},
      {"mixtral-8x22b-v0.1", "dgx-h100-32node", "dp=8,tp=4,pp=8,ep=8,mbs=1,gbs=256,dist_opt=true,sp=true"},
      {"qwen3-235b-a22b", "dgx-h100-32node", "dp=32,tp=4,pp=2,ep=32,mbs=1,gbs=512,dist_opt=true,sp=true,recompute=full"},
      {"deepseek-v3", "dgx-h100-128node", "dp=1024,ep=64,mbs=1,gbs=2048,zero=3,recompute=full"},
  };
  auto simulate = [&](const Row& row, const std::string& extra) {
    const Outcome r = run(std::string("simulate --model configs/models/") + row.model + ".json --cluster configs/clusters/" +
                          row.cluster + ".json --plan " + bf16 + row.plan + extra + " --routing balanced --tier event --json");
    EXPECT_EQ(r.code, 0) << row.model << ": " << r.err;
    return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.model);
    const nlohmann::json d = simulate(row, "");
    EXPECT_TRUE(d.value("fits", false));
    EXPECT_GT(d.value("mfu", 0.0), 0.05);
    EXPECT_LT(d.value("mfu", 1.0), 0.8);
  }
  const nlohmann::json plain = simulate(rows[3], ""), fp8 = simulate(rows[3], ",fp8=hybrid");
  EXPECT_LT(fp8.value("iteration_s", 1e9), plain.value("iteration_s", 0.0));
  // MoE parallel folding: Mixtral-8x22B's experts unsplit (etp 1) put each ep group of 8
  // inside a node instead of across four; the all-to-all shrinks, the experts' gradient
  // reduction (now over 4 replicas of whole experts) grows.
  const nlohmann::json split = simulate(rows[5], ""), folded = simulate(rows[5], ",etp=1");
  EXPECT_TRUE(folded.value("fits", false));
  EXPECT_LT(folded["breakdown"]["exposed_comm_s"].value("ep_all_to_all", 1e9),
            split["breakdown"]["exposed_comm_s"].value("ep_all_to_all", 0.0) / 2);
  EXPECT_GT(folded["breakdown"]["exposed_comm_s"].value("dp_all_reduce", 0.0),
            split["breakdown"]["exposed_comm_s"].value("dp_all_reduce", 1e9));
  // Context parallelism: same GPUs and batch, half the activations per rank and a ring
  // exchange in the breakdown.
  const Row cp1{"qwen3-30b-a3b", "dgx-h100-8node", "dp=64,ep=8,mbs=1,gbs=512,dist_opt=true"};
  const Row cp2{"qwen3-30b-a3b", "dgx-h100-8node", "dp=32,cp=2,ep=8,mbs=1,gbs=512,dist_opt=true"};
  const nlohmann::json one = simulate(cp1, ""), two = simulate(cp2, "");
  EXPECT_TRUE(two["breakdown"]["exposed_comm_s"].contains("cp_ring_exchange"));
  EXPECT_LT(two["memory"].value("peak_per_rank_bytes", 1e30), one["memory"].value("peak_per_rank_bytes", 0.0));
}

TEST(CliSimulate, ContextAndExpertTensorParallelPlansThatDoNotDivideExitTwo) {
  const std::string model = "simulate --model configs/models/qwen3-30b-a3b.json ";
  const BadRun cases[] = {
      {"--cluster configs/clusters/dgx-h100-8node.json --plan dp=8,cp=3,attention=flash", "moesim: dp=8,cp=3,attention=flash: field 'cp': expected 2*cp to divide the model's seq_len (4096), got cp 3"},
      {"--cluster configs/clusters/dgx-h100-8node.json --plan dp=8,tp=2,ep=8,etp=3", "moesim: --plan 'dp=8,tp=2,ep=8,etp=3': field 'etp': expected etp*ep (24) to divide the tp*cp*dp GPUs of a pipeline stage (16)"},
      {"--plan dp=8,precision=bf16,fp8=hybrid --cluster configs/clusters/dgx-a100.json", "field 'fp8': expected a GPU with FP8 tensor cores"},
  };
  for (const BadRun& c : cases) {
    SCOPED_TRACE(c.args);
    const Outcome r = run(model + c.args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

}  // namespace

namespace {

TEST(CliReport, RoutingViewCarriesTokensPerExpert) {
  const std::string dir = ::testing::TempDir() + "moesim_balance_" + std::to_string(::getpid()) + "_";
  std::string args = "report --out " + dir + "b.html";
  for (const char* routing : {"uniform", "zipf:1", "zipf:2"}) {
    const std::string f = dir + routing + ".json";
    const Outcome r = run("simulate --model configs/models/fairseq-moe-4.1b.json --cluster configs/clusters/dgx-a100.json "
                          "--plan configs/plans/fairseq-moe-4.1b-8gpu.json --json --routing " + std::string(routing) + " > " + f);
    ASSERT_EQ(r.code, 0) << r.err;
    args += " " + f;
  }
  ASSERT_EQ(run(args).code, 0);
  const nlohmann::json data = embedded_data(slurp(dir + "b.html"));
  ASSERT_EQ(data["views"].size(), 1u);
  const auto& view = data["views"][0];
  EXPECT_EQ(view["kind"], "routings");
  std::istringstream csv(slurp(dir + "b.balance.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "view,label,routing,expert,demand,kept");
  double previous_drop = -1;
  for (const auto& row : view["rows"]) {
    const auto& kept = row["kept_per_expert"];
    ASSERT_EQ(kept.size(), 8u);
    for (std::size_t e = 0; e < kept.size(); ++e) {
      ASSERT_TRUE(std::getline(csv, line));
      const std::vector<std::string> cells = split_csv_line(line);
      ASSERT_EQ(cells.size(), 6u);
      EXPECT_EQ(cells[1], row["label"]);
      EXPECT_EQ(cells[3], std::to_string(e));
      EXPECT_EQ(std::stod(cells[4]), row["demand_per_expert"][e].get<double>());
      EXPECT_EQ(std::stod(cells[5]), kept[e].get<double>());
    }
    // More skew, more dropped over capacity.
    EXPECT_GT(row["dropped_fraction"].get<double>(), previous_drop);
    previous_drop = row["dropped_fraction"].get<double>();
    const std::string md = slurp(dir + "b.md");
    char cell[32];
    std::snprintf(cell, sizeof cell, "%.2f", 100 * row["dropped_fraction"].get<double>());
    EXPECT_NE(md.find("| " + row["key"].get<std::string>() + " | " + row["routing"].get<std::string>() + " | 8 | " + cell + " |"),
              std::string::npos) << row["key"];
  }
  EXPECT_FALSE(std::getline(csv, line));
}

}  // namespace

namespace {

// `moesim run --save-dir`: a resumed run continues the saved one's losses, and resuming
// under another plan is bad input naming the manifest and the field.
TEST(CliRun, ResumeMismatchNamesTheField) {
  const std::string dir = ::testing::TempDir() + "moesim_run_checkpoints." + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  const std::string train = "run --model configs/models/tiny-moe.json --data structured --json ";
  const Outcome whole = run(train + "--plan mbs=2,gbs=8 --steps 4 --seed 3");
  ASSERT_EQ(whole.code, 0) << whole.err;
  const Outcome first = run(train + "--plan mbs=2,gbs=8 --steps 2 --seed 3 --save-dir " + dir);
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_TRUE(std::filesystem::exists(dir + "/update-2/manifest.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/update-2/rank-0.bin"));
  const Outcome rest = run(train + "--plan mbs=2,gbs=8 --steps 4 --seed 3 --resume --save-dir " + dir);
  ASSERT_EQ(rest.code, 0) << rest.err;
  const auto w = nlohmann::json::parse(whole.out);
  const auto r = nlohmann::json::parse(rest.out);
  EXPECT_EQ(r["resumed_from"], 2);
  ASSERT_EQ(r["steps"].size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(r["steps"][i]["num_updates"], i + 3);
    EXPECT_EQ(w["steps"][i + 2]["num_updates"], i + 3);
    EXPECT_EQ(r["steps"][i]["loss"].get<double>(), w["steps"][i + 2]["loss"].get<double>()) << "update " << i + 3;
  }

  const std::string manifest = "moesim: " + dir + "/update-4/manifest.json: ";
  const std::pair<std::string, std::string> cases[] = {
      {"--plan mbs=1,gbs=8 --steps 6 --seed 3 --resume", manifest + "field 'plan': the checkpoint was saved with "},
      {"--plan mbs=2,gbs=8 --steps 6 --resume --seed 4", manifest + "field 'seed': the checkpoint was saved with 3, this run has 4"},
      {"--plan mbs=2,gbs=8 --steps 4 --seed 3 --resume", "moesim: --steps: expected more than the 4 updates of " + dir + "/update-4, got 4"},
  };
  for (const auto& [args, message] : cases) {
    SCOPED_TRACE(args);
    const Outcome bad = run(train + args + " --save-dir " + dir);
    EXPECT_EQ(bad.code, 2) << bad.err;
    EXPECT_EQ(bad.err.rfind(message, 0), 0u) << bad.err;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
    EXPECT_TRUE(bad.out.empty()) << bad.out;
  }
  const Outcome no_dir = run(train + "--plan mbs=2,gbs=8 --steps 4 --resume");
  EXPECT_EQ(no_dir.code, 2);
  EXPECT_EQ(no_dir.err.rfind("moesim: --resume: expected --save-dir DIR beside it", 0), 0u) << no_dir.err;
  std::filesystem::remove_all(dir);
}

// Process ids whose parent is `parent`, from /proc/<pid>/stat ("pid (comm) state ppid ...").
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const std::size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    long ppid = 0;
    if (rest >> state >> ppid && ppid == parent) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// Whether a process still runs (exists and is not a zombie waiting to be reaped).
bool running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const std::size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// The MPI rank Open MPI gave a process (OMPI_COMM_WORLD_RANK in its environment), or -1.
int mpi_rank_of(pid_t pid) {
  std::ifstream env("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::string var;
  while (std::getline(env, var, '\0'))
    if (var.rfind("OMPI_COMM_WORLD_RANK=", 0) == 0) return std::stoi(var.substr(21));
  return -1;
}

// A rank killed mid-run (kill -9: no error path of its own runs) stops the job: mpirun
// exits non-zero within 30 s and names the lost rank. The guarantee is Open MPI's, not
// moesim's: mpirun's default error manager (errmgr) aborts the whole job when one of its
// processes dies without MPI_Finalize, killing the ranks still waiting in a collective for
// it, and prints "mpirun noticed that process rank R ... exited on signal 9 (Killed)".
// This test checks that it holds with the mpirun the build found.
TEST(ExecutorFaults, KilledRankStopsTheOthers) {
  using namespace std::chrono_literals;
  const std::string log = ::testing::TempDir() + "moesim_killed_rank." + std::to_string(::getpid()) + ".txt";
  const pid_t mpirun = ::fork();
  ASSERT_GE(mpirun, 0);
  if (mpirun == 0) {
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) ::_exit(127);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(MOESIM_MPIEXEC, MOESIM_MPIEXEC, "-n", "2", "--oversubscribe", MOESIM_BIN, "run", "--model",
            "configs/models/tiny-moe.json", "--plan", "dp=2,ep=2,mbs=2,gbs=8", "--steps", "100000", "--data",
            "structured", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Whatever happens below, nothing of the job outlives the test.
  struct Reaper {
    pid_t pid;
    bool reaped = false;
    ~Reaper() {
      if (reaped) return;
      for (pid_t child : children_of(pid)) ::kill(child, SIGKILL);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reaper{mpirun};

  // Running: rank 0 has logged an update.
  const auto started = std::chrono::steady_clock::now();
  while (slurp(log).find("num_updates") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now() - started, 120s) << "no log line in 120 s:\n" << slurp(log);
    int status = 0;
    ASSERT_EQ(::waitpid(mpirun, &status, WNOHANG), 0) << "mpirun ended early:\n" << slurp(log);
    std::this_thread::sleep_for(100ms);
  }
  pid_t victim = -1;
  std::vector<pid_t> ranks = children_of(mpirun);
  for (pid_t child : ranks)
    if (mpi_rank_of(child) == 1) victim = child;
  ASSERT_NE(victim, -1) << "rank 1 is not among mpirun's " << ranks.size() << " children";
  ASSERT_EQ(::kill(victim, SIGKILL), 0);

  const auto killed = std::chrono::steady_clock::now();
  int status = 0;
  while (::waitpid(mpirun, &status, WNOHANG) == 0) {
    ASSERT_LT(std::chrono::steady_clock::now() - killed, 30s) << "mpirun still runs 30 s after rank 1 was killed";
    std::this_thread::sleep_for(100ms);
  }
  reaper.reaped = true;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  const std::string out = slurp(log);
  std::remove(log.c_str());
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("process rank 1"), std::string::npos) << out;
  EXPECT_NE(out.find("signal 9"), std::string::npos) << out;
  const auto ended = std::chrono::steady_clock::now();
  for (pid_t child : ranks) {
    while (running(child) && std::chrono::steady_clock::now() - ended < 5s) std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(running(child)) << "rank process " << child << " runs 5 s after mpirun ended";
  }
  std::cout << "mpirun exited " << seconds << " s after rank 1 was killed\n";
}

}  // namespace
