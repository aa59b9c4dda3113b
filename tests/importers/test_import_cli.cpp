// `moesim import` end to end: the built binary on fixtures; exit codes, the written
// files (they load back), one-line errors, and no output file left behind on failure.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"
#include "tests/importers/import_test_util.hpp"

namespace moesim::importers {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int code = -1;
  std::string out, err;
};

class ImportCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("moesim-import-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  CliRun run(const std::string& args) const {
    const std::string out = path("stdout"), err = path("stderr");
    const std::string cmd = std::string(MOESIM_BIN) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    CliRun r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = testing::read_text(out);
    r.err = testing::read_text(err);
    return r;
  }

  fs::path dir_;
};

TEST_F(ImportCli, FairseqDictWritesALoadableModel) {
  const std::string out = path("fairseq.json");
  const CliRun r = run("import " + testing::fixture("fairseq-moe-15b.dict.txt") + " --set vocab=50264 --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  const ModelSpec m = load_model(out);
  EXPECT_EQ(m.name, "fairseq-moe-15b");
  EXPECT_NE(m.source.find("fairseq-moe-15b.dict.txt"), std::string::npos);
  EXPECT_NE(r.out.find("total"), std::string::npos);
  EXPECT_NE(r.out.find("14,604,994,560"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("active"), std::string::npos);
  EXPECT_NE(r.err.find("mapped:"), std::string::npos);
  EXPECT_NE(r.err.find("defaulted:"), std::string::npos);
  EXPECT_NE(r.err.find("ignored"), std::string::npos);
}

TEST_F(ImportCli, MegatronScriptWritesModelAndPlan) {
  const std::string out = path("mixtral.json"), plan = path("plan.json");
  const CliRun r = run("import " + testing::fixture("mixtral-8x7b.megatron.sh") + " --format megatron --name mixtral --out " +
                    out + " --plan-out " + plan);
  ASSERT_EQ(r.code, 0) << r.err;
  const ModelSpec m = load_model(out);
  EXPECT_EQ(m.name, "mixtral");
  const Plan p = load_plan(plan);
  check_plan(p, m, plan);
  EXPECT_EQ(p.dp, 8);
  EXPECT_EQ(p.ep, 8);
}

TEST_F(ImportCli, BadInputExitsTwoWithOneLineAndNoOutput) {
  const std::string bad = path("bad.json");
  {
    std::ofstream f(bad);
    f << "{\"model_type\": \"mixtral\", \"num_hidden_layers\": -4}";
  }
  const std::string out = path("out.json");
  const CliRun r = run("import " + bad + " --out " + out);
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err.rfind("moesim: " + bad + ": field 'num_hidden_layers': ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(fs::exists(out));
  for (const auto& entry : fs::directory_iterator(dir_))
    EXPECT_EQ(entry.path().filename().string().find(".out.json"), std::string::npos) << "temporary file left: " << entry.path();
}

TEST_F(ImportCli, PlanOutWithoutAPlanWritesNothing) {
  const std::string out = path("m.json"), plan = path("p.json");
  const CliRun r = run("import " + testing::fixture("olmoe-1b-7b-0924.config.json") + " --out " + out + " --plan-out " + plan);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("carries no parallel plan"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(plan));
}

TEST_F(ImportCli, MissingVocabularyAndBadUsage) {
  const std::string out = path("m.json");
  CliRun r = run("import " + testing::fixture("fairseq-moe-15b.dict.txt") + " --out " + out);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("field 'vocab': pass --set vocab=N"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  r = run("import " + testing::fixture("fairseq-moe-15b.dict.txt"));  // no --out
  EXPECT_EQ(r.code, 2);
  r = run("import " + testing::fixture("fairseq-moe-15b.dict.txt") + " --format yaml --out " + out);
  EXPECT_EQ(r.code, 2);
  r = run("import " + testing::fixture("fairseq-moe-15b.dict.txt") + " --set vocab=50264 --out /nonexistent-dir/m.json");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("/nonexistent-dir/m.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moesim::importers
