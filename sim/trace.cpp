// The Chrome trace writer. Resources with capacity > 1, tasks without a resource, and flows
// are laid out on "lanes": each event goes to the lowest-numbered lane free at its start,
// so events on one track never overlap. Times are rounded to whole nanoseconds once, and
// durations are differences of rounded times, so back-to-back events stay back to back.
#include "sim/trace.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <queue>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "sim/error.hpp"

namespace moesim::sim {
namespace {

std::int64_t to_ns(Seconds t) { return std::llround(t * 1e9); }

std::string quoted(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Microseconds with three decimals from whole nanoseconds.
std::string micros(std::int64_t ns) {
  std::string out = std::to_string(ns / 1000);
  const std::string frac = std::to_string(ns % 1000);
  out.push_back('.');
  out.append(3 - frac.size(), '0');
  out.append(frac);
  return out;
}

// Assigns intervals (in the order given) to the lowest-numbered lane free at their start.
class Lanes {
 public:
  std::uint32_t place(std::int64_t start, std::int64_t end) {
    while (!busy_.empty() && busy_.top().first <= start) {
      free_.insert(busy_.top().second);
      busy_.pop();
    }
    std::uint32_t lane;
    if (free_.empty()) {
      lane = count_++;
    } else {
      lane = *free_.begin();
      free_.erase(free_.begin());
    }
    busy_.emplace(end, lane);
    return lane;
  }
  std::uint32_t count() const { return count_; }

 private:
  using Busy = std::pair<std::int64_t, std::uint32_t>;
  std::priority_queue<Busy, std::vector<Busy>, std::greater<Busy>> busy_;
  std::set<std::uint32_t> free_;
  std::uint32_t count_ = 0;
};

struct Interval {
  std::int64_t start, end;
  std::uint32_t index;
};

// Lane of each interval, placing them by (start, end, index).
std::vector<std::uint32_t> assign_lanes(std::vector<Interval> items, std::size_t n, std::uint32_t& lanes) {
  std::sort(items.begin(), items.end(), [](const Interval& a, const Interval& b) {
    if (a.start != b.start) return a.start < b.start;
    if (a.end != b.end) return a.end < b.end;
    return a.index < b.index;
  });
  std::vector<std::uint32_t> lane(n, 0);
  Lanes l;
  for (const Interval& it : items) lane[it.index] = l.place(it.start, it.end);
  lanes = l.count();
  return lane;
}

class Writer {
 public:
  explicit Writer(std::ostream& out) : out_(out) {}
  void begin() { out_ << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"; }
  void end() { out_ << "\n]}\n"; }
  void process(std::uint32_t pid, std::string_view name, std::uint32_t sort) {
    sep();
    out_ << "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":" << pid << ",\"args\":{\"name\":" << quoted(name) << "}}";
    sep();
    out_ << "{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":" << pid << ",\"args\":{\"sort_index\":" << sort
         << "}}";
  }
  void thread(std::uint32_t pid, std::uint32_t tid, std::string_view name) {
    sep();
    out_ << "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":" << pid << ",\"tid\":" << tid
         << ",\"args\":{\"name\":" << quoted(name) << "}}";
    sep();
    out_ << "{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":" << pid << ",\"tid\":" << tid
         << ",\"args\":{\"sort_index\":" << tid << "}}";
  }
  // `args` is the inside of a JSON object (may be empty).
  void complete(std::uint32_t pid, std::uint32_t tid, std::string_view name, std::string_view category,
                std::int64_t start, std::int64_t end, const std::string& args) {
    sep();
    out_ << "{\"ph\":\"X\",\"pid\":" << pid << ",\"tid\":" << tid << ",\"name\":" << quoted(name)
         << ",\"cat\":" << quoted(category) << ",\"ts\":" << micros(start) << ",\"dur\":" << micros(end - start)
         << ",\"args\":{" << args << "}}";
  }

 private:
  void sep() {
    if (!first_) out_ << ",\n";
    first_ = false;
  }
  std::ostream& out_;
  bool first_ = true;
};

// The inside of a JSON object, built by appending (GCC 12 at -O3 misreports
// `"literal" + std::string` chains as overlapping copies, so this file avoids them).
class Args {
 public:
  Args& add(std::string_view key, std::string_view value) {
    next(key);
    s_.append(quoted(value));
    return *this;
  }
  Args& add(std::string_view key, double value) {
    next(key);
    std::ostringstream out;
    out.precision(17);
    out << value;
    s_.append(out.str());
    return *this;
  }
  Args& add(std::string_view key, std::uint64_t value) {
    next(key);
    s_.append(std::to_string(value));
    return *this;
  }
  // A number already formatted as JSON (e.g. by micros()).
  Args& number(std::string_view key, std::string_view formatted) {
    next(key);
    s_.append(formatted);
    return *this;
  }
  // An already-formed `"key":value` list.
  Args& raw(std::string_view fragment) {
    if (fragment.empty()) return *this;
    if (!s_.empty()) s_.push_back(',');
    s_.append(fragment);
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  void next(std::string_view key) {
    if (!s_.empty()) s_.push_back(',');
    s_.append(quoted(key));
    s_.push_back(':');
  }
  std::string s_;
};

std::string join(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (const std::string_view p : parts) s.append(p);
  return s;
}

std::string task_name(const Workload& w, TaskId t) {
  const std::string_view name = w.name(t);
  return name.empty() ? join({"task ", std::to_string(t)}) : std::string(name);
}

}  // namespace

void write_chrome_trace(std::ostream& out, const Workload& w, const Network& net, const Result& r,
                        const TraceOptions& options) {
  const std::size_t n = w.task_count();
  if (r.start.size() != n || r.end.size() != n) {
    throw Error("write_chrome_trace: the result does not belong to this workload (task counts differ)");
  }
  Writer writer(out);
  writer.begin();

  // Processes: one per resource group (first appearance order), then tasks without a
  // resource, collective steps, and flows.
  std::map<std::string, std::uint32_t> group_pid;
  std::vector<std::string> groups;
  for (ResourceId res = 0; res < w.resource_count(); ++res) {
    const std::string& g = w.resource_info(res).group.empty() ? std::string("resources") : w.resource_info(res).group;
    if (group_pid.emplace(g, static_cast<std::uint32_t>(groups.size() + 1)).second) groups.push_back(g);
  }
  const auto pid_free = static_cast<std::uint32_t>(groups.size() + 1);
  const std::uint32_t pid_steps = pid_free + 1;
  const std::uint32_t pid_flows = pid_free + 2;

  // Per resource, lanes when its tasks may overlap (capacity > 1).
  std::vector<std::vector<Interval>> on_resource(w.resource_count());
  std::vector<Interval> unplaced;
  std::vector<std::vector<ResourceId>> task_resources(n);
  for (TaskId t = 0; t < n; ++t) {
    const Interval it{to_ns(r.start[t]), to_ns(r.end[t]), t};
    if (w.resource(t) != kNoResource) {
      task_resources[t].push_back(w.resource(t));
    } else if (w.kind(t) == TaskKind::kCollective) {
      task_resources[t] = w.collective(t).parties;
    }
    if (task_resources[t].empty()) unplaced.push_back(it);
    for (const ResourceId res : task_resources[t]) on_resource[res].push_back(it);
  }
  std::vector<std::uint32_t> first_tid(w.resource_count() + 1, 1);
  std::vector<std::map<TaskId, std::uint32_t>> task_lane(w.resource_count());
  std::uint32_t next_tid = 1;
  for (ResourceId res = 0; res < w.resource_count(); ++res) {
    const Resource& info = w.resource_info(res);
    std::uint32_t lanes = 1;
    if (info.capacity > 1) {
      std::vector<Interval> items = on_resource[res];
      for (std::uint32_t k = 0; k < items.size(); ++k) items[k].index = k;
      const std::vector<std::uint32_t> lane = assign_lanes(items, items.size(), lanes);
      for (std::uint32_t k = 0; k < items.size(); ++k) task_lane[res][on_resource[res][k].index] = lane[k];
      if (lanes == 0) lanes = 1;
    }
    first_tid[res] = next_tid;
    next_tid += lanes;
  }
  for (std::size_t g = 0; g < groups.size(); ++g)
    writer.process(static_cast<std::uint32_t>(g + 1), groups[g], static_cast<std::uint32_t>(g + 1));
  for (ResourceId res = 0; res < w.resource_count(); ++res) {
    const Resource& info = w.resource_info(res);
    const std::uint32_t pid = group_pid[info.group.empty() ? std::string("resources") : info.group];
    const std::uint32_t lanes = (res + 1 < w.resource_count() ? first_tid[res + 1] : next_tid) - first_tid[res];
    for (std::uint32_t k = 0; k < lanes; ++k) {
      writer.thread(pid, first_tid[res] + k, lanes == 1 ? info.name : join({info.name, " #", std::to_string(k)}));
    }
  }

  // User args, grouped by task.
  std::vector<Args> user_args(n);
  for (const TaskArg& a : w.args()) user_args[a.task].add(a.key, a.value);
  auto task_args = [&](TaskId t) {
    Args a;
    a.add("task", std::uint64_t{t});
    switch (w.kind(t)) {
      case TaskKind::kDelay:
        a.add("kind", "delay");
        break;
      case TaskKind::kTransfer:
        a.add("kind", "transfer").add("bytes", w.value(t));
        break;
      case TaskKind::kCollective:
        a.add("kind", "collective")
            .add("bytes", w.value(t))
            .add("parties", std::uint64_t{w.collective(t).parties.size()});
        break;
    }
    a.raw(user_args[t].str());
    return a.str();
  };

  // Tasks on resources.
  for (TaskId t = 0; t < n; ++t) {
    for (const ResourceId res : task_resources[t]) {
      const Resource& info = w.resource_info(res);
      const std::uint32_t pid = group_pid[info.group.empty() ? std::string("resources") : info.group];
      const std::uint32_t tid = first_tid[res] + (info.capacity > 1 ? task_lane[res][t] : 0);
      writer.complete(pid, tid, task_name(w, t), w.category(t), to_ns(r.start[t]), to_ns(r.end[t]), task_args(t));
    }
  }
  // Tasks without a resource.
  if (!unplaced.empty()) {
    std::uint32_t lanes = 0;
    std::vector<Interval> items = unplaced;
    for (std::uint32_t k = 0; k < items.size(); ++k) items[k].index = k;
    const std::vector<std::uint32_t> lane = assign_lanes(items, items.size(), lanes);
    writer.process(pid_free, "tasks without a resource", pid_free);
    for (std::uint32_t k = 0; k < lanes; ++k) writer.thread(pid_free, k + 1, join({"tasks #", std::to_string(k)}));
    for (std::uint32_t k = 0; k < unplaced.size(); ++k) {
      const TaskId t = unplaced[k].index;
      writer.complete(pid_free, lane[k] + 1, task_name(w, t), w.category(t), unplaced[k].start, unplaced[k].end,
                      task_args(t));
    }
  }
  // Collective delay steps that take time.
  if (options.steps) {
    std::vector<Interval> items;
    for (std::uint32_t k = 0; k < r.steps.size(); ++k) {
      const StepRecord& s = r.steps[k];
      if (s.kind == StepKind::kDelay && to_ns(s.end) > to_ns(s.start))
        items.push_back({to_ns(s.start), to_ns(s.end), k});
    }
    if (!items.empty()) {
      std::vector<Interval> ordered = items;
      for (std::uint32_t k = 0; k < ordered.size(); ++k) ordered[k].index = k;
      std::uint32_t lanes = 0;
      const std::vector<std::uint32_t> lane = assign_lanes(ordered, ordered.size(), lanes);
      writer.process(pid_steps, "collective steps", pid_steps);
      for (std::uint32_t k = 0; k < lanes; ++k) writer.thread(pid_steps, k + 1, join({"steps #", std::to_string(k)}));
      for (std::uint32_t k = 0; k < items.size(); ++k) {
        const StepRecord& s = r.steps[items[k].index];
        const std::string label = s.label.empty() ? join({"step ", std::to_string(s.index)}) : s.label;
        const std::string name = join({task_name(w, s.collective), ": ", label});
        Args args;
        args.add("collective", std::uint64_t{s.collective}).add("step", std::uint64_t{s.index});
        writer.complete(pid_steps, lane[k] + 1, name, w.category(s.collective), items[k].start, items[k].end,
                        args.str());
      }
    }
  }
  // Flows.
  if (options.flows && !r.flows.empty()) {
    // Step labels by (collective, step index).
    std::map<std::pair<TaskId, StepRef>, const StepRecord*> step_of;
    for (const StepRecord& s : r.steps) step_of[{s.collective, s.index}] = &s;
    std::vector<Interval> items(r.flows.size());
    for (std::uint32_t k = 0; k < r.flows.size(); ++k) items[k] = {to_ns(r.flows[k].start), to_ns(r.flows[k].end), k};
    std::uint32_t lanes = 0;
    const std::vector<std::uint32_t> lane = assign_lanes(items, items.size(), lanes);
    writer.process(pid_flows, "flows", pid_flows);
    for (std::uint32_t k = 0; k < lanes; ++k) writer.thread(pid_flows, k + 1, join({"flows #", std::to_string(k)}));
    for (std::uint32_t k = 0; k < r.flows.size(); ++k) {
      const FlowRecord& f = r.flows[k];
      std::string name = task_name(w, f.task);
      if (f.step != kNoStep) {
        const auto it = step_of.find({f.task, f.step});
        const bool labelled = it != step_of.end() && !it->second->label.empty();
        name = join({name, ": ", labelled ? it->second->label : join({"step ", std::to_string(f.step)})});
      }
      Args args;
      args.add("task", std::uint64_t{f.task});
      if (f.step != kNoStep) args.add("step", std::uint64_t{f.step});
      args.add("bytes", f.bytes)
          .add("src", net.node_name(f.src))
          .add("dst", net.node_name(f.dst))
          .add("hops", std::uint64_t{f.hops})
          .number("data_start_us", micros(to_ns(f.data_start)));
      writer.complete(pid_flows, lane[k] + 1, name, w.category(f.task), items[k].start, items[k].end, args.str());
    }
  }
  writer.end();
}

void write_chrome_trace(const std::filesystem::path& path, const Workload& workload, const Network& network,
                        const Result& result, const TraceOptions& options) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(join({"trace: cannot open '", tmp.string(), "' for writing"}));
    try {
      write_chrome_trace(out, workload, network, result, options);
    } catch (...) {
      out.close();
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw;
    }
    out.flush();
    if (!out) {
      out.close();
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw Error(join({"trace: writing '", tmp.string(), "' failed"}));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw Error(join({"trace: cannot rename '", tmp.string(), "' to '", path.string(), "': ", ec.message()}));
  }
}

}  // namespace moesim::sim
