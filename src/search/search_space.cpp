// Enumeration of the plan space; see search_space.hpp.
#include "src/search/search_space.hpp"

#include <algorithm>
#include <string_view>

#include "src/core/error.hpp"

namespace moesim {

namespace {

// The candidate values of one searched field: `all`, or base's value when it is fixed.
template <typename T>
std::vector<T> choices(const SearchSpace& s, const char* field, std::vector<T> all, T fixed_value) {
  if (!s.fixed.contains(field)) return all;
  return std::find(all.begin(), all.end(), fixed_value) != all.end() ? std::vector<T>{fixed_value} : std::vector<T>{};
}

// What tensor parallelism splits besides the routed experts (those split etp ways).
bool divides_model(const ModelSpec& m, int tp) {
  bool ok = m.heads % tp == 0 && m.kv_heads % tp == 0 && m.ffn_dim % tp == 0;
  if (m.is_moe() && m.moe.shared_experts > 0) ok = ok && m.shared_ffn() % tp == 0;
  return ok;
}

}  // namespace

std::vector<std::int64_t> divisors(std::int64_t n) {
  std::vector<std::int64_t> low, high;
  for (std::int64_t d = 1; d * d <= n; ++d) {
    if (n % d != 0) continue;
    low.push_back(d);
    if (d != n / d) high.push_back(n / d);
  }
  low.insert(low.end(), high.rbegin(), high.rend());
  return low;
}

const std::vector<std::string>& searched_fields() {
  static const std::vector<std::string> fields{"dp",  "tp",       "pp",  "cp",   "ep",        "etp",      "mbs",
                                               "sp", "schedule", "vpp", "zero", "recompute", "placement"};
  return fields;
}

void apply_fixed(SearchSpace& space, const std::string& text, const std::string& source) {
  std::string_view rest = text;
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size())
      throw InputError(source, std::string(item), "expected key=value");
    const std::string key(item.substr(0, eq));
    space.base = with_field(space.base, key, item.substr(eq + 1), source);
    const auto& searched = searched_fields();
    if (std::find(searched.begin(), searched.end(), key) != searched.end()) space.fixed.insert(key);
  }
}

std::vector<Plan> enumerate_plans(const ModelSpec& m, const ClusterSpec& c, const SearchSpace& s) {
  std::vector<Plan> plans;
  const Plan& b = s.base;
  const std::int64_t gbs = b.gbs;
  const int world = s.gpus > 0 ? s.gpus : c.total_gpus();
  const int max_tp = s.max_tp > 0 ? s.max_tp : c.gpus_per_node;
  const int max_cp = s.max_cp > 0 ? s.max_cp : c.gpus_per_node;
  const int max_pp = s.max_pp > 0 ? s.max_pp : world;
  const int experts = m.is_moe() ? m.moe.experts : 1;

  auto ints = [](std::int64_t n) {
    std::vector<int> out;
    for (std::int64_t d : divisors(n)) out.push_back(static_cast<int>(d));
    return out;
  };
  // Every batching, order, sharding and recomputation of one factorisation of the GPUs.
  auto add_plans = [&](Plan shape) {
    const int dp = shape.dp, pp = shape.pp, ep = shape.ep;
    for (int mbs : choices(s, "mbs", ints(gbs / dp), b.mbs)) {
      if (mbs > s.max_mbs && !s.fixed.contains("mbs")) continue;
      const std::int64_t micro_batches = gbs / (static_cast<std::int64_t>(dp) * mbs);
      // (schedule, vpp) pairs: one per pipeline order.
      std::vector<std::pair<Schedule, int>> orders;
      if (pp == 1) {
        // Without a pipeline every order is the same; keep a fixed one's name.
        const bool named = s.fixed.contains("schedule") && b.schedule != Schedule::interleaved;
        orders.emplace_back(named ? b.schedule : Schedule::one_f_one_b, 1);
      } else {
        orders.emplace_back(Schedule::gpipe, 1);
        orders.emplace_back(Schedule::one_f_one_b, 1);
        if (micro_batches % pp == 0)
          for (int v : ints(m.layers / pp))
            if (v >= 2) orders.emplace_back(Schedule::interleaved, v);
      }
      const std::vector<int> zeros = dp == 1 ? std::vector<int>{s.fixed.contains("zero") ? b.zero : 0}
                                             : choices(s, "zero", std::vector<int>{0, 1, 2, 3}, b.zero);
      const bool placement_matters = s.placements && ep > 1 && ep < experts;
      const std::vector<ExpertPlacement> placements =
          placement_matters
              ? choices(s, "placement", {ExpertPlacement::contiguous, ExpertPlacement::round_robin}, b.placement)
              : std::vector<ExpertPlacement>{s.fixed.contains("placement") ? b.placement : ExpertPlacement::contiguous};
      for (auto [schedule, vpp] : orders) {
        if (s.fixed.contains("schedule") && schedule != b.schedule) continue;
        if (s.fixed.contains("vpp") && vpp != b.vpp) continue;
        for (int zero : zeros)
          for (Recompute rc :
               choices(s, "recompute", {Recompute::none, Recompute::selective, Recompute::full}, b.recompute))
            for (ExpertPlacement placement : placements) {
              Plan p = shape;
              p.mbs = mbs;
              p.schedule = schedule;
              p.vpp = vpp;
              p.zero = zero;
              p.recompute = rc;
              p.placement = placement;
              plans.push_back(p);
            }
      }
    }
  };
  for (int tp : choices(s, "tp", ints(world), b.tp)) {
    if (tp > max_tp || !divides_model(m, tp)) continue;
    // Sequence parallelism splits what tensor parallelism replicates, for the same
    // communication: never slower, never more memory, so it is on wherever tp is
    // (unless pinned).
    const bool sp = s.fixed.contains("sp") ? b.sp : tp > 1;
    if (sp && tp == 1) continue;
    // Context parallelism runs ring attention on fused kernels and cuts each sequence into
    // 2 cp chunks.
    for (int cp : choices(s, "cp", ints(world / tp), b.cp)) {
      if (cp > 1 && (b.attention != AttentionImpl::flash || m.seq_len % (2 * cp) != 0)) continue;
      if (cp > max_cp && !s.fixed.contains("cp")) continue;
      for (int pp : choices(s, "pp", ints(world / tp / cp), b.pp)) {
        if (pp > max_pp || m.layers % pp != 0) continue;
        const int dp = world / (tp * pp * cp);
        if (s.fixed.contains("dp") && dp != b.dp) continue;
        if (gbs % dp != 0) continue;
        // Routed experts split as attention does (etp = tp, written unset) or, with MoE
        // parallel folding, whole (etp 1); ep then spans the stage's etp-th part.
        std::vector<int> etps{tp};
        if (s.fixed.contains("etp")) etps = {b.expert_tp()};
        else if (m.is_moe() && tp > 1) etps.push_back(1);
        for (int etp : etps) {
          if ((m.is_moe() && m.expert_ffn() % etp != 0) || (tp * cp * dp) % etp != 0) continue;
          for (int ep : choices(s, "ep", ints(static_cast<std::int64_t>(tp) * cp * dp / etp), b.ep)) {
            if (experts % ep != 0) continue;
            Plan shape = b;
            shape.dp = dp;
            shape.tp = tp;
            shape.pp = pp;
            shape.cp = cp;
            shape.ep = ep;
            shape.etp = etp == tp ? 0 : etp;
            shape.sp = sp;
            add_plans(shape);
          }
        }
      }
    }
  }
  return plans;
}

}  // namespace moesim
