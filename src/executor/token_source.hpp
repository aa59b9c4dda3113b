// Where the executor's training sequences come from: fairseq's dummy_lm counting tokens
// (speed runs), a seeded Markov chain with a known entropy floor (learning checks), or a
// flat binary file of token ids (real corpora). A sequence is a pure function of its
// GLOBAL index (step * global_batch + i), so any data-parallel split of a batch sees
// exactly the tokens a single-rank run sees, whatever the order the ranks ask in.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace moesim {

enum class TokenSourceKind { synthetic, structured, file };
// The structured chain's table holds vocab x branching ids (256: 51 MB at a 50k vocabulary;
// log(256) = 5.5 nats is already a hard corpus for the models a test can train).
inline constexpr int kMaxBranching = 256;
enum class TokenDtype { uint16, uint32 };

struct TokenSourceSpec {
  TokenSourceKind kind = TokenSourceKind::synthetic;
  std::string path;                         // file: flat little-endian token ids
  TokenDtype dtype = TokenDtype::uint16;    // file: width of one id
  std::uint64_t seed = 1;                   // structured: the chain and every draw from it
  int branching = 4;                        // structured: successors of each token, 1..kMaxBranching
};

// "synthetic", "structured", "structured:B" (B successors per token, default 4), or a file:
// "FILE.u16" / "FILE.bin" (uint16: Megatron's preprocess_data writes uint16 ids for
// vocabularies under 65,500), "FILE.u32", or any path with an explicit ":uint16" or
// ":uint32" tail ("tokens.dat:uint32"). The seed is not in the text (the CLI's --seed
// sets it). Bad text is an InputError whose file is `flag`.
TokenSourceSpec parse_token_source(const std::string& text, const std::string& flag = "--data");
std::string to_string(const TokenSourceSpec& spec);
const char* to_string(TokenDtype dtype);

// Read-only token ids of an opened file (memory-mapped); shared by copies of a source.
struct MappedTokens;

// An opened source for one vocabulary and sequence length, checked when made:
//   synthetic   token j of every sequence is (j + 2) % vocab: fairseq's DummyLMTask
//               (torch.arange(tokens_per_sample + 1) + pad + 1, pad = 1), wrapped at vocab.
//               Every sequence is the same; its entropy is 0.
//   structured  a first-order Markov chain over the vocabulary, fixed by the seed: token t
//               has `branching` distinct successors, each taken with probability
//               1/branching; the first token is uniform. Draws are counter_rng values keyed
//               by (seed, global index, position). Uniform successors make the entropy rate
//               exactly log(branching) whatever the chain's stationary distribution, so a
//               test can hold a model's loss against it.
//   file        sequence i is tokens [o, o + seq_len] with o = (i * seq_len) mod
//               (n_tokens - seq_len): consecutive sequences share one boundary token
//               (Megatron's GPTDataset layout), and the index wraps around the file. The
//               modulus is the count of valid starts, so a file of exactly seq_len + 1
//               tokens serves sequence 0 forever. Every id is checked against the
//               vocabulary when the file is opened, so a bad id stops a run before step 1.
// Throws InputError for a vocabulary or branching that does not fit, or a file that is
// unreadable, not a whole number of ids, shorter than seq_len + 1 ids, or holds an id
// >= vocab (naming the file, the token offset and the id).
class TokenSource {
 public:
  TokenSource(const TokenSourceSpec& spec, int vocab, int seq_len);

  const TokenSourceSpec& spec() const { return spec_; }
  int vocab() const { return vocab_; }
  int seq_len() const { return seq_len_; }

  // seq_len + 1 token ids: inputs are [0, seq_len), targets are [1, seq_len].
  std::vector<std::int32_t> sequence(std::int64_t global_index) const;
  // The same, written into `out` (exactly seq_len + 1 ids), without allocating.
  void fill(std::int64_t global_index, std::span<std::int32_t> out) const;
  // `count` sequences from `first_index` on, row-major: count x (seq_len + 1) ids. A
  // data-parallel rank r of a step takes first_index = step * global_batch + r * local.
  std::vector<std::int32_t> batch(std::int64_t first_index, int count) const;

  // The chain's conditional entropy per token in nats (log(branching)) for structured,
  // 0 for synthetic, nullopt for a file (unknown).
  std::optional<double> entropy_rate_nats() const;
  // structured: the successors of `token` (branching distinct ids); empty for the others.
  std::span<const std::int32_t> successors(int token) const;
  // file: how many ids it holds; 0 for the others.
  std::int64_t file_tokens() const;

 private:
  TokenSourceSpec spec_;
  int vocab_ = 0;
  int seq_len_ = 0;
  std::vector<std::int32_t> successors_;        // structured: vocab x branching
  std::shared_ptr<const MappedTokens> tokens_;  // file
};

}  // namespace moesim
