// GPT's input embedding, forward and backward on CPU: a token embedding (wte) plus an
// optional learned position embedding (wpe), as in GPT-2 / fairseq's transformer_lm with
// learned positions.
#pragma once

#include <cstdint>
#include <span>

namespace moesim::kernels {

// Rows are tokens, batch-major (row = b * seq + i, as attention.hpp lays them out), so the
// position of row r is r % seq, counted from 0 with no padding offset (fairseq's
// LearnedPositionalEmbedding adds padding_idx + 1; a caller mimicking it passes a wpe
// table that starts at that row). rows must be a multiple of seq.
// wte is vocab x dim; wpe is empty (no position embedding) or positions x dim with
// positions >= seq (a model's full table; only its first seq rows are used).

// y[r] = wte[tokens[r]] + wpe[r % seq] (rows x dim). A token outside [0, vocab) throws
// std::out_of_range naming the row, before anything is written; a size mismatch throws
// std::invalid_argument.
void embedding_forward(std::span<const std::int32_t> tokens, std::span<const float> wte,
                       std::span<const float> wpe, int rows, int seq, int vocab, int dim, std::span<float> y);

// dwte[tokens[r]] += dy[r] and, unless dwpe is empty, dwpe[r % seq] += dy[r], in row order
// (deterministic). Accumulates: the caller zeroes the gradients (or keeps the previous
// micro-batch's). dwte is vocab x dim, dwpe as wpe. Same errors as the forward.
void embedding_backward(std::span<const float> dy, std::span<const std::int32_t> tokens, int rows, int seq,
                        int vocab, int dim, std::span<float> dwte, std::span<float> dwpe);

}  // namespace moesim::kernels
