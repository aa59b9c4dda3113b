// The engine's event queue (a radix heap) against a plain ordered reference: the same pop
// order under random pushes, pops and peeks, including pushes below a time already peeked.
#include "sim/event_queue.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <tuple>

namespace moesim::sim::detail {
namespace {

TEST(EventQueue, PopsInTimePriorityPayloadOrder) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    EventQueue q;
    std::multiset<std::tuple<double, std::uint32_t, std::uint32_t>> ref;
    double now = 0;  // the time of the last event popped: pushes never go below it
    std::uint32_t next_payload = 0;
    for (int op = 0; op < 2000; ++op) {
      const int what = static_cast<int>(rng() % 10);
      if (what < 5 || ref.empty()) {
        // Mostly close to now, sometimes exactly now, sometimes far ahead.
        const int shape = static_cast<int>(rng() % 4);
        const double t = shape == 0   ? now
                         : shape == 1 ? now + std::uniform_real_distribution<double>(0, 1e-6)(rng)
                         : shape == 2 ? now + static_cast<double>(rng() % 4)
                                      : now + std::uniform_real_distribution<double>(0, 1e3)(rng);
        const auto priority = static_cast<std::uint32_t>(rng() % 3);
        const std::uint32_t payload = next_payload++;
        q.push(t, priority, payload);
        ref.emplace(t, priority, payload);
      } else if (what < 7) {
        ASSERT_EQ(q.top().time, std::get<0>(*ref.begin()));  // a peek may run ahead of now
      } else {
        const Event e = q.pop();
        const auto [t, priority, payload] = *ref.begin();
        ref.erase(ref.begin());
        ASSERT_EQ(e.time, t) << "trial " << trial << " op " << op;
        ASSERT_EQ(e.key >> 32, priority);
        ASSERT_EQ(e.payload(), payload);
        now = t;
      }
      ASSERT_EQ(q.size(), ref.size());
    }
  }
}

}  // namespace
}  // namespace moesim::sim::detail
