// The communicator of GPU ranks: NCCL collectives on device buffers, on one CUDA stream,
// bootstrapped (and its barriers and small host exchanges carried) by a host communicator.
// Built only with CUDA and NCCL (MOESIM_COMM_NCCL).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdlib>

#include "src/comm/communicator.hpp"

namespace moesim {

// NCCL's version as "2.28.3".
std::string nccl_version();

class NcclCommunicator final : public Communicator {
 public:
  // Joins every rank of `host` (which must outlive this) into one NCCL communicator on
  // CUDA device `device`. Collective over `host`.
  NcclCommunicator(Communicator& host, int device);
  // The same over a host communicator this one owns (the groups split() makes).
  NcclCommunicator(std::unique_ptr<Communicator> host, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  std::string name() const override { return "nccl"; }
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  void barrier() override;
  void idle_barrier() override;
  void all_reduce(float* data, std::size_t count) override;
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
  [[noreturn]] void abort(int code) override {
    host_.abort(code);
    std::_Exit(code);  // not reached: GCC does not carry [[noreturn]] through a virtual call
  }
  double max_over_ranks(double value) override { return host_.max_over_ranks(value); }
  std::vector<std::string> gather_strings(const std::string& s) override { return host_.gather_strings(s); }
  std::string broadcast_bytes(const std::string& bytes) override { return host_.broadcast_bytes(bytes); }

  float* allocate(std::size_t count) override;
  void release(float* data) override;
  void upload(float* dst, const float* src, std::size_t count) override;
  void wait() override;

 private:
  std::unique_ptr<Communicator> owned_host_;  // set by the owning constructor
  Communicator& host_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace moesim
