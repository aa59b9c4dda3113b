// The analytic screening tier: one plan's iteration time in closed form from the compute
// and communication models (no events, well under a millisecond per plan). Per
// micro-batch, a stage runs its layers forward and backward with tensor-parallel
// all-reduces and expert all-to-alls in line (not overlapped); pipelines pay
// (pp - 1) / vpp micro-batch slots of fill and drain; data-parallel gradient reduction
// overlaps the last micro-batch's backward, and what does not fit is exposed; FSDP
// (zero 3) gathers weights per micro-batch, overlapped with that micro-batch's compute.
#pragma once

#include "src/cluster/cluster_spec.hpp"
#include "src/model/model_spec.hpp"
#include "src/plan/plan.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/routing_model.hpp"
#include "src/simulate/result.hpp"

namespace moesim {

// `routing`: how one micro-batch of a rank's tokens spreads over the experts (MoE models,
// route_tokens for mbs x seq_len tokens). It decides the expert GEMMs and all-to-alls of
// dropless models (the most-loaded rank's tokens) and fills the balance figures;
// capacity-padded models compute every expert's full buffer whatever the routing. Absent,
// dropless models take the mean load, k tokens per token, and no balance is reported:
// the closed form the search screens with.
SimResult simulate_analytic(const ModelSpec& model, const Plan& plan, const ClusterSpec& cluster,
                            const Profile& profile, const ExpertLoad* routing = nullptr);

}  // namespace moesim
