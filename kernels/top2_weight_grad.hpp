// The gradient of top-2 combine weights w_j = g_j / max(g1 + g2, eps) back to the two
// gate probabilities, shared by the CPU reference and the CUDA gate so both compute the
// same formula (below eps torch's clamp passes no gradient to the denominator).
#pragma once

#include <cfloat>

#include "kernels/host_device.hpp"

namespace moesim::kernels {

// p1, p2: the chosen experts' probabilities; dw1, dw2: the weights' gradients; kept1,
// kept2: whether each choice survived capacity; normalize_before: fairseq's
// moe_normalize_gate_prob_before_dropping. Writes the probabilities' gradients.
MOESIM_HD inline void top2_weight_grad(float p1, float p2, float dw1, float dw2, bool kept1, bool kept2,
                                       bool normalize_before, float& dg1, float& dg2) {
  float g1 = p1, g2 = p2;
  if (normalize_before) {
    dw1 = kept1 ? dw1 : 0.0f;  // w_j = kept_j * n_j
    dw2 = kept2 ? dw2 : 0.0f;
  } else {
    g1 = kept1 ? g1 : 0.0f;  // g_j = kept_j * p_j
    g2 = kept2 ? g2 : 0.0f;
  }
  const float s = g1 + g2;
  if (s >= FLT_EPSILON) {
    const float dot = (dw1 * g1 + dw2 * g2) / s;
    dg1 = (dw1 - dot) / s;
    dg2 = (dw2 - dot) / s;
  } else {
    dg1 = dw1 / FLT_EPSILON;
    dg2 = dw2 / FLT_EPSILON;
  }
  if (!normalize_before) {
    dg1 = kept1 ? dg1 : 0.0f;
    dg2 = kept2 ? dg2 : 0.0f;
  }
}

}  // namespace moesim::kernels
