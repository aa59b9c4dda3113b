// Internal to sim/ (not a public header): the flows currently sending, their max-min fair
// rates, their progress, and which ends next. Rates are re-solved once per instant at which
// flows start or end, and only where the change reaches (see docs/engine.md, "Max-min").
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "sim/network.hpp"
#include "sim/types.hpp"

namespace moesim::sim::detail {

enum class SharingMode : std::uint8_t { kIncremental, kFull };

class FlowSharing {
 public:
  // Flow f crosses arena[offsets[f] .. offsets[f] + sizes[f]); the spans must outlive this.
  FlowSharing(const Network& network, std::span<const LinkId> arena, std::span<const std::uint32_t> offsets,
              std::span<const std::uint32_t> sizes, SharingMode mode);

  // Flow f (non-empty path, bytes > 0) starts sending at `now`.
  void add(std::uint32_t f, Bytes bytes, Seconds now);
  // Flow f has sent everything at `now` (it must be the one next_flow() names).
  void remove(std::uint32_t f, Seconds now);
  // Whether adds or removes await update().
  bool pending() const { return !seeds_.empty(); }
  // Re-solves the rates after this instant's adds and removes and re-projects the end of
  // every flow whose rate changed.
  void update(Seconds now);

  // The sending flow that ends first (lowest end time, then lowest flow id), and when.
  Seconds next_end() const {
    return ends_.empty() ? std::numeric_limits<double>::infinity() : finish_[ends_.front()];
  }
  std::uint32_t next_flow() const { return slot_flow_[ends_.front()]; }

  // The current rate of flow f (0 when it is not sending).
  BytesPerSecond rate(std::uint32_t f) const;
  Seconds link_busy(LinkId l) const { return link_busy_[l]; }
  std::uint64_t solves() const { return solves_; }
  std::uint64_t flows_solved() const { return flows_solved_; }
  std::uint64_t rate_changes() const { return rate_changes_; }
  std::uint64_t fallbacks() const { return fallbacks_; }
  std::size_t memory_bytes() const;

 private:
  // A sending flow's slot: what the solver reads for every flow on a link it looks at,
  // packed together (32 bytes: one cache line holds two).
  struct Hot {
    double rate = 0;
    double new_rate = 0;
    std::uint32_t touched = 0;   // epoch stamp: reopened in this solve
    std::uint32_t assigned = 0;  // epoch stamp: given new_rate in this solve
    LinkId bottleneck = 0;
    LinkId new_bottleneck = 0;
  };
  struct Entry {
    std::uint32_t slot;
    std::uint32_t hop;  // which hop of the flow's path this link is
  };
  struct Seed {
    LinkId link;
    double key;  // level below which nothing on the link changes; < 0: an added flow's link
  };
  std::span<const LinkId> path(std::uint32_t s) const { return {path_[s], hops_[s]}; }
  void push(double key, LinkId l);
  // The sweep's queue of links: a binary heap on (key, link) with one entry per link.
  struct Queued {
    double key;
    LinkId link;
  };
  static bool queued_before(const Queued& a, const Queued& b) {
    return a.key < b.key || (a.key == b.key && a.link < b.link);
  }
  void heap_insert(double key, LinkId l);
  void heap_decrease(std::uint32_t i, double key);
  Queued heap_pop();
  void heap_sift_down(std::uint32_t i, Queued q);
  void heap_erase(std::uint32_t i);
  void touch(std::uint32_t s, double level, LinkId from);
  void assign(std::uint32_t s, double rate, LinkId bottleneck, double level);
  struct Scan {
    double frozen = 0;
    std::uint32_t open = 0;
    std::uint32_t above = 0;  // how many old rates scan() left in above_
    double held = std::numeric_limits<double>::infinity();
  };
  Scan scan(LinkId b, double level);
  double water(double room, std::uint32_t open, std::uint32_t k);
  double fill_key(LinkId m, double level);
  void queue(LinkId m, double level);
  bool sweep();
  void full();
  void commit(Seconds now);
  // The end-time heap (indexed by slot).
  bool ends_before(std::uint32_t a, std::uint32_t b) const;
  void ends_sift_up(std::size_t i);
  void ends_sift_down(std::size_t i);
  void ends_update(std::uint32_t s);
  void ends_erase(std::uint32_t s);

  std::span<const LinkId> arena_;
  std::span<const std::uint32_t> offsets_, sizes_;
  SharingMode mode_;

  std::vector<std::uint32_t> slot_of_;  // per flow id: its slot while it sends

  // Per slot.
  std::vector<Hot> hot_;
  std::vector<std::uint32_t> slot_flow_;
  std::vector<const LinkId*> path_;
  std::vector<std::uint32_t> hops_, pos_base_, active_pos_, end_pos_;
  std::vector<double> remaining_, last_, finish_;  // finish_: projected end time
  std::vector<std::uint32_t> free_slots_, active_, ends_;
  std::vector<std::uint32_t> pos_;  // parallel to arena_: index in the link's list

  // Per link.
  std::vector<std::vector<Entry>> on_link_;
  std::vector<double> capacity_, level_, busy_since_, link_busy_;
  std::vector<std::uint32_t> heap_pos_;  // index in heap_, or kNotQueued
  std::vector<std::uint32_t> saturated_, pushed_;  // epoch stamps

  // Scratch for one update.
  std::vector<Seed> seeds_;
  std::vector<std::uint32_t> added_, touched_list_, assigned_list_;
  std::vector<LinkId> pushed_list_;
  std::vector<Queued> heap_;
  std::vector<double> above_;  // never shrinks: scan() writes one slot per entry, branch-free
  std::uint32_t epoch_ = 0;
  std::uint64_t solves_ = 0, flows_solved_ = 0, rate_changes_ = 0, fallbacks_ = 0;
};

}  // namespace moesim::sim::detail
