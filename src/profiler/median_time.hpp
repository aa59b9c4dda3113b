// The timing rule every profiler measurement follows: warm-up runs, then repeated timed
// runs (at least min_repeats, more until target_seconds were timed), and their median.
#pragma once

#include <algorithm>
#include <vector>


namespace moesim {

struct TimingOptions {
  int warmup = 2;
  int min_repeats = 5;
  int max_repeats = 200;
  double target_seconds = 0.05;  // keep repeating (up to max_repeats) until this much was timed
};

// `run_once` runs the kernel once and returns its time in seconds.

template <class RunOnce>
double median_time(const TimingOptions& t, RunOnce&& run_once) {
  for (int i = 0; i < t.warmup; ++i) run_once();
  std::vector<double> times;
  double total = 0;
  while (static_cast<int>(times.size()) < t.min_repeats ||
         (total < t.target_seconds && static_cast<int>(times.size()) < t.max_repeats)) {
    times.push_back(run_once());
    total += times.back();
  }
  auto mid = times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2);
  std::nth_element(times.begin(), mid, times.end());
  if (times.size() % 2 == 1) return *mid;
  const double upper = *mid;
  return (upper + *std::max_element(times.begin(), mid)) / 2;
}

}  // namespace moesim
