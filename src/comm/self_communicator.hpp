// The communicator of a process started without mpirun: one rank, every collective a
// copy. It lets `moesim profile` and the executor run alone without initialising MPI.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "src/comm/communicator.hpp"

namespace moesim {

class SelfCommunicator final : public Communicator {
 public:
  std::string name() const override { return "self"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void barrier() override {}
  void all_reduce(float*, std::size_t) override {}
  void all_gather(const float* send, std::size_t count, float* recv) override { std::copy_n(send, count, recv); }
  void reduce_scatter(const float* send, float* recv, std::size_t count) override { std::copy_n(send, count, recv); }
  void all_to_all(const float* send, float* recv, std::size_t count) override { std::copy_n(send, count, recv); }
  void all_to_all_v(const float* send, std::span<const std::size_t> send_counts, float* recv,
                    std::span<const std::size_t> recv_counts) override {
    if (send_counts.size() != 1 || recv_counts.size() != 1 || send_counts[0] != recv_counts[0])
      throw std::invalid_argument("SelfCommunicator::all_to_all_v: one rank sends its one block to itself");
    std::copy_n(send, send_counts[0], recv);
  }
  void send(const float*, std::size_t, int peer) override { no_peer(peer); }
  void recv(float*, std::size_t, int peer) override { no_peer(peer); }
  void send_recv(const float*, std::size_t, int dst, float*, std::size_t, int) override { no_peer(dst); }
  // Transfers to itself: each receive takes the next send of its tag in the same exchange
  // (a pipeline of one rank handing a chunk's output to its next chunk).
  void exchange(std::span<const Transfer> transfers) override {
    std::vector<bool> taken(transfers.size(), false);
    for (const Transfer& r : transfers) {
      if (r.send) continue;
      if (r.peer != 0) no_peer(r.peer);
      std::size_t i = 0;
      while (i < transfers.size() && (taken[i] || !transfers[i].send || transfers[i].tag != r.tag)) ++i;
      if (i == transfers.size() || transfers[i].count != r.count)
        throw std::invalid_argument("SelfCommunicator::exchange: a receive with no send of its tag and count");
      taken[i] = true;
      std::copy_n(transfers[i].data, r.count, r.data);
    }
    for (std::size_t i = 0; i < transfers.size(); ++i)
      if (transfers[i].send && !taken[i])
        throw std::invalid_argument("SelfCommunicator::exchange: a send with no receive");
  }
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<SelfCommunicator>(); }
  [[noreturn]] void abort(int code) override { std::exit(code); }
  double max_over_ranks(double value) override { return value; }
  std::vector<std::string> gather_strings(const std::string& s) override { return {s}; }
  std::string broadcast_bytes(const std::string& bytes) override { return bytes; }

 private:
  [[noreturn]] static void no_peer(int peer) {
    throw std::invalid_argument("SelfCommunicator: no rank " + std::to_string(peer) + " in a one-rank run");
  }
};

}  // namespace moesim
