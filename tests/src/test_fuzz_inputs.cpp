// Bad input, 10,000 times: mutated model, plan and cluster files (truncated, wrong types,
// zero, negative and huge numbers, unknown fields, non-dividing plans, garbage bytes) go
// through the same load-and-describe path as `moesim describe`. Built with ASan and UBSan.
// Each case must succeed (exit 0) or raise an InputError (exit 2) whose one-line message
// names the input and a field or what was wrong with the whole file; nothing else.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"
#include "src/describe/describe.hpp"
#include "src/model/model_json.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/routing_model.hpp"

namespace moesim {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> files_in(const char* dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".json") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : rng_(seed) {}

  std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }

  nlohmann::json junk_value() {
    switch (pick(16)) {
      case 0: return 0;
      case 1: return -1;
      case 2: return INT64_C(4611686018427387904);  // 2^62
      case 3: return 1e300;
      case 4: return -1e300;
      case 5: return 0.5;
      case 6: return "abc";
      case 7: return "";
      case 8: return true;
      case 9: return nullptr;
      case 10: return nlohmann::json::array();
      case 11: return nlohmann::json::object();
      case 12: return 1;
      case 13: return 3;
      case 14: return UINT64_C(18446744073709551615);
      default: return "80GiB";
    }
  }

  // Replaces, deletes or adds at a random place in the document.
  void mutate_json(nlohmann::json& j, int depth = 0) {
    if ((j.is_object() || j.is_array()) && !j.empty() && depth < 4 && pick(3) != 0) {
      if (j.is_object()) {
        auto it = std::next(j.begin(), static_cast<std::ptrdiff_t>(pick(j.size())));
        if (pick(5) == 0) {
          j.erase(it.key());
          return;
        }
        mutate_json(it.value(), depth + 1);
      } else {
        mutate_json(j[pick(j.size())], depth + 1);
      }
      return;
    }
    if (j.is_object() && pick(3) == 0) {
      j["unexpected_" + std::to_string(pick(100))] = junk_value();
      return;
    }
    j = junk_value();
  }

  std::string mutate_text(std::string s) {
    if (s.empty()) return s;
    switch (pick(4)) {
      case 0: return s.substr(0, pick(s.size()));  // truncated
      case 1: s[pick(s.size())] = static_cast<char>(pick(256)); return s;
      case 2: s.insert(pick(s.size()), std::string(1 + pick(8), static_cast<char>(pick(256)))); return s;
      default: {
        std::size_t a = pick(s.size());
        return s.substr(0, a) + s.substr(a, pick(s.size() - a + 1)) + s.substr(a);
      }
    }
  }

  std::string inline_plan() {
    static const char* keys[] = {"dp", "tp", "pp", "ep", "mbs", "gbs", "zero", "recompute", "schedule",
                                 "vpp", "precision", "master_weights", "optimizer_dtype", "attention", "bogus",
                                 "sp", "fp8", "grad_dtype", "dist_opt", "first_stage_layers", "last_stage_layers",
                                 "cp", "etp"};
    static const char* values[] = {"1", "2", "3", "4", "8", "16", "0", "-1", "99999999999999999999", "full",
                                   "interleaved", "bf16", "true", "x", "", "1.5", "64", "1024", "hybrid", "fp32", "flash"};
    std::string out;
    const std::size_t n = 1 + pick(5);
    for (std::size_t i = 0; i < n; ++i) {
      if (i) out += pick(10) == 0 ? ",," : ",";
      out += keys[pick(std::size(keys))];
      if (pick(12) != 0) out += "=";
      out += values[pick(std::size(values))];
    }
    return out;
  }

 private:
  std::mt19937_64 rng_;
};

enum class Outcome { ok, input_error };

Outcome describe_once(const std::string& model, const std::string& plan, const std::string& cluster,
                      std::string& message) {
  try {
    const DescribeInput in = load_describe_input(model, plan, cluster);
    std::ostringstream out;
    describe_text(in, out);
    message = describe_json(in).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    return Outcome::ok;
  } catch (const InputError& e) {
    message = e.what();
    return Outcome::input_error;
  }
}

TEST(Fuzz, TenThousandMutatedInputsExitZeroOrTwoWithOneLine) {
  const auto models = files_in("configs/models");
  const auto plans = files_in("configs/plans");
  const auto clusters = files_in("configs/clusters");
  ASSERT_FALSE(models.empty());
  const fs::path dir = fs::path(::testing::TempDir()) / "moesim_fuzz";
  fs::create_directories(dir);
  Mutator mut(20261122);
  int ok = 0, rejected = 0;
  constexpr int kCases = 10000;
  for (int i = 0; i < kCases; ++i) {
    std::string model = models[mut.pick(models.size())];
    std::string plan = mut.pick(4) == 0 ? std::string() : plans[mut.pick(plans.size())];
    std::string cluster = mut.pick(3) == 0 ? std::string() : clusters[mut.pick(clusters.size())];
    // Mutate one input; occasionally two.
    const std::size_t target = mut.pick(3);
    for (std::size_t which : {target, mut.pick(8) == 0 ? (target + 1) % 3 : target}) {
      if (which == 1 && !plan.empty() && mut.pick(3) == 0) {
        plan = mut.inline_plan();
        continue;
      }
      std::string& path = which == 0 ? model : which == 1 ? plan : cluster;
      if (path.empty()) path = which == 1 ? plans[0] : clusters[0];
      std::string text = slurp(path);
      nlohmann::json j;  // an earlier mutation may have broken the text: then mutate it as text
      try {
        j = nlohmann::json::parse(text, nullptr, false);
      } catch (const nlohmann::json::exception&) {
        j = nlohmann::json(nlohmann::json::value_t::discarded);
      }
      if (mut.pick(2) == 0 || j.is_discarded()) {
        text = mut.mutate_text(text);
      } else {
        for (std::size_t k = 0, n = 1 + mut.pick(3); k < n; ++k) mut.mutate_json(j);
        text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      }
      const fs::path out = dir / ("case" + std::to_string(i) + "_" + std::to_string(which) + ".json");
      std::ofstream(out, std::ios::binary) << text;
      path = out.string();
    }
    std::string message;
    const Outcome o = describe_once(model, plan, cluster, message);
    if (o == Outcome::ok) {
      ++ok;
      continue;
    }
    ++rejected;
    SCOPED_TRACE("case " + std::to_string(i) + ": " + message);
    ASSERT_EQ(message.find('\n'), std::string::npos);
    // The message starts with the input it blames, one of the three given.
    const bool names_input = message.rfind(model + ": ", 0) == 0 || (!plan.empty() && message.rfind(plan + ": ", 0) == 0) ||
                             (!cluster.empty() && message.rfind(cluster + ": ", 0) == 0) ||
                             message.rfind("--plan '", 0) == 0;
    ASSERT_TRUE(names_input);
    const bool says_what = message.find(": field '") != std::string::npos ||
                           message.find("not valid JSON") != std::string::npos ||
                           message.find("expected a JSON object") != std::string::npos ||
                           message.find("expected key=value") != std::string::npos ||
                           message.find("cannot open the file") != std::string::npos;
    ASSERT_TRUE(says_what);
  }
  std::printf("%d cases: %d described (exit 0), %d rejected with a one-line message (exit 2)\n", kCases, ok, rejected);
  EXPECT_GT(ok, 50);  // most random model x plan pairings do not divide; the rest must describe
  EXPECT_GT(rejected, 5000);
  fs::remove_all(dir);
}


// Mutated profiles (public and measured, with their kernel and collective tables) and
// routing traces: each loads or raises an InputError naming the file, in one line.
TEST(Fuzz, MutatedProfilesAndTracesLoadOrNameTheFileAndField) {
  const auto profiles = files_in("profiles");
  ASSERT_GE(profiles.size(), 8u);
  const ModelSpec model = load_model("configs/models/fairseq-moe-4.1b.json");
  const fs::path dir = fs::path(::testing::TempDir()) / "moesim_fuzz_profiles";
  fs::create_directories(dir);
  const std::string trace =
      R"({"experts": 8, "top_k": 2, "tokens": 1000, "expert1": [300, 100, 100, 100, 100, 100, 100, 100],)"
      R"( "expert2": [100, 200, 100, 100, 100, 100, 100, 100], "entropy_gating": 1.5})";
  Mutator mut(20261123);
  int ok = 0, rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    const bool is_trace = mut.pick(4) == 0;
    std::string text = is_trace ? trace : slurp(profiles[mut.pick(profiles.size())]);
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (mut.pick(2) == 0 || j.is_discarded()) {
      text = mut.mutate_text(text);
    } else {
      for (std::size_t k = 0, n = 1 + mut.pick(3); k < n; ++k) mut.mutate_json(j);
      text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    const std::string path = (dir / ("case" + std::to_string(i) + ".json")).string();
    std::ofstream(path, std::ios::binary) << text;
    try {
      if (is_trace)
        route_tokens(model, parse_routing("trace:" + path), 2048);
      else
        load_profile(path);
      ++ok;
    } catch (const InputError& e) {
      ++rejected;
      const std::string message = e.what();
      SCOPED_TRACE("case " + std::to_string(i) + ": " + message);
      ASSERT_EQ(message.find('\n'), std::string::npos);
      ASSERT_EQ(message.rfind(path + ": ", 0), 0u);
    }
  }
  std::printf("3000 mutated profiles and traces: %d loaded, %d rejected with a one-line message\n", ok, rejected);
  EXPECT_GT(rejected, 1500);
}

}  // namespace
}  // namespace moesim
