// `moesim describe`: a model (with an optional plan and cluster) to parameter counts,
// FLOPs per iteration and memory per rank, as one JSON document or a human table.
// Field names are a contract (docs/describe.md).
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"

namespace moesim {

struct DescribeInput {
  ModelSpec model;
  std::optional<Plan> plan;
  std::optional<ClusterSpec> cluster;
};

// Loads and cross-validates the inputs of describe exactly as the CLI does: the model
// file, an optional plan (file or inline; empty = none) and an optional cluster file.
DescribeInput load_describe_input(const std::string& model_path, const std::string& plan,
                                  const std::string& cluster_path);

nlohmann::ordered_json describe_json(const DescribeInput& in);
void describe_text(const DescribeInput& in, std::ostream& out);

}  // namespace moesim
