// The MPI side of the communicator seam: a session that owns MPI's lifetime, and a
// Communicator over an MPI communicator (host buffers). Open MPI here implements MPI 3.1,
// whose counts are int, so large counts are split into several calls.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "src/comm/communicator.hpp"

namespace moesim {

// Initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls MPI) unless something
// else already did, and finalises it on destruction only if it initialised it. Create one
// in main, before any MpiCommunicator, and let it outlive them.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  // True when started by an MPI launcher (Open MPI's mpirun, a PMIx or PMI launcher), so
  // a plain `moesim` run can avoid initialising MPI at all.
  static bool launched_by_mpirun();

 private:
  bool owns_ = false;
};

// MPI_Get_library_version's first line, trimmed ("Open MPI v4.1.4, package: ...").
// Callable before MPI is initialised.
std::string mpi_library_version();

// A Communicator over a private duplicate of `comm` (so its error handler and messages
// never mix with other users of `comm`). Errors throw std::runtime_error naming the MPI
// call. `max_call_elements` bounds the elements one MPI call moves (int counts in MPI
// 3.1); larger operations are split into several calls. Tests lower it to exercise the
// split paths with small buffers.
class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD,
                           std::size_t max_call_elements = static_cast<std::size_t>(INT_MAX));
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void barrier() override;
  void idle_barrier() override;
  std::string broadcast_bytes(const std::string& bytes) override;
  void all_reduce(float* data, std::size_t count) override;
  std::unique_ptr<PendingCollective> start_all_reduce(float* data, std::size_t count) override;
  void all_gather(const float* send, std::size_t count, float* recv) override;
  void reduce_scatter(const float* send, float* recv, std::size_t count) override;
  void all_to_all(const float* send, float* recv, std::size_t count) override;
  void all_to_all_v(const float* send, std::span<const std::size_t> send_counts, float* recv,
                    std::span<const std::size_t> recv_counts) override;
  void send(const float* data, std::size_t count, int peer) override;
  void recv(float* data, std::size_t count, int peer) override;
  void send_recv(const float* send, std::size_t send_count, int dst, float* recv, std::size_t recv_count,
                 int src) override;
  void exchange(std::span<const Transfer> transfers) override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  [[noreturn]] void abort(int code) override;
  double max_over_ranks(double value) override;
  std::vector<std::string> gather_strings(const std::string& s) override;

 private:
  // Elements per rank's block in one call of a blocked collective.
  std::size_t block_chunk(std::size_t limit) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::size_t limit_;
};

}  // namespace moesim
