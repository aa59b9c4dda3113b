// Profiles: every shipped profile loads; fitted figures are reproducible from their tables;
// the fits recover known parameters exactly.
#include <gtest/gtest.h>

#include <filesystem>

#include "src/core/error.hpp"
#include "src/profile/fit.hpp"
#include "src/profile/profile.hpp"

namespace moesim {
namespace {

TEST(Profile, ShippedProfilesLoadAndRoundTrip) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("profiles")) {
    if (e.path().extension() != ".json") continue;
    SCOPED_TRACE(e.path().string());
    const Profile p = load_profile(e.path().string());
    EXPECT_EQ(e.path().stem().string(), p.name);
    const Profile again = profile_from_json(nlohmann::json::parse(profile_to_json(p).dump()), "rt");
    EXPECT_EQ(profile_to_json(again).dump(), profile_to_json(p).dump());
    EXPECT_GT(p.peak(p.compute.gemm_dtype), 0);
    ++n;
  }
  EXPECT_GE(n, 6);
}

TEST(Profile, A100GemmFiguresAreTheFitOfTheirTable) {
  // The stored efficiency and overhead are what fit_gemm makes of the stored table.
  const Profile p = load_profile("profiles/a100-sxm4-40gb.json");
  const RooflineFit fit = fit_gemm(p.compute.gemm_table, p.peak(p.compute.gemm_dtype));
  std::printf("A100 fp16 fit: efficiency %.4f, overhead %.2f us; residuals:", fit.efficiency, fit.overhead * 1e6);
  for (double r : fit.relative_residuals) std::printf(" %+.1f%%", 100 * r);
  std::printf("\n");
  EXPECT_NEAR(fit.efficiency, p.compute.gemm_efficiency.value, 5e-5);
  EXPECT_NEAR(fit.overhead, p.compute.kernel_overhead.value, 5e-9);
}

TEST(Fit, RecoversExactParameters) {
  std::vector<GemmSample> samples;
  const double peak = 100e12, eff = 0.8, overhead = 7e-6;
  for (std::int64_t n : {256, 1024, 4096, 8192}) {
    const double d = static_cast<double>(n);
    samples.push_back({n, n, n, 2.0 * d * d * d / (eff * peak) + overhead});
  }
  const RooflineFit f = fit_gemm(samples, peak);
  EXPECT_NEAR(f.efficiency, eff, 1e-12);
  EXPECT_NEAR(f.overhead, overhead, 1e-15);
  const std::vector<double> bytes{1e3, 1e6, 1e9}, secs{5e-6 + 1e3 / 2e10, 5e-6 + 1e6 / 2e10, 5e-6 + 1e9 / 2e10};
  const AlphaBetaFit ab = fit_alpha_beta(bytes, secs);
  EXPECT_NEAR(ab.alpha, 5e-6, 1e-15);
  EXPECT_NEAR(ab.bandwidth, 2e10, 1e-2);
}

TEST(Profile, FiguresNeedSources) {
  nlohmann::json j = nlohmann::json::parse(R"({"name":"x","device":"a100-sxm4-40gb","provenance":{"kind":"guessed"}})");
  try {
    profile_from_json(j, "p.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "p.json: field 'provenance.kind': expected \"public\" or \"measured\", got \"guessed\"");
  }
}

}  // namespace
}  // namespace moesim
