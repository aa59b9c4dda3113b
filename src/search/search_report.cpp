// Renders a search result; see search_report.hpp.
#include "src/search/search_report.hpp"

#include <cstdio>

#include "src/core/table.hpp"
#include "src/search/explain.hpp"
#include "src/simulate/report.hpp"

namespace moesim {

namespace {

std::string fmt(const char* f, double x) {
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

nlohmann::ordered_json candidate_json(const Candidate& c) {
  nlohmann::ordered_json j;
  j["plan"] = plan_to_json(c.plan);
  j["in_space"] = c.index != kOutsideSpace;
  j["screen_iteration_s"] = c.screen_s;
  j["fits"] = c.fits;
  if (c.event) j["result"] = sim_result_json(*c.event);
  return j;
}

// "1.23x slower than the winner" style comparison of `c` with the winner.
std::string against_winner(const SearchResult& r, const Candidate& c) {
  if (r.ranked.empty() || !c.event) return "";
  const double ratio = c.time() / r.ranked.front().time();
  return ratio >= 1 ? fmt("%.1f%% slower than the winner", 100 * (ratio - 1))
                    : fmt("%.1f%% faster than the winner", 100 * (1 / ratio - 1));
}

}  // namespace

std::string short_plan(const Plan& p) {
  std::string s = "dp=" + std::to_string(p.dp) + ",tp=" + std::to_string(p.tp) + ",pp=" + std::to_string(p.pp) +
                  ",ep=" + std::to_string(p.ep) + ",mbs=" + std::to_string(p.mbs) + ",zero=" + std::to_string(p.zero) +
                  ",recompute=" + to_string(p.recompute);
  if (p.cp > 1) s += ",cp=" + std::to_string(p.cp);
  if (p.etp > 0) s += ",etp=" + std::to_string(p.etp);
  if (p.sp) s += ",sp=true";
  if (p.pp > 1) s += std::string(",schedule=") + to_string(p.schedule);
  if (p.vpp > 1) s += ",vpp=" + std::to_string(p.vpp);
  if (p.placement != ExpertPlacement::contiguous) s += std::string(",placement=") + to_string(p.placement);
  return s;
}

nlohmann::ordered_json search_result_json(const SearchResult& r, const SearchOptions& o, std::size_t top) {
  nlohmann::ordered_json j;
  j["space"] = {{"enumerated", r.enumerated},
                {"fitting", r.fitting},
                {"reranked", r.reranked},
                {"rejected_by_event_tier", r.rejected_by_event},
                {"memory_limit_bytes", r.memory_limit}};
  j["tie_fraction"] = o.tie;
  nlohmann::ordered_json ranked = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < r.ranked.size() && i < top; ++i) {
    const Candidate& c = r.ranked[i];
    ranked.push_back({{"rank", i + 1},
                      {"tied_with_winner", i > 0 && i <= r.ties},
                      {"plan", plan_to_json(c.plan)},
                      {"screen_iteration_s", c.screen_s},
                      {"iteration_s", c.time()},
                      {"wps", c.event->wps},
                      {"mfu", c.event->mfu},
                      {"peak_memory_bytes", c.event->memory.bytes.total()},
                      {"breakdown", sim_result_json(*c.event)["breakdown"]}});
  }
  j["ranked"] = ranked;
  j["winner"] = r.ranked.empty() ? nlohmann::ordered_json(nullptr) : candidate_json(r.ranked[0]);
  j["runner_up"] = r.ranked.size() < 2 ? nlohmann::ordered_json(nullptr) : candidate_json(r.ranked[1]);
  j["why"] = r.ranked.size() < 2 ? nlohmann::ordered_json(nullptr)
                                 : nlohmann::ordered_json(why_faster(r.ranked[0].plan, *r.ranked[0].event, r.ranked[1].plan,
                                                                     *r.ranked[1].event, "the runner-up", o.tie));
  j["best_without_pipeline"] =
      r.best_without_pipeline ? candidate_json(*r.best_without_pipeline) : nlohmann::ordered_json(nullptr);
  j["best_without_tensor_parallel"] =
      r.best_without_tensor ? candidate_json(*r.best_without_tensor) : nlohmann::ordered_json(nullptr);
  nlohmann::ordered_json baselines = nlohmann::ordered_json::array();
  for (const BaselineScore& b : r.baselines) {
    nlohmann::ordered_json bj = candidate_json(b.candidate);
    bj["name"] = b.name;
    bj["screen_rank"] = b.screen_rank > 0 ? nlohmann::ordered_json(b.screen_rank) : nlohmann::ordered_json(nullptr);
    bj["winner_speedup"] = r.ranked.empty() ? nlohmann::ordered_json(nullptr)
                                            : nlohmann::ordered_json(b.candidate.time() / r.ranked[0].time());
    baselines.push_back(bj);
  }
  j["baselines"] = baselines;
  return j;
}

void print_search_result(const SearchResult& r, const SearchOptions& o, std::size_t top, std::ostream& out) {
  out << with_commas(static_cast<long long>(r.enumerated)) << " plans enumerated, "
      << with_commas(static_cast<long long>(r.fitting)) << " fit in " << human_bytes(r.memory_limit) << " per GPU; "
      << r.reranked << " re-ranked on the event tier";
  if (r.rejected_by_event > 0) out << " (" << r.rejected_by_event << " of them over memory on the timeline)";
  out << "\n\n";
  if (r.ranked.empty()) return;
  Table t({"rank", "plan", "iteration", "screened", "tokens/s", "MFU", "memory/GPU"});
  for (std::size_t i = 0; i < r.ranked.size() && i < top; ++i) {
    const Candidate& c = r.ranked[i];
    t.add_row({std::to_string(i + 1) + (i > 0 && i <= r.ties ? " (tie)" : ""), short_plan(c.plan),
               human_seconds(c.time()), human_seconds(c.screen_s), fmt("%.0f", c.event->wps),
               fmt("%.1f%%", 100 * c.event->mfu), human_bytes(c.event->memory.bytes.total())});
  }
  t.print(out);

  const Candidate& w = r.ranked[0];
  out << "\nwinner: " << plan_to_inline(w.plan) << "\n";
  if (r.ranked.size() > 1) {
    const Candidate& u = r.ranked[1];
    out << "  it " << why_faster(w.plan, *w.event, u.plan, *u.event, "the runner-up", o.tie) << "\n\n";
    Table side({"per iteration", "winner", "runner-up", "difference"});
    for (const ComparisonRow& row : compare_results(*w.event, *u.event)) {
      if (row.seconds) {
        side.add_row({row.name, human_seconds(row.a), human_seconds(row.b), human_seconds(row.b - row.a)});
      } else if (row.name == "MFU") {
        side.add_row({row.name, fmt("%.1f%%", 100 * row.a), fmt("%.1f%%", 100 * row.b), fmt("%+.1f pts", 100 * (row.b - row.a))});
      } else if (row.name == "tokens/s") {
        side.add_row({row.name, fmt("%.0f", row.a), fmt("%.0f", row.b), fmt("%+.0f", row.b - row.a)});
      } else {
        side.add_row({row.name, human_bytes(row.a), human_bytes(row.b), human_bytes(row.b - row.a)});
      }
    }
    side.print(out);
  }
  auto constrained = [&](const char* what, const std::optional<Candidate>& c) {
    out << "best " << what << ": ";
    if (!c) {
      out << "none fits\n";
    } else if (c->index == w.index) {
      out << "the winner\n";
    } else {
      out << short_plan(c->plan) << ", " << human_seconds(c->time()) << " per iteration, " << against_winner(r, *c)
          << "\n";
    }
  };
  out << "\n";
  constrained("without pipeline parallelism (pp=1)", r.best_without_pipeline);
  constrained("without tensor parallelism (tp=1)", r.best_without_tensor);
  for (const BaselineScore& b : r.baselines) {
    const Candidate& c = b.candidate;
    out << "\n" << b.name << ": " << short_plan(c.plan) << "\n  ";
    if (c.index == kOutsideSpace)
      out << "outside the searched space; ";
    else if (b.screen_rank > 0)
      out << "screened " << b.screen_rank << " of " << with_commas(static_cast<long long>(r.fitting)) << "; ";
    if (!c.fits) out << "does NOT fit in " << human_bytes(r.memory_limit) << " per GPU; ";
    out << human_seconds(c.time()) << " per iteration on the event tier\n";
    out << "  the winner " << why_faster(w.plan, *w.event, c.plan, *c.event, "it", o.tie) << "\n";
  }
}

}  // namespace moesim
