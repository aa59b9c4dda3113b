// Dispatch and combine of an MoE layer on CPU: `permute` gathers token rows into expert
// order (the buffer the expert FFNs read), `unpermute` scatters expert outputs back to
// tokens weighted by the gate's combine weights. The backward of each is the transpose
// of the other: permute_backward sums a token's rows back, unpermute_backward spreads the
// token gradient over its rows (times the weights) and returns the weights' gradient.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace moesim::kernels {

struct GateResult;

// Packed: expert e owns rows [offsets[e], offsets[e] + counts[e]), no gaps (dropless
// style, MegaBlocks/Tutel). Padded: expert e owns rows [e * capacity, (e + 1) * capacity),
// empty slots zero-filled: fairseq's experts x capacity x model_dim dispatch buffer.
enum class DispatchLayout { Packed, Padded };

// Where each kept choice sits in the expert-ordered buffer. Within an expert rows follow
// the gate's locations (first choices in token order, then second choices).
struct Dispatch {
    int tokens = 0;
    int experts = 0;
    int k = 0;
    int rows = 0;                // rows of the expert-ordered buffer
    std::vector<int> counts;     // experts: rows holding a token
    std::vector<int> offsets;    // experts + 1: first row of each expert; offsets[E] = rows
    std::vector<int> source;     // rows: token held by the row, -1 for an empty slot
    std::vector<int> row;        // tokens x k (token-major): row of each choice, -1 if dropped
};

// Upper bound on Dispatch::rows, to size the expert-ordered buffers before routing is
// known: experts * capacity (Padded) or min(tokens * k, experts * capacity) (Packed).
int dispatch_rows_bound(int tokens, int experts, int k, int capacity, DispatchLayout layout);

// Builds the dispatch from a gate's routing.
Dispatch make_dispatch(const GateResult& gate, DispatchLayout layout);

// Same from raw arrays (tokens x k, token-major): expert and location of each choice,
// kept = 1 for a choice that holds a slot (then location < capacity). Kept locations of
// an expert must be 0..n-1 without gaps (as a gate makes them). Throws on bad input.
Dispatch make_dispatch(std::span<const int> expert, std::span<const int> location,
                       std::span<const std::uint8_t> kept, int tokens, int experts, int k,
                       int capacity, DispatchLayout layout);

// y (rows x d) = x (tokens x d) gathered: y[r] = x[source[r]], zero for empty slots.
void permute(std::span<const float> x, int d, const Dispatch& dispatch, std::span<float> y);

// dx (tokens x d) = sum over the token's kept rows of dy (rows x d); 0 for dropped tokens.
void permute_backward(std::span<const float> dy, int d, const Dispatch& dispatch,
                      std::span<float> dx);

// out (tokens x d) = sum_j weight[t*k+j] * y[row[t*k+j]] over kept choices (fairseq's
// einsum("sec,ecm->sm") with combine weights); a fully dropped token gets zeros.
void unpermute(std::span<const float> y, int d, const Dispatch& dispatch,
               std::span<const float> weight, std::span<float> out);

// Given dout (tokens x d): dy[row] = weight * dout[token] (zero for empty slots) and
// dweight[t*k+j] = dot(dout[t], y[row]) (zero for dropped choices).
void unpermute_backward(std::span<const float> dout, std::span<const float> y, int d,
                        const Dispatch& dispatch, std::span<const float> weight,
                        std::span<float> dy, std::span<float> dweight);

}  // namespace moesim::kernels
