// Sharded checkpoints: each rank writes its own file, rank 0 the manifest after all of
// them, and resuming takes the newest update whose manifest and shards all check out.
#include "src/executor/checkpoint.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "src/core/atomic_file.hpp"
#include "src/core/error.hpp"

namespace moesim::exec {
namespace {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "shard files are little-endian");

constexpr char kMagic[8] = {'M', 'O', 'E', 'S', 'I', 'M', 'C', 'K'};

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

// Reads fields from the front of a file's bytes; false once past the end.
struct Reader {
  std::string_view bytes;
  std::size_t at = 0;
  template <typename T>
  bool get(T& value) {
    if (bytes.size() - at < sizeof(T)) return false;
    std::memcpy(&value, bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return true;
  }
};

std::size_t header_bytes(std::size_t buffers) {
  return sizeof kMagic + 2 * sizeof(std::uint32_t) + sizeof(std::int64_t) + 2 * sizeof(std::int32_t) +
         (buffers + 2) * sizeof(std::uint64_t);
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Every rank's outcome of one step of a save or a resume: when any rank failed, every
// rank throws (the failing ones their own error, the others one naming the failed rank),
// so no rank goes on to a collective its peers will never join.
void agree(Communicator& world, const std::exception_ptr& error, const std::string& where, const std::string& what) {
  const double failed = world.max_over_ranks(error ? world.rank() + 1.0 : 0.0);
  if (failed == 0) return;
  if (error) std::rethrow_exception(error);
  throw InputError(where, "", "rank " + std::to_string(static_cast<int>(failed) - 1) + " could not " + what +
                                  " (its own message says why)");
}

// The update-<N> directories under `dir`, newest first, as text ("12 8 4").
std::string list_updates(const std::string& dir) {
  std::vector<std::int64_t> updates;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    constexpr std::string_view prefix = "update-";
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::int64_t n = 0;
    const char* first = name.data() + prefix.size();
    const char* last = name.data() + name.size();
    const auto [end_at, err] = std::from_chars(first, last, n);
    if (err == std::errc() && end_at == last && n > 0) updates.push_back(n);
  }
  std::sort(updates.rbegin(), updates.rend());
  std::string out;
  for (std::int64_t n : updates) out += std::to_string(n) + " ";
  return out;
}

bool read_whole(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV offset basis
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;  // FNV prime
  }
  return h;
}

Checkpointer::Checkpointer(Backend& backend, Communicator& world, CheckpointOptions options, RunIdentity identity,
                           std::vector<StateBuffer> buffers)
    : B_(backend), world_(world), options_(std::move(options)), identity_(std::move(identity)),
      buffers_(std::move(buffers)) {}

std::string Checkpointer::update_dir(std::int64_t update) const {
  return (fs::path(options_.dir) / ("update-" + std::to_string(update))).string();
}

void Checkpointer::after_update(std::int64_t update, std::int64_t last) {
  if (options_.dir.empty()) return;
  if (update == last || (options_.interval > 0 && update % options_.interval == 0)) save(update);
}

void Checkpointer::save(std::int64_t update) {
  const std::string dir = update_dir(update);
  const std::string manifest_path = dir + "/" + kManifest;
  const int rank = world_.rank();

  // 1. The directory, without the manifest of an earlier save of this update: until the new
  // one is written the checkpoint counts as incomplete.
  std::exception_ptr error;
  try {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw InputError(dir, "", "cannot create the checkpoint directory: " + ec.message());
    if (rank == 0) {
      fs::remove(manifest_path, ec);
      if (ec) throw InputError(manifest_path, "", "cannot remove the stale manifest: " + ec.message());
    }
  } catch (...) {
    error = std::current_exception();
  }
  agree(world_, error, dir, "prepare the checkpoint directory");

  // 2. Every rank's shard, atomically.
  std::string shard_info;
  try {
    std::size_t payload = 0;
    for (const StateBuffer& b : buffers_) payload += b.count * sizeof(float);
    std::string file;
    file.reserve(header_bytes(buffers_.size()) + payload);
    file.append(kMagic, sizeof kMagic);
    put<std::uint32_t>(file, kCheckpointVersion);
    put<std::uint32_t>(file, static_cast<std::uint32_t>(buffers_.size()));
    put<std::int64_t>(file, update);
    put<std::int32_t>(file, rank);
    put<std::int32_t>(file, world_.size());
    for (const StateBuffer& b : buffers_) put<std::uint64_t>(file, b.count * sizeof(float));
    put<std::uint64_t>(file, payload);
    const std::size_t checksum_at = file.size();
    put<std::uint64_t>(file, 0);
    const std::size_t payload_at = file.size();
    file.resize(payload_at + payload);
    B_.synchronize();
    std::size_t at = payload_at;
    for (const StateBuffer& b : buffers_) {
      B_.download(file.data() + at, b.data, b.count * sizeof(float));
      at += b.count * sizeof(float);
    }
    const std::uint64_t checksum = fnv1a64(std::string_view(file).substr(payload_at));
    std::memcpy(file.data() + checksum_at, &checksum, sizeof checksum);
    write_file_atomically(dir + "/" + shard_name(rank), file);
    shard_info = std::to_string(file.size()) + " " + hex64(checksum);
  } catch (...) {
    error = std::current_exception();
  }
  agree(world_, error, dir, "write its checkpoint shard");

  // 3. Every shard is in place (the gather below is the barrier): rank 0's manifest makes
  // the checkpoint complete.
  const std::vector<std::string> shards = world_.gather_strings(shard_info);
  try {
    if (rank == 0) {
      nlohmann::ordered_json m;
      m["format"] = "moesim checkpoint";
      m["version"] = kCheckpointVersion;
      m["update"] = update;
      m["model"] = identity_.model;
      m["plan"] = identity_.plan;
      m["world_size"] = identity_.world_size;
      m["seed"] = identity_.seed;
      m["data"] = identity_.data;
      m["lr"] = identity_.lr;
      nlohmann::ordered_json names = nlohmann::json::array();
      for (const StateBuffer& b : buffers_) names.push_back(b.name);
      m["buffers"] = names;
      nlohmann::ordered_json list = nlohmann::json::array();
      for (std::size_t r = 0; r < shards.size(); ++r) {
        std::istringstream in(shards[r]);
        std::uint64_t bytes = 0;
        std::string checksum;
        in >> bytes >> checksum;
        list.push_back({{"rank", r}, {"file", shard_name(static_cast<int>(r))}, {"bytes", bytes}, {"fnv1a", checksum}});
      }
      m["shards"] = list;
      write_file_atomically(manifest_path, m.dump(2) + "\n");
    }
  } catch (...) {
    error = std::current_exception();
  }
  agree(world_, error, manifest_path, "write the checkpoint manifest");
}

void Checkpointer::check_identity(const nlohmann::json& m, const std::string& path) const {
  auto differs = [&](const char* field, const std::string& saved, const std::string& now) {
    throw InputError(path, field,
                     "the checkpoint was saved with " + saved + ", this run has " + now + " (they must match to resume)");
  };
  auto text = [&](const char* field) -> std::string {
    if (!m.contains(field) || !m[field].is_string()) throw InputError(path, field, "expected a string");
    return m[field].get<std::string>();
  };
  if (text("model") != identity_.model) differs("model", text("model"), identity_.model);
  if (!m.contains("world_size") || !m["world_size"].is_number_integer())
    throw InputError(path, "world_size", "expected an integer");
  if (m["world_size"].get<int>() != identity_.world_size)
    differs("world_size", std::to_string(m["world_size"].get<int>()) + " ranks", std::to_string(identity_.world_size));
  if (text("plan") != identity_.plan) differs("plan", text("plan"), identity_.plan);
  if (!m.contains("seed") || !m["seed"].is_number_unsigned()) throw InputError(path, "seed", "expected an integer");
  if (m["seed"].get<std::uint64_t>() != identity_.seed)
    differs("seed", std::to_string(m["seed"].get<std::uint64_t>()), std::to_string(identity_.seed));
  if (text("data") != identity_.data) differs("data", text("data"), identity_.data);
  if (!m.contains("lr") || !m["lr"].is_object()) throw InputError(path, "lr", "expected an object");
  for (const auto& [key, value] : identity_.lr.items()) {
    const std::string field = "lr." + key;
    if (!m["lr"].contains(key) || m["lr"][key].dump() != value.dump())
      differs(field.c_str(), m["lr"].contains(key) ? m["lr"][key].dump() : "none", value.dump());
  }
  for (const auto& [key, value] : m["lr"].items())
    if (!identity_.lr.contains(key)) differs(("lr." + key).c_str(), value.dump(), "none");
}

bool Checkpointer::check(std::int64_t update, std::string& payload) const {
  const std::string dir = update_dir(update);
  const std::string path = dir + "/" + kManifest;
  std::string text;
  if (!read_whole(path, text)) return false;  // no manifest: interrupted while written
  const nlohmann::json m = nlohmann::json::parse(text, nullptr, false);
  if (m.is_discarded() || !m.is_object()) return false;
  if (!m.contains("version") || !m["version"].is_number_unsigned() || m["version"].get<std::uint32_t>() != kCheckpointVersion)
    throw InputError(path, "version", "expected " + std::to_string(kCheckpointVersion) + ", got " +
                                          (m.contains("version") ? m["version"].dump() : "none"));
  check_identity(m, path);
  const int rank = world_.rank();
  if (!m.contains("shards") || !m["shards"].is_array() || m["shards"].size() != static_cast<std::size_t>(world_.size()))
    throw InputError(path, "shards", "expected one entry per rank (" + std::to_string(world_.size()) + ")");
  const nlohmann::json& entry = m["shards"][static_cast<std::size_t>(rank)];
  if (!entry.is_object() || !entry.contains("file") || !entry["file"].is_string() || !entry.contains("bytes") ||
      !entry["bytes"].is_number_unsigned() || !entry.contains("fnv1a") || !entry["fnv1a"].is_string())
    throw InputError(path, "shards." + std::to_string(rank), "expected file, bytes and fnv1a");

  // This rank's shard: present, of the manifest's size and checksum, and a shard of this
  // update, rank and world.
  std::string file;
  if (!read_whole(dir + "/" + entry["file"].get<std::string>(), file)) return false;
  if (file.size() != entry["bytes"].get<std::uint64_t>()) return false;
  Reader in{file};
  char magic[sizeof kMagic];
  std::uint32_t version = 0, count = 0;
  std::int64_t saved_update = 0;
  std::int32_t saved_rank = 0, saved_world = 0;
  for (char& c : magic)
    if (!in.get(c)) return false;
  if (std::memcmp(magic, kMagic, sizeof kMagic) != 0) return false;
  if (!in.get(version) || version != kCheckpointVersion || !in.get(count) || !in.get(saved_update) ||
      !in.get(saved_rank) || !in.get(saved_world))
    return false;
  if (saved_update != update || saved_rank != rank || saved_world != world_.size()) return false;
  std::vector<std::uint64_t> bytes(count);
  std::uint64_t sum = 0, payload_bytes = 0, checksum = 0;
  for (std::uint64_t& b : bytes) {
    if (!in.get(b)) return false;
    sum += b;
  }
  if (!in.get(payload_bytes) || !in.get(checksum) || payload_bytes != sum || file.size() - in.at != payload_bytes)
    return false;
  if (fnv1a64(std::string_view(file).substr(in.at)) != checksum || hex64(checksum) != entry["fnv1a"].get<std::string>())
    return false;

  // A whole shard of this run whose buffers are not this build's: another layout.
  const std::string shard = dir + "/" + entry["file"].get<std::string>();
  if (count != buffers_.size())
    throw InputError(shard, "buffers", "expected " + std::to_string(buffers_.size()) + " buffers, got " + std::to_string(count));
  for (std::size_t i = 0; i < buffers_.size(); ++i)
    if (bytes[i] != buffers_[i].count * sizeof(float))
      throw InputError(shard, buffers_[i].name,
                       "expected " + std::to_string(buffers_[i].count * sizeof(float)) + " bytes, got " + std::to_string(bytes[i]));
  file.erase(0, in.at);
  payload = std::move(file);
  return true;
}

std::int64_t Checkpointer::resume() {
  if (!options_.resume || options_.dir.empty()) return 0;
  // Rank 0's listing, so every rank tries the same updates in the same order.
  const std::string listing = world_.broadcast_bytes(world_.rank() == 0 ? list_updates(options_.dir) : std::string());
  std::istringstream in(listing);
  for (std::int64_t update = 0; in >> update;) {
    std::string payload;
    bool complete = false;
    std::exception_ptr error;
    try {
      complete = check(update, payload);
    } catch (...) {
      error = std::current_exception();
    }
    agree(world_, error, update_dir(update), "read its checkpoint shard");
    // Complete only when every rank's shard checks out.
    if (world_.max_over_ranks(complete ? 0.0 : 1.0) != 0) continue;
    std::size_t at = 0;
    for (const StateBuffer& b : buffers_) {
      B_.upload(b.data, payload.data() + at, b.count * sizeof(float));
      at += b.count * sizeof(float);
    }
    B_.synchronize();
    return update;
  }
  return 0;
}

}  // namespace moesim::exec
