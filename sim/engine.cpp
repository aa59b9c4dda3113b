// The event loop. Tasks and collective steps are "nodes" in one dense index space (tasks
// first); dependencies are a CSR array built once per run; an event queue ordered by
// (time, priority, subject id), and the flow that ends first, drive everything. At each
// instant the engine first applies every event at that time (ends of tasks and flows,
// flows entering their data phase), then lets the resources start what they can, then
// re-solves the flow rates once.
#include "sim/engine.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>

#include "sim/error.hpp"
#include "sim/event_queue.hpp"
#include "sim/flow_sharing.hpp"

namespace moesim::sim {
namespace {

using detail::Event;
using detail::EventQueue;

constexpr std::uint32_t kIndexBits = 30;
constexpr std::uint32_t kIndexMask = (std::uint32_t{1} << kIndexBits) - 1;
constexpr std::uint32_t kNoNode = kIndexMask;

// Event payload: what happens (top two bits) to which node or flow (low 30 bits).
enum : std::uint32_t { kNodeEnd = 0, kFlowEnd = 1, kFlowData = 2 };
// Equal times pop by (priority, payload). Every event of an instant is applied before
// anything starts, so this order never changes a timeline; it makes the pop order total.
enum : std::uint32_t { kPriorityFlowEnd = 0, kPriorityNodeEnd = 1, kPriorityFlowData = 2 };

std::uint32_t payload(std::uint32_t kind, std::uint32_t index) { return (kind << kIndexBits) | index; }

// Why a node started when it did: a Via (top two bits) and the node to credit (low bits).
std::uint32_t pack_cause(Via via, std::uint32_t node) { return (static_cast<std::uint32_t>(via) << kIndexBits) | node; }
Via cause_via(std::uint32_t cause) { return static_cast<Via>(cause >> kIndexBits); }
std::uint32_t cause_node(std::uint32_t cause) { return cause & kIndexMask; }

enum class NodeKind : std::uint8_t { kDelay, kTransfer, kCollective };
static_assert(static_cast<int>(TaskKind::kDelay) == static_cast<int>(NodeKind::kDelay) &&
              static_cast<int>(TaskKind::kTransfer) == static_cast<int>(NodeKind::kTransfer) &&
              static_cast<int>(TaskKind::kCollective) == static_cast<int>(NodeKind::kCollective));

template <class T>
std::size_t capacity_bytes(const std::vector<T>& v) {
  return v.capacity() * sizeof(T);
}

// A task waiting in a kPriority resource's heap.
struct ReadyEntry {
  std::int32_t priority;
  double ready;
  std::uint32_t node;
};
// Heap order: the lowest (priority, ready time, id) on top.
struct StartsLater {
  bool operator()(const ReadyEntry& a, const ReadyEntry& b) const {
    if (a.priority != b.priority) return a.priority > b.priority;
    if (a.ready != b.ready) return a.ready > b.ready;
    return a.node > b.node;
  }
};

struct ResourceState {
  std::uint32_t free = 1;
  std::uint32_t active = 0;
  QueueOrder order = QueueOrder::kInOrder;
  std::uint32_t next = 0, end = 0;  // kInOrder: the unstarted part of its slice of queue_
  std::vector<ReadyEntry> ready;    // kPriority: heap of ready tasks
  double busy_since = 0, busy = 0, task_seconds = 0;
  std::uint32_t tasks = 0;
  // The last time a slot was freed or a task started here, and whom a task that was
  // waiting for this resource should credit for its start (see acquire()).
  double changed_at = -1;
  std::uint32_t changed_cause = 0;
  bool changed_by_release = false;  // the last change was a release (not a start)
  bool dirty = false;
};

// A flow: a transfer task or a transfer step.
struct Transfer {
  std::uint32_t node = 0;
  Bytes bytes = 0;
  Seconds latency = 0;  // sum of the path's link latencies
  std::uint32_t record = 0;
  bool sending = false;  // in the max-min sharing (bytes > 0 over a non-empty path)
};

struct CollectiveState {
  TaskId task = 0;
  std::uint32_t first_step = 0;  // node id of its step 0
  std::uint32_t steps = 0;
  std::uint32_t unfinished = 0;
};

class Engine {
 public:
  Engine(const Workload& workload, const Network& network, const Options& options)
      : w_(workload), net_(network), opt_(options), n_(static_cast<std::uint32_t>(workload.task_count())) {}

  Result run();

 private:
  NodeKind kind(std::uint32_t x) const { return x < n_ ? static_cast<NodeKind>(w_.kind(x)) : step_kind_[x - n_]; }
  bool has_resources(std::uint32_t x) const {
    if (x >= n_) return false;
    if (w_.resource(x) != kNoResource) return true;
    return w_.kind(x) == TaskKind::kCollective && !w_.collective(x).parties.empty();
  }
  template <class F>
  void for_each_resource(std::uint32_t x, F&& f) const {
    if (x >= n_) return;
    if (const ResourceId r = w_.resource(x); r != kNoResource) {
      f(r);
    } else if (w_.kind(x) == TaskKind::kCollective) {
      for (const ResourceId p : w_.collective(x).parties) f(p);
    }
  }
  std::span<const LinkId> flow_path(std::uint32_t f) const { return {arena_.data() + xfer_offset_[f], xfer_size_[f]}; }

  void set_up();
  void add_transfer(std::uint32_t node, Bytes bytes, std::span<const LinkId> path);
  void expand(TaskId task);
  void build_graph();
  void build_queues();

  void loop();
  void handle(const Event& e, Seconds t);
  void make_ready(std::uint32_t x, Seconds t);
  void start(std::uint32_t x, Seconds t);
  void start_flow(std::uint32_t f, Seconds t);
  void flow_data(std::uint32_t f, Seconds t);
  void end_flow(std::uint32_t f, Seconds t);
  void finish(std::uint32_t x, Seconds t);
  void mark_dirty(ResourceId r);
  std::uint32_t head(ResourceId r);
  void dispatch(ResourceId r, Seconds t);
  bool can_start(std::uint32_t x, ResourceId r);
  void acquire(std::uint32_t x, Seconds t);
  void release(ResourceId r, std::uint32_t x, Seconds t);

  [[noreturn]] void diagnose_stall() const;
  void fill_result();
  void fill_critical_path();

  const Workload& w_;
  const Network& net_;
  const Options& opt_;
  const std::uint32_t n_;    // tasks
  std::uint32_t nodes_ = 0;  // tasks + steps

  // Collective steps: node n_ + k is step k overall.
  std::vector<NodeKind> step_kind_;
  std::vector<double> step_value_;         // kDelay: seconds
  std::vector<std::uint32_t> step_owner_;  // index in coll_
  std::vector<std::uint32_t> step_xfer_;   // kTransfer: index in xfer_
  std::vector<StepRef> step_index_;
  std::vector<std::string> step_label_;
  std::vector<std::uint32_t> step_edges_;  // pairs (before node, after node)
  std::vector<CollectiveState> coll_;

  // Flows: transfer tasks first (by Workload::kind_index), then transfer steps.
  std::vector<Transfer> xfer_;
  std::vector<std::uint32_t> xfer_offset_, xfer_size_;
  std::vector<LinkId> arena_;

  // Graph and timing, per node.
  std::vector<std::uint32_t> succ_offset_, succ_;
  std::vector<std::uint32_t> pending_;  // unfinished predecessors (+1 for a step: its collective's start)
  std::vector<std::uint32_t> cause_;
  std::vector<double> start_, end_;

  std::vector<ResourceState> res_;
  std::vector<std::uint32_t> queue_;  // kInOrder resources' tasks, each resource a slice
  std::vector<ResourceId> dirty_;
  std::vector<ReadyEntry> skipped_;

  EventQueue events_;
  std::unique_ptr<detail::FlowSharing> sharing_;
  std::uint64_t finished_ = 0;
  std::uint64_t event_count_ = 0;
  std::size_t engine_bytes_ = 0;
  Result result_;
};

// ---------------------------------------------------------------------------- set-up

void Engine::add_transfer(std::uint32_t node, Bytes bytes, std::span<const LinkId> path) {
  Transfer x;
  x.node = node;
  x.bytes = bytes;
  for (const LinkId l : path) x.latency += net_.link(l).latency;
  x.sending = bytes > 0 && !path.empty();
  xfer_offset_.push_back(static_cast<std::uint32_t>(arena_.size()));
  xfer_size_.push_back(static_cast<std::uint32_t>(path.size()));
  arena_.insert(arena_.end(), path.begin(), path.end());
  xfer_.push_back(x);
}

void Engine::expand(TaskId task) {
  const CollectiveSpec& spec = w_.collective(task);
  for (std::size_t i = 0; i < spec.endpoints.size(); ++i) {
    if (spec.endpoints[i] >= net_.node_count()) {
      std::ostringstream msg;
      msg << w_.describe(task) << ": endpoint " << i << " is node " << spec.endpoints[i]
          << ", which does not exist (the network has " << net_.node_count() << " nodes)";
      throw Error(msg.str());
    }
  }
  CollectiveState c;
  c.task = task;
  c.first_step = n_ + static_cast<std::uint32_t>(step_kind_.size());
  const auto owner = static_cast<std::uint32_t>(coll_.size());
  if (spec.expansion) {
    const std::string who = w_.describe(task);
    StepBuilder builder(net_, who);
    try {
      spec.expansion(CollectiveContext{w_.name(task), spec.bytes, spec.endpoints, net_}, builder);
    } catch (const Error& e) {
      const std::string what = e.what();
      throw Error(what.rfind(who, 0) == 0 ? what : who + ": " + what);
    }
    const auto& steps = builder.steps();
    if (static_cast<std::size_t>(c.first_step) + steps.size() >= kNoNode) {
      throw Error("workload: too many tasks and collective steps (at most 2^30 - 1)");
    }
    c.steps = static_cast<std::uint32_t>(steps.size());
    for (std::uint32_t k = 0; k < steps.size(); ++k) {
      const StepBuilder::Step& s = steps[k];
      const std::uint32_t node = c.first_step + k;
      step_kind_.push_back(s.kind == StepKind::kDelay ? NodeKind::kDelay : NodeKind::kTransfer);
      step_owner_.push_back(owner);
      step_index_.push_back(k);
      step_label_.push_back(s.label);
      if (s.kind == StepKind::kDelay) {
        step_value_.push_back(s.value);
        step_xfer_.push_back(0);
      } else {
        step_value_.push_back(0);
        step_xfer_.push_back(static_cast<std::uint32_t>(xfer_.size()));
        add_transfer(node, s.value, {builder.paths().data() + s.path_offset, s.path_size});
      }
      for (std::uint32_t a = 0; a < s.after_size; ++a) {
        step_edges_.push_back(c.first_step + builder.afters()[s.after_offset + a]);
        step_edges_.push_back(node);
      }
    }
  }
  c.unfinished = c.steps;
  coll_.push_back(c);
}

void Engine::build_graph() {
  // Successors as CSR: count per source, prefix sums to the end of each slice, then fill
  // backwards so each slice keeps insertion order.
  const std::span<const Dependency> deps = w_.dependencies();
  const std::size_t edges = deps.size() + step_edges_.size() / 2;
  if (edges >= std::numeric_limits<std::uint32_t>::max()) throw Error("workload: too many dependencies");
  succ_offset_.assign(static_cast<std::size_t>(nodes_) + 1, 0);
  pending_.assign(nodes_, 0);
  for (const Dependency& d : deps) {
    ++succ_offset_[d.before];
    ++pending_[d.after];
  }
  for (std::size_t i = 0; i < step_edges_.size(); i += 2) {
    ++succ_offset_[step_edges_[i]];
    ++pending_[step_edges_[i + 1]];
  }
  for (std::uint32_t s = n_; s < nodes_; ++s) ++pending_[s];  // its collective's start
  for (std::uint32_t v = 1; v <= nodes_; ++v) succ_offset_[v] += succ_offset_[v - 1];
  succ_.resize(edges);
  for (std::size_t i = step_edges_.size(); i > 0; i -= 2) {
    succ_[--succ_offset_[step_edges_[i - 2]]] = step_edges_[i - 1];
  }
  for (std::size_t i = deps.size(); i > 0; --i) succ_[--succ_offset_[deps[i - 1].before]] = deps[i - 1].after;
  // Slices now start at succ_offset_[v]; the last entry must still be the total.
  succ_offset_[nodes_] = static_cast<std::uint32_t>(edges);
  step_edges_.clear();
  step_edges_.shrink_to_fit();
}

void Engine::build_queues() {
  const std::size_t n_res = w_.resource_count();
  res_.resize(n_res);
  for (ResourceId r = 0; r < n_res; ++r) {
    const Resource& info = w_.resource_info(r);
    res_[r].free = info.capacity;
    res_[r].order = info.order;
  }
  // In-order resources run their tasks by (priority, id): slices of queue_.
  std::vector<std::uint32_t> count(n_res + 1, 0);
  bool any = false;
  for (std::uint32_t t = 0; t < n_; ++t) {
    for_each_resource(t, [&](ResourceId r) {
      if (res_[r].order == QueueOrder::kInOrder) {
        ++count[r + 1];
        any = true;
      }
    });
  }
  if (!any) return;
  for (std::size_t r = 1; r <= n_res; ++r) count[r] += count[r - 1];
  queue_.resize(count[n_res]);
  for (ResourceId r = 0; r < n_res; ++r) {
    res_[r].next = count[r];
    res_[r].end = count[r];
  }
  for (std::uint32_t t = 0; t < n_; ++t) {
    for_each_resource(t, [&](ResourceId r) {
      if (res_[r].order == QueueOrder::kInOrder) queue_[res_[r].end++] = t;
    });
  }
  for (ResourceId r = 0; r < n_res; ++r) {
    const auto first = queue_.begin() + res_[r].next;
    const auto last = queue_.begin() + res_[r].end;
    std::stable_sort(first, last, [this](std::uint32_t a, std::uint32_t b) { return w_.priority(a) < w_.priority(b); });
  }
}

void Engine::set_up() {
  // Transfers first (their paths checked against the network), then collectives expanded.
  xfer_.reserve(w_.transfer_count());
  for (TaskId t = 0; t < n_; ++t) {
    if (w_.kind(t) != TaskKind::kTransfer) continue;
    const std::span<const LinkId> path = w_.path(t);
    if (!net_.valid_path(path)) net_.check_path(path, w_.describe(t));  // throws, naming the task
    assert(w_.kind_index(t) == xfer_.size());
    add_transfer(t, w_.value(t), path);
  }
  if (w_.collective_count() > 0) {
    for (TaskId t = 0; t < n_; ++t) {
      if (w_.kind(t) == TaskKind::kCollective) expand(t);
    }
  }
  nodes_ = n_ + static_cast<std::uint32_t>(step_kind_.size());
  build_graph();
  build_queues();
  cause_.assign(nodes_, pack_cause(Via::kStart, 0));
  start_.assign(nodes_, -1.0);
  end_.assign(nodes_, 0.0);
  const auto mode = opt_.sharing == Sharing::kFull ? detail::SharingMode::kFull : detail::SharingMode::kIncremental;
  sharing_ = std::make_unique<detail::FlowSharing>(net_, arena_, xfer_offset_, xfer_size_, mode);
  result_.flows.reserve(xfer_.size());
}

// ---------------------------------------------------------------------------- the loop

void Engine::mark_dirty(ResourceId r) {
  if (res_[r].dirty) return;
  res_[r].dirty = true;
  dirty_.push_back(r);
}

void Engine::make_ready(std::uint32_t x, Seconds t) {
  if (!has_resources(x)) {
    start(x, t);
    return;
  }
  for_each_resource(x, [&](ResourceId r) {
    ResourceState& R = res_[r];
    if (R.order == QueueOrder::kPriority) {
      R.ready.push_back(ReadyEntry{w_.priority(x), t, x});
      std::push_heap(R.ready.begin(), R.ready.end(), StartsLater());
    }
    mark_dirty(r);
  });
}

std::uint32_t Engine::head(ResourceId r) {
  ResourceState& R = res_[r];
  if (R.order == QueueOrder::kInOrder) {
    if (R.next == R.end) return kNoNode;
    const std::uint32_t x = queue_[R.next];
    return pending_[x] == 0 ? x : kNoNode;
  }
  // A collective started through another party leaves a stale entry here.
  while (!R.ready.empty() && start_[R.ready.front().node] >= 0) {
    std::pop_heap(R.ready.begin(), R.ready.end(), StartsLater());
    R.ready.pop_back();
  }
  return R.ready.empty() ? kNoNode : R.ready.front().node;
}

bool Engine::can_start(std::uint32_t x, ResourceId r) {
  bool all = true;
  for_each_resource(x, [&](ResourceId p) {
    if (p == r || !all) return;
    const ResourceState& P = res_[p];
    all = P.free > 0 && (P.order != QueueOrder::kInOrder || head(p) == x);
  });
  return all;
}

void Engine::dispatch(ResourceId r, Seconds t) {
  ResourceState& R = res_[r];
  if (R.order == QueueOrder::kInOrder) {
    // A stream runs its tasks strictly in order: a collective at its head holds it until
    // every party can start it, as a GPU stream would.
    while (R.free > 0) {
      const std::uint32_t x = head(r);
      if (x == kNoNode || !can_start(x, r)) return;
      acquire(x, t);
      start(x, t);
    }
    return;
  }
  // A pool starts the best ready task that can start now. A collective still waiting for
  // another party does not hold the pool, so pools never take part in a deadlock.
  skipped_.clear();
  while (R.free > 0) {
    const std::uint32_t x = head(r);
    if (x == kNoNode) break;
    const ReadyEntry entry = R.ready.front();
    std::pop_heap(R.ready.begin(), R.ready.end(), StartsLater());
    R.ready.pop_back();
    if (can_start(x, r)) {
      acquire(x, t);
      start(x, t);
    } else {
      skipped_.push_back(entry);
    }
  }
  for (const ReadyEntry& e : skipped_) {
    R.ready.push_back(e);
    std::push_heap(R.ready.begin(), R.ready.end(), StartsLater());
  }
}

void Engine::acquire(std::uint32_t x, Seconds t) {
  // If x was ready before now it waited for a resource: credit whatever changed on one of
  // its resources at this instant (lowest resource id on ties). Ready exactly now: its
  // dependency keeps the credit (the documented tie rule: dependency before resource).
  const std::uint32_t cause = cause_[x];
  const double ready = cause_via(cause) == Via::kDependency ? end_[cause_node(cause)] : 0.0;
  if (ready < t) {
    ResourceId best = kNoResource;
    for_each_resource(x, [&](ResourceId p) {
      if (res_[p].changed_at == t && p < best) best = p;
    });
    assert(best != kNoResource && "a waiting task started without a change on its resources");
    if (best != kNoResource) cause_[x] = res_[best].changed_cause;
  }
  for_each_resource(x, [&](ResourceId p) {
    ResourceState& P = res_[p];
    --P.free;
    if (P.active++ == 0) P.busy_since = t;
    if (P.order == QueueOrder::kInOrder) {
      assert(queue_[P.next] == x);
      ++P.next;
    } else if (!P.ready.empty() && P.ready.front().node == x) {
      std::pop_heap(P.ready.begin(), P.ready.end(), StartsLater());
      P.ready.pop_back();
    }  // else: a pool's entry deeper in its heap, dropped when it surfaces (head())
    // A task queued behind x that can start now (capacity > 1) owes its start to x's.
    P.changed_at = t;
    P.changed_cause = cause_[x];
    P.changed_by_release = false;
    mark_dirty(p);
  });
}

void Engine::release(ResourceId r, std::uint32_t x, Seconds t) {
  ResourceState& R = res_[r];
  ++R.free;
  if (--R.active == 0) R.busy += t - R.busy_since;
  R.task_seconds += t - start_[x];
  ++R.tasks;
  // Several releases at one instant with no start between them: credit the lowest id,
  // whatever order their events came in.
  const bool keep = R.changed_at == t && R.changed_by_release && cause_node(R.changed_cause) < x;
  if (!keep) {
    R.changed_at = t;
    R.changed_cause = pack_cause(Via::kResource, x);
    R.changed_by_release = true;
  }
  mark_dirty(r);
}

void Engine::start(std::uint32_t x, Seconds t) {
  start_[x] = t;
  switch (kind(x)) {
    case NodeKind::kDelay: {
      const double d = x < n_ ? w_.value(x) : step_value_[x - n_];
      events_.push(t + d, kPriorityNodeEnd, payload(kNodeEnd, x));
      break;
    }
    case NodeKind::kTransfer:
      start_flow(x < n_ ? w_.kind_index(x) : step_xfer_[x - n_], t);
      break;
    case NodeKind::kCollective: {
      const CollectiveState& c = coll_[w_.kind_index(x)];
      if (c.steps == 0) events_.push(t, kPriorityNodeEnd, payload(kNodeEnd, x));
      for (std::uint32_t s = c.first_step; s < c.first_step + c.steps; ++s) {
        if (--pending_[s] == 0) start(s, t);  // steps hold no resources
      }
      break;
    }
  }
}

void Engine::start_flow(std::uint32_t f, Seconds t) {
  Transfer& x = xfer_[f];
  const std::span<const LinkId> path = flow_path(f);
  FlowRecord rec;
  const bool is_step = x.node >= n_;
  rec.task = is_step ? coll_[step_owner_[x.node - n_]].task : x.node;
  rec.step = is_step ? step_index_[x.node - n_] : kNoStep;
  rec.bytes = x.bytes;
  rec.start = t;
  rec.data_start = t + x.latency;
  rec.hops = static_cast<std::uint32_t>(path.size());
  if (!path.empty()) {
    rec.src = net_.link(path.front()).src;
    rec.dst = net_.link(path.back()).dst;
  }
  x.record = static_cast<std::uint32_t>(result_.flows.size());
  result_.flows.push_back(rec);
  // Latency is charged once per flow, before any byte moves: the sum of its hops'.
  if (x.latency > 0) {
    events_.push(t + x.latency, kPriorityFlowData, payload(kFlowData, f));
  } else {
    flow_data(f, t);
  }
}

void Engine::flow_data(std::uint32_t f, Seconds t) {
  const Transfer& x = xfer_[f];
  if (x.sending) {
    sharing_->add(f, x.bytes, t);  // it ends when the sharing says so
  } else {
    events_.push(t, kPriorityFlowEnd, payload(kFlowEnd, f));  // nothing to send
  }
}

void Engine::end_flow(std::uint32_t f, Seconds t) {
  const Transfer& x = xfer_[f];
  if (x.sending) sharing_->remove(f, t);
  for (const LinkId l : flow_path(f)) {
    result_.links[l].bytes += x.bytes;
    ++result_.links[l].flows;
  }
  result_.flows[x.record].end = t;
  finish(x.node, t);
}

void Engine::finish(std::uint32_t x, Seconds t) {
  end_[x] = t;
  ++finished_;
  if (x < n_ && has_resources(x)) for_each_resource(x, [&](ResourceId r) { release(r, x, t); });
  for (std::uint32_t i = succ_offset_[x], stop = succ_offset_[x + 1]; i < stop; ++i) {
    const std::uint32_t y = succ_[i];
    // Credit the dependency that ended last; on equal ends, the lowest id.
    const std::uint32_t c = cause_[y];
    if (cause_via(c) != Via::kDependency || end_[cause_node(c)] < t || x < cause_node(c)) {
      cause_[y] = pack_cause(Via::kDependency, x);
    }
    if (--pending_[y] == 0) make_ready(y, t);
  }
  if (x >= n_) {
    CollectiveState& c = coll_[step_owner_[x - n_]];
    if (--c.unfinished == 0) finish(c.task, t);
  }
}

void Engine::handle(const Event& e, Seconds t) {
  const std::uint32_t index = e.payload() & kIndexMask;
  switch (e.payload() >> kIndexBits) {
    case kNodeEnd:
      finish(index, t);
      break;
    case kFlowData:
      flow_data(index, t);
      break;
    case kFlowEnd:
      end_flow(index, t);
      break;
    default:
      assert(false && "unknown event");
  }
}

void Engine::loop() {
  for (std::uint32_t x = 0; x < n_; ++x) {
    if (pending_[x] == 0) make_ready(x, 0.0);
  }
  // Two sources of what happens next: the event queue, and the flow that ends first.
  const auto next_time = [this] {
    const double e = events_.empty() ? std::numeric_limits<double>::infinity() : events_.top().time;
    return std::min(e, sharing_->next_end());
  };
  Seconds next = 0;
  for (Seconds t = 0; t < std::numeric_limits<double>::infinity(); t = next) {
    for (;;) {  // one instant: may take several passes when things take no time
      for (;;) {
        if (!events_.empty() && events_.top().time == t) {
          const Event e = events_.pop();
          ++event_count_;
          handle(e, t);
        } else if (sharing_->next_end() == t) {
          ++event_count_;
          end_flow(sharing_->next_flow(), t);
        } else {
          break;
        }
      }
      for (std::size_t i = 0; i < dirty_.size(); ++i) {
        const ResourceId r = dirty_[i];
        res_[r].dirty = false;
        dispatch(r, t);
      }
      dirty_.clear();
      if (sharing_->pending()) sharing_->update(t);
      next = next_time();
      if (next != t) break;
    }
  }
}

// ---------------------------------------------------------------------------- stalls

void Engine::diagnose_stall() const {
  // Nothing is running and nothing is scheduled, yet some tasks never started. Look for a
  // cycle among them: "y waits for x" when x is an unfinished dependency of y, or x comes
  // before y in an in-order queue and has not started.
  constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
  std::vector<std::vector<std::pair<std::uint32_t, ResourceId>>> waits_for(n_);
  for (const Dependency& d : w_.dependencies()) {
    if (start_[d.after] < 0 && start_[d.before] < 0) waits_for[d.after].emplace_back(d.before, kNoResource);
  }
  for (ResourceId r = 0; r < res_.size(); ++r) {
    const ResourceState& R = res_[r];
    if (R.order != QueueOrder::kInOrder) continue;
    for (std::uint32_t i = R.next + 1; i < R.end; ++i) waits_for[queue_[i]].emplace_back(queue_[i - 1], r);
  }
  std::vector<std::uint8_t> color(n_, 0);  // 0 unseen, 1 on the stack, 2 done
  std::vector<std::uint32_t> parent(n_, kNone);
  std::vector<ResourceId> parent_via(n_, kNoResource);
  for (std::uint32_t root = 0; root < n_; ++root) {
    if (start_[root] >= 0 || color[root] != 0) continue;
    std::vector<std::pair<std::uint32_t, std::size_t>> stack{{root, 0}};
    color[root] = 1;
    while (!stack.empty()) {
      auto& [v, i] = stack.back();
      if (i == waits_for[v].size()) {
        color[v] = 2;
        stack.pop_back();
        continue;
      }
      const auto [u, via] = waits_for[v][i++];
      if (color[u] == 0) {
        color[u] = 1;
        parent[u] = v;
        parent_via[u] = via;
        stack.emplace_back(u, 0);
      } else if (color[u] == 1) {
        // v waits for u, which (through the stack) waits for v: report it in run order.
        std::vector<std::pair<std::uint32_t, ResourceId>> cycle{{u, via}};
        for (std::uint32_t a = v; a != u; a = parent[a]) cycle.emplace_back(a, parent_via[a]);
        cycle.emplace_back(u, kNoResource);
        std::ostringstream msg;
        msg << "cycle in the task graph (a -> b: b waits for a): ";
        for (std::size_t k = 0; k < cycle.size(); ++k) {
          if (k > 0) {
            msg << " -> ";
            if (cycle[k - 1].second != kNoResource) {
              msg << "[queued after it on in-order resource '" << w_.resource_info(cycle[k - 1].second).name << "'] ";
            }
          }
          msg << w_.describe(cycle[k].first);
        }
        throw Error(msg.str());
      }
    }
  }
  // No cycle: collectives wait on each other's parties.
  std::ostringstream msg;
  msg << "deadlock: no task can start, yet some never ran;";
  int shown = 0;
  for (std::uint32_t x = 0; x < n_ && shown < 5; ++x) {
    if (start_[x] >= 0 || pending_[x] != 0) continue;
    msg << " " << w_.describe(x) << " waits for";
    for_each_resource(x, [&](ResourceId r) {
      const ResourceState& R = res_[r];
      const std::uint32_t h = R.order == QueueOrder::kInOrder && R.next < R.end ? queue_[R.next]
                              : R.ready.empty()                                 ? kNone
                                                                                : R.ready.front().node;
      if (h != x && h != kNone)
        msg << " resource '" << w_.resource_info(r).name << "' (next there: " << w_.describe(h) << ")";
    });
    msg << ";";
    ++shown;
  }
  throw Error(msg.str());
}

// ---------------------------------------------------------------------------- results

void Engine::fill_critical_path() {
  CriticalPath& cp = result_.critical_path;
  if (n_ == 0) return;
  std::uint32_t last = 0;
  for (std::uint32_t x = 1; x < n_; ++x) {
    if (end_[x] > end_[last]) last = x;
  }
  std::vector<std::uint32_t> chain;
  for (std::uint32_t x = last;;) {
    chain.push_back(x);
    const std::uint32_t c = cause_[x];
    if (cause_via(c) == Via::kStart) break;
    x = cause_node(c);
    if (chain.size() > n_) throw Error("internal error: the critical path does not end");
  }
  std::reverse(chain.begin(), chain.end());
  // Ready times of the path's tasks: one pass over the dependencies (pending_ is all zero
  // after a complete run, so it can mark the path).
  for (std::size_t i = 0; i < chain.size(); ++i) pending_[chain[i]] = static_cast<std::uint32_t>(i + 1);
  std::vector<double> ready(chain.size(), 0.0);
  for (const Dependency& d : w_.dependencies()) {
    if (const std::uint32_t at = pending_[d.after]; at != 0) ready[at - 1] = std::max(ready[at - 1], end_[d.before]);
  }
  for (const std::uint32_t x : chain) pending_[x] = 0;

  std::vector<double> per_category(w_.categories().size(), 0.0);
  for (std::size_t i = 0; i < chain.size(); ++i) {
    const std::uint32_t x = chain[i];
    CriticalStep step;
    step.task = x;
    step.via = cause_via(cause_[x]);
    step.ready = ready[i];
    step.start = start_[x];
    step.end = end_[x];
    if (step.via == Via::kResource) {
      // The resource both hold: the one x waited for.
      const std::uint32_t prev = cause_node(cause_[x]);
      for_each_resource(x, [&](ResourceId r) {
        bool shared = false;
        for_each_resource(prev, [&](ResourceId q) { shared = shared || q == r; });
        if (shared && step.resource == kNoResource) step.resource = r;
      });
    }
    const double duration = step.end - step.start;
    per_category[w_.category_id(x)] += duration;
    cp.queued += std::max(0.0, step.start - step.ready);
    if (w_.kind(x) == TaskKind::kTransfer && !w_.path(x).empty()) {
      const Transfer& f = xfer_[w_.kind_index(x)];
      double narrowest = std::numeric_limits<double>::infinity();
      for (const LinkId l : w_.path(x)) narrowest = std::min(narrowest, net_.link(l).bandwidth);
      cp.latency += f.latency;
      cp.contention += std::max(0.0, duration - f.latency - f.bytes / narrowest);
    }
    cp.steps.push_back(step);
  }
  cp.length = end_[chain.back()];
  for (std::size_t c = 0; c < per_category.size(); ++c) {
    if (per_category[c] <= 0) continue;
    cp.by_category.push_back(
        CategoryTime{w_.categories()[c], per_category[c], cp.length > 0 ? per_category[c] / cp.length : 0.0});
  }
  std::sort(cp.by_category.begin(), cp.by_category.end(), [](const CategoryTime& a, const CategoryTime& b) {
    return a.seconds != b.seconds ? a.seconds > b.seconds : a.category < b.category;
  });
}

void Engine::fill_result() {
  Result& r = result_;
  double makespan = 0;
  for (std::uint32_t x = 0; x < nodes_; ++x) makespan = std::max(makespan, end_[x]);
  r.makespan = makespan;
  r.resources.resize(res_.size());
  for (ResourceId i = 0; i < res_.size(); ++i) {
    ResourceStats& s = r.resources[i];
    s.busy = res_[i].busy;
    s.task_seconds = res_[i].task_seconds;
    s.tasks = res_[i].tasks;
    s.utilisation = makespan > 0 ? s.busy / makespan : 0.0;
  }
  for (LinkId l = 0; l < r.links.size(); ++l) {
    LinkStats& s = r.links[l];
    s.busy = sharing_->link_busy(l);
    s.utilisation = makespan > 0 ? s.bytes / (net_.link(l).bandwidth * makespan) : 0.0;
  }
  r.steps.reserve(nodes_ - n_);
  for (std::uint32_t k = 0; k < nodes_ - n_; ++k) {
    StepRecord s;
    s.collective = coll_[step_owner_[k]].task;
    s.index = step_index_[k];
    s.kind = step_kind_[k] == NodeKind::kDelay ? StepKind::kDelay : StepKind::kTransfer;
    s.start = start_[n_ + k];
    s.end = end_[n_ + k];
    if (s.kind == StepKind::kTransfer) s.flow = xfer_[step_xfer_[k]].record;
    s.label = std::move(step_label_[k]);
    r.steps.push_back(std::move(s));
  }
  r.stats.events = event_count_;
  r.stats.rate_updates = sharing_->solves();
  r.stats.flows_rerated = sharing_->flows_solved();
  r.stats.sharing_fallbacks = sharing_->fallbacks();
  r.stats.rate_changes = sharing_->rate_changes();
  r.stats.engine_bytes = engine_bytes_;
  if (opt_.critical_path) fill_critical_path();
  // Hand the timing arrays over; drop the steps' part, which now lives in r.steps.
  start_.resize(n_);
  end_.resize(n_);
  r.start = std::move(start_);
  r.end = std::move(end_);
}

Result Engine::run() {
  set_up();
  result_.links.resize(net_.link_count());
  loop();
  engine_bytes_ = sizeof(*this) + capacity_bytes(step_kind_) + capacity_bytes(step_value_) +
                  capacity_bytes(step_owner_) + capacity_bytes(step_xfer_) + capacity_bytes(step_index_) +
                  capacity_bytes(step_label_) + capacity_bytes(coll_) + capacity_bytes(xfer_) +
                  capacity_bytes(xfer_offset_) + capacity_bytes(xfer_size_) + capacity_bytes(arena_) +
                  capacity_bytes(succ_offset_) + capacity_bytes(succ_) + capacity_bytes(pending_) +
                  capacity_bytes(cause_) + capacity_bytes(res_) + capacity_bytes(queue_) + capacity_bytes(dirty_) +
                  events_.capacity() * sizeof(Event) + sharing_->memory_bytes();
  for (const ResourceState& R : res_) engine_bytes_ += capacity_bytes(R.ready);
  for (const std::string& s : step_label_) engine_bytes_ += s.capacity() > 15 ? s.capacity() : 0;
  if (finished_ != nodes_) diagnose_stall();
  fill_result();
  return std::move(result_);
}

}  // namespace

Result simulate(const Workload& workload, const Network& network, const Options& options) {
  Engine engine(workload, network, options);
  return engine.run();
}

}  // namespace moesim::sim
