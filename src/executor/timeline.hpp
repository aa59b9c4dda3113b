// The measured timeline of `moesim run`: when each rank ran each micro-batch's forward and
// backward, the gradient reduction and the optimizer step, under the names the simulator's
// event tier gives the same work (F<stage>.<mb>, B<stage>.<mb>, grad_reduce <stage>,
// optimizer <stage>), so a measured and a predicted Chrome trace line up.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moesim::exec {

// The category of one unit's gradient all-reduce started during the backward (ZeRO 0),
// which runs beside the compute: "grad_reduce <stage> <unit>".
inline constexpr const char* kOverlappedReduce = "dp_grad_reduce_bucket";

struct TimelineEvent {
  std::string name;      // "F0.3"
  std::string category;  // forward, backward, dp_grad_reduce, optimizer (the simulator's)
  double start_s = 0, end_s = 0;  // since the run's start on this rank's steady clock
  long long update = 0;
};

// Collects one rank's events; times come from the steady clock, which is the same
// monotonic clock for every process of a machine.
class Timeline {
 public:
  explicit Timeline(bool on = false) : on_(on), start_(std::chrono::steady_clock::now()) {}
  bool on() const { return on_; }
  double now() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  void add(std::string name, std::string category, double start_s, long long update) {
    add_span(std::move(name), std::move(category), start_s, now(), update);
  }
  void add_span(std::string name, std::string category, double start_s, double end_s, long long update) {
    if (on_) events_.push_back({std::move(name), std::move(category), start_s, end_s, update});
  }
  // A steady-clock time in the timeline's seconds.
  double seconds(std::chrono::steady_clock::time_point t) const {
    return std::chrono::duration<double>(t - start_).count();
  }
  const std::vector<TimelineEvent>& events() const { return events_; }

 private:
  bool on_;
  std::chrono::steady_clock::time_point start_;
  std::vector<TimelineEvent> events_;
};

// One rank's events as JSON lines (what a rank sends to rank 0), and back.
std::string timeline_to_text(const std::vector<TimelineEvent>& events);
std::vector<TimelineEvent> timeline_from_text(const std::string& text);

// A Chrome trace (Perfetto, chrome://tracing): one process per rank ("rank r, stage s"),
// its work on one thread, and the gradient reductions that run beside the backward
// (category kOverlappedReduce) on a second; times in microseconds.
nlohmann::json chrome_trace(const std::vector<std::vector<TimelineEvent>>& ranks, const std::vector<int>& stage_of_rank);

}  // namespace moesim::exec
