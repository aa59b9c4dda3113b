// The executor's learning-rate schedule: each decay's closed form at chosen updates
// (values exact in binary where the formula allows), the warm-up's endpoints, one failing
// case per kind of bad schedule, and fairseq's clipping factor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numbers>

#include "src/core/error.hpp"
#include "src/executor/lr_schedule.hpp"

namespace moesim {
namespace {

LrSchedule schedule(LrDecay decay, double lr, std::int64_t warmup, std::int64_t total = 0, double end_lr = 0,
                    double warmup_init_lr = 0) {
  LrSchedule s;
  s.decay = decay;
  s.lr = lr;
  s.warmup_updates = warmup;
  s.total_updates = total;
  s.end_lr = end_lr;
  s.warmup_init_lr = warmup_init_lr;
  validate(s, "test");
  return s;
}

struct Point {
  std::int64_t update;
  double expected;
};

void expect_points(const LrSchedule& s, std::initializer_list<Point> points) {
  for (const Point& p : points) {
    const double got = lr_at(s, p.update);
    std::printf("%-12s update %4lld: closed form %.17g, lr_at %.17g\n", to_string(s.decay),
                static_cast<long long>(p.update), p.expected, got);
    EXPECT_DOUBLE_EQ(got, p.expected) << to_string(s.decay) << " update " << p.update;
  }
}

TEST(LrSchedule, WarmupRunsLinearlyFromItsInitToThePeak) {
  // 0.25 + 0.75 * u / 4: update 0 is the start, update 4 (the last warm-up update) the peak.
  const LrSchedule s = schedule(LrDecay::constant, 1.0, 4, 0, 0, 0.25);
  expect_points(s, {{0, 0.25}, {1, 0.4375}, {2, 0.625}, {3, 0.8125}, {4, 1.0}, {5, 1.0}, {1000000, 1.0}});
  // Without a warm-up the first update runs at the peak.
  expect_points(schedule(LrDecay::constant, 0.5, 0), {{0, 0.5}, {1, 0.5}, {77, 0.5}});
}

TEST(LrSchedule, LinearIsFairseqPolynomialDecayWithPowerOne) {
  // lr 1 -> end 0.5 over updates 10..110: (1 - 0.5) * (1 - (u - 10) / 100) + 0.5.
  const LrSchedule s = schedule(LrDecay::linear, 1.0, 10, 110, 0.5);
  expect_points(s, {{5, 0.5}, {10, 1.0}, {35, 0.875}, {60, 0.75}, {85, 0.625}, {110, 0.5}, {500, 0.5}});
  // No warm-up: from lr at update 0 to 0 at 100.
  expect_points(schedule(LrDecay::linear, 2.0, 0, 100), {{0, 2.0}, {25, 1.5}, {50, 1.0}, {100, 0.0}, {101, 0.0}});
}

TEST(LrSchedule, CosineFallsToEndLrAtTotal) {
  const LrSchedule s = schedule(LrDecay::cosine, 1.0, 10, 110, 0.0);
  const double pi = std::numbers::pi;
  expect_points(s, {{10, 1.0},
                    {35, 0.5 * (1 + std::cos(pi / 4))},
                    {60, 0.5 * (1 + std::cos(pi / 2))},
                    {85, 0.5 * (1 + std::cos(3 * pi / 4))},
                    {110, 0.0},
                    {111, 0.0}});
  EXPECT_NEAR(lr_at(s, 60), 0.5, 1e-15);
  const LrSchedule floor = schedule(LrDecay::cosine, 3e-4, 0, 1000, 3e-5);
  EXPECT_DOUBLE_EQ(lr_at(floor, 0), 3e-4);
  EXPECT_DOUBLE_EQ(lr_at(floor, 500), 3e-5 + 2.7e-4 * 0.5 * (1 + std::cos(pi / 2)));
  // Never rises after the warm-up, never below end_lr.
  double prev = lr_at(floor, 0);
  for (std::int64_t u = 1; u <= 1200; ++u) {
    const double v = lr_at(floor, u);
    EXPECT_LE(v, prev) << u;
    EXPECT_GE(v, 3e-5) << u;
    prev = v;
  }
}

TEST(LrSchedule, InverseSqrtIsFairseqs) {
  // Warm-up 0 -> 1 over 4 updates, then 1 * sqrt(4) / sqrt(u).
  const LrSchedule s = schedule(LrDecay::inverse_sqrt, 1.0, 4);
  expect_points(s, {{0, 0.0}, {2, 0.5}, {4, 1.0}, {9, 2.0 / 3.0}, {16, 0.5}, {64, 0.25}, {400, 0.1}});
  // fairseq's defaults for a transformer: lr 5e-4, 4000 warm-up updates.
  const LrSchedule f = schedule(LrDecay::inverse_sqrt, 5e-4, 4000, 0, 0, 1e-7);
  EXPECT_DOUBLE_EQ(lr_at(f, 4000), 5e-4);
  EXPECT_DOUBLE_EQ(lr_at(f, 16000), 2.5e-4);
  EXPECT_DOUBLE_EQ(lr_at(f, 2000), 1e-7 + (5e-4 - 1e-7) * 0.5);
}

TEST(LrSchedule, ParsesItsNames) {
  EXPECT_EQ(parse_lr_decay("constant"), LrDecay::constant);
  EXPECT_EQ(parse_lr_decay("linear"), LrDecay::linear);
  EXPECT_EQ(parse_lr_decay("polynomial_decay"), LrDecay::linear);
  EXPECT_EQ(parse_lr_decay("cosine"), LrDecay::cosine);
  EXPECT_EQ(parse_lr_decay("inverse_sqrt"), LrDecay::inverse_sqrt);
  for (LrDecay d : {LrDecay::constant, LrDecay::linear, LrDecay::cosine, LrDecay::inverse_sqrt})
    EXPECT_EQ(parse_lr_decay(to_string(d)), d);
  try {
    parse_lr_decay("step", "--lr-scheduler");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "--lr-scheduler: expected constant, linear (or polynomial_decay), cosine or inverse_sqrt, got \"step\"");
  }
}

TEST(LrSchedule, RejectsEachKindOfBadSchedule) {
  struct Case {
    LrSchedule s;
    const char* message;
  };
  auto with = [](LrDecay d, auto&& edit) {
    LrSchedule s;
    s.decay = d;
    s.lr = 1.0;
    s.warmup_updates = 10;
    s.total_updates = 100;
    edit(s);
    return s;
  };
  const Case cases[] = {
      {with(LrDecay::constant, [](LrSchedule& s) { s.lr = -0.1; }),
       "run.json: field 'lr': expected a finite learning rate >= 0, got -0.1"},
      {with(LrDecay::constant, [](LrSchedule& s) { s.lr = std::nan(""); }),
       "run.json: field 'lr': expected a finite learning rate >= 0, got nan"},
      {with(LrDecay::constant, [](LrSchedule& s) { s.warmup_init_lr = -1; }),
       "run.json: field 'warmup_init_lr': expected a finite learning rate >= 0, got -1"},
      {with(LrDecay::cosine, [](LrSchedule& s) { s.end_lr = -1e-5; }),
       "run.json: field 'end_lr': expected a finite learning rate >= 0, got -1e-05"},
      {with(LrDecay::constant, [](LrSchedule& s) { s.warmup_updates = -1; }),
       "run.json: field 'warmup_updates': expected a number of updates >= 0, got -1"},
      {with(LrDecay::constant, [](LrSchedule& s) { s.total_updates = -5; }),
       "run.json: field 'total_updates': expected a number of updates >= 0, got -5"},
      {with(LrDecay::linear, [](LrSchedule& s) { s.end_lr = 2; }),
       "run.json: field 'end_lr': expected at most lr (1) for a linear decay, got 2"},
      {with(LrDecay::linear, [](LrSchedule& s) { s.total_updates = 9; }),
       "run.json: field 'total_updates': expected at least max(1, warmup_updates = 10) for a linear decay, got 9"},
      {with(LrDecay::cosine, [](LrSchedule& s) { s.warmup_updates = 0; s.total_updates = 0; }),
       "run.json: field 'total_updates': expected at least max(1, warmup_updates = 0) for a cosine decay, got 0"},
      {with(LrDecay::inverse_sqrt, [](LrSchedule& s) { s.warmup_updates = 0; }),
       "run.json: field 'warmup_updates': expected at least 1 for inverse_sqrt (it scales the decay), got 0"},
  };
  for (const Case& c : cases) {
    try {
      validate(c.s, "run.json");
      ADD_FAILURE() << c.message;
    } catch (const InputError& e) {
      EXPECT_EQ(e.file(), "run.json");
      EXPECT_EQ(std::string(e.what()), c.message);
    }
  }
  // The edges that are fine: total == warmup (decay ends as the warm-up does), constant
  // and inverse_sqrt ignore total_updates and end_lr.
  EXPECT_NO_THROW(schedule(LrDecay::linear, 1.0, 10, 10));
  EXPECT_DOUBLE_EQ(lr_at(schedule(LrDecay::linear, 1.0, 10, 10, 0.25), 11), 0.25);
  EXPECT_NO_THROW(schedule(LrDecay::constant, 1.0, 10, 0, 5.0));
  EXPECT_THROW(lr_at(schedule(LrDecay::constant, 1.0, 0), -1), std::invalid_argument);
}

TEST(LrSchedule, ClipScaleIsFairseqClipGradNorm) {
  EXPECT_EQ(clip_scale(0.5, 1.0), 1.0);
  EXPECT_EQ(clip_scale(1.0, 1.0), 1.0);  // at the limit: untouched
  EXPECT_EQ(clip_scale(3.0, 1.0), 1.0 / (3.0 + 1e-6));
  EXPECT_EQ(clip_scale(250.0, 0.1), 0.1 / (250.0 + 1e-6));
  EXPECT_EQ(clip_scale(1e9, 0.0), 1.0);  // max_norm 0: clipping off
  EXPECT_EQ(clip_scale(1e9, -1.0), 1.0);
  EXPECT_TRUE(std::isnan(clip_scale(std::nan(""), 1.0)));
  EXPECT_TRUE(std::isnan(clip_scale(INFINITY, 1.0)));
  EXPECT_TRUE(std::isnan(clip_scale(INFINITY, 0.0)));  // even with clipping off: never hidden
  // The clipped norm lands just under max_norm.
  for (double norm : {1.5, 10.0, 1e4}) {
    const double clipped = norm * clip_scale(norm, 1.0);
    EXPECT_LT(clipped, 1.0);
    EXPECT_GT(clipped, 1.0 - 1e-5);
  }
}

}  // namespace
}  // namespace moesim
