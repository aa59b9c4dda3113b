// Workload: the builder's checks (every bad value is an Error naming the task) and its
// compact per-task storage.
#include "sim/workload.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "sim/error.hpp"

namespace moesim::sim {
namespace {

// Task ids share 30 bits with two flag bits inside the engine.
constexpr std::size_t kMaxTasks = (std::size_t{1} << 30) - 1;

template <class T>
std::size_t capacity_bytes(const std::vector<T>& v) {
  return v.capacity() * sizeof(T);
}

}  // namespace

Workload::Workload() {
  names_.push_back('\0');  // offset 0: the empty name
  for (const char* c : {"delay", "transfer", "collective"}) {
    category_index_.emplace(c, static_cast<std::uint16_t>(categories_.size()));
    categories_.emplace_back(c);
  }
}

ResourceId Workload::add_resource(std::string name, ResourceOptions options) {
  if (options.capacity < 1) {
    throw Error("resource '" + name + "': capacity must be at least 1, got 0");
  }
  if (resources_.size() >= kNoResource) throw Error("workload: too many resources");
  resources_.push_back(Resource{std::move(name), std::move(options.group), options.capacity, options.order});
  return static_cast<ResourceId>(resources_.size() - 1);
}

TaskId Workload::add_task(TaskKind kind, std::string_view name, double value, std::uint32_t aux,
                          const TaskOptions& options) {
  if (kind_.size() >= kMaxTasks) throw Error("workload: too many tasks (at most 2^30 - 1)");
  if (name.find('\0') != std::string_view::npos) {
    throw Error("task '" + std::string(name.substr(0, name.find('\0'))) +
                "...': a task name may not contain a NUL character");
  }
  if (options.resource != kNoResource && options.resource >= resources_.size()) {
    std::ostringstream msg;
    msg << "task '" << name << "': resource " << options.resource << " does not exist (the workload has "
        << resources_.size() << " resources)";
    throw Error(msg.str());
  }
  std::uint16_t category = static_cast<std::uint16_t>(kind);  // the defaults come first
  if (!options.category.empty()) {
    const auto it = category_index_.find(options.category);
    if (it != category_index_.end()) {
      category = it->second;
    } else {
      if (categories_.size() > std::numeric_limits<std::uint16_t>::max()) {
        throw Error("workload: too many distinct task categories (at most 65536)");
      }
      category = static_cast<std::uint16_t>(categories_.size());
      categories_.emplace_back(options.category);
      category_index_.emplace(categories_.back(), category);
    }
  }
  std::uint32_t name_offset = 0;
  if (!name.empty()) {
    if (names_.size() + name.size() + 1 > std::numeric_limits<std::uint32_t>::max()) {
      throw Error("workload: task names exceed 4 GiB");
    }
    name_offset = static_cast<std::uint32_t>(names_.size());
    names_.append(name);
    names_.push_back('\0');
  }
  kind_.push_back(kind);
  resource_.push_back(options.resource);
  value_.push_back(value);
  aux_.push_back(aux);
  priority_.push_back(options.priority);
  category_.push_back(category);
  name_.push_back(name_offset);
  return static_cast<TaskId>(kind_.size() - 1);
}

TaskId Workload::add_delay(std::string_view name, Seconds duration, const TaskOptions& options) {
  if (!(duration >= 0) || !std::isfinite(duration)) {
    std::ostringstream msg;
    msg << "task '" << name << "': duration must be non-negative and finite (s), got " << duration;
    throw Error(msg.str());
  }
  return add_task(TaskKind::kDelay, name, duration, 0, options);
}

TaskId Workload::add_transfer(std::string_view name, Bytes bytes, std::span<const LinkId> path,
                              const TaskOptions& options) {
  if (!(bytes >= 0) || !std::isfinite(bytes)) {
    std::ostringstream msg;
    msg << "task '" << name << "': transfer size must be non-negative and finite (bytes), got " << bytes;
    throw Error(msg.str());
  }
  if (paths_.size() + path.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw Error("workload: transfer paths exceed 2^32 links in all");
  }
  const auto index = static_cast<std::uint32_t>(transfers_.size());
  const TaskId id = add_task(TaskKind::kTransfer, name, bytes, index, options);
  transfers_.push_back(
      TransferPath{static_cast<std::uint32_t>(paths_.size()), static_cast<std::uint32_t>(path.size())});
  paths_.insert(paths_.end(), path.begin(), path.end());
  return id;
}

TaskId Workload::add_collective(std::string_view name, CollectiveSpec spec, const TaskOptions& options) {
  if (options.resource != kNoResource) {
    throw Error("collective '" + std::string(name) +
                "': give its resources as CollectiveSpec::parties, not TaskOptions::resource");
  }
  if (!(spec.bytes >= 0) || !std::isfinite(spec.bytes)) {
    std::ostringstream msg;
    msg << "collective '" << name << "': size must be non-negative and finite (bytes), got " << spec.bytes;
    throw Error(msg.str());
  }
  for (std::size_t i = 0; i < spec.parties.size(); ++i) {
    const ResourceId r = spec.parties[i];
    if (r >= resources_.size()) {
      std::ostringstream msg;
      msg << "collective '" << name << "': party " << i << " is resource " << r
          << ", which does not exist (the workload has " << resources_.size() << " resources)";
      throw Error(msg.str());
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (spec.parties[j] == r) {
        throw Error("collective '" + std::string(name) + "': resource '" + resources_[r].name +
                    "' is listed twice among its parties");
      }
    }
  }
  const auto index = static_cast<std::uint32_t>(collectives_.size());
  const Bytes bytes = spec.bytes;
  const TaskId id = add_task(TaskKind::kCollective, name, bytes, index, options);
  collectives_.push_back(std::move(spec));
  return id;
}

void Workload::check_task(TaskId t, std::string_view what) const {
  if (t >= kind_.size()) {
    std::ostringstream msg;
    msg << what << ": task " << t << " does not exist (the workload has " << kind_.size() << " tasks)";
    throw Error(msg.str());
  }
}

void Workload::add_dependency(TaskId before, TaskId after) {
  check_task(before, "add_dependency");
  check_task(after, "add_dependency");
  if (before == after) throw Error("add_dependency: " + describe(before) + " cannot depend on itself (a cycle)");
  deps_.push_back(Dependency{before, after});
}

void Workload::add_arg(TaskId task, std::string key, std::string value) {
  check_task(task, "add_arg");
  args_.push_back(TaskArg{task, std::move(key), std::move(value)});
}

void Workload::reserve(std::size_t tasks, std::size_t dependencies) {
  kind_.reserve(tasks);
  resource_.reserve(tasks);
  value_.reserve(tasks);
  aux_.reserve(tasks);
  priority_.reserve(tasks);
  category_.reserve(tasks);
  name_.reserve(tasks);
  deps_.reserve(dependencies);
}

std::span<const LinkId> Workload::path(TaskId t) const {
  const TransferPath& p = transfers_[aux_[t]];
  return {paths_.data() + p.offset, p.size};
}

const CollectiveSpec& Workload::collective(TaskId t) const { return collectives_[aux_[t]]; }

std::string Workload::describe(TaskId t) const {
  // Every collective's expansion asks for this, so no stream.
  return "task '" + std::string(name(t)) + "' (id " + std::to_string(t) + ")";
}

std::size_t Workload::memory_bytes() const {
  std::size_t bytes = sizeof(*this);
  bytes += capacity_bytes(kind_) + capacity_bytes(resource_) + capacity_bytes(value_) + capacity_bytes(aux_) +
           capacity_bytes(priority_) + capacity_bytes(category_) + capacity_bytes(name_) + names_.capacity() +
           capacity_bytes(deps_) + capacity_bytes(transfers_) + capacity_bytes(paths_) + capacity_bytes(collectives_) +
           capacity_bytes(resources_) + capacity_bytes(categories_) + capacity_bytes(args_);
  return bytes;
}

}  // namespace moesim::sim
