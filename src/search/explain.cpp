// Side-by-side breakdowns and the sentence that explains a ranking; see explain.hpp.
#include "src/search/explain.hpp"

#include <cstdio>
#include <map>

#include "src/core/table.hpp"

namespace moesim {

namespace {

void add_union(std::vector<ComparisonRow>& rows, const std::string& prefix, const std::map<std::string, double>& a,
               const std::map<std::string, double>& b) {
  std::map<std::string, std::pair<double, double>> both;
  for (const auto& [k, v] : a) both[k].first = v;
  for (const auto& [k, v] : b) both[k].second = v;
  for (const auto& [k, v] : both) rows.push_back({prefix + k, v.first, v.second, true});
}

// A row's name inside a sentence: "compute: moe_experts" -> "moe_experts compute".
std::string spoken(const std::string& row) {
  for (const char* prefix : {"compute: ", "exposed comm: "}) {
    const std::string p = prefix;
    if (row.rfind(p, 0) == 0)
      return p == "compute: " ? row.substr(p.size()) + " compute" : "exposed " + row.substr(p.size());
  }
  return row;
}

}  // namespace

std::vector<ComparisonRow> compare_results(const SimResult& a, const SimResult& b) {
  std::vector<ComparisonRow> rows;
  add_union(rows, "compute: ", a.breakdown.compute, b.breakdown.compute);
  add_union(rows, "exposed comm: ", a.breakdown.exposed_comm, b.breakdown.exposed_comm);
  rows.push_back({"pipeline bubble", a.breakdown.bubble, b.breakdown.bubble, true});
  rows.push_back({"optimizer step", a.breakdown.optimizer, b.breakdown.optimizer, true});
  rows.push_back({"peak memory per GPU", a.memory.bytes.total(), b.memory.bytes.total(), false});
  rows.push_back({"tokens/s", a.wps, b.wps, false});
  rows.push_back({"MFU", a.mfu, b.mfu, false});
  return rows;
}

namespace {

// The plan's file form with the fields it leaves out at their defaults written in, as
// the values they stand for, so that two plans compare field by field.
nlohmann::ordered_json every_field(const Plan& p) {
  nlohmann::ordered_json j = plan_to_json(p);
  auto put = [&](const char* key, const nlohmann::ordered_json& v) {
    if (!j.contains(key)) j[key] = v;
  };
  put("cp", p.cp);
  put("etp", p.expert_tp());
  put("sp", p.sp);
  put("grad_dtype", to_string(p.grads()));
  put("fp8", to_string(p.fp8));
  put("fp8_recipe", to_string(p.fp8_recipe));
  put("fp8_dispatch", p.fp8_dispatch);
  put("first_stage_layers", p.first_stage_layers);
  put("last_stage_layers", p.last_stage_layers);
  return j;
}

}  // namespace

std::string plan_difference(const Plan& a, const Plan& b) {
  const nlohmann::ordered_json ja = every_field(a), jb = every_field(b);
  std::string out;
  for (const auto& [key, va] : ja.items()) {
    const auto& vb = jb.at(key);
    if (va == vb) continue;
    auto text = [](const nlohmann::ordered_json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
    out += (out.empty() ? "" : ", ") + key + " " + text(va) + " vs " + text(vb);
  }
  return out;
}

std::string why_faster(const Plan& a, const SimResult& ra, const Plan& b, const SimResult& rb, const std::string& other,
                       double tie) {
  char head[160];
  const double ratio = rb.iteration_s / ra.iteration_s;
  const std::string ta = human_seconds(ra.iteration_s), tb = human_seconds(rb.iteration_s);
  if (ratio - 1 <= tie && ratio - 1 >= -tie)
    std::snprintf(head, sizeof head, "ties with %s within %.3g%% (%s vs %s per iteration)", other.c_str(), 100 * tie,
                  ta.c_str(), tb.c_str());
  else if (ratio > 1)
    std::snprintf(head, sizeof head, "is %.1f%% faster than %s (%s vs %s per iteration)", 100 * (ratio - 1),
                  other.c_str(), ta.c_str(), tb.c_str());
  else
    std::snprintf(head, sizeof head, "is %.1f%% slower than %s (%s vs %s per iteration)", 100 * (1 / ratio - 1),
                  other.c_str(), ta.c_str(), tb.c_str());
  // The component with the largest saving, and, if the winner pays for it elsewhere,
  // the largest cost.
  std::string out = head;
  const std::vector<ComparisonRow> rows = compare_results(ra, rb);
  const ComparisonRow* saving = nullptr;
  const ComparisonRow* cost = nullptr;
  for (const ComparisonRow& r : rows) {
    if (!r.seconds) continue;
    if (r.b - r.a > 0 && (!saving || r.b - r.a > saving->b - saving->a)) saving = &r;
    if (r.a - r.b > 0 && (!cost || r.a - r.b > cost->a - cost->b)) cost = &r;
  }
  if (saving) {
    out += ": its " + spoken(saving->name) + " takes " + human_seconds(saving->b - saving->a) + " less";
    if (cost) out += " while its " + spoken(cost->name) + " takes " + human_seconds(cost->a - cost->b) + " more";
  }
  const std::string diff = plan_difference(a, b);
  out += diff.empty() ? std::string(", with the same plan fields") : ", with " + diff;
  return out + ".";
}

}  // namespace moesim
