// The executor's token sources: a sequence is a pure function of its global index (same
// index, same tokens, from any source of the same spec, in any order, under any
// data-parallel split); synthetic against fairseq's dummy_lm closed form; the structured
// chain's transitions and its empirical entropy against entropy_rate_nats(); token files of
// both widths round-tripped; one failing case per kind of bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

#include "src/core/error.hpp"
#include "src/executor/token_source.hpp"

namespace moesim {
namespace {

namespace fs = std::filesystem;

TokenSourceSpec structured(int branching, std::uint64_t seed = 7) {
  TokenSourceSpec s;
  s.kind = TokenSourceKind::structured;
  s.branching = branching;
  s.seed = seed;
  return s;
}

// A scratch folder of this test only (ctest runs tests side by side), removed after.
class TokenFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("moesim-") + info->test_suite_name() + "-" + info->name() + "-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `ids` little-endian in `width` bytes each (byte by byte, whatever the host).
  std::string write(const std::string& name, const std::vector<std::uint32_t>& ids, int width) {
    std::string bytes;
    for (std::uint32_t id : ids)
      for (int b = 0; b < width; ++b) bytes.push_back(static_cast<char>((id >> (8 * b)) & 0xff));
    return write_bytes(name, bytes);
  }
  std::string write_bytes(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  fs::path dir_;
};

TEST(TokenSource, ParsesItsForms) {
  EXPECT_EQ(parse_token_source("synthetic").kind, TokenSourceKind::synthetic);
  const TokenSourceSpec s = parse_token_source("structured");
  EXPECT_EQ(s.kind, TokenSourceKind::structured);
  EXPECT_EQ(s.branching, 4);
  EXPECT_EQ(parse_token_source("structured:9").branching, 9);
  struct Case {
    const char* text;
    const char* path;
    TokenDtype dtype;
  };
  for (const Case& c : {Case{"data/train.u16", "data/train.u16", TokenDtype::uint16},
                        Case{"train.bin", "train.bin", TokenDtype::uint16},
                        Case{"/tmp/train.u32", "/tmp/train.u32", TokenDtype::uint32},
                        Case{"tokens.dat:uint32", "tokens.dat", TokenDtype::uint32},
                        Case{"a:b.bin:uint16", "a:b.bin", TokenDtype::uint16}}) {
    const TokenSourceSpec f = parse_token_source(c.text);
    EXPECT_EQ(f.kind, TokenSourceKind::file) << c.text;
    EXPECT_EQ(f.path, c.path) << c.text;
    EXPECT_EQ(f.dtype, c.dtype) << c.text;
    // to_string round-trips through the parser.
    const TokenSourceSpec g = parse_token_source(to_string(f));
    EXPECT_EQ(g.path, f.path);
    EXPECT_EQ(g.dtype, f.dtype);
  }
  EXPECT_EQ(to_string(parse_token_source("structured:9")), "structured:9");
  for (const char* bad : {"", "random", "structured:", "structured:0", "structured:257", "structured:4x",
                          "train.txt", ":uint16", ".u16", "train.u8"}) {
    try {
      parse_token_source(bad, "--data");
      FAIL() << bad;
    } catch (const InputError& e) {
      EXPECT_EQ(e.file(), "--data");
      EXPECT_EQ(std::string(e.what()),
                std::string("--data: expected synthetic, structured, structured:B (1 <= B <= 256), or a token file "
                            "FILE.u16, FILE.bin, FILE.u32 or FILE:uint16|uint32, got \"") +
                    bad + "\"");
    }
  }
}

TEST(TokenSource, SyntheticIsFairseqDummyLm) {
  // fairseq DummyLMTask: torch.arange(tokens_per_sample + 1) + pad + 1 with pad = 1, for
  // every sample; here wrapped at the vocabulary.
  const int vocab = 50, seq_len = 100;
  const TokenSource src(TokenSourceSpec{}, vocab, seq_len);
  for (std::int64_t i : {0, 1, 17, 123456789}) {
    const std::vector<std::int32_t> seq = src.sequence(i);
    ASSERT_EQ(seq.size(), static_cast<std::size_t>(seq_len + 1));
    for (int j = 0; j <= seq_len; ++j) EXPECT_EQ(seq[static_cast<std::size_t>(j)], (j + 2) % vocab) << i << " " << j;
  }
  EXPECT_EQ(src.entropy_rate_nats(), 0.0);
  EXPECT_TRUE(src.successors(3).empty());
  // No wrap below the vocabulary: exactly fairseq's ids.
  const std::vector<std::int32_t> big = TokenSource(TokenSourceSpec{}, 50000, 8).sequence(5);
  EXPECT_EQ(big, (std::vector<std::int32_t>{2, 3, 4, 5, 6, 7, 8, 9, 10}));
}

TEST(TokenSource, StructuredIsAPureFunctionOfTheGlobalIndex) {
  const int vocab = 97, seq_len = 33;
  const TokenSource a(structured(4), vocab, seq_len);
  const TokenSource b(structured(4), vocab, seq_len);  // built separately from the same spec
  const std::vector<std::int32_t> s5 = a.sequence(5);
  EXPECT_EQ(a.sequence(5), s5);
  EXPECT_EQ(b.sequence(5), s5);
  EXPECT_NE(a.sequence(6), s5);
  EXPECT_NE(TokenSource(structured(4, 8), vocab, seq_len).sequence(5), s5);  // another seed

  // Asked in reverse order, the same tokens.
  const int count = 40;
  const std::vector<std::int32_t> forward = a.batch(1000, count);
  const std::size_t n = static_cast<std::size_t>(seq_len) + 1;
  for (int i = count - 1; i >= 0; --i) {
    const std::vector<std::int32_t> s = b.sequence(1000 + i);
    EXPECT_TRUE(std::equal(s.begin(), s.end(), forward.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(i) * n)))
        << i;
  }

  // Data-parallel splits: rank r of dp takes global_batch / dp sequences of each step from
  // step * global_batch + r * local; the ranks' batches laid end to end are the
  // single-rank batch.
  const int global_batch = 8;
  for (int step : {0, 3}) {
    const std::vector<std::int32_t> single = a.batch(std::int64_t{step} * global_batch, global_batch);
    for (int dp : {1, 2, 4, 8}) {
      const int local = global_batch / dp;
      std::vector<std::int32_t> joined;
      for (int r = dp - 1; r >= 0; --r) {  // ranks finish in any order
        const TokenSource rank_source(structured(4), vocab, seq_len);
        const std::vector<std::int32_t> part = rank_source.batch(std::int64_t{step} * global_batch + r * local, local);
        joined.insert(joined.begin(), part.begin(), part.end());
      }
      EXPECT_EQ(joined, single) << "step " << step << " dp " << dp;
    }
  }
}

TEST(TokenSource, StructuredTransitionsFollowTheChain) {
  const int vocab = 64, seq_len = 128, branching = 4;
  const TokenSource src(structured(branching), vocab, seq_len);
  for (int t = 0; t < vocab; ++t) {
    const auto succ = src.successors(t);
    ASSERT_EQ(succ.size(), static_cast<std::size_t>(branching));
    std::vector<std::int32_t> sorted(succ.begin(), succ.end());
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "token " << t << " repeats a successor";
    for (std::int32_t s : sorted) EXPECT_TRUE(s >= 0 && s < vocab);
  }
  int bad = 0;
  for (std::int64_t i = 0; i < 200; ++i) {
    const std::vector<std::int32_t> seq = src.sequence(i);
    for (std::size_t j = 1; j < seq.size(); ++j) {
      const auto succ = src.successors(seq[j - 1]);
      if (std::find(succ.begin(), succ.end(), seq[j]) == succ.end()) ++bad;
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(TokenSource, StructuredEntropyMatchesItsRate) {
  // Plug-in conditional entropy H(next | previous) over N transitions; its downward bias
  // is about (branching - 1) * vocab / (2N), under 0.002 nats here.
  for (int branching : {1, 3, 4, 8}) {
    const int vocab = 64, seq_len = 256, sequences = 400;
    const TokenSource src(structured(branching, 11), vocab, seq_len);
    std::map<std::pair<int, int>, double> pair_count;
    std::vector<double> prev_count(static_cast<std::size_t>(vocab), 0.0);
    double total = 0;
    for (std::int64_t i = 0; i < sequences; ++i) {
      const std::vector<std::int32_t> seq = src.sequence(i);
      for (std::size_t j = 1; j < seq.size(); ++j) {
        pair_count[{seq[j - 1], seq[j]}] += 1;
        prev_count[static_cast<std::size_t>(seq[j - 1])] += 1;
        total += 1;
      }
    }
    double h = 0;
    for (const auto& [pair, c] : pair_count) h -= c / total * std::log(c / prev_count[static_cast<std::size_t>(pair.first)]);
    const double rate = *src.entropy_rate_nats();
    std::printf("branching %d: empirical %.5f nats, closed form log(%d) = %.5f\n", branching, h, branching, rate);
    EXPECT_DOUBLE_EQ(rate, std::log(static_cast<double>(branching)));
    EXPECT_NEAR(h, rate, 0.01) << "branching " << branching;
  }
}

TEST(TokenSource, StructuredRejectsABranchingItsVocabularyCannotHold) {
  try {
    TokenSource(structured(8), 5, 16);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "branching");
    EXPECT_EQ(std::string(e.what()),
              "structured:8: field 'branching': expected 1 to min(vocab 5, 256) successors per token, got 8");
  }
  EXPECT_THROW(TokenSource(TokenSourceSpec{}, 0, 16), InputError);
  EXPECT_THROW(TokenSource(TokenSourceSpec{}, 16, 0), InputError);
}

TEST_F(TokenFile, RoundTripsBothWidths) {
  const int seq_len = 10;
  const int n = 57;
  for (int width : {2, 4}) {
    // uint32 ids above 65535 prove all four bytes are read.
    const std::uint32_t base = width == 2 ? 0u : 70000u;
    const int vocab = static_cast<int>(base) + 1000;
    std::vector<std::uint32_t> ids;
    for (int k = 0; k < n; ++k) ids.push_back(base + static_cast<std::uint32_t>((k * 37 + 5) % 1000));
    const std::string path = write(width == 2 ? "tokens.u16" : "tokens.u32", ids, width);
    const TokenSource src(parse_token_source(path), vocab, seq_len);
    EXPECT_EQ(src.file_tokens(), n);
    EXPECT_FALSE(src.entropy_rate_nats().has_value());
    // Sequence i starts at (i * seq_len) mod (n - seq_len): the count of valid starts.
    for (std::int64_t i : {0, 1, 4, 5, 6, 1000, 123456789}) {
      const std::int64_t o = (i * seq_len) % (n - seq_len);
      const std::vector<std::int32_t> seq = src.sequence(i);
      ASSERT_EQ(seq.size(), static_cast<std::size_t>(seq_len + 1));
      for (int j = 0; j <= seq_len; ++j)
        EXPECT_EQ(seq[static_cast<std::size_t>(j)], static_cast<std::int32_t>(ids[static_cast<std::size_t>(o + j)]))
            << "width " << width << " sequence " << i << " token " << j;
    }
    // Consecutive sequences share their boundary token: a target is the next one's input.
    EXPECT_EQ(src.sequence(0).back(), src.sequence(1).front());
    // A copy shares the mapping and outlives the original.
    std::optional<TokenSource> copy;
    {
      const TokenSource original(parse_token_source(path), vocab, seq_len);
      copy.emplace(original);
    }
    EXPECT_EQ(copy->sequence(3), src.sequence(3));
  }
}

TEST_F(TokenFile, ExactlyOneSequenceLongServesItForever) {
  const std::vector<std::uint32_t> ids{4, 8, 15, 16, 23, 42};
  const TokenSource src(parse_token_source(write("six.u16", ids, 2)), 50, 5);
  for (std::int64_t i : {0, 1, 2, 99}) EXPECT_EQ(src.sequence(i), (std::vector<std::int32_t>{4, 8, 15, 16, 23, 42}));
}

TEST_F(TokenFile, RejectsEachKindOfBadFile) {
  auto expect_error = [](const TokenSourceSpec& spec, int vocab, int seq_len, const std::string& message) {
    try {
      TokenSource(spec, vocab, seq_len);
      FAIL() << message;
    } catch (const InputError& e) {
      EXPECT_EQ(e.file(), spec.path);
      EXPECT_EQ(std::string(e.what()), message);
    }
  };
  const std::string short_file = write("short.u16", {1, 2, 3}, 2);
  expect_error(parse_token_source(short_file), 50, 8, short_file + ": expected at least 9 uint16 token ids (seq_len 8 + 1), got 3");

  std::vector<std::uint32_t> ids(40, 3);
  ids[29] = 60;
  const std::string bad_id = write("bad.u32", ids, 4);
  expect_error(parse_token_source(bad_id), 50, 8,
               bad_id + ": field 'token[29]': expected an id below the vocabulary size 50, got 60 (byte offset 116)");

  const std::string odd = write_bytes("odd.u16", std::string(21, '\0'));
  expect_error(parse_token_source(odd), 50, 8,
               odd + ": expected a whole number of uint16 token ids (a multiple of 2 bytes), got 21 bytes");
  const std::string odd32 = write_bytes("odd.u32", std::string(42, '\0'));
  expect_error(parse_token_source(odd32), 50, 8,
               odd32 + ": expected a whole number of uint32 token ids (a multiple of 4 bytes), got 42 bytes");

  const std::string missing = (dir_ / "missing.u16").string();
  expect_error(parse_token_source(missing), 50, 8, missing + ": cannot open the token file: No such file or directory");

  fs::create_directories(dir_ / "folder.bin");
  const std::string folder = (dir_ / "folder.bin").string();
  expect_error(parse_token_source(folder), 50, 8, folder + ": expected a regular file of token ids");
}

}  // namespace
}  // namespace moesim
