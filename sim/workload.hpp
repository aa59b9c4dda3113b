// What the engine runs: resources (queues), tasks (fixed delays, transfers over network
// paths, collectives) and the dependencies between them. A plain builder: it checks each
// value as it is added and stores tasks as struct-of-arrays so a million dependency-only
// tasks stay small (about 27 bytes each here, plus 8 per dependency).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sim/collective.hpp"
#include "sim/types.hpp"

namespace moesim::sim {

enum class TaskKind : std::uint8_t { kDelay, kTransfer, kCollective };

// How a resource picks the next task to start when it has a free slot.
enum class QueueOrder : std::uint8_t {
  // A stream: tasks start strictly in the order of (priority, task id), each waiting for
  // the one before it to start, like a CUDA stream or an NCCL communicator.
  kInOrder,
  // A pool: among the tasks whose dependencies are done, the lowest (priority, time it
  // became ready, task id) that can start now starts first (a collective waiting for its
  // other parties does not hold a pool).
  kPriority,
};

struct ResourceOptions {
  std::uint32_t capacity = 1;  // tasks it can run at once, >= 1
  QueueOrder order = QueueOrder::kInOrder;
  std::string group = {};  // trace: resources of one group share a process track
};

struct Resource {
  std::string name = {};
  std::string group = {};
  std::uint32_t capacity = 1;
  QueueOrder order = QueueOrder::kInOrder;
};

// Optional attributes of a task.
struct TaskOptions {
  // A free-form kind ("gemm", "all_to_all"...) the critical path adds time up by. Empty:
  // "delay", "transfer" or "collective" after the task's kind.
  std::string category = {};
  // The resource the task occupies while it runs; kNoResource: it runs as soon as its
  // dependencies are done. A collective's resources are its parties instead.
  ResourceId resource = kNoResource;
  // Rank in the resource's queue, lower first (see QueueOrder); ignored without a resource.
  std::int32_t priority = 0;
};

struct Dependency {
  TaskId before = 0;  // must end...
  TaskId after = 0;   // ...before this one can start
};

// A key/value pair carried through to the trace's event arguments.
struct TaskArg {
  TaskId task = 0;
  std::string key = {};
  std::string value = {};
};

class Workload {
 public:
  Workload();

  ResourceId add_resource(std::string name, ResourceOptions options = {});

  // A task that runs for `duration` seconds (>= 0, finite).
  TaskId add_delay(std::string_view name, Seconds duration, const TaskOptions& options = {});
  // A flow of `bytes` (>= 0, finite) over `path`: it waits for the sum of the path's link
  // latencies, then sends at its max-min fair share. Link ids are checked against the
  // network when simulated. An empty path is a local copy and takes no time.
  TaskId add_transfer(std::string_view name, Bytes bytes, std::span<const LinkId> path,
                      const TaskOptions& options = {});
  // A multi-party task; options.resource must be kNoResource (the spec's parties are held).
  TaskId add_collective(std::string_view name, CollectiveSpec spec, const TaskOptions& options = {});
  // `after` starts only once `before` has ended. Duplicates are harmless; a task may not
  // depend on itself.
  void add_dependency(TaskId before, TaskId after);
  void add_arg(TaskId task, std::string key, std::string value);
  // Reserves storage so a builder that knows its size wastes no capacity.
  void reserve(std::size_t tasks, std::size_t dependencies);

  std::size_t task_count() const { return kind_.size(); }
  std::size_t resource_count() const { return resources_.size(); }
  std::size_t dependency_count() const { return deps_.size(); }
  std::size_t transfer_count() const { return transfers_.size(); }
  std::size_t collective_count() const { return collectives_.size(); }

  TaskKind kind(TaskId t) const { return kind_[t]; }
  ResourceId resource(TaskId t) const { return resource_[t]; }
  std::int32_t priority(TaskId t) const { return priority_[t]; }
  // kDelay: its duration (s); kTransfer: its bytes; kCollective: the spec's bytes.
  double value(TaskId t) const { return value_[t]; }
  // Views into the workload: valid until the next task is added.
  std::string_view name(TaskId t) const { return std::string_view(names_.data() + name_[t]); }
  std::uint16_t category_id(TaskId t) const { return category_[t]; }
  std::string_view category(TaskId t) const { return categories_[category_[t]]; }
  const std::vector<std::string>& categories() const { return categories_; }
  // kTransfer only: the links it crosses.
  std::span<const LinkId> path(TaskId t) const;
  // kCollective only.
  const CollectiveSpec& collective(TaskId t) const;
  // kTransfer: its index among transfers (0, 1, ... in creation order); kCollective: among
  // collectives; kDelay: 0.
  std::uint32_t kind_index(TaskId t) const { return aux_[t]; }
  const Resource& resource_info(ResourceId r) const { return resources_[r]; }
  std::span<const Dependency> dependencies() const { return deps_; }
  std::span<const TaskArg> args() const { return args_; }
  // "task 'name' (id 12)" for messages.
  std::string describe(TaskId t) const;

  // Bytes held by this workload (allocated capacity, not just size).
  std::size_t memory_bytes() const;

 private:
  TaskId add_task(TaskKind kind, std::string_view name, double value, std::uint32_t aux, const TaskOptions& options);
  void check_task(TaskId t, std::string_view what) const;

  // Per task, struct of arrays.
  std::vector<TaskKind> kind_;
  std::vector<ResourceId> resource_;
  std::vector<double> value_;
  std::vector<std::uint32_t> aux_;  // kTransfer: index in transfers_; kCollective: in collectives_
  std::vector<std::int32_t> priority_;
  std::vector<std::uint16_t> category_;
  std::vector<std::uint32_t> name_;  // offset of a NUL-terminated name in names_ (0: empty)
  std::string names_;

  std::vector<Dependency> deps_;
  struct TransferPath {
    std::uint32_t offset = 0;
    std::uint32_t size = 0;
  };
  std::vector<TransferPath> transfers_;
  std::vector<LinkId> paths_;
  std::vector<CollectiveSpec> collectives_;
  std::vector<Resource> resources_;
  std::vector<std::string> categories_;
  std::unordered_map<std::string, std::uint16_t> category_index_;
  std::vector<TaskArg> args_;
};

}  // namespace moesim::sim
