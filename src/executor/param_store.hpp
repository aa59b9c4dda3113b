// One group of a rank's parameters (dense or expert) with their gradients, held as the
// plan's ZeRO stage says over the ranks that replicate the group (`shards`: the
// data-parallel group for dense parameters, the expert-data-parallel group for experts):
//
//   zero 0  parameters and gradients whole; the gradients all-reduced, unit by unit as the
//           update's last backward finishes each (overlapped with the rest of it), or after
//           the micro-batches
//   zero 1  whole; after the micro-batches the gradients are reduce-scattered and this rank
//           updates chunk rank() of the flat buffer, then all-gathers the parameters
//   zero 2  parameters whole; of the gradients only this rank's 1/shards of each unit
//           (parameters.hpp's ParamUnit) is kept: a unit's whole gradient exists from the
//           start of its backward to its reduce-scatter at the end of it, every micro-batch
//   zero 3  parameters sharded too (FSDP): a unit's whole parameters are all-gathered
//           before its forward and again before its backward and freed after each
//
// This is the layout src/accounting/memory.cpp prices: weights, gradients and Adam's
// moments each 1/shards from their stage on, plus (not priced there) the whole units in use.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/comm/communicator.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/parameters.hpp"

namespace moesim::exec {

class ParamStore {
 public:
  // `shards` null or of size 1: nothing to shard over, held whole whatever `zero` says.
  // Under ZeRO 2 and 3 the layout's units must be padded to a multiple of shards->size().
  ParamStore(Backend& backend, Communicator* shards, int zero, ParamGroup group, const ModelParams& layout);
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  int zero() const { return zero_; }  // 0 when there is nothing to shard over
  std::size_t size() const { return size_; }  // elements of the whole flat buffer, padding included

  // The parameter and the gradient at `offset` of the layout: in the whole buffers, or
  // under ZeRO 2/3 in the unit in use that holds it (an assertion when it is not in use).
  float* param(std::size_t offset);
  float* grad(std::size_t offset);
  // The whole buffers (ZeRO 0 and 1; ZeRO 2 for the parameters).
  float* whole_params();
  float* whole_grads();

  // The unit holding `offset`.
  std::size_t unit_of(std::size_t offset) const;
  // A unit's parameters in use: all-gathered under ZeRO 3 (nested uses count), nothing else.
  void gather(std::size_t unit);
  void release(std::size_t unit);
  // A unit's gradient in use under ZeRO 2/3: a zeroed whole-unit buffer; closing it
  // reduce-scatters it over the shards, adds this rank's part to the held gradients and
  // frees it. `discard` frees without communicating (an error is unwinding).
  void open_grads(std::size_t unit);
  void close_grads(std::size_t unit);
  void discard(std::size_t unit);

  // The optimizer's side. Zeroes the gradients this rank keeps.
  void zero_grads();
  // ZeRO 0 over several ranks: starts all-reducing the unit's gradient, which the update's
  // last backward has finished writing, and lets it run while the backward goes on
  // (buckets in the order the backward produces them, as PyTorch DDP's).
  void start_reduce(std::size_t unit);
  // Moves the started reductions on, noting when each completed.
  void poll();
  // After the micro-batches: ZeRO 0 all-reduces (what start_reduce has not started, then
  // waits for all), ZeRO 1 reduce-scatters; ZeRO 2/3 reduced each unit in its backward.
  void reduce();
  // The reductions start_reduce ran this update, from their start to when they were seen
  // complete (steady clock); taking them forgets them.
  struct ReduceSpan {
    std::string unit;
    std::chrono::steady_clock::time_point start, end;
  };
  std::vector<ReduceSpan> take_reduce_spans();
  // A range of the flat buffer this rank updates, and where it lies in owned_grads() (and
  // in the Adam moments, which are laid out alike).
  struct Owned {
    std::size_t offset = 0, size = 0, at = 0;
  };
  const std::vector<Owned>& owned() const { return owned_; }
  std::size_t owned_size() const { return owned_size_; }
  float* owned_grads();
  float* owned_params(const Owned& range);
  // After the step: ZeRO 1 and 2 all-gather the updated parameters; 0 and 3 need nothing.
  void publish();
  // The reduced gradient this rank holds of `count` elements at `offset` (a unit of its
  // own under ZeRO 2/3, whose shard it returns): the tied embedding's, summed over its
  // copies. Returns the pointer and its element count.
  std::pair<float*, std::size_t> held_grads(std::size_t offset, std::size_t count);

  // The parameters this rank holds for good: the whole buffer, or under ZeRO 3 its shard.
  float* held_params();
  std::size_t held_params_size() const;
  // Uploads this rank's part of the whole buffer's initial values (size() elements).
  void load(const std::vector<float>& whole);

 private:
  struct InUse {
    Array<float> params, grads;
    int param_uses = 0;
  };
  std::size_t chunk(std::size_t unit) const { return units_[unit].size / static_cast<std::size_t>(ranks_); }

  Backend& B_;
  Communicator* comm_;
  int zero_ = 0, ranks_ = 1, rank_ = 0;
  std::size_t size_ = 0;
  std::vector<ParamUnit> units_;  // this group's
  std::vector<std::size_t> at_;   // each unit's place in the held shards (ZeRO 2/3)
  std::vector<InUse> in_use_;
  Array<float> params_;  // whole (ZeRO 0-2) or this rank's shard (ZeRO 3)
  Array<float> grads_;   // whole (ZeRO 0, 1) or this rank's shard (ZeRO 2, 3)
  Array<float> chunk_grads_;  // ZeRO 1: the reduce-scattered chunk
  std::vector<Owned> owned_;
  std::size_t owned_size_ = 0;
  struct Started {
    std::size_t unit = 0;
    std::unique_ptr<PendingCollective> pending;
    ReduceSpan span;
    bool done = false;
  };
  std::vector<Started> started_;  // this update's, in the order started
};

}  // namespace moesim::exec
