// Internal to sim/ (not a public header): the engine's future-event list. Events are keyed
// by (time, priority, subject): the subject is the id of the task or flow the event is
// about, and each has at most one pending event of a kind, so the key is a total order that
// depends on neither memory addresses nor the order of insertion.
//
// A radix heap: the engine never schedules before the instant it is processing, so keys
// hardly ever go down. Non-negative doubles order like their bit patterns; an event goes to
// the bucket of the highest bit in which its time differs from a base time (the time of the
// events in bucket 0), and a bucket is redistributed around its minimum only when every
// bucket below it is empty. Pushes are O(1); an event moves down a few buckets in its life;
// events are compared only in bucket 0, which holds the events of one time sorted by
// (priority, subject). Peeking moves the base forward to the next time; an event pushed
// before that (it happens when a peek ran ahead of the instant being processed) moves the
// base back by merging the buckets below its bit.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <vector>

namespace moesim::sim::detail {

struct Event {
  double time = 0;
  std::uint64_t key = 0;  // priority in the high 32 bits, payload (kind and subject) below
  std::uint32_t payload() const { return static_cast<std::uint32_t>(key); }
};
static_assert(sizeof(Event) == 16);

class EventQueue {
 public:
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  // The earliest event (lowest priority and subject among equal times).
  const Event& top() {
    assert(size_ > 0);
    if (buckets_[0].empty()) refill();
    return buckets_[0].back();
  }
  std::size_t capacity() const {
    std::size_t n = 0;
    for (const auto& b : buckets_) n += b.capacity();
    return n;
  }

  // `time` must not be negative or NaN.
  void push(double time, std::uint32_t priority, std::uint32_t payload) {
    assert(time >= 0);
    const Event e{time, (static_cast<std::uint64_t>(priority) << 32) | payload};
    ++size_;
    const std::uint64_t b = bits(time);
    if (b < base_) rebase(b);
    if (b == base_) {
      insert_now(e);
      return;
    }
    const int i = bucket(b);
    buckets_[i].push_back(e);
    used_ |= std::uint64_t{1} << (i - 1);
  }

  Event pop() {
    const Event out = top();
    buckets_[0].pop_back();
    --size_;
    return out;
  }

 private:
  static std::uint64_t bits(double t) {
    std::uint64_t b;
    std::memcpy(&b, &t, sizeof b);
    return b;
  }
  // 1..64: one past the highest bit where b differs from base_.
  int bucket(std::uint64_t b) const { return 64 - std::countl_zero(b ^ base_); }
  static bool later(const Event& a, const Event& b) { return a.key > b.key; }
  // Bucket 0 is kept sorted, latest first, so its back is the next event.
  void insert_now(const Event& e) {
    std::vector<Event>& now = buckets_[0];
    now.insert(std::upper_bound(now.begin(), now.end(), e, later), e);
  }
  // Moves the lowest non-empty bucket down around its minimum, so bucket 0 holds the
  // events of the next time.
  void refill() {
    assert(buckets_[0].empty() && used_ != 0);
    const int i = std::countr_zero(used_) + 1;
    std::vector<Event>& from = buckets_[i];
    std::uint64_t lowest = bits(from.front().time);
    for (const Event& e : from) lowest = std::min(lowest, bits(e.time));
    base_ = lowest;
    used_ &= ~(std::uint64_t{1} << (i - 1));
    for (const Event& e : from) {
      const std::uint64_t b = bits(e.time);
      if (b == base_) {
        buckets_[0].push_back(e);
      } else {
        const int j = bucket(b);
        assert(j < i);
        buckets_[j].push_back(e);
        used_ |= std::uint64_t{1} << (j - 1);
      }
    }
    from.clear();
    std::sort(buckets_[0].begin(), buckets_[0].end(), later);
  }
  // A time below the base: every event sits above the base, and those in buckets below the
  // highest bit where the new base differs from the old one now all differ from it there.
  void rebase(std::uint64_t b) {
    const int h = bucket(b);
    std::vector<Event>& into = buckets_[h];
    for (int i = 0; i < h; ++i) {
      into.insert(into.end(), buckets_[i].begin(), buckets_[i].end());
      buckets_[i].clear();
    }
    used_ &= ~((std::uint64_t{1} << (h - 1)) - 1);
    if (!into.empty()) used_ |= std::uint64_t{1} << (h - 1);
    base_ = b;
  }

  std::array<std::vector<Event>, 65> buckets_;
  std::uint64_t used_ = 0;  // bit i-1 set: bucket i (1..64) is not empty
  std::uint64_t base_ = 0;  // bits of the time of the events in bucket 0
  std::size_t size_ = 0;
};

}  // namespace moesim::sim::detail
