// The event tier of `moesim simulate`: the iteration lowered onto the discrete-event
// engine (pipeline_lowering.hpp) with the op costs of stage_cost.hpp, so the pipeline
// schedule, the bucketed overlap of gradient reduction with the last backward, and
// FSDP prefetch come out of the timeline instead of closed forms. The data-parallel
// reductions and gathers and the pipeline's sends run as flows over the cluster's links
// (collective_flows.hpp), every group of a stage at once, so they slow each other down
// where they share links; tensor- and expert-parallel collectives stay priced in line
// with the compute they block.
#pragma once

#include <string>

#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/routing_model.hpp"
#include "src/simulate/result.hpp"

namespace moesim {

// `trace_path`: when not empty, the Chrome trace of the timeline is written there
// (atomically). Throws std::runtime_error for an interleaved schedule whose micro-batches
// are not a multiple of the pipeline stages (Megatron's requirement too).
SimResult simulate_event(const ModelSpec& model, const Plan& plan, const ClusterSpec& cluster, const Profile& profile,
                         const ExpertLoad* routing = nullptr, const std::string& trace_path = "");

}  // namespace moesim
