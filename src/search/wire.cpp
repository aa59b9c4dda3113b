// Byte packing for the search's ranks; see wire.hpp.
#include "src/search/wire.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>

namespace moesim::wire {

namespace {

template <typename T>
void put(std::string& out, const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

template <typename T>
T get(const std::string& in, std::size_t& at) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (at + sizeof(T) > in.size()) throw std::runtime_error("search: a rank sent a truncated message");
  T value;
  std::memcpy(&value, in.data() + at, sizeof value);
  at += sizeof value;
  return value;
}

void put_doubles(std::string& out, const std::vector<double>& v) {
  put(out, static_cast<std::uint64_t>(v.size()));
  for (double x : v) put(out, x);
}

std::vector<double> get_doubles(const std::string& in, std::size_t& at) {
  std::vector<double> v(get<std::uint64_t>(in, at));
  for (double& x : v) x = get<double>(in, at);
  return v;
}

}  // namespace

std::vector<Score> gather_scores(Communicator& comm, const std::vector<Score>& mine) {
  std::string bytes;
  for (const Score& s : mine) put(bytes, s);
  std::vector<Score> all;
  for (const std::string& part : comm.gather_strings(bytes))
    for (std::size_t at = 0; at < part.size();) all.push_back(get<Score>(part, at));
  std::sort(all.begin(), all.end(), [](const Score& a, const Score& b) { return a.index < b.index; });
  return all;
}

std::vector<std::uint64_t> broadcast_indices(Communicator& comm, const std::vector<std::uint64_t>& indices) {
  std::string bytes;
  for (std::uint64_t i : indices) put(bytes, i);
  bytes = comm.broadcast_bytes(bytes);
  std::vector<std::uint64_t> out;
  for (std::size_t at = 0; at < bytes.size();) out.push_back(get<std::uint64_t>(bytes, at));
  return out;
}

std::map<std::int64_t, ExpertLoad> share_loads(Communicator& comm, const std::map<std::int64_t, ExpertLoad>& mine) {
  std::string bytes;
  for (const auto& [tokens, load] : mine) {
    put(bytes, tokens);
    bytes += pack_load(load);
  }
  std::string all;
  for (const std::string& part : comm.gather_strings(bytes)) all += part;
  all = comm.broadcast_bytes(all);
  std::map<std::int64_t, ExpertLoad> out;
  for (std::size_t at = 0; at < all.size();) {
    const auto tokens = get<std::int64_t>(all, at);
    out.emplace(tokens, unpack_load(all, at));
  }
  return out;
}

std::string pack_load(const ExpertLoad& load) {
  std::string out;
  put(out, load.tokens);
  put(out, load.experts);
  put(out, load.top_k);
  put(out, static_cast<std::uint8_t>(load.capacity.has_value()));
  put(out, load.capacity.value_or(0));
  put_doubles(out, load.demand);
  put_doubles(out, load.kept);
  put(out, load.stats);
  put(out, static_cast<std::uint8_t>(load.has_entropy));
  return out;
}

ExpertLoad unpack_load(const std::string& bytes, std::size_t& at) {
  ExpertLoad load;
  load.tokens = get<std::int64_t>(bytes, at);
  load.experts = get<int>(bytes, at);
  load.top_k = get<int>(bytes, at);
  const bool has_capacity = get<std::uint8_t>(bytes, at) != 0;
  const auto capacity = get<std::int64_t>(bytes, at);
  if (has_capacity) load.capacity = capacity;
  load.demand = get_doubles(bytes, at);
  load.kept = get_doubles(bytes, at);
  load.stats = get<kernels::GateStats>(bytes, at);
  load.has_entropy = get<std::uint8_t>(bytes, at) != 0;
  return load;
}

}  // namespace moesim::wire
