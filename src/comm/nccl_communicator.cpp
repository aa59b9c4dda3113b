// NCCL collectives behind the Communicator seam; see nccl_communicator.hpp.
#include "src/comm/nccl_communicator.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

namespace moesim {
namespace {

void check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) throw std::runtime_error(std::string(call) + ": " + ncclGetErrorString(r));
}
void check(cudaError_t r, const char* call) {
  if (r != cudaSuccess) throw std::runtime_error(std::string(call) + ": " + cudaGetErrorString(r));
}

// Offsets of consecutive blocks of the given counts.
std::vector<std::size_t> offsets_of(std::span<const std::size_t> counts) {
  std::vector<std::size_t> at{0};
  for (std::size_t c : counts) at.push_back(at.back() + c);
  return at;
}

}  // namespace

std::string nccl_version() {
  int v = 0;
  check(ncclGetVersion(&v), "ncclGetVersion");
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Communicator> host, int device)
    : NcclCommunicator(*host, device) {
  owned_host_ = std::move(host);
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  return std::make_unique<NcclCommunicator>(host_.split(color, key), device_);
}

NcclCommunicator::NcclCommunicator(Communicator& host, int device) : host_(host), device_(device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  ncclUniqueId id{};
  std::string bytes;
  if (host.rank() == 0) {
    check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
  }
  bytes = host.broadcast_bytes(bytes);
  if (bytes.size() != sizeof id) throw std::runtime_error("NcclCommunicator: the unique id did not arrive whole");
  std::memcpy(&id, bytes.data(), sizeof id);
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  check(ncclCommInitRank(&comm_, host.size(), id, host.rank()), "ncclCommInitRank");
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) ncclCommDestroy(comm_);
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::barrier() {
  wait();
  host_.barrier();
}

void NcclCommunicator::idle_barrier() {
  wait();
  host_.idle_barrier();
}

void NcclCommunicator::all_reduce(float* data, std::size_t count) {
  check(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm_, stream_), "ncclAllReduce");
}

void NcclCommunicator::all_gather(const float* send, std::size_t count, float* recv) {
  check(ncclAllGather(send, recv, count, ncclFloat32, comm_, stream_), "ncclAllGather");
}

void NcclCommunicator::reduce_scatter(const float* send, float* recv, std::size_t count) {
  check(ncclReduceScatter(send, recv, count, ncclFloat32, ncclSum, comm_, stream_), "ncclReduceScatter");
}

void NcclCommunicator::all_to_all(const float* send, float* recv, std::size_t count) {
  const std::vector<std::size_t> counts(static_cast<std::size_t>(size()), count);
  all_to_all_v(send, counts, recv, counts);
}

void NcclCommunicator::all_to_all_v(const float* send, std::span<const std::size_t> send_counts, float* recv,
                                    std::span<const std::size_t> recv_counts) {
  const auto n = static_cast<std::size_t>(size());
  if (send_counts.size() != n || recv_counts.size() != n)
    throw std::invalid_argument("NcclCommunicator::all_to_all_v: one count per rank");
  const auto s = offsets_of(send_counts), r = offsets_of(recv_counts);
  // Point-to-point pairs in one group: NCCL runs them concurrently, as an all-to-all.
  check(ncclGroupStart(), "ncclGroupStart");
  for (std::size_t p = 0; p < n; ++p) {
    const int peer = static_cast<int>(p);
    if (send_counts[p] > 0) check(ncclSend(send + s[p], send_counts[p], ncclFloat32, peer, comm_, stream_), "ncclSend");
    if (recv_counts[p] > 0) check(ncclRecv(recv + r[p], recv_counts[p], ncclFloat32, peer, comm_, stream_), "ncclRecv");
  }
  check(ncclGroupEnd(), "ncclGroupEnd");
}

void NcclCommunicator::send(const float* data, std::size_t count, int peer) {
  check(ncclSend(data, count, ncclFloat32, peer, comm_, stream_), "ncclSend");
  wait();
}

void NcclCommunicator::recv(float* data, std::size_t count, int peer) {
  check(ncclRecv(data, count, ncclFloat32, peer, comm_, stream_), "ncclRecv");
  wait();
}

void NcclCommunicator::send_recv(const float* send, std::size_t send_count, int dst, float* recv,
                                 std::size_t recv_count, int src) {
  check(ncclGroupStart(), "ncclGroupStart");
  check(ncclSend(send, send_count, ncclFloat32, dst, comm_, stream_), "ncclSend");
  check(ncclRecv(recv, recv_count, ncclFloat32, src, comm_, stream_), "ncclRecv");
  check(ncclGroupEnd(), "ncclGroupEnd");
  wait();
}

void NcclCommunicator::exchange(std::span<const Transfer> transfers) {
  if (transfers.empty()) return;
  // One group: NCCL runs its sends and receives together, matching those between two
  // ranks in the order posted (it has no tags).
  check(ncclGroupStart(), "ncclGroupStart");
  for (const Transfer& t : transfers) {
    if (t.send)
      check(ncclSend(t.data, t.count, ncclFloat32, t.peer, comm_, stream_), "ncclSend");
    else
      check(ncclRecv(t.data, t.count, ncclFloat32, t.peer, comm_, stream_), "ncclRecv");
  }
  check(ncclGroupEnd(), "ncclGroupEnd");
  wait();
}

float* NcclCommunicator::allocate(std::size_t count) {
  void* p = nullptr;
  check(cudaMalloc(&p, (count > 0 ? count : 1) * sizeof(float)), "cudaMalloc");
  return static_cast<float*>(p);
}

void NcclCommunicator::release(float* data) { cudaFree(data); }

void NcclCommunicator::upload(float* dst, const float* src, std::size_t count) {
  check(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
  wait();
}

void NcclCommunicator::wait() { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

}  // namespace moesim
