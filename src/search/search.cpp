// The two-tier search over MPI ranks; see search.hpp.
#include "src/search/search.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "src/accounting/memory.hpp"
#include "src/core/error.hpp"
#include "src/search/wire.hpp"
#include "src/simulate/analytic.hpp"
#include "src/simulate/event.hpp"

namespace moesim {

namespace {

using wire::Score;

// Everything a plan's scoring needs, with one routing sample per micro-batch size shared
// by every plan that has it.
struct Scorer {
  const ModelSpec& model;
  const ClusterSpec& cluster;
  const Profile& profile;
  const RoutingSpec& routing;
  double memory_limit;
  std::map<std::int64_t, ExpertLoad> loads;  // by routed tokens per micro-batch, from sample_routing

  const ExpertLoad* load(const Plan& p) const { return model.is_moe() ? &loads.at(routed_tokens(p, model)) : nullptr; }

  // One routing sample per routed-token count of `plans`, the samples dealt out over the
  // ranks largest first (each costs in proportion to its tokens), then shared.
  void sample_routing(const std::vector<Plan>& plans, Communicator& comm) {
    if (!model.is_moe()) return;
    std::set<std::int64_t> sizes;
    for (const Plan& p : plans) sizes.insert(routed_tokens(p, model));
    std::vector<std::int64_t> work(static_cast<std::size_t>(comm.size()), 0);
    std::map<std::int64_t, ExpertLoad> mine;
    for (auto it = sizes.rbegin(); it != sizes.rend(); ++it) {
      const auto owner = static_cast<int>(std::min_element(work.begin(), work.end()) - work.begin());
      work[static_cast<std::size_t>(owner)] += *it;
      if (owner == comm.rank()) mine.emplace(*it, route_tokens(model, routing, *it));
    }
    loads = wire::share_loads(comm, mine);
  }

  Score screen(const Plan& p, std::size_t index) const {
    const Screened s = screen_plan(model, p, cluster, profile, load(p), memory_limit);
    return {index, s.seconds, s.memory, static_cast<std::uint8_t>(s.fits)};
  }

  SimResult event(const Plan& p) const {
    SimResult r = simulate_event(model, p, cluster, profile, load(p));
    r.balance.routing = to_string(routing);
    return r;
  }
};

// The first `k` fitting plans of `order` (screening order) that satisfy `keep`.
template <typename Keep>
std::vector<std::uint64_t> first_k(const std::vector<std::uint64_t>& order, std::size_t k, Keep keep) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i : order) {
    if (out.size() >= k) break;
    if (keep(i)) out.push_back(i);
  }
  return out;
}

// Equal fields, with an implied global batch made explicit.
bool same_plan(Plan a, Plan b) {
  a.gbs = a.global_batch();
  b.gbs = b.global_batch();
  return a == b;
}

}  // namespace

Screened screen_plan(const ModelSpec& model, const Plan& plan, const ClusterSpec& cluster, const Profile& profile,
                     const ExpertLoad* load, double memory_limit) {
  Screened s;
  s.memory = peak_memory(model, plan).bytes.total();
  s.fits = s.memory <= memory_limit;
  if (s.fits) s.seconds = simulate_analytic(model, plan, cluster, profile, load).iteration_s;
  return s;
}

SearchResult search_plans(const ModelSpec& model, const ClusterSpec& cluster, const Profile& profile,
                          const RoutingSpec& routing, const SearchSpace& space, const SearchOptions& options,
                          Communicator& comm) {
  if (space.base.gbs <= 0) throw InputError("--gbs", "", "expected a global batch in sequences (or a --baseline plan that has one)");
  SearchResult result;
  result.memory_limit = cluster.gpu_memory_bytes * (1 - options.headroom);
  const std::vector<Plan> plans = enumerate_plans(model, cluster, space);
  result.enumerated = plans.size();
  Scorer scorer{model, cluster, profile, routing, result.memory_limit, {}};
  std::vector<Plan> sampled = plans;
  sampled.insert(sampled.end(), options.baselines.begin(), options.baselines.end());
  scorer.sample_routing(sampled, comm);
  const bool root = comm.rank() == 0;
  const auto rank = static_cast<std::size_t>(comm.rank()), ranks = static_cast<std::size_t>(comm.size());
  auto report = [&](std::size_t done, std::size_t total, const char* phase) {
    if (root && options.progress) options.progress(done, total, phase);
  };

  // Tier 1: every plan, dealt out by index.
  std::vector<Score> mine;
  for (std::size_t i = rank; i < plans.size(); i += ranks) {
    mine.push_back(scorer.screen(plans[i], i));
    if (mine.size() % 256 == 0) report(i + 1, plans.size(), "screening");
  }
  report(plans.size(), plans.size(), "screening");
  const std::vector<Score> screened = wire::gather_scores(comm, mine);

  // Rank 0 orders the fitting plans and picks the candidates for tier 2: the best
  // `rerank`, and the best `rerank` without a pipeline and without tensor parallelism.
  std::vector<std::uint64_t> order, chosen;
  if (root) {
    for (const Score& s : screened)
      if (s.fits) order.push_back(s.index);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::uint64_t a, std::uint64_t b) { return screened[a].seconds < screened[b].seconds; });
    const auto k = static_cast<std::size_t>(std::max(options.rerank, 1));
    for (auto keep : {std::function<bool(std::uint64_t)>([](std::uint64_t) { return true; }),
                      std::function<bool(std::uint64_t)>([&](std::uint64_t i) { return plans[i].pp == 1; }),
                      std::function<bool(std::uint64_t)>([&](std::uint64_t i) { return plans[i].tp == 1; })})
      for (std::uint64_t i : first_k(order, k, keep))
        if (std::find(chosen.begin(), chosen.end(), i) == chosen.end()) chosen.push_back(i);
  }
  chosen = wire::broadcast_indices(comm, chosen);

  // Tier 2: the chosen candidates on the event tier, dealt out the same way.
  mine.clear();
  std::map<std::uint64_t, SimResult> computed;
  for (std::size_t j = rank; j < chosen.size(); j += ranks) {
    const SimResult& r = computed.emplace(chosen[j], scorer.event(plans[chosen[j]])).first->second;
    mine.push_back({chosen[j], r.iteration_s, r.memory.bytes.total(),
                    static_cast<std::uint8_t>(r.memory.bytes.total() <= result.memory_limit)});
    report(j + 1, chosen.size(), "event tier");
  }
  const std::vector<Score> evented = wire::gather_scores(comm, mine);
  result.reranked = chosen.size();
  if (!root) return result;

  for (const Score& s : screened) result.fitting += s.fits;
  std::map<std::uint64_t, std::size_t> screen_rank;
  for (std::size_t r = 0; r < order.size(); ++r) screen_rank[order[r]] = r + 1;
  std::map<std::uint64_t, const Score*> event_of;
  for (const Score& s : evented) {
    event_of[s.index] = &s;
    if (!s.fits) ++result.rejected_by_event;
  }
  // A candidate with its full event result: every rank scores a plan alike, so rank 0
  // recomputes what other ranks scored instead of shipping results around.
  auto candidate = [&](std::uint64_t i) {
    Candidate c;
    c.index = i;
    c.plan = plans[i];
    c.screen_s = screened[i].seconds;
    c.memory = screened[i].memory;
    c.fits = true;
    const auto done = computed.find(i);
    c.event = done != computed.end() ? done->second : scorer.event(c.plan);
    return c;
  };
  // Tier-2 order among `family`: event time, then enumeration index.
  auto best_of = [&](auto keep) {
    std::vector<const Score*> family;
    for (const Score& s : evented)
      if (s.fits && keep(s.index)) family.push_back(&s);
    std::stable_sort(family.begin(), family.end(), [](const Score* a, const Score* b) { return a->seconds < b->seconds; });
    return family;
  };
  // Every candidate the event tier scored, whichever family brought it in.
  const std::vector<const Score*> all_order = best_of([](std::uint64_t) { return true; });
  for (const Score* s : all_order) result.ranked.push_back(candidate(s->index));
  if (!result.ranked.empty()) {
    const double best = result.ranked.front().time();
    while (result.ties + 1 < result.ranked.size() && result.ranked[result.ties + 1].time() <= best * (1 + options.tie))
      ++result.ties;
  }
  const auto no_pp = best_of([&](std::uint64_t i) { return plans[i].pp == 1; });
  if (!no_pp.empty()) result.best_without_pipeline = candidate(no_pp.front()->index);
  const auto no_tp = best_of([&](std::uint64_t i) { return plans[i].tp == 1; });
  if (!no_tp.empty()) result.best_without_tensor = candidate(no_tp.front()->index);

  for (std::size_t b = 0; b < options.baselines.size(); ++b) {
    BaselineScore score;
    score.name = b < options.baseline_names.size() ? options.baseline_names[b] : "baseline";
    Candidate& c = score.candidate;
    c.plan = options.baselines[b];
    c.index = kOutsideSpace;
    for (std::size_t i = 0; i < plans.size(); ++i)
      if (same_plan(plans[i], c.plan)) c.index = i;
    c.memory = peak_memory(model, c.plan).bytes.total();
    c.screen_s = simulate_analytic(model, c.plan, cluster, profile, scorer.load(c.plan)).iteration_s;
    c.event = scorer.event(c.plan);
    c.fits = c.memory <= result.memory_limit && c.event->memory.bytes.total() <= result.memory_limit;
    if (c.index != kOutsideSpace && screen_rank.contains(c.index)) score.screen_rank = screen_rank[c.index];
    result.baselines.push_back(std::move(score));
  }
  return result;
}

}  // namespace moesim
