// Ring-attention exchange volumes; see ring_attention.hpp.
#include "src/accounting/ring_attention.hpp"

#include "src/accounting/memory.hpp"

namespace moesim {

double kv_width(const ModelSpec& m) {
  if (m.mla) {
    const MlaSpec& a = *m.mla;
    return static_cast<double>(m.heads) * static_cast<double>(a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim);
  }
  return 2.0 * static_cast<double>(m.kv_heads) * static_cast<double>(m.head_dim);
}

RingExchange ring_attention_exchange(const ModelSpec& m, const Plan& p) {
  RingExchange r;
  if (p.cp < 2) return r;
  r.steps = p.cp - 1;
  // Heads are split over tp, so each tensor-parallel rank passes its own heads' share.
  r.step_bytes = bytes_of(p.precision) * attention_tokens(p, m) * kv_width(m) / p.tp;
  r.forward_bytes = r.steps * r.step_bytes;
  r.backward_bytes = 2 * r.forward_bytes;
  return r;
}

}  // namespace moesim
