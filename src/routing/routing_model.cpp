// Routing models and expert loads; see routing_model.hpp.
#include "src/routing/routing_model.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/counter_rng.hpp"
#include "src/accounting/capacity.hpp"
#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"

namespace moesim {
namespace {

kernels::SecondExpertPolicy policy_of(SecondExpertPolicy p) {
  switch (p) {
    case SecondExpertPolicy::all: return kernels::SecondExpertPolicy::All;
    case SecondExpertPolicy::sampling: return kernels::SecondExpertPolicy::Sampling;
    case SecondExpertPolicy::random: return kernels::SecondExpertPolicy::Random;
  }
  return kernels::SecondExpertPolicy::All;
}

}  // namespace

std::vector<double> expert_weights(const RoutingSpec& r, int experts) {
  std::vector<double> w(static_cast<std::size_t>(experts), 1.0);
  if (r.kind != RoutingKind::zipf && r.kind != RoutingKind::aux_free) return w;
  std::vector<int> order(static_cast<std::size_t>(experts));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(r.seed));
  for (int i = 0; i < experts; ++i) w[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = std::pow(i + 1.0, -r.zipf_s);
  return w;
}

namespace {

// Top-k in token order with a per-expert capacity (k > 2, beyond fairseq's gates). The
// experts are chosen by `select` (the logits when null); entropy is the logits'.
ExpertLoad route_top_k(const std::vector<float>& logits, std::int64_t tokens, int experts, int k,
                       std::optional<std::int64_t> capacity, const std::vector<float>* select = nullptr) {
  ExpertLoad load;
  load.demand.assign(static_cast<std::size_t>(experts), 0.0);
  load.kept.assign(static_cast<std::size_t>(experts), 0.0);
  std::vector<int> hist1(static_cast<std::size_t>(experts)), demand1(hist1.size()), idx(hist1.size());
  double entropy = 0;
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* row = logits.data() + t * experts;
    const float* key = select ? select->data() + t * experts : row;
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return key[a] > key[b] || (key[a] == key[b] && a < b); });
    const float top = *std::max_element(row, row + experts);
    double z = 0;
    for (int e = 0; e < experts; ++e) z += std::exp(static_cast<double>(row[e] - top));
    for (int e = 0; e < experts; ++e) {
      const double p = std::exp(static_cast<double>(row[e] - top)) / z;
      entropy -= p > 0 ? p * std::log(p) : 0.0;
    }
    ++hist1[static_cast<std::size_t>(idx[0])];
    ++demand1[static_cast<std::size_t>(idx[0])];
    for (int j = 0; j < k; ++j) {
      const auto e = static_cast<std::size_t>(idx[static_cast<std::size_t>(j)]);
      load.demand[e] += 1;
      if (!capacity || load.kept[e] < static_cast<double>(*capacity)) load.kept[e] += 1;
    }
  }
  const int cap = capacity ? static_cast<int>(*capacity) : static_cast<int>(tokens);
  load.stats = kernels::gate_stats_from_tallies(hist1, {}, demand1, {}, static_cast<int>(tokens), cap, entropy);
  return load;
}

struct Trace {
  int experts = 0, top_k = 0;
  std::vector<double> expert1, expert2;  // fractions of tokens whose first / second choice is e
  std::optional<double> entropy;
};

Trace read_trace(const std::string& path) {
  const nlohmann::json doc = read_json_file(path);
  ObjectReader r(doc, path);
  Trace t;
  t.experts = static_cast<int>(r.integer("experts", 1, 1 << 20));
  t.top_k = static_cast<int>(r.integer("top_k", 1, 2));
  const std::int64_t tokens = r.integer("tokens", 1, INT64_C(1) << 40);
  auto counts = [&](const char* key) {
    const nlohmann::json& a = r.raw(key);
    const std::string expected = "expected " + std::to_string(t.experts) + " token counts, one per expert";
    if (!a.is_array() || a.size() != static_cast<std::size_t>(t.experts)) r.fail(key, expected);
    std::vector<double> f;
    double sum = 0;
    for (const auto& v : a) {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0) r.fail(key, expected + ", got " + describe_value(v));
      f.push_back(static_cast<double>(v.get<std::int64_t>()) / static_cast<double>(tokens));
      sum += f.back();
    }
    if (sum > 1.0 + 1e-9) r.fail(key, "expected counts summing to at most tokens (" + std::to_string(tokens) + ")");
    return f;
  };
  t.expert1 = counts("expert1");
  if (t.top_k == 2) t.expert2 = counts("expert2");
  if (r.has("entropy_gating")) t.entropy = r.number("entropy_gating", 0, 1e6);
  // A trace `moesim run` wrote also names its run and keeps every update's and every MoE
  // layer's counts; one sample of the totals serves every layer here.
  r.string_or("source", "");
  if (r.has("per_step")) r.raw("per_step");
  r.finish();
  return t;
}

// Router logits of `tokens` tokens: log(w_e) + Gumbel noise, the draw numbered from `first`.
std::vector<float> router_logits(const std::vector<double>& log_w, std::int64_t tokens, std::uint64_t seed,
                                 std::uint64_t first) {
  const std::size_t E = log_w.size();
  std::vector<float> logits(static_cast<std::size_t>(tokens) * E);
  for (std::size_t i = 0; i < logits.size(); ++i)
    logits[i] = static_cast<float>(log_w[i % E]) + kernels::gumbel(seed, first + i);
  return logits;
}

// What the router's scores are: sigmoid per expert (DeepSeek-V3) or softmax over them.
std::vector<float> router_scores(const ModelSpec& m, const std::vector<float>& logits) {
  const auto E = static_cast<std::size_t>(m.moe.experts);
  std::vector<float> s(logits.size());
  for (std::size_t t = 0; t < logits.size() / E; ++t) {
    const float* z = logits.data() + t * E;
    float* out = s.data() + t * E;
    if (m.moe.router_score == RouterScore::sigmoid) {
      for (std::size_t e = 0; e < E; ++e) out[e] = 1.0f / (1.0f + std::exp(-z[e]));
      continue;
    }
    const float top = *std::max_element(z, z + E);
    float sum = 0;
    for (std::size_t e = 0; e < E; ++e) sum += (out[e] = std::exp(z[e] - top));
    for (std::size_t e = 0; e < E; ++e) out[e] /= sum;
  }
  return s;
}

// Group-limited routing on one token's selection keys: its groups_per_token groups with
// the largest sum of their two best keys (one key for groups of one) keep their keys; the
// others' become -infinity. Ties go to the lower group.
void limit_groups(const MoeSpec& moe, float* keys, std::vector<float>& group_score, std::vector<int>& order) {
  const int G = moe.expert_groups, per = moe.experts / G;
  group_score.resize(static_cast<std::size_t>(G));
  order.resize(static_cast<std::size_t>(G));
  for (int g = 0; g < G; ++g) {
    float best = -INFINITY, second = -INFINITY;
    for (int e = g * per; e < (g + 1) * per; ++e) {
      if (keys[e] > best) {
        second = best;
        best = keys[e];
      } else if (keys[e] > second) {
        second = keys[e];
      }
    }
    group_score[static_cast<std::size_t>(g)] = per > 1 ? best + second : best;
  }
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return group_score[static_cast<std::size_t>(a)] > group_score[static_cast<std::size_t>(b)];
  });
  for (std::size_t r = static_cast<std::size_t>(moe.groups_per_token); r < order.size(); ++r)
    for (int e = order[r] * per; e < (order[r] + 1) * per; ++e) keys[e] = -INFINITY;
}

std::vector<float> biased(std::vector<float> scores, const std::vector<double>& bias) {
  for (std::size_t i = 0; i < scores.size(); ++i) scores[i] += static_cast<float>(bias[i % bias.size()]);
  return scores;
}

std::vector<double> log_weights(const RoutingSpec& routing, int experts) {
  std::vector<double> log_w = expert_weights(routing, experts);
  for (double& x : log_w) x = std::log(x);
  return log_w;
}

}  // namespace

void limit_groups(const MoeSpec& moe, std::vector<float>& keys) {
  if (moe.expert_groups == 0) return;
  std::vector<float> score;
  std::vector<int> order;
  const auto E = static_cast<std::size_t>(moe.experts);
  for (std::size_t t = 0; t < keys.size() / E; ++t) limit_groups(moe, keys.data() + t * E, score, order);
}

std::vector<double> aux_free_bias(const ModelSpec& m, const RoutingSpec& routing) {
  const int E = m.moe.experts, k = m.moe.top_k;
  const auto Es = static_cast<std::size_t>(E), ks = static_cast<std::size_t>(k);
  const std::vector<double> log_w = log_weights(routing, E);
  // The updates cycle over kAuxFreeDraws draws of tokens, drawn after the one route_tokens
  // routes: the scores are computed once, only the biases change.
  const std::uint64_t draw = static_cast<std::uint64_t>(kAuxFreeTokensPerUpdate) * Es;
  std::vector<std::vector<float>> scores;
  for (int d = 0; d < kAuxFreeDraws; ++d)
    scores.push_back(router_scores(m, router_logits(log_w, kAuxFreeTokensPerUpdate, routing.seed, draw * (d + 1))));
  std::vector<double> bias(Es, 0.0);
  std::vector<float> bias_f(Es), top_v(ks), keys(Es), group_score;
  std::vector<int> top_i(ks), group_order;
  std::vector<std::int64_t> demand(Es);
  const double mean = static_cast<double>(kAuxFreeTokensPerUpdate) * k / E;
  for (int u = 0; u < kAuxFreeUpdates; ++u) {
    const std::vector<float>& s = scores[static_cast<std::size_t>(u % kAuxFreeDraws)];
    for (std::size_t e = 0; e < Es; ++e) bias_f[e] = static_cast<float>(bias[e]);
    std::fill(demand.begin(), demand.end(), 0);
    for (std::int64_t t = 0; t < kAuxFreeTokensPerUpdate; ++t) {
      // Top-k of score + bias by insertion into a sorted list of k (ties: the lower index,
      // as route_top_k breaks them).
      const float* row = s.data() + static_cast<std::size_t>(t) * Es;
      for (std::size_t e = 0; e < Es; ++e) keys[e] = row[e] + bias_f[e];
      if (m.moe.expert_groups > 0) limit_groups(m.moe, keys.data(), group_score, group_order);
      std::size_t n = 0;
      for (std::size_t e = 0; e < Es; ++e) {
        const float key = keys[e];
        if (n == ks && key <= top_v[ks - 1]) continue;
        std::size_t j = n < ks ? n++ : ks - 1;
        for (; j > 0 && top_v[j - 1] < key; --j) {
          top_v[j] = top_v[j - 1];
          top_i[j] = top_i[j - 1];
        }
        top_v[j] = key;
        top_i[j] = static_cast<int>(e);
      }
      for (std::size_t j = 0; j < ks; ++j) ++demand[static_cast<std::size_t>(top_i[j])];
    }
    for (std::size_t e = 0; e < Es; ++e) {
      if (static_cast<double>(demand[e]) > mean) bias[e] -= kAuxFreeBiasSpeed;
      if (static_cast<double>(demand[e]) < mean) bias[e] += kAuxFreeBiasSpeed;
    }
  }
  return bias;
}

RoutingSpec parse_routing(const std::string& text) {
  RoutingSpec r;
  const std::string expected =
      "expected uniform, balanced, zipf:S (S >= 0), aux_free:S (S >= 0) or trace:FILE, got \"" + text + "\"";
  if (text == "uniform") return r;
  if (text == "balanced") {
    r.kind = RoutingKind::balanced;
    return r;
  }
  const bool aux_free = text.rfind("aux_free:", 0) == 0;
  if (text.rfind("zipf:", 0) == 0 || aux_free) {
    r.kind = aux_free ? RoutingKind::aux_free : RoutingKind::zipf;
    const std::size_t at = aux_free ? 9 : 5;
    try {
      std::size_t used = 0;
      r.zipf_s = std::stod(text.substr(at), &used);
      if (used != text.size() - at || !(r.zipf_s >= 0) || !std::isfinite(r.zipf_s)) throw std::invalid_argument("s");
    } catch (const std::exception&) {
      throw InputError("--routing", "", expected);
    }
    return r;
  }
  if (text.rfind("trace:", 0) == 0 && text.size() > 6) {
    r.kind = RoutingKind::trace;
    r.trace = text.substr(6);
    return r;
  }
  throw InputError("--routing", "", expected);
}

std::string to_string(const RoutingSpec& r) {
  switch (r.kind) {
    case RoutingKind::uniform: return "uniform";
    case RoutingKind::balanced: return "balanced";
    case RoutingKind::zipf:
    case RoutingKind::aux_free: {
      char buf[48];
      std::snprintf(buf, sizeof buf, "%s:%g", r.kind == RoutingKind::zipf ? "zipf" : "aux_free", r.zipf_s);
      return buf;
    }
    case RoutingKind::trace: return "trace:" + r.trace;
  }
  return "?";
}

ExpertLoad route_tokens(const ModelSpec& m, const RoutingSpec& routing, std::int64_t tokens) {
  const int E = m.moe.experts, k = m.moe.top_k;
  const std::optional<std::int64_t> capacity = expert_capacity(m.moe, tokens);
  ExpertLoad load;
  if (routing.kind == RoutingKind::trace) {
    const Trace t = read_trace(routing.trace);
    if (t.experts != E || t.top_k != std::min(k, 2))
      throw InputError(routing.trace, "experts", "expected a trace of " + std::to_string(E) + " experts and top_k " +
                                                     std::to_string(std::min(k, 2)) + " (the model's)");
    // Counts scaled to `tokens`, then fairseq's drop rule on counts: first choices fill
    // an expert's slots first; second choices take the slots after all first choices.
    std::vector<int> h1(static_cast<std::size_t>(E)), h2(t.expert2.empty() ? 0 : static_cast<std::size_t>(E));
    load.demand.assign(static_cast<std::size_t>(E), 0.0);
    load.kept.assign(static_cast<std::size_t>(E), 0.0);
    const double cap = capacity ? static_cast<double>(*capacity) : INFINITY;
    for (std::size_t e = 0; e < static_cast<std::size_t>(E); ++e) {
      const double d1 = std::round(t.expert1[e] * static_cast<double>(tokens));
      const double d2 = t.expert2.empty() ? 0.0 : std::round(t.expert2[e] * static_cast<double>(tokens));
      h1[e] = static_cast<int>(d1);
      if (!h2.empty()) h2[e] = static_cast<int>(d2);
      load.demand[e] = d1 + d2;
      load.kept[e] = std::min(d1, cap) + std::clamp(cap - d1, 0.0, d2);
    }
    const int c = capacity ? static_cast<int>(*capacity) : static_cast<int>(tokens);
    load.stats = kernels::gate_stats_from_tallies(h1, h2, h1, h2, static_cast<int>(tokens), c,
                                                  t.entropy.value_or(0) * static_cast<double>(tokens));
    load.has_entropy = t.entropy.has_value();
  } else if (routing.kind == RoutingKind::balanced) {
    // Each of the k choice ranks spreads its tokens evenly: tokens / E per expert, the
    // remainder one each to the first experts.
    std::vector<int> h1(static_cast<std::size_t>(E)), h2(k >= 2 ? static_cast<std::size_t>(E) : 0);
    load.demand.assign(static_cast<std::size_t>(E), 0.0);
    load.kept.assign(static_cast<std::size_t>(E), 0.0);
    const double cap = capacity ? static_cast<double>(*capacity) : INFINITY;
    for (int e = 0; e < E; ++e) {
      const auto i = static_cast<std::size_t>(e);
      const auto even = [&](std::int64_t n) { return n / E + (e < n % E ? 1 : 0); };
      const double d = static_cast<double>(even(tokens * k));
      const double d1 = static_cast<double>(even(tokens));
      h1[i] = static_cast<int>(d1);
      if (!h2.empty()) h2[i] = static_cast<int>(even(tokens));
      load.demand[i] = d;
      load.kept[i] = std::min(d1, cap) + std::clamp(cap - d1, 0.0, d - d1);
    }
    const int c = capacity ? static_cast<int>(*capacity) : static_cast<int>(tokens);
    load.stats = kernels::gate_stats_from_tallies(h1, h2, h1, h2, static_cast<int>(tokens), c,
                                                  static_cast<double>(tokens) * std::log(static_cast<double>(E)));
  } else if (routing.kind == RoutingKind::aux_free) {
    const std::vector<float> logits = router_logits(log_weights(routing, E), tokens, routing.seed, 0);
    std::vector<float> keys = biased(router_scores(m, logits), aux_free_bias(m, routing));
    limit_groups(m.moe, keys);
    load = route_top_k(logits, tokens, E, k, capacity, &keys);
  } else if (m.moe.expert_groups > 0) {
    const std::vector<float> logits = router_logits(log_weights(routing, E), tokens, routing.seed, 0);
    std::vector<float> keys = router_scores(m, logits);
    limit_groups(m.moe, keys);
    load = route_top_k(logits, tokens, E, k, capacity, &keys);
  } else {
    const std::vector<float> logits = router_logits(log_weights(routing, E), tokens, routing.seed, 0);
    if (k <= 2) {
      kernels::GateOptions o;
      o.k = k;
      o.capacity = capacity ? static_cast<int>(*capacity) : static_cast<int>(tokens);
      o.second_policy = policy_of(m.moe.second_expert_policy);
      o.seed = routing.seed;
      const kernels::GateResult g = kernels::gate_forward(logits, static_cast<int>(tokens), E, o);
      load.demand.assign(g.demand.begin(), g.demand.end());
      load.kept.assign(g.counts.begin(), g.counts.end());
      load.stats = g.stats;
    } else {
      load = route_top_k(logits, tokens, E, k, capacity);
    }
  }
  load.tokens = tokens;
  load.experts = E;
  load.top_k = k;
  load.capacity = capacity;
  return load;
}

RankLoad rank_load(const ExpertLoad& load, int ep, ExpertPlacement placement) {
  RankLoad r;
  const int per_rank = std::max(1, load.experts / std::max(ep, 1));
  const int ranks = load.experts / per_rank;
  std::vector<double> sums(static_cast<std::size_t>(ranks), 0.0);
  for (int e = 0; e < ranks * per_rank; ++e) {
    const int rank = placement == ExpertPlacement::round_robin ? e % ranks : e / per_rank;
    sums[static_cast<std::size_t>(rank)] += load.kept[static_cast<std::size_t>(e)];
  }
  double total = 0;
  for (int rank = 0; rank < ranks; ++rank) {
    // Every rank of the group routes its tokens alike: each sends this rank the same load.
    const double sum = sums[static_cast<std::size_t>(rank)] * ep;
    total += sum;
    if (sum > r.max_tokens) {
      r.max_tokens = sum;
      r.max_rank = rank;
    }
  }
  r.mean_tokens = total / ranks;
  return r;
}

}  // namespace moesim
