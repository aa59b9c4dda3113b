// Incremental max-min sharing by a lazy, level-ordered sweep: progressive filling restarted
// only where the change reaches.
//
// Progressive filling raises one water level for all flows and freezes the flows on each
// link as it fills. After flows start or end, nothing below the lowest level the change
// touches can move, so the sweep starts there and visits, in increasing level order, only
// links whose state may differ: a link is queued when a flow on it is added or removed, or
// when a flow on it gets a new rate below the link's old level. A flow nobody touched keeps
// its old rate; it counts as frozen once the sweep passes that rate. A flow is re-opened
// ("touched") when its old bottleneck turns out not to fill at its old rate. A link is
// queued at a lower bound of the level where it next needs looking at: where it would fill
// if nothing else changed (open flows rising with the level, untouched ones held at their
// old rates), or the old rate of an untouched flow it holds, if lower (such a flow may need
// reopening). Only reopening a flow can lower that level, and it re-queues the flow's
// links; a flow given a rate can raise it on its other links, whose keys are then
// recomputed too, so a link is rarely popped for nothing. Popped, the link's fair share is
// computed from what is frozen; if the share is above the current level it is queued again,
// otherwise it fills and its open flows get the share. Work is proportional to the flows
// whose rates change, not to all flows. kFull re-solves every sending flow instead. The
// queue is an indexed binary heap with one entry per link (keys move both ways, no stale
// entries), popped in (level, link id) order.
#include "sim/flow_sharing.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>

#include "sim/error.hpp"

namespace moesim::sim::detail {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr std::uint32_t kNotQueued = std::numeric_limits<std::uint32_t>::max();

// A new rate within this relative distance of the old one is rounding noise from summing
// in another order: the flow keeps its old rate and finish event, and nothing propagates.
constexpr double kSameRate = 1e-12;
// Rates and levels within this relative distance count as equal when the sweep decides
// whether a flow is frozen below a level (a kept rate may differ from the level it was
// computed at by a few ulps). Far above kSameRate, far below any real difference.
constexpr double kTie = 1e-10;
bool below(double rate, double level) { return rate < level * (1 - kTie); }
// A link's computed fill level is queued this much lower, so rounding never makes it a
// little late; well inside kTie, so the link fills when popped.
constexpr double kKeyMargin = 1e-13;

template <class T>
std::size_t capacity_bytes(const std::vector<T>& v) {
  return v.capacity() * sizeof(T);
}

}  // namespace

FlowSharing::FlowSharing(const Network& network, std::span<const LinkId> arena, std::span<const std::uint32_t> offsets,
                         std::span<const std::uint32_t> sizes, SharingMode mode)
    : arena_(arena), offsets_(offsets), sizes_(sizes), mode_(mode) {
  slot_of_.assign(offsets.size(), 0);
  pos_.assign(arena.size(), 0);
  const std::size_t n_links = network.link_count();
  on_link_.resize(n_links);
  capacity_.resize(n_links);
  for (LinkId l = 0; l < n_links; ++l) capacity_[l] = network.link(l).bandwidth;
  level_.assign(n_links, kInfinity);
  busy_since_.assign(n_links, 0.0);
  heap_pos_.assign(n_links, kNotQueued);
  link_busy_.assign(n_links, 0.0);
  saturated_.assign(n_links, 0);
  pushed_.assign(n_links, 0);
}

void FlowSharing::add(std::uint32_t f, Bytes bytes, Seconds now) {
  assert(sizes_[f] > 0 && bytes > 0);
  std::uint32_t s;
  if (!free_slots_.empty()) {
    s = free_slots_.back();
    free_slots_.pop_back();
  } else {
    s = static_cast<std::uint32_t>(hot_.size());
    hot_.emplace_back();
    slot_flow_.push_back(0);
    path_.push_back(nullptr);
    hops_.push_back(0);
    pos_base_.push_back(0);
    active_pos_.push_back(0);
    end_pos_.push_back(kNotQueued);
    remaining_.push_back(0);
    finish_.push_back(0);
    last_.push_back(0);
  }
  slot_of_[f] = s;
  slot_flow_[s] = f;
  path_[s] = arena_.data() + offsets_[f];
  hops_[s] = sizes_[f];
  pos_base_[s] = offsets_[f];
  Hot& h = hot_[s];
  h.rate = 0;
  h.bottleneck = path_[s][0];
  remaining_[s] = bytes;
  last_[s] = now;
  for (std::uint32_t k = 0; k < hops_[s]; ++k) {
    const LinkId l = path_[s][k];
    std::vector<Entry>& list = on_link_[l];
    pos_[pos_base_[s] + k] = static_cast<std::uint32_t>(list.size());
    list.push_back(Entry{s, k});
    if (list.size() == 1) busy_since_[l] = now;
    seeds_.push_back(Seed{l, -1.0});
  }
  active_pos_[s] = static_cast<std::uint32_t>(active_.size());
  active_.push_back(s);
  added_.push_back(s);
}

void FlowSharing::remove(std::uint32_t f, Seconds now) {
  const std::uint32_t s = slot_of_[f];
  for (std::uint32_t k = 0; k < hops_[s]; ++k) {
    const LinkId l = path_[s][k];
    std::vector<Entry>& list = on_link_[l];
    const std::uint32_t at = pos_[pos_base_[s] + k];
    assert(at < list.size() && list[at].slot == s);
    const Entry moved = list.back();
    list[at] = moved;
    pos_[pos_base_[moved.slot] + moved.hop] = at;
    list.pop_back();
    if (list.empty()) link_busy_[l] += now - busy_since_[l];
    // Its links get room, so their levels can only rise: nothing moves below the old level,
    // and a link that was not full stays so.
    if (level_[l] < kInfinity) seeds_.push_back(Seed{l, level_[l]});
  }
  const std::uint32_t at = active_pos_[s];
  active_[at] = active_.back();
  active_pos_[active_[at]] = at;
  active_.pop_back();
  ends_erase(s);
  hot_[s].rate = 0;
  hops_[s] = 0;
  free_slots_.push_back(s);
}

BytesPerSecond FlowSharing::rate(std::uint32_t f) const {
  const std::uint32_t s = slot_of_[f];
  return s < slot_flow_.size() && slot_flow_[s] == f && hops_[s] > 0 ? hot_[s].rate : 0.0;
}

void FlowSharing::heap_decrease(std::uint32_t i, double key) {
  const Queued q{key, heap_[i].link};
  while (i > 0) {
    const std::uint32_t parent = (i - 1) / 2;
    if (!queued_before(q, heap_[parent])) break;
    heap_[i] = heap_[parent];
    heap_pos_[heap_[i].link] = i;
    i = parent;
  }
  heap_[i] = q;
  heap_pos_[q.link] = i;
}

void FlowSharing::heap_insert(double key, LinkId l) {
  heap_.push_back(Queued{key, l});
  heap_decrease(static_cast<std::uint32_t>(heap_.size() - 1), key);
}

// Puts q at index i or below it (q is not before what is above i).
void FlowSharing::heap_sift_down(std::uint32_t i, Queued q) {
  const auto n = static_cast<std::uint32_t>(heap_.size());
  for (;;) {
    std::uint32_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && queued_before(heap_[child + 1], heap_[child])) ++child;
    if (!queued_before(heap_[child], q)) break;
    heap_[i] = heap_[child];
    heap_pos_[heap_[i].link] = i;
    i = child;
  }
  heap_[i] = q;
  heap_pos_[q.link] = i;
}

FlowSharing::Queued FlowSharing::heap_pop() {
  const Queued top = heap_.front();
  heap_pos_[top.link] = kNotQueued;
  const Queued last = heap_.back();
  heap_.pop_back();
  if (!heap_.empty()) heap_sift_down(0, last);
  return top;
}

void FlowSharing::heap_erase(std::uint32_t i) {
  heap_pos_[heap_[i].link] = kNotQueued;
  const Queued last = heap_.back();
  heap_.pop_back();
  if (i == heap_.size()) return;
  heap_[i] = last;
  if (i > 0 && queued_before(last, heap_[(i - 1) / 2])) {
    heap_decrease(i, last.key);
  } else {
    heap_sift_down(i, last);
  }
}

void FlowSharing::push(double key, LinkId l) {
  if (pushed_[l] != epoch_) {
    pushed_[l] = epoch_;
    pushed_list_.push_back(l);
  }
  // One entry per link: the lowest key wins (the link is recomputed when popped).
  const std::uint32_t at = heap_pos_[l];
  if (at == kNotQueued) {
    heap_insert(key, l);
  } else if (key < heap_[at].key) {
    heap_decrease(at, key);
  }
}

// Reopens an untouched flow whose old rate no longer holds, and queues the links whose
// level it may now change.
void FlowSharing::touch(std::uint32_t s, double level, LinkId from) {
  hot_[s].touched = epoch_;
  touched_list_.push_back(s);
  for (const LinkId m : path(s)) {
    if (m == from || saturated_[m] == epoch_) continue;
    // A queued link's key may count this flow as held at its old rate: lower it too.
    if (heap_pos_[m] != kNotQueued || !below(level_[m], level)) queue(m, level);
  }
}

void FlowSharing::assign(std::uint32_t s, double rate, LinkId bottleneck, double level) {
  Hot& h = hot_[s];
  const bool same = h.rate > 0 && std::abs(rate - h.rate) <= kSameRate * h.rate;
  h.new_rate = same ? h.rate : rate;
  h.new_bottleneck = bottleneck;
  h.assigned = epoch_;
  assigned_list_.push_back(s);
  if (same) return;
  // Its other links see a flow whose rate moved at this level. One that gives up rate
  // leaves them room: their levels can only rise (not at all looked at if they were not
  // full; if they were, a flow they hold may need reopening). One that takes more may lower
  // them from this level on. queue() finds when to look at them.
  const bool less = rate < h.rate;
  for (const LinkId m : path(s)) {
    if (m == bottleneck || saturated_[m] == epoch_) continue;
    if (less) {
      if (level_[m] < kInfinity) queue(m, level);
    } else if (!below(level_[m], level)) {
      queue(m, level);
    }
  }
}

// The level at which a link with `room` left for its open flows fills: `open` flows rise with
// the level; the k untouched flows in above_ are held at their old rates (they stop rising at
// them). +infinity when it never fills.
double FlowSharing::water(double room, std::uint32_t open, std::uint32_t k) {
  // Few flows per link: insertion sort.
  double* a = above_.data();
  if (k > 16) {
    std::sort(a, a + k);
  } else {
    for (std::size_t i = 1; i < k; ++i) {
      const double v = a[i];
      std::size_t j = i;
      for (; j > 0 && a[j - 1] > v; --j) a[j] = a[j - 1];
      a[j] = v;
    }
  }
  room = std::max(room, 0.0);
  auto n = open + k;
  for (std::uint32_t i = 0; i < k; ++i) {
    const double r = a[i];
    const double x = room / n;
    if (x <= r) return x;
    room -= r;
    --n;
  }
  return open > 0 ? std::max(room, 0.0) / open : kInfinity;
}

// What a link holds at `level`: the rate of its frozen flows (given a rate in this sweep, or
// untouched below the level), how many are open (reopened or added, not yet given a rate),
// the old rates of the untouched ones at or above the level (in above_), and the lowest of
// those held here by this link (their old bottleneck; +infinity if none).
FlowSharing::Scan FlowSharing::scan(LinkId b, double level) {
  const std::vector<Entry>& list = on_link_[b];
  if (above_.size() < list.size()) above_.resize(list.size());
  double* above = above_.data();
  std::uint32_t n_above = 0;
  Scan sc;
  const double held = level * (1 - kTie);  // below(rate, level) is rate < held
  // Branch-free: which case an entry is in is data, and mispredicted branches cost more
  // than the arithmetic.
  const std::uint32_t epoch = epoch_;
  double frozen = 0, held_min = kInfinity;
  std::uint32_t open = 0;
  for (const Entry& e : list) {
    const Hot& h = hot_[e.slot];
    const double rate = h.rate;
    const bool assigned = h.assigned == epoch;
    const bool touched = (h.touched == epoch) & !assigned;
    const bool untouched = !(assigned | touched);
    const bool is_below = rate < held;
    const bool down = untouched & is_below;
    const bool up = untouched & !is_below;
    // x * 1.0 == x and x * 0.0 == +0.0 exactly: the same sum as adding only the frozen.
    frozen += h.new_rate * static_cast<double>(assigned) + rate * static_cast<double>(down);
    open += touched;
    above[n_above] = rate;
    n_above += up;
    // The rate if this link holds it, else +infinity (an integer select, no branch).
    std::uint64_t bits, inf_bits;
    std::memcpy(&bits, &rate, sizeof bits);
    std::memcpy(&inf_bits, &kInfinity, sizeof inf_bits);
    const std::uint64_t keep = 0 - static_cast<std::uint64_t>(up & (h.bottleneck == b));
    const std::uint64_t pick = inf_bits ^ ((bits ^ inf_bits) & keep);
    double candidate;
    std::memcpy(&candidate, &pick, sizeof candidate);
    held_min = std::min(held_min, candidate);
  }
  sc.frozen = frozen;
  sc.open = open;
  sc.above = n_above;
  sc.held = held_min;
  return sc;
}

// A lower bound of the level at which link m next needs looking at, as of now at `level`:
// where it would fill, or where an untouched flow it holds would need reopening.
double FlowSharing::fill_key(LinkId m, double level) {
  const Scan sc = scan(m, level);
  if (sc.open == 0 && sc.above == 0) return kInfinity;
  const double x = water(capacity_[m] - sc.frozen, sc.open, sc.above);
  return std::max(level, std::min(x, sc.held) * (1 - kKeyMargin));
}

// Queues link m (a flow on it changed at `level`) at its fill_key, or moves it there: down,
// or up when flows on it were given their rates elsewhere and left it more room. Keeping
// keys current rather than only lowering them spares popping links that no longer hold
// anyone open (half the pops at 1,000 flows on the fat tree of bench_engine). One that
// would never fill is taken out and counted as not full: any later change on it queues it
// again.
void FlowSharing::queue(LinkId m, double level) {
  const std::uint32_t at = heap_pos_[m];
  if (at != kNotQueued && heap_[at].key <= level) return;  // it is being looked at now
  const double key = fill_key(m, level);
  if (key < kInfinity) {
    if (at == kNotQueued) {
      push(key, m);
    } else if (key < heap_[at].key) {
      heap_decrease(at, key);
    } else {
      heap_sift_down(at, Queued{key, m});
    }
  } else {
    if (at != kNotQueued) heap_erase(at);
    if (pushed_[m] != epoch_) {
      pushed_[m] = epoch_;
      pushed_list_.push_back(m);
    }
    level_[m] = kInfinity;
  }
}

bool FlowSharing::sweep() {
  heap_.clear();
  for (const Seed& seed : seeds_) {
    const std::size_t n = on_link_[seed.link].size();
    if (n == 0) {
      level_[seed.link] = kInfinity;
      continue;
    }
    push(seed.key >= 0 ? seed.key : capacity_[seed.link] / static_cast<double>(n), seed.link);
  }
  for (const std::uint32_t s : added_) {
    if (hops_[s] == 0) continue;  // added and removed again before this update
    hot_[s].touched = epoch_;
    touched_list_.push_back(s);
  }
  while (!heap_.empty()) {
    const auto [level, b] = heap_pop();
    if (saturated_[b] == epoch_) continue;
    const std::vector<Entry>& list = on_link_[b];
    const Scan sc = scan(b, level);
    const double frozen = sc.frozen;
    const std::uint32_t open = sc.open;
    const std::uint32_t n_above = sc.above;
    const bool reopen = sc.held < kInfinity;
    if (open + n_above == 0) continue;
    const double share = std::max(capacity_[b] - frozen, 0.0) / (open + n_above);
    if (below(level, share)) {
      // Not full yet. It fills at the level x where the open flows rising with the level and
      // the untouched ones held at their old rates (until x passes them) take it all.
      double x = water(capacity_[b] - frozen, open, n_above);
      // Untouched flows bottlenecked here below x will not be held at their old rate by
      // this link: reopen them, and find x again with them rising.
      if (reopen) {
        bool any = false;
        for (const Entry& e : list) {
          const Hot& h = hot_[e.slot];
          if (h.assigned == epoch_ || h.touched == epoch_) continue;
          if (h.bottleneck == b && !below(h.rate, level) && below(h.rate, x)) {
            touch(e.slot, level, b);
            any = true;
          }
        }
        if (any) {
          const Scan again = scan(b, level);  // (touch() used above_ too)
          x = water(capacity_[b] - again.frozen, again.open, again.above);
        }
      }
      if (x < kInfinity) {
        push(std::max(level, x * (1 - kKeyMargin)), b);
      } else {
        // Nothing here can fill it unless a flow on it is reopened or given more, which
        // queues it again (as a link that is not full).
        level_[b] = kInfinity;
      }
      continue;
    }
    saturated_[b] = epoch_;
    level_[b] = share;
    for (const Entry& e : list) {
      const Hot& h = hot_[e.slot];
      if (h.assigned == epoch_) continue;
      if (h.touched != epoch_ && below(h.rate, level)) continue;  // frozen below
      assign(e.slot, share, b, level);
    }
  }
  // Links looked at but never filled are not anyone's bottleneck now.
  for (const LinkId l : pushed_list_) {
    if (saturated_[l] != epoch_) level_[l] = kInfinity;
  }
  flows_solved_ += assigned_list_.size();
  for (const std::uint32_t s : touched_list_) {
    if (hot_[s].assigned != epoch_) return false;  // would be a solver bug: fall back to a full solve
  }
  return true;
}

void FlowSharing::full() {
  // Progressive filling over every sending flow, from scratch.
  assigned_list_.clear();
  touched_list_.clear();
  pushed_list_.clear();
  if (++epoch_ == 0) {
    for (Hot& h : hot_) h.touched = h.assigned = 0;
    std::fill(saturated_.begin(), saturated_.end(), 0);
    std::fill(pushed_.begin(), pushed_.end(), 0);
    epoch_ = 1;
  }
  heap_.clear();
  for (const std::uint32_t s : active_) {
    for (const LinkId l : path(s)) {
      if (pushed_[l] == epoch_) continue;
      pushed_[l] = epoch_;
      pushed_list_.push_back(l);
      heap_insert(capacity_[l] / static_cast<double>(on_link_[l].size()), l);
    }
  }
  while (!heap_.empty()) {
    const auto [key, b] = heap_pop();
    if (saturated_[b] == epoch_) continue;
    double frozen = 0;
    std::uint32_t open = 0;
    for (const Entry& e : on_link_[b]) {
      if (hot_[e.slot].assigned == epoch_) {
        frozen += hot_[e.slot].new_rate;
      } else {
        ++open;
      }
    }
    if (open == 0) continue;
    const double share = std::max(capacity_[b] - frozen, 0.0) / open;
    if (share > key) {
      heap_insert(share, b);
      continue;
    }
    saturated_[b] = epoch_;
    level_[b] = share;
    for (const Entry& e : on_link_[b]) {
      Hot& h = hot_[e.slot];
      if (h.assigned == epoch_) continue;
      h.new_rate = h.rate > 0 && std::abs(share - h.rate) <= kSameRate * h.rate ? h.rate : share;
      h.new_bottleneck = b;
      h.assigned = epoch_;
      assigned_list_.push_back(e.slot);
    }
  }
  for (const LinkId l : pushed_list_) {
    if (saturated_[l] != epoch_) level_[l] = kInfinity;
  }
  flows_solved_ += assigned_list_.size();
}

void FlowSharing::update(Seconds now) {
  if (seeds_.empty()) return;
  ++solves_;
  bool done = false;
  if (mode_ == SharingMode::kIncremental) {
    if (++epoch_ == 0) {
      for (Hot& h : hot_) h.touched = h.assigned = 0;
      std::fill(saturated_.begin(), saturated_.end(), 0);
      std::fill(pushed_.begin(), pushed_.end(), 0);
      epoch_ = 1;
    }
    assigned_list_.clear();
    touched_list_.clear();
    pushed_list_.clear();
    done = sweep();
    if (!done) ++fallbacks_;
  }
  if (!done) full();
  seeds_.clear();
  added_.clear();
  commit(now);
}

void FlowSharing::commit(Seconds now) {
  for (const std::uint32_t s : assigned_list_) {
    Hot& h = hot_[s];
    h.bottleneck = h.new_bottleneck;
    const double rate = h.new_rate;
    if (rate == h.rate) continue;  // untouched: its projected end stays exactly as it was
    // Max-min rates are positive; a zero here would be a solver bug, and would never end.
    if (!(rate > 0) || !std::isfinite(rate)) {
      throw Error("internal error: the max-min solver gave a flow the rate " + std::to_string(rate));
    }
    if (h.rate > 0) remaining_[s] = std::max(0.0, remaining_[s] - h.rate * (now - last_[s]));
    last_[s] = now;
    h.rate = rate;
    finish_[s] = now + remaining_[s] / rate;
    ends_update(s);
    ++rate_changes_;
  }
  assigned_list_.clear();
}

bool FlowSharing::ends_before(std::uint32_t a, std::uint32_t b) const {
  const double fa = finish_[a], fb = finish_[b];
  return fa < fb || (fa == fb && slot_flow_[a] < slot_flow_[b]);
}

void FlowSharing::ends_sift_up(std::size_t i) {
  const std::uint32_t s = ends_[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!ends_before(s, ends_[parent])) break;
    ends_[i] = ends_[parent];
    end_pos_[ends_[i]] = static_cast<std::uint32_t>(i);
    i = parent;
  }
  ends_[i] = s;
  end_pos_[s] = static_cast<std::uint32_t>(i);
}

void FlowSharing::ends_sift_down(std::size_t i) {
  const std::uint32_t s = ends_[i];
  const std::size_t n = ends_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && ends_before(ends_[child + 1], ends_[child])) ++child;
    if (!ends_before(ends_[child], s)) break;
    ends_[i] = ends_[child];
    end_pos_[ends_[i]] = static_cast<std::uint32_t>(i);
    i = child;
  }
  ends_[i] = s;
  end_pos_[s] = static_cast<std::uint32_t>(i);
}

void FlowSharing::ends_update(std::uint32_t s) {
  if (end_pos_[s] == kNotQueued) {
    ends_.push_back(s);
    ends_sift_up(ends_.size() - 1);
    return;
  }
  const std::size_t i = end_pos_[s];
  ends_sift_up(i);
  if (end_pos_[s] == i) ends_sift_down(i);
}

void FlowSharing::ends_erase(std::uint32_t s) {
  const std::uint32_t i = end_pos_[s];
  if (i == kNotQueued) return;
  end_pos_[s] = kNotQueued;
  const std::uint32_t last = ends_.back();
  ends_.pop_back();
  if (last == s) return;
  ends_[i] = last;
  end_pos_[last] = i;
  ends_sift_up(i);
  if (end_pos_[last] == i) ends_sift_down(i);
}

std::size_t FlowSharing::memory_bytes() const {
  std::size_t bytes =
      sizeof(*this) + capacity_bytes(slot_of_) + capacity_bytes(hot_) + capacity_bytes(slot_flow_) +
      capacity_bytes(path_) + capacity_bytes(hops_) + capacity_bytes(pos_base_) + capacity_bytes(active_pos_) +
      capacity_bytes(end_pos_) + capacity_bytes(remaining_) + capacity_bytes(finish_) + capacity_bytes(last_) +
      capacity_bytes(free_slots_) + capacity_bytes(active_) + capacity_bytes(ends_) + capacity_bytes(pos_) +
      capacity_bytes(on_link_) + capacity_bytes(capacity_) + capacity_bytes(level_) + capacity_bytes(heap_pos_) +
      capacity_bytes(busy_since_) + capacity_bytes(link_busy_) + capacity_bytes(saturated_) + capacity_bytes(pushed_) +
      capacity_bytes(seeds_) + capacity_bytes(added_) + capacity_bytes(touched_list_) + capacity_bytes(assigned_list_) +
      capacity_bytes(pushed_list_) + capacity_bytes(heap_) + capacity_bytes(above_);
  for (const auto& list : on_link_) bytes += capacity_bytes(list);
  return bytes;
}

}  // namespace moesim::sim::detail
