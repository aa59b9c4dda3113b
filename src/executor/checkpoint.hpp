// Checkpoints of `moesim run`, sharded per rank: DIR/update-<N>/rank-<R>.bin holds rank R's
// training state after update N (its parameters, only its shard under ZeRO-3, and its Adam
// moments, only its shard under ZeRO-1, 2 and 3), and DIR/update-<N>/manifest.json,
// written by rank 0 once every shard is in place, makes the checkpoint complete. Resuming
// takes the newest complete one.
//
// A shard file, every field little-endian (the only byte order moesim builds for):
//   8 bytes   magic "MOESIMCK"
//   u32       format version (kCheckpointVersion)
//   u32       buffer count B
//   i64       update N
//   i32 i32   rank R, world size
//   u64 x B   bytes of each buffer
//   u64       payload bytes (the sum of the above)
//   u64       FNV-1a 64 of the payload
//   payload   the buffers' float32 values, one after the other
// Files are written whole or not at all (a temporary file renamed into place); a shard
// cut short by a crash or a power loss fails its size or checksum and its checkpoint is
// skipped, never taken for complete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/comm/communicator.hpp"
#include "src/executor/backend.hpp"

namespace moesim::exec {

inline constexpr std::uint32_t kCheckpointVersion = 1;

// What a run asks of checkpoints (moesim run's --save-dir, --save-interval, --resume).
struct CheckpointOptions {
  std::string dir;            // empty: no checkpoints
  std::int64_t interval = 0;  // updates between checkpoints; 0: only after the last update
  bool resume = false;        // continue after the newest complete checkpoint in dir, if any
};

// What must match for a checkpoint to be resumed: the run it came from. Saved in the
// manifest; on resume a difference is an InputError naming the manifest and the field.
struct RunIdentity {
  std::string model;    // the model's name
  std::string plan;     // the plan's inline form
  int world_size = 1;
  std::uint64_t seed = 1;
  std::string data;     // the token source's text form
  nlohmann::ordered_json lr;  // the learning-rate schedule's fields that shape its values
};

// One buffer of a rank's training state, in the backend's memory.
struct StateBuffer {
  std::string name;  // "dense", "dense.exp_avg", ...
  float* data = nullptr;
  std::size_t count = 0;  // floats
};

// FNV-1a, 64 bits, of `bytes`: the shards' checksum.
std::uint64_t fnv1a64(std::string_view bytes);

// Saves and restores one rank's state buffers. Every call is collective over `world`:
// all ranks make it with the same arguments, and an error on any rank (a directory that
// cannot be written) becomes an InputError on every rank, so no rank waits for a peer
// that has given up.
class Checkpointer {
 public:
  Checkpointer(Backend& backend, Communicator& world, CheckpointOptions options, RunIdentity identity,
               std::vector<StateBuffer> buffers);

  // With options.resume: loads the newest complete checkpoint into the buffers and returns
  // its update (0 when there is none, or without resume). Throws InputError naming the
  // manifest and the field when that checkpoint comes from another run (model, plan,
  // world size, seed, data, lr schedule).
  std::int64_t resume();

  // Saves after `update` when it is due: every options.interval updates, and at `last`.
  void after_update(std::int64_t update, std::int64_t last);

  // Writes DIR/update-<update>/ now; it is complete when this returns on any rank.
  void save(std::int64_t update);

  // DIR/update-<update> and the file names in it.
  std::string update_dir(std::int64_t update) const;
  static std::string shard_name(int rank) { return "rank-" + std::to_string(rank) + ".bin"; }
  static constexpr const char* kManifest = "manifest.json";

 private:
  // Checks `update`'s manifest and this rank's shard; on success fills `payload` with the
  // shard's values. An incomplete checkpoint returns false; one from another run throws.
  bool check(std::int64_t update, std::string& payload) const;
  void check_identity(const nlohmann::json& manifest, const std::string& path) const;

  Backend& B_;
  Communicator& world_;
  CheckpointOptions options_;
  RunIdentity identity_;
  std::vector<StateBuffer> buffers_;
};

}  // namespace moesim::exec
