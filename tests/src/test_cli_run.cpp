// `moesim run` as a user runs it: training on a token file, the measured Chrome trace under
// the simulator's names, --compare's figures, and the plans and models it refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/src/cli_test_util.hpp"

namespace moesim {
namespace {

using testing::Outcome;

const std::string kTiny = "configs/models/tiny-moe.json";

Outcome moesim(const std::string& args) { return testing::run_command(std::string(MOESIM_BIN) + " " + args); }

Outcome mpirun(int ranks, const std::string& args) {
  return testing::run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + std::string(MOESIM_MPIEXEC) +
                              " -n " + std::to_string(ranks) + " --oversubscribe " + MOESIM_BIN + " " + args);
}

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("moesim_cli_run_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

std::vector<double> losses(const nlohmann::json& run) {
  std::vector<double> out;
  for (const auto& s : run.at("steps")) out.push_back(s.at("loss").get<double>());
  return out;
}

// A uint16 token file trains (the loss falls over 20 updates on a corpus repeating one
// 17-token pattern) and differs from the synthetic data's run.
TEST(CliRun, TrainsOnATokenFile) {
  const std::string file = temp_path("tokens.u16");
  {
    std::ofstream out(file, std::ios::binary);
    for (int i = 0; i < 4096; ++i) {
      const std::uint16_t id = static_cast<std::uint16_t>((i % 17) * 3);
      out.write(reinterpret_cast<const char*>(&id), sizeof id);
    }
  }
  const std::string common = "run --model " + kTiny + " --plan dp=1,mbs=4,gbs=8 --steps 20 --lr 1e-2 --json";
  const Outcome r = moesim(common + " --data " + file);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<double> l = losses(nlohmann::json::parse(r.out));
  ASSERT_EQ(l.size(), 20u);
  EXPECT_LT(l.back(), l.front() - 1.0) << "bits per token";
  const Outcome synthetic = moesim(common + " --data synthetic");
  ASSERT_EQ(synthetic.code, 0) << synthetic.err;
  EXPECT_NE(losses(nlohmann::json::parse(synthetic.out)).front(), l.front());
}

// The names of the ops (complete events) of each of two ranks in a Chrome trace.
std::array<std::set<std::string>, 2> op_names_of_two_ranks(const std::string& trace) {
  std::ifstream in(trace);
  const nlohmann::json j = nlohmann::json::parse(in);
  std::array<std::set<std::string>, 2> names;
  for (const auto& e : j.at("traceEvents"))
    if (e.at("ph") == "X") names.at(static_cast<std::size_t>(e.at("pid").get<int>() - 1)).insert(e.at("name").get<std::string>());
  return names;
}

// --trace names every micro-batch's forward and backward, the reduction and the step as
// simulate --tier event --trace does, on every rank.
TEST(CliRun, TraceCarriesTheSimulatorsNames) {
  const std::string trace = temp_path("run-trace.json");
  const Outcome r = mpirun(2, "run --model " + kTiny + " --plan pp=2,mbs=2,gbs=8 --steps 2 --data structured --trace " +
                                  trace + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::array<std::set<std::string>, 2> names = op_names_of_two_ranks(trace);
  for (int stage = 0; stage < 2; ++stage) {
    const std::string s = std::to_string(stage);
    for (int mb = 0; mb < 4; ++mb) {
      EXPECT_TRUE(names[stage].count("F" + s + "." + std::to_string(mb))) << "stage " << s;
      EXPECT_TRUE(names[stage].count("B" + s + "." + std::to_string(mb))) << "stage " << s;
    }
    EXPECT_TRUE(names[stage].count("grad_reduce " + s));
    EXPECT_TRUE(names[stage].count("optimizer " + s));
  }
}

// Interleaved: each chunk's ops carry its virtual stage (chunk * pp + stage), as the
// simulator names them.
TEST(CliRun, InterleavedTraceNamesTheVirtualStages) {
  const std::string trace = temp_path("run-trace-interleaved.json");
  const Outcome r = mpirun(2, "run --model " + kTiny + " --plan pp=2,vpp=2,schedule=interleaved,mbs=1,gbs=4 --steps 2 "
                              "--data structured --trace " + trace + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::array<std::set<std::string>, 2> names = op_names_of_two_ranks(trace);
  for (int stage = 0; stage < 2; ++stage)
    for (int vs : {stage, stage + 2})
      for (int mb = 0; mb < 4; ++mb) {
        const std::string tag = std::to_string(vs) + "." + std::to_string(mb);
        EXPECT_TRUE(names[stage].count("F" + tag)) << "stage " << stage << " F" << tag;
        EXPECT_TRUE(names[stage].count("B" + tag)) << "stage " << stage << " B" << tag;
      }
}

// --compare: the prediction's figures beside the measurement's, and both timelines of rank 0.
TEST(CliRun, CompareReportsPredictedAndMeasured) {
  const Outcome r = mpirun(2, "run --model " + kTiny + " --plan dp=2,ep=2,mbs=4,gbs=16 --steps 4 --data structured "
                              "--compare --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const nlohmann::json& c = j.at("compare");
  for (const char* k : {"step_s", "wps", "tflops_per_gpu", "mfu", "peak_bytes"}) {
    const double p = c.at(k).at("predicted").get<double>(), m = c.at(k).at("measured").get<double>();
    EXPECT_GT(p, 0) << k;
    EXPECT_GT(m, 0) << k;
    EXPECT_NEAR(c.at(k).at("error").get<double>(), (p - m) / m, 1e-12) << k;
  }
  EXPECT_EQ(c.at("step_s").at("measured").get<double>(), j.at("median_step_s").get<double>());
  EXPECT_FALSE(c.at("timeline").at("predicted").empty());
  EXPECT_FALSE(c.at("timeline").at("measured").empty());
  EXPECT_TRUE(c.at("by_category").contains("forward"));
  EXPECT_TRUE(c.at("by_category").contains("backward"));
  EXPECT_EQ(j.at("routing").at("expert1_per_layer").size(), 2u);  // tiny-moe's two MoE layers
}

// precision=fp16 logs fairseq's loss_scale: a forced overflow (--fp16-init-scale 2^30)
// skips the first iterations with a note each on stderr, the scale halving every time,
// and the first logged update carries the scale it fell to; fp32 logs null.
TEST(CliRun, Fp16LogsTheFallingLossScale) {
  const Outcome r = mpirun(2, "run --model " + kTiny + " --plan dp=2,mbs=2,gbs=8,precision=fp16 --steps 3 "
                              "--fp16-init-scale 1073741824");
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<double> notes;
  const std::string marker = "setting loss scale to: ";
  for (std::size_t at = r.err.find(marker); at != std::string::npos; at = r.err.find(marker, at + 1))
    notes.push_back(std::stod(r.err.substr(at + marker.size())));
  ASSERT_FALSE(notes.empty()) << r.err;
  EXPECT_EQ(notes.front(), 0x1p29);
  for (std::size_t i = 1; i < notes.size(); ++i) EXPECT_EQ(notes[i], notes[i - 1] / 2);
  std::istringstream lines(r.out);
  std::string line;
  std::vector<nlohmann::json> logged;
  while (std::getline(lines, line)) logged.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(logged.size(), 3u) << r.out;
  EXPECT_EQ(logged.front().at("num_updates").get<int>(), 1);
  EXPECT_EQ(logged.front().at("loss_scale").get<double>(), notes.back());
  EXPECT_LT(logged.back().at("loss_scale").get<double>(), 0x1p30);

  const Outcome fp32 = moesim("run --model " + kTiny + " --plan dp=1,mbs=2,gbs=8 --steps 1");
  ASSERT_EQ(fp32.code, 0) << fp32.err;
  EXPECT_TRUE(nlohmann::json::parse(fp32.out).at("loss_scale").is_null());
}

// EvoMoE's dense-to-sparse gate trains on cpu: the log names its phase and temperature,
// and the experts per token fall from every expert (4) to top-1 over 5 updates.
TEST(CliRun, DenseToSparseLogsItsSchedule) {
  const Outcome r = moesim("run --model configs/models/tiny-evomoe.json --plan dp=1,mbs=2,gbs=4 --steps 5");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<nlohmann::json> logged;
  while (std::getline(lines, line)) logged.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(logged.size(), 5u) << r.out;
  EXPECT_EQ(logged[0].at("dts_phase"), "dense");
  EXPECT_EQ(logged[0].at("dts_temperature").get<double>(), 2.0);
  EXPECT_EQ(logged[0].at("dts_active_experts").get<double>(), 4.0);
  EXPECT_EQ(logged[3].at("dts_phase"), "annealing");
  EXPECT_EQ(logged[3].at("dts_temperature").get<double>(), 1.25);
  EXPECT_EQ(logged[4].at("dts_phase"), "sparse");
  EXPECT_EQ(logged[4].at("dts_active_experts").get<double>(), 1.0);
  EXPECT_TRUE(logged[4].contains("overflow_expert1"));

  const Outcome plain = moesim("run --model " + kTiny + " --plan dp=1,mbs=2,gbs=4 --steps 1");
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_FALSE(nlohmann::json::parse(plain.out).contains("dts_phase"));
}

// What the executor cannot train exits 2 with one line naming the field.
TEST(CliRun, RefusesWhatItCannotTrainNamingTheField) {
  struct Case {
    std::string args, field;
  };
  const std::vector<Case> cases = {
      {"--model " + kTiny + " --plan tp=3,mbs=1,gbs=3", "'tp'"},
      {"--model " + kTiny + " --plan dp=1,mbs=1,gbs=1,optimizer_dtype=bf16", "'optimizer_dtype'"},
      {"--model " + kTiny + " --plan dp=1,mbs=1,gbs=1,precision=fp16,master_weights=false", "'master_weights'"},
      {"--model " + kTiny + " --plan pp=2,mbs=1,gbs=2,first_stage_layers=4", "'first_stage_layers'"},  // none left
      {"--model " + kTiny + " --plan tp=2,mbs=1,gbs=1,sp=true", "'sp'"},
      {"--model " + kTiny + " --plan dp=1,mbs=1,gbs=1,precision=bf16,fp8=hybrid", "'fp8'"},
      {"--model " + kTiny + " --plan cp=2,attention=flash,mbs=1,gbs=1", "'cp'"},
      {"--model " + kTiny + " --plan tp=2,ep=2,etp=1,mbs=1,gbs=1", "'etp'"},
      {"--model configs/models/fairseq-moe-4.1b.json --plan dp=1,mbs=1,gbs=1", "'positions'"},
      {"--model " + kTiny + " --plan dp=2,mbs=1,gbs=2", "dp*tp*pp"},
      {"--model configs/models/tiny-evomoe.json --plan dp=1,mbs=1,gbs=1 --device cuda", "'moe.dense_to_sparse'"},
  };
  for (const Case& c : cases) {
    const Outcome r = moesim("run " + c.args + " --steps 1");
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.field), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << c.args;
  }
}

}  // namespace
}  // namespace moesim
