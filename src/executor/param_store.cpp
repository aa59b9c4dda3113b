// A group's parameters and gradients under ZeRO 0 to 3: which of them a rank holds, the
// units it gathers and reduces during a pass, and the ranges its optimizer updates.
#include "src/executor/param_store.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <string>

namespace moesim::exec {
namespace {

// A bug, not an input: the model used a unit it had not gathered, or the layout was not
// padded for the shards.
void require(bool ok, const std::string& what) {
  if (!ok) throw std::logic_error("ParamStore: " + what);
}

}  // namespace

ParamStore::ParamStore(Backend& backend, Communicator* shards, int zero, ParamGroup group, const ModelParams& layout)
    : B_(backend), comm_(shards) {
  ranks_ = comm_ != nullptr ? comm_->size() : 1;
  rank_ = comm_ != nullptr ? comm_->rank() : 0;
  zero_ = ranks_ > 1 ? zero : 0;
  const auto n = static_cast<std::size_t>(ranks_);
  const std::size_t laid_out = group == ParamGroup::dense ? layout.dense_size : layout.expert_size;
  size_ = laid_out;
  for (const ParamUnit& u : layout.units)
    if (u.group == group) units_.push_back(u);
  in_use_.resize(units_.size());
  if (zero_ == 1) size_ = (size_ + n - 1) / n * n;  // one chunk per rank of the flat buffer
  std::size_t at = 0;
  for (std::size_t u = 0; u < units_.size(); ++u) {
    require(units_[u].offset == (u == 0 ? 0 : units_[u - 1].offset + units_[u - 1].size), "units leave a gap");
    require(zero_ < 2 || units_[u].size % n == 0, "unit " + units_[u].name + " is not padded for the shards");
    at_.push_back(at);
    at += zero_ >= 2 ? chunk(u) : 0;
  }
  require(units_.empty() ? laid_out == 0 : units_.back().offset + units_.back().size == laid_out,
          "units do not cover the buffer");

  const std::size_t shard = size_ / n;
  params_ = Array<float>(B_, zero_ == 3 ? shard : size_);
  grads_ = Array<float>(B_, zero_ >= 2 ? shard : size_);
  if (zero_ == 1) chunk_grads_ = Array<float>(B_, shard);
  B_.zero(params_.data(), params_.size() * sizeof(float));
  B_.zero(grads_.data(), grads_.size() * sizeof(float));

  if (zero_ == 0) owned_.push_back({0, size_, 0});
  if (zero_ == 1) owned_.push_back({static_cast<std::size_t>(rank_) * shard, shard, 0});
  if (zero_ >= 2)
    for (std::size_t u = 0; u < units_.size(); ++u)
      owned_.push_back({units_[u].offset + static_cast<std::size_t>(rank_) * chunk(u), chunk(u), at_[u]});
  for (const Owned& o : owned_) owned_size_ += o.size;
}

std::size_t ParamStore::unit_of(std::size_t offset) const {
  const auto it = std::upper_bound(units_.begin(), units_.end(), offset,
                                   [](std::size_t off, const ParamUnit& u) { return off < u.offset; });
  require(it != units_.begin() && offset < std::prev(it)->offset + std::prev(it)->size,
          "offset " + std::to_string(offset) + " lies in no unit");
  return static_cast<std::size_t>(std::prev(it) - units_.begin());
}

float* ParamStore::param(std::size_t offset) {
  if (zero_ < 3) return params_.data() + offset;
  const std::size_t u = unit_of(offset);
  require(!in_use_[u].params.empty(), "unit " + units_[u].name + " read before it was gathered");
  return in_use_[u].params.data() + (offset - units_[u].offset);
}

float* ParamStore::grad(std::size_t offset) {
  if (zero_ < 2) return grads_.data() + offset;
  const std::size_t u = unit_of(offset);
  require(!in_use_[u].grads.empty(), "unit " + units_[u].name + "'s gradient written before it was opened");
  return in_use_[u].grads.data() + (offset - units_[u].offset);
}

float* ParamStore::whole_params() {
  require(zero_ < 3, "no whole parameters under ZeRO 3");
  return params_.data();
}

float* ParamStore::whole_grads() {
  require(zero_ < 2, "no whole gradients under ZeRO 2 and 3");
  return grads_.data();
}

void ParamStore::gather(std::size_t unit) {
  if (zero_ < 3) return;
  InUse& use = in_use_[unit];
  if (use.param_uses++ > 0) return;
  use.params = Array<float>(B_, units_[unit].size);
  B_.synchronize();  // NCCL reads the shard on its own stream
  comm_->all_gather(params_.data() + at_[unit], chunk(unit), use.params.data());
  comm_->wait();
}

void ParamStore::release(std::size_t unit) {
  if (zero_ < 3) return;
  InUse& use = in_use_[unit];
  require(use.param_uses > 0, "unit " + units_[unit].name + " released more often than gathered");
  if (--use.param_uses == 0) use.params = Array<float>();
}

void ParamStore::open_grads(std::size_t unit) {
  if (zero_ < 2) return;
  InUse& use = in_use_[unit];
  require(use.grads.empty(), "unit " + units_[unit].name + "'s gradient opened twice");
  use.grads = Array<float>(B_, units_[unit].size);
  B_.zero(use.grads.data(), units_[unit].size * sizeof(float));
}

void ParamStore::close_grads(std::size_t unit) {
  if (zero_ < 2) return;
  InUse& use = in_use_[unit];
  const std::size_t n = chunk(unit);
  Array<float> mine(B_, n);
  B_.synchronize();
  comm_->reduce_scatter(use.grads.data(), mine.data(), n);
  comm_->wait();
  use.grads = Array<float>();
  B_.axpy(1.0f, mine.data(), grads_.data() + at_[unit], n);
}

void ParamStore::discard(std::size_t unit) {
  in_use_[unit].grads = Array<float>();
  in_use_[unit].params = Array<float>();
  in_use_[unit].param_uses = 0;
}

void ParamStore::zero_grads() { B_.zero(grads_.data(), grads_.size() * sizeof(float)); }

void ParamStore::start_reduce(std::size_t unit) {
  if (zero_ != 0 || ranks_ == 1) return;
  for (const Started& s : started_) require(s.unit != unit, "unit " + units_[unit].name + " reduced twice");
  B_.synchronize();  // NCCL reads the gradients on its own stream
  const auto now = std::chrono::steady_clock::now();
  started_.push_back({unit, comm_->start_all_reduce(grads_.data() + units_[unit].offset, units_[unit].size),
                      {units_[unit].name, now, now}, false});
}

void ParamStore::poll() {
  for (Started& s : started_)
    if (!s.done && s.pending->test()) {
      s.done = true;
      s.span.end = std::chrono::steady_clock::now();
    }
}

std::vector<ParamStore::ReduceSpan> ParamStore::take_reduce_spans() {
  std::vector<ReduceSpan> spans;
  for (Started& s : started_) {
    require(s.done, "unit " + units_[s.unit].name + "'s reduction taken before it completed");
    spans.push_back(s.span);
  }
  started_.clear();
  return spans;
}

void ParamStore::reduce() {
  if (zero_ >= 2 || ranks_ == 1) return;
  if (zero_ == 0 && !started_.empty()) {
    // The units the backward did not hand over (in unit order, the same on every rank).
    for (std::size_t u = 0; u < units_.size(); ++u)
      if (std::none_of(started_.begin(), started_.end(), [&](const Started& s) { return s.unit == u; }))
        start_reduce(u);
    for (Started& s : started_)
      if (!s.done) {
        s.pending->wait();
        s.done = true;
        s.span.end = std::chrono::steady_clock::now();
      }
    return;
  }
  B_.synchronize();  // NCCL reads the gradients on its own stream
  if (zero_ == 1)
    comm_->reduce_scatter(grads_.data(), chunk_grads_.data(), chunk_grads_.size());
  else
    comm_->all_reduce(grads_.data(), size_);
  comm_->wait();
}

float* ParamStore::owned_grads() { return zero_ == 1 ? chunk_grads_.data() : grads_.data(); }

float* ParamStore::owned_params(const Owned& range) {
  return zero_ == 3 ? params_.data() + range.at : params_.data() + range.offset;
}

void ParamStore::publish() {
  if (zero_ != 1 && zero_ != 2) return;
  for (const Owned& o : owned_) {
    // The updated range goes out from a copy: the all-gather writes over the whole buffer.
    Array<float> updated(B_, o.size);
    B_.copy(updated.data(), params_.data() + o.offset, o.size * sizeof(float));
    B_.synchronize();  // NCCL reads `updated` on its own stream
    comm_->all_gather(updated.data(), o.size, params_.data() + (o.offset - static_cast<std::size_t>(rank_) * o.size));
    comm_->wait();
  }
}

std::pair<float*, std::size_t> ParamStore::held_grads(std::size_t offset, std::size_t count) {
  if (zero_ < 2) return {grads_.data() + offset, count};
  const std::size_t u = unit_of(offset);
  const auto padding = static_cast<std::size_t>(ranks_);
  require(units_[u].offset == offset && units_[u].size >= count && units_[u].size - count < padding,
          "tensor at " + std::to_string(offset) + " is not a unit of its own");
  return {grads_.data() + at_[u], chunk(u)};
}

float* ParamStore::held_params() { return params_.data(); }
std::size_t ParamStore::held_params_size() const { return params_.size(); }

void ParamStore::load(const std::vector<float>& whole) {
  require(whole.size() <= size_, "initial values larger than the buffer");
  if (zero_ < 3) {
    B_.upload(params_.data(), whole.data(), whole.size() * sizeof(float));
    return;
  }
  for (const Owned& o : owned_) B_.upload(params_.data() + o.at, whole.data() + o.offset, o.size * sizeof(float));
}

}  // namespace moesim::exec
