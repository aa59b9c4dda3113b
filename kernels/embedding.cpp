// CPU reference of the token + position embedding, forward and backward.
#include "kernels/embedding.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/check.hpp"

namespace moesim::kernels {

using detail::elems;
using detail::require;
using detail::require_size;

namespace {

void check_shape(std::size_t tokens, std::size_t table, std::size_t positions_table, int rows, int seq,
                 int vocab, int dim, const char* fn, const char* table_name, const char* positions_name)
{
    require(rows >= 0 && seq >= 1 && vocab >= 1 && dim >= 1, fn,
            "needs rows >= 0 and seq, vocab, dim >= 1");
    require(rows % seq == 0, fn,
            "rows (" + std::to_string(rows) + ") must be a multiple of seq (" + std::to_string(seq) + ")");
    require_size(tokens, static_cast<std::size_t>(rows), fn, "tokens");
    require_size(table, elems(vocab, dim), fn, table_name);
    require(positions_table == 0 || (positions_table % static_cast<std::size_t>(dim) == 0 &&
                                     positions_table / static_cast<std::size_t>(dim) >= static_cast<std::size_t>(seq)),
            fn,
            std::string(positions_name) + " must be empty or positions x dim with positions >= seq = " +
                std::to_string(seq) + " (has " + std::to_string(positions_table) + " elements, dim " +
                std::to_string(dim) + ")");
}

// Every token is checked before anything is written, so a bad batch leaves outputs untouched.
void check_tokens(std::span<const std::int32_t> tokens, int vocab, const char* fn)
{
    for (std::size_t r = 0; r < tokens.size(); ++r) {
        if (tokens[r] < 0 || tokens[r] >= vocab) {
            throw std::out_of_range(std::string("moesim::kernels::") + fn + ": token " +
                                    std::to_string(tokens[r]) + " of row " + std::to_string(r) +
                                    " is outside [0, " + std::to_string(vocab) + ")");
        }
    }
}

}  // namespace

void embedding_forward(std::span<const std::int32_t> tokens, std::span<const float> wte,
                       std::span<const float> wpe, int rows, int seq, int vocab, int dim, std::span<float> y)
{
    const char* fn = "embedding_forward";
    check_shape(tokens.size(), wte.size(), wpe.size(), rows, seq, vocab, dim, fn, "wte", "wpe");
    require_size(y.size(), elems(rows, dim), fn, "y");
    check_tokens(tokens, vocab, fn);
    for (int r = 0; r < rows; ++r) {
        const float* t = wte.data() + elems(tokens[r], dim);
        float* out = y.data() + elems(r, dim);
        if (wpe.empty()) {
            std::copy(t, t + dim, out);
        } else {
            const float* p = wpe.data() + elems(r % seq, dim);
            for (int c = 0; c < dim; ++c) {
                out[c] = t[c] + p[c];
            }
        }
    }
}

void embedding_backward(std::span<const float> dy, std::span<const std::int32_t> tokens, int rows, int seq,
                        int vocab, int dim, std::span<float> dwte, std::span<float> dwpe)
{
    const char* fn = "embedding_backward";
    check_shape(tokens.size(), dwte.size(), dwpe.size(), rows, seq, vocab, dim, fn, "dwte", "dwpe");
    require_size(dy.size(), elems(rows, dim), fn, "dy");
    check_tokens(tokens, vocab, fn);
    for (int r = 0; r < rows; ++r) {
        const float* g = dy.data() + elems(r, dim);
        float* t = dwte.data() + elems(tokens[r], dim);
        for (int c = 0; c < dim; ++c) {
            t[c] += g[c];
        }
        if (!dwpe.empty()) {
            float* p = dwpe.data() + elems(r % seq, dim);
            for (int c = 0; c < dim; ++c) {
                p[c] += g[c];
            }
        }
    }
}

}  // namespace moesim::kernels
