// Tests of the token + position embedding: the forward picks and adds rows exactly, the
// backward accumulates each row's gradient onto its token and its position exactly
// (gradients are multiples of 1/4, so every sum is exact whatever the order), and bad
// tokens or sizes are rejected before anything is written.
#include "kernels/embedding.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/kernels/test_util.hpp"

namespace moesim::kernels {
namespace {

using test::random_vector;

constexpr int kBatch = 3, kSeq = 4, kRows = kBatch * kSeq, kVocab = 6, kDim = 5, kPositions = 7;

// Token 2 appears four times, token 5 never.
const std::vector<std::int32_t> kTokens = {2, 0, 2, 1, 4, 2, 3, 0, 2, 1, 1, 4};

std::size_t at(int row, int col)
{
    return static_cast<std::size_t>(row) * kDim + col;
}

TEST(Embedding, ForwardAddsTokenAndPositionRows)
{
    const auto wte = random_vector(static_cast<std::size_t>(kVocab) * kDim, 1);
    const auto wpe = random_vector(static_cast<std::size_t>(kPositions) * kDim, 2);  // longer than seq
    std::vector<float> y(static_cast<std::size_t>(kRows) * kDim);
    embedding_forward(kTokens, wte, wpe, kRows, kSeq, kVocab, kDim, y);
    for (int r = 0; r < kRows; ++r) {
        for (int c = 0; c < kDim; ++c) {
            EXPECT_EQ(y[at(r, c)], wte[at(kTokens[r], c)] + wpe[at(r % kSeq, c)]) << "row " << r << " col " << c;
        }
    }
    // Without wpe: the token rows, copied.
    embedding_forward(kTokens, wte, {}, kRows, kSeq, kVocab, kDim, y);
    for (int r = 0; r < kRows; ++r) {
        for (int c = 0; c < kDim; ++c) {
            EXPECT_EQ(y[at(r, c)], wte[at(kTokens[r], c)]) << "row " << r << " col " << c;
        }
    }
}

TEST(Embedding, BackwardAccumulatesOntoTokensAndPositions)
{
    std::vector<float> dy(static_cast<std::size_t>(kRows) * kDim);
    for (std::size_t i = 0; i < dy.size(); ++i) {
        dy[i] = 0.25f * static_cast<float>(static_cast<int>(i * 7 % 23) - 11);
    }
    // Previous contents are kept (gradient accumulation over micro-batches).
    std::vector<float> dwte(static_cast<std::size_t>(kVocab) * kDim, 1.0f);
    std::vector<float> dwpe(static_cast<std::size_t>(kPositions) * kDim, -2.0f);
    embedding_backward(dy, kTokens, kRows, kSeq, kVocab, kDim, dwte, dwpe);
    for (int t = 0; t < kVocab; ++t) {
        for (int c = 0; c < kDim; ++c) {
            double expected = 1.0;
            for (int r = 0; r < kRows; ++r) {
                expected += kTokens[r] == t ? dy[at(r, c)] : 0.0f;
            }
            EXPECT_EQ(dwte[at(t, c)], expected) << "token " << t << " col " << c;
        }
    }
    for (int p = 0; p < kPositions; ++p) {
        for (int c = 0; c < kDim; ++c) {
            double expected = -2.0;
            for (int b = 0; p < kSeq && b < kBatch; ++b) {
                expected += dy[at(b * kSeq + p, c)];
            }
            EXPECT_EQ(dwpe[at(p, c)], expected) << "position " << p << " col " << c;  // rows >= seq untouched
        }
    }
    // Without dwpe, only dwte moves.
    std::vector<float> dwte2(dwte.size(), 0.0f);
    embedding_backward(dy, kTokens, kRows, kSeq, kVocab, kDim, dwte2, {});
    for (std::size_t i = 0; i < dwte.size(); ++i) {
        EXPECT_EQ(dwte2[i], dwte[i] - 1.0f) << i;
    }
}

TEST(Embedding, RejectsTokenOutsideVocab)
{
    const auto wte = random_vector(static_cast<std::size_t>(kVocab) * kDim, 3);
    for (const std::int32_t bad : {-1, kVocab}) {
        auto tokens = kTokens;
        tokens[5] = bad;
        std::vector<float> y(static_cast<std::size_t>(kRows) * kDim, 9.0f);
        try {
            embedding_forward(tokens, wte, {}, kRows, kSeq, kVocab, kDim, y);
            ADD_FAILURE() << "no exception for token " << bad;
        } catch (const std::out_of_range& e) {
            EXPECT_NE(std::string(e.what()).find("row 5"), std::string::npos) << e.what();
        }
        for (const float x : y) {
            ASSERT_EQ(x, 9.0f) << "the forward wrote before rejecting token " << bad;
        }
        std::vector<float> dwte(wte.size(), 0.0f);
        EXPECT_THROW(embedding_backward(y, tokens, kRows, kSeq, kVocab, kDim, dwte, {}), std::out_of_range);
        for (const float x : dwte) {
            ASSERT_EQ(x, 0.0f) << "the backward wrote before rejecting token " << bad;
        }
    }
}

TEST(Embedding, RejectsBadSizes)
{
    const auto wte = random_vector(static_cast<std::size_t>(kVocab) * kDim, 4);
    std::vector<float> short_wpe(static_cast<std::size_t>(kSeq - 1) * kDim);
    std::vector<float> y(static_cast<std::size_t>(kRows) * kDim);
    EXPECT_THROW(embedding_forward(kTokens, wte, short_wpe, kRows, kSeq, kVocab, kDim, y), std::invalid_argument);
    EXPECT_THROW(embedding_forward(kTokens, wte, {}, kRows, 5, kVocab, kDim, y), std::invalid_argument);  // 12 % 5
    EXPECT_THROW(embedding_forward(kTokens, wte, {}, kRows, kSeq, kVocab + 1, kDim, y), std::invalid_argument);
    std::vector<float> dwte(wte.size());
    EXPECT_THROW(embedding_backward(y, kTokens, kRows, kSeq, kVocab, kDim, dwte, short_wpe), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::kernels
