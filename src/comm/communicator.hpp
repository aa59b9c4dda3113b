// The one seam between the transports of moesim: MPI on CPUs, NCCL on GPUs.
// The profiler's collective benchmark and the executor talk only to this interface.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace moesim {

// A collective that was started and may still be running: its buffers must be left alone
// until test() has returned true or wait() has returned. Destroying one waits for it.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // True once the collective has completed; never blocks, and moves it on (MPI makes
  // progress on non-blocking collectives only inside its calls).
  virtual bool test() = 0;
  virtual void wait() = 0;
};

// A group of `size()` ranks exchanging float elements. Buffers come from allocate():
// host pointers for MPI, device pointers for NCCL. Every call except send/recv is
// collective: all ranks make it, in the same order, with matching counts. Counts are in
// elements and may exceed 2^31-1. Errors of the transport throw std::runtime_error
// naming the failing call.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual std::string name() const = 0;  // "mpi"
  virtual int rank() const = 0;
  virtual int size() const = 0;

  virtual void barrier() = 0;
  // A barrier whose waiting ranks sleep instead of polling, so they leave the cores to a
  // rank that is timing kernels (MPI's own barrier spins at full speed).
  virtual void idle_barrier() { barrier(); }
  // Sum over ranks, in place.
  virtual void all_reduce(float* data, std::size_t count) = 0;
  // The same sum, started and left running (MPI_Iallreduce), so that a caller can go on
  // computing while it runs. It counts as issued now for the order of collectives. The
  // default runs all_reduce and returns it complete (transports without a non-blocking form).
  virtual std::unique_ptr<PendingCollective> start_all_reduce(float* data, std::size_t count) {
    all_reduce(data, count);
    wait();
    struct Done final : PendingCollective {
      bool test() override { return true; }
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  // recv holds count * size() elements: rank r's `count` elements at r * count.
  virtual void all_gather(const float* send, std::size_t count, float* recv) = 0;
  // send holds count * size() elements; recv gets the sum over ranks of block rank().
  virtual void reduce_scatter(const float* send, float* recv, std::size_t count) = 0;
  // send and recv hold count * size() elements; block p goes to / comes from peer p.
  virtual void all_to_all(const float* send, float* recv, std::size_t count) = 0;
  // Counts per peer (size() entries each); blocks lie contiguous in rank order. A rank's
  // recv_counts[p] must equal what peer p sends to it.
  virtual void all_to_all_v(const float* send, std::span<const std::size_t> send_counts,
                            float* recv, std::span<const std::size_t> recv_counts) = 0;

  virtual void send(const float* data, std::size_t count, int peer) = 0;
  virtual void recv(float* data, std::size_t count, int peer) = 0;
  // Sends `send_count` elements to `dst` while receiving `recv_count` from `src`, as one
  // exchange (MPI_Sendrecv): neighbours that both send never wait on each other.
  virtual void send_recv(const float* send, std::size_t send_count, int dst, float* recv, std::size_t recv_count,
                         int src) = 0;

  // One transfer of an exchange: `count` elements of `data` sent to or received from
  // `peer`. Transfers of different `tag`s never match each other (MPI tags); NCCL, which
  // has none, matches the transfers between two ranks in the order they are posted.
  struct Transfer {
    bool send = true;
    float* data = nullptr;
    std::size_t count = 0;
    int peer = 0;
    int tag = 0;  // 0 to 7
  };
  // Starts every transfer at once and returns when all have completed (Megatron's
  // batch_isend_irecv: MPI_Isend/MPI_Irecv then MPI_Waitall; NCCL's grouped send/recv),
  // so that a rank sending to a neighbour that is sending to it never waits on it.
  // Point-to-point, like send/recv: only the peers named take part.
  virtual void exchange(std::span<const Transfer> transfers) = 0;

  // Ranks of equal `color` form a new communicator, ordered by `key` (then by rank), as
  // MPI_Comm_split: the executor's data-, expert- and tensor-parallel groups. Collective.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Ends every process of the job now, with `code` (MPI_Abort): for an error one rank
  // meets alone, so that its peers are not left waiting in a collective.
  [[noreturn]] virtual void abort(int code) = 0;

  // For timing: the largest value over ranks (the slowest rank's time), on every rank.
  virtual double max_over_ranks(double value) = 0;
  // On rank 0: every rank's string in rank order; on other ranks: empty.
  virtual std::vector<std::string> gather_strings(const std::string& s) = 0;
  // Rank 0's `bytes` on every rank (the bootstrap of a NCCL communicator).
  virtual std::string broadcast_bytes(const std::string& bytes) = 0;

  // The memory the collectives work on: host memory for MPI, device memory for NCCL.
  virtual float* allocate(std::size_t count) { return new float[count > 0 ? count : 1]; }
  virtual void release(float* data) { delete[] data; }
  // Copies `count` host floats into memory from allocate().
  virtual void upload(float* dst, const float* src, std::size_t count) { std::copy_n(src, count, dst); }
  // Returns once every collective issued so far has completed (NCCL's run on a stream).
  virtual void wait() {}
};

}  // namespace moesim
