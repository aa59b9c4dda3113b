// Training sequences as pure functions of their global index; see token_source.hpp.
#include "src/executor/token_source.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/counter_rng.hpp"
#include "src/core/error.hpp"

namespace moesim {

// The mapping of a token file; unmapped when the last source sharing it goes.
struct MappedTokens {
  std::string path;
  TokenDtype dtype = TokenDtype::uint16;
  const unsigned char* bytes = nullptr;
  std::size_t size = 0;  // bytes
  std::int64_t count = 0;  // ids

  MappedTokens() = default;
  MappedTokens(const MappedTokens&) = delete;
  MappedTokens& operator=(const MappedTokens&) = delete;
  ~MappedTokens() {
    if (bytes != nullptr) ::munmap(const_cast<unsigned char*>(bytes), size);
  }

  // Id number k, decoded little-endian byte by byte, so the host's byte order never matters.
  std::uint32_t at(std::int64_t k) const {
    const auto i = static_cast<std::size_t>(k);
    if (dtype == TokenDtype::uint16) {
      const unsigned char* p = bytes + 2 * i;
      return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8);
    }
    const unsigned char* p = bytes + 4 * i;
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
  }
};

namespace {

// Streams of kernels/counter_rng.hpp for the data, numbered clear of the kernels' own
// (Gumbel = 1, SecondExpertKeep = 2), so one seed can drive the gate and the data alike
// without the two sharing draws.
constexpr auto kChainStream = static_cast<kernels::RngStream>(16);  // the chain's successors
constexpr auto kDataStream = static_cast<kernels::RngStream>(17);   // the sequences' draws

// Uniform integer in [0, n) from the top 32 bits of a hash (Lemire's multiply-shift; the
// bias, at most n / 2^32, is far below anything a training run could notice).
std::int32_t uniform_below(std::uint64_t hash, std::int32_t n) {
  return static_cast<std::int32_t>(((hash >> 32) * static_cast<std::uint64_t>(n)) >> 32);
}

std::size_t width_of(TokenDtype d) { return d == TokenDtype::uint16 ? 2 : 4; }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::shared_ptr<const MappedTokens> map_token_file(const std::string& path, TokenDtype dtype, int vocab,
                                                   int seq_len) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path, "", std::string("cannot open the token file: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw InputError(path, "", std::string("cannot stat the token file: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw InputError(path, "", "expected a regular file of token ids");

  const auto size = static_cast<std::size_t>(st.st_size);
  const std::size_t width = width_of(dtype);
  const std::string ids = std::string(to_string(dtype)) + " token ids";
  if (size % width != 0)
    throw InputError(path, "", "expected a whole number of " + ids + " (a multiple of " + std::to_string(width) +
                                   " bytes), got " + std::to_string(size) + " bytes");
  const auto count = static_cast<std::int64_t>(size / width);
  if (count < static_cast<std::int64_t>(seq_len) + 1)
    throw InputError(path, "", "expected at least " + std::to_string(seq_len + 1) + " " + ids + " (seq_len " +
                                   std::to_string(seq_len) + " + 1), got " + std::to_string(count));

  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (addr == MAP_FAILED) throw InputError(path, "", std::string("cannot map the token file: ") + std::strerror(errno));
  auto m = std::make_shared<MappedTokens>();
  m->path = path;
  m->dtype = dtype;
  m->bytes = static_cast<const unsigned char*>(addr);
  m->size = size;
  m->count = count;

  // One pass over every id now, so a bad id stops the run before its first step rather
  // than at whichever step first reaches it.
  const auto limit = static_cast<std::uint32_t>(vocab);
  for (std::int64_t k = 0; k < count; ++k) {
    const std::uint32_t id = m->at(k);
    if (id >= limit)
      throw InputError(path, "token[" + std::to_string(k) + "]",
                       "expected an id below the vocabulary size " + std::to_string(vocab) + ", got " +
                           std::to_string(id) + " (byte offset " +
                           std::to_string(static_cast<std::uint64_t>(k) * width) + ")");
  }
  return m;
}

// (a * b) mod m without overflow for any int64 a, b >= 0 and m >= 1.
std::int64_t mul_mod(std::int64_t a, std::int64_t b, std::int64_t m) {
  __extension__ using u128 = unsigned __int128;
  return static_cast<std::int64_t>(static_cast<u128>(a % m) * static_cast<u128>(b % m) % static_cast<u128>(m));
}

}  // namespace

const char* to_string(TokenDtype dtype) { return dtype == TokenDtype::uint16 ? "uint16" : "uint32"; }

TokenSourceSpec parse_token_source(const std::string& text, const std::string& flag) {
  const std::string expected = "expected synthetic, structured, structured:B (1 <= B <= " +
                               std::to_string(kMaxBranching) +
                               "), or a token file FILE.u16, FILE.bin, FILE.u32 or FILE:uint16|uint32, got \"" + text +
                               "\"";
  TokenSourceSpec s;
  if (text == "synthetic") return s;
  if (text == "structured" || text.rfind("structured:", 0) == 0) {
    s.kind = TokenSourceKind::structured;
    if (text == "structured") return s;
    const std::string b = text.substr(11);
    std::size_t used = 0;
    int value = 0;
    try {
      value = std::stoi(b, &used);
    } catch (const std::exception&) {
      throw InputError(flag, "", expected);
    }
    if (used != b.size() || value < 1 || value > kMaxBranching) throw InputError(flag, "", expected);
    s.branching = value;
    return s;
  }
  s.kind = TokenSourceKind::file;
  if (ends_with(text, ":uint16") || ends_with(text, ":uint32")) {
    s.path = text.substr(0, text.size() - 7);
    s.dtype = ends_with(text, "16") ? TokenDtype::uint16 : TokenDtype::uint32;
  } else if (ends_with(text, ".u16") || ends_with(text, ".bin")) {
    s.path = text;
    s.dtype = TokenDtype::uint16;
  } else if (ends_with(text, ".u32")) {
    s.path = text;
    s.dtype = TokenDtype::uint32;
  }
  // A path must name something beyond its suffix: ".u16" alone is no file name.
  if (s.path.empty() || s.path == ".u16" || s.path == ".u32" || s.path == ".bin") throw InputError(flag, "", expected);
  return s;
}

std::string to_string(const TokenSourceSpec& spec) {
  switch (spec.kind) {
    case TokenSourceKind::synthetic: return "synthetic";
    case TokenSourceKind::structured: return "structured:" + std::to_string(spec.branching);
    case TokenSourceKind::file: return spec.path + ":" + to_string(spec.dtype);
  }
  return "synthetic";
}

TokenSource::TokenSource(const TokenSourceSpec& spec, int vocab, int seq_len)
    : spec_(spec), vocab_(vocab), seq_len_(seq_len) {
  const std::string where = to_string(spec);
  if (vocab < 1) throw InputError(where, "vocab", "expected a vocabulary of at least 1 token, got " + std::to_string(vocab));
  if (seq_len < 1) throw InputError(where, "seq_len", "expected a sequence length of at least 1, got " + std::to_string(seq_len));
  switch (spec.kind) {
    case TokenSourceKind::synthetic: break;
    case TokenSourceKind::structured: {
      const int b = spec.branching;
      if (b < 1 || b > kMaxBranching || b > vocab)
        throw InputError(where, "branching",
                         "expected 1 to min(vocab " + std::to_string(vocab) + ", " + std::to_string(kMaxBranching) +
                             ") successors per token, got " + std::to_string(b));
      // Token t's successors: distinct ids drawn by rejection from t's own counter
      // sequence; `mark` remembers which ids t already took, so each draw costs O(1).
      successors_.resize(static_cast<std::size_t>(vocab) * static_cast<std::size_t>(b));
      std::vector<int> mark(static_cast<std::size_t>(vocab), -1);
      for (int t = 0; t < vocab; ++t) {
        const std::uint64_t ht = kernels::counter_hash(spec.seed, kChainStream, static_cast<std::uint64_t>(t));
        std::uint64_t draw = 0;
        for (int k = 0; k < b; ++k) {
          std::int32_t next = 0;
          do {
            next = uniform_below(kernels::counter_hash(ht, kChainStream, draw++), vocab);
          } while (mark[static_cast<std::size_t>(next)] == t);
          mark[static_cast<std::size_t>(next)] = t;
          successors_[static_cast<std::size_t>(t) * static_cast<std::size_t>(b) + static_cast<std::size_t>(k)] = next;
        }
      }
      break;
    }
    case TokenSourceKind::file: tokens_ = map_token_file(spec.path, spec.dtype, vocab, seq_len); break;
  }
}

void TokenSource::fill(std::int64_t global_index, std::span<std::int32_t> out) const {
  if (global_index < 0) throw std::invalid_argument("TokenSource::fill: negative global index " + std::to_string(global_index));
  const auto n = static_cast<std::size_t>(seq_len_) + 1;
  if (out.size() != n)
    throw std::invalid_argument("TokenSource::fill: out holds " + std::to_string(out.size()) + " ids, expected " +
                                std::to_string(n));
  switch (spec_.kind) {
    case TokenSourceKind::synthetic:
      // fairseq's pad index is 1, so its counting starts at pad + 1 = 2.
      for (std::size_t j = 0; j < n; ++j) out[j] = static_cast<std::int32_t>((static_cast<std::int64_t>(j) + 2) % vocab_);
      return;
    case TokenSourceKind::structured: {
      const auto b = static_cast<std::size_t>(spec_.branching);
      const std::uint64_t hs = kernels::counter_hash(spec_.seed, kDataStream, static_cast<std::uint64_t>(global_index));
      std::int32_t tok = uniform_below(kernels::counter_hash(hs, kDataStream, 0), vocab_);
      out[0] = tok;
      for (std::size_t j = 1; j < n; ++j) {
        const auto pick = static_cast<std::size_t>(
            uniform_below(kernels::counter_hash(hs, kDataStream, j), static_cast<std::int32_t>(b)));
        tok = successors_[static_cast<std::size_t>(tok) * b + pick];
        out[j] = tok;
      }
      return;
    }
    case TokenSourceKind::file: {
      const std::int64_t starts = tokens_->count - seq_len_;  // >= 1, checked at open
      const std::int64_t o = mul_mod(global_index, seq_len_, starts);
      for (std::size_t j = 0; j < n; ++j) out[j] = static_cast<std::int32_t>(tokens_->at(o + static_cast<std::int64_t>(j)));
      return;
    }
  }
}

std::vector<std::int32_t> TokenSource::sequence(std::int64_t global_index) const {
  std::vector<std::int32_t> out(static_cast<std::size_t>(seq_len_) + 1);
  fill(global_index, out);
  return out;
}

std::vector<std::int32_t> TokenSource::batch(std::int64_t first_index, int count) const {
  if (count < 0) throw std::invalid_argument("TokenSource::batch: negative count " + std::to_string(count));
  const auto n = static_cast<std::size_t>(seq_len_) + 1;
  std::vector<std::int32_t> out(static_cast<std::size_t>(count) * n);
  for (int i = 0; i < count; ++i)
    fill(first_index + i, std::span<std::int32_t>(out).subspan(static_cast<std::size_t>(i) * n, n));
  return out;
}

std::optional<double> TokenSource::entropy_rate_nats() const {
  switch (spec_.kind) {
    case TokenSourceKind::synthetic: return 0.0;
    case TokenSourceKind::structured: return std::log(static_cast<double>(spec_.branching));
    case TokenSourceKind::file: return std::nullopt;
  }
  return std::nullopt;
}

std::span<const std::int32_t> TokenSource::successors(int token) const {
  if (spec_.kind != TokenSourceKind::structured) return {};
  if (token < 0 || token >= vocab_)
    throw std::invalid_argument("TokenSource::successors: token " + std::to_string(token) + " outside the vocabulary");
  const auto b = static_cast<std::size_t>(spec_.branching);
  return std::span<const std::int32_t>(successors_).subspan(static_cast<std::size_t>(token) * b, b);
}

std::int64_t TokenSource::file_tokens() const { return tokens_ ? tokens_->count : 0; }

}  // namespace moesim
