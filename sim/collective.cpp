// StepBuilder: records a collective's steps and checks each one as it is emitted, so a bad
// expansion fails with the collective's name, the step and the bad value.
#include "sim/collective.hpp"

#include <cmath>
#include <sstream>

#include "sim/error.hpp"

namespace moesim::sim {

StepBuilder::StepBuilder(const Network& network, std::string owner) : network_(network), owner_(std::move(owner)) {}

StepRef StepBuilder::transfer(Bytes bytes, std::span<const LinkId> path, std::span<const StepRef> after,
                              std::string_view label) {
  if (!(bytes >= 0) || !std::isfinite(bytes)) {
    std::ostringstream msg;
    msg << owner_ << ": step " << steps_.size() << " transfers " << bytes
        << " bytes; expected a non-negative, finite number";
    throw Error(msg.str());
  }
  if (!network_.valid_path(path)) network_.check_path(path, owner_ + ": step " + std::to_string(steps_.size()));
  return add(StepKind::kTransfer, bytes, path, after, label);
}

StepRef StepBuilder::delay(Seconds duration, std::span<const StepRef> after, std::string_view label) {
  if (!(duration >= 0) || !std::isfinite(duration)) {
    std::ostringstream msg;
    msg << owner_ << ": step " << steps_.size() << " has duration " << duration
        << " s; expected a non-negative, finite number";
    throw Error(msg.str());
  }
  return add(StepKind::kDelay, duration, {}, after, label);
}

StepRef StepBuilder::add(StepKind kind, double value, std::span<const LinkId> path, std::span<const StepRef> after,
                         std::string_view label) {
  const auto self = static_cast<StepRef>(steps_.size());
  if (self == kNoStep) throw Error(owner_ + ": too many steps");
  Step step;
  step.kind = kind;
  step.value = value;
  step.path_offset = static_cast<std::uint32_t>(paths_.size());
  step.path_size = static_cast<std::uint32_t>(path.size());
  paths_.insert(paths_.end(), path.begin(), path.end());
  step.after_offset = static_cast<std::uint32_t>(afters_.size());
  for (const StepRef a : after) {
    if (a == kNoStep) continue;
    if (a >= self) {
      std::ostringstream msg;
      msg << owner_ << ": step " << self << " waits for step " << a
          << ", which is not an earlier step (a step may only wait for steps emitted before it)";
      throw Error(msg.str());
    }
    afters_.push_back(a);
  }
  step.after_size = static_cast<std::uint32_t>(afters_.size() - step.after_offset);
  step.label = std::string(label);
  steps_.push_back(std::move(step));
  return self;
}

}  // namespace moesim::sim
