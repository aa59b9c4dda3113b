// Result: the size accounting the benchmarks report (bytes per task).
#include "sim/result.hpp"

namespace moesim::sim {
namespace {

template <class T>
std::size_t capacity_bytes(const std::vector<T>& v) {
  return v.capacity() * sizeof(T);
}

}  // namespace

std::size_t Result::memory_bytes() const {
  std::size_t bytes = sizeof(*this) + capacity_bytes(start) + capacity_bytes(end) + capacity_bytes(steps) +
                      capacity_bytes(flows) + capacity_bytes(resources) + capacity_bytes(links) +
                      capacity_bytes(critical_path.steps) + capacity_bytes(critical_path.by_category);
  // Labels longer than the small-string buffer live on the heap.
  for (const StepRecord& s : steps) bytes += s.label.capacity() > 15 ? s.label.capacity() : 0;
  return bytes;
}

}  // namespace moesim::sim
