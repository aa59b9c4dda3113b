// Serialising the measured timeline and writing it as a Chrome trace.
#include "src/executor/timeline.hpp"

#include <sstream>

namespace moesim::exec {

std::string timeline_to_text(const std::vector<TimelineEvent>& events) {
  std::string out;
  for (const TimelineEvent& e : events)
    out += nlohmann::json{{"n", e.name}, {"c", e.category}, {"s", e.start_s}, {"e", e.end_s}, {"u", e.update}}.dump() +
           "\n";
  return out;
}

std::vector<TimelineEvent> timeline_from_text(const std::string& text) {
  std::vector<TimelineEvent> events;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    events.push_back({j.at("n").get<std::string>(), j.at("c").get<std::string>(), j.at("s").get<double>(),
                      j.at("e").get<double>(), j.at("u").get<long long>()});
  }
  return events;
}

nlohmann::json chrome_trace(const std::vector<std::vector<TimelineEvent>>& ranks, const std::vector<int>& stage_of_rank) {
  nlohmann::json events = nlohmann::json::array();
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    const int pid = static_cast<int>(r) + 1;
    events.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", pid},
                      {"args", {{"name", "rank " + std::to_string(r) + ", stage " + std::to_string(stage_of_rank[r])}}}});
    events.push_back({{"ph", "M"}, {"name", "process_sort_index"}, {"pid", pid}, {"args", {{"sort_index", pid}}}});
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", 1},
                      {"args", {{"name", "rank " + std::to_string(r) + " compute"}}}});
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", 2},
                      {"args", {{"name", "rank " + std::to_string(r) + " gradient reduction"}}}});
    for (const TimelineEvent& e : ranks[r])
      events.push_back({{"ph", "X"}, {"pid", pid}, {"tid", e.category == kOverlappedReduce ? 2 : 1}, {"name", e.name},
                        {"cat", e.category},
                        {"ts", e.start_s * 1e6}, {"dur", (e.end_s - e.start_s) * 1e6}, {"args", {{"update", e.update}}}});
  }
  return {{"traceEvents", events}, {"displayTimeUnit", "ms"}};
}

}  // namespace moesim::exec
