// MpiSession and MpiCommunicator: MPI 3.1 calls with int counts, split into several
// calls where an operation moves more elements than one call may.
#include "src/comm/mpi_communicator.hpp"

#include <chrono>
#include <thread>

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <stdexcept>

namespace moesim {
namespace {

// Tags of the point-to-point traffic, so all_to_all_v's fallback never matches a user's
// send/recv.
constexpr int kSendTag = 1;
constexpr int kAllToAllVTag = 2;
constexpr int kExchangeTag = 16;  // to 23: exchange()'s tags 0 to 7

// The staging buffer of a split reduce_scatter holds at most this many elements (1 GiB):
// only operations whose send buffer exceeds 8 GiB need it.
constexpr std::size_t kMaxStagingElements = std::size_t{1} << 28;

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  throw std::runtime_error(std::string(call) + " failed: " +
                           (len > 0 ? std::string(text, static_cast<std::size_t>(len))
                                    : "error code " + std::to_string(rc)));
}

int as_int(std::size_t n) {
  assert(n <= static_cast<std::size_t>(INT_MAX) && "count exceeds one MPI call");
  return static_cast<int>(n);
}

// `count` floats, laid out `stride` floats apart when repeated: one rank's slice of a
// rank-major buffer, so a split collective can address block p at p * stride.
class StridedBlock {
 public:
  StridedBlock(std::size_t count, std::size_t stride) {
    MPI_Datatype block = MPI_DATATYPE_NULL;
    check(MPI_Type_contiguous(as_int(count), MPI_FLOAT, &block), "MPI_Type_contiguous");
    const int rc = MPI_Type_create_resized(
        block, 0, static_cast<MPI_Aint>(stride * sizeof(float)), &type_);
    MPI_Type_free(&block);
    check(rc, "MPI_Type_create_resized");
    if (const int c = MPI_Type_commit(&type_); c != MPI_SUCCESS) {
      MPI_Type_free(&type_);
      check(c, "MPI_Type_commit");
    }
  }
  ~StridedBlock() { MPI_Type_free(&type_); }
  StridedBlock(const StridedBlock&) = delete;
  StridedBlock& operator=(const StridedBlock&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n,";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

MpiSession::MpiSession() {
  int initialized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  if (initialized) return;
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  owns_ = true;
}

MpiSession::~MpiSession() {
  if (!owns_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

bool MpiSession::launched_by_mpirun() {
  // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx launchers (Open MPI 4+, Slurm's
  // srun --mpi=pmix) set PMIX_RANK; MPICH's Hydra and PMI-2 launchers set PMI_RANK.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  check(MPI_Get_library_version(text, &len), "MPI_Get_library_version");
  // Open MPI counts the terminating NUL in len.
  std::string all(text, static_cast<std::size_t>(std::max(len, 0)));
  all.erase(std::find(all.begin(), all.end(), '\0'), all.end());
  return trim(all.substr(0, all.find('\n')));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::size_t max_call_elements)
    : limit_(std::clamp<std::size_t>(max_call_elements, 1, static_cast<std::size_t>(INT_MAX))) {
  check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  // Freeing after MPI_Finalize is itself an error; the session normally outlives us.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::size_t MpiCommunicator::block_chunk(std::size_t limit) const {
  return std::max<std::size_t>(1, limit / static_cast<std::size_t>(size_));
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  MPI_Comm part = MPI_COMM_NULL;
  check(MPI_Comm_split(comm_, color, key, &part), "MPI_Comm_split");
  auto result = std::make_unique<MpiCommunicator>(part, limit_);
  MPI_Comm_free(&part);  // the new communicator holds its own duplicate
  return result;
}

void MpiCommunicator::barrier() { check(MPI_Barrier(comm_), "MPI_Barrier"); }

std::string MpiCommunicator::broadcast_bytes(const std::string& bytes) {
  unsigned long long len = bytes.size();
  check(MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, 0, comm_), "MPI_Bcast");
  if (len > static_cast<unsigned long long>(INT_MAX))
    throw std::runtime_error("broadcast_bytes: " + std::to_string(len) + " bytes exceed one MPI_Bcast");
  std::string out = rank_ == 0 ? bytes : std::string(static_cast<std::size_t>(len), '\0');
  check(MPI_Bcast(out.data(), static_cast<int>(len), MPI_CHAR, 0, comm_), "MPI_Bcast");
  return out;
}

void MpiCommunicator::idle_barrier() {
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier");
  int done = 0;
  while (true) {
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void MpiCommunicator::all_reduce(float* data, std::size_t count) {
  for (std::size_t off = 0; off < count; off += limit_) {
    const std::size_t c = std::min(limit_, count - off);
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, as_int(c), MPI_FLOAT, MPI_SUM, comm_),
          "MPI_Allreduce");
  }
}

namespace {

// The MPI requests of one started collective (several where it was split into calls).
class MpiPending final : public PendingCollective {
 public:
  explicit MpiPending(const char* call) : call_(call) {}
  ~MpiPending() override {
    // Its buffers may be freed next: finish it, errors or not (a destructor cannot throw).
    if (!requests_.empty()) MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
  }
  MpiPending(const MpiPending&) = delete;
  MpiPending& operator=(const MpiPending&) = delete;
  std::vector<MPI_Request>& requests() { return requests_; }
  bool test() override {
    if (requests_.empty()) return true;
    int done = 0;
    check(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE), call_);
    if (done) requests_.clear();
    return done != 0;
  }
  void wait() override {
    if (requests_.empty()) return;
    check(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), call_);
    requests_.clear();
  }

 private:
  const char* call_;
  std::vector<MPI_Request> requests_;
};

}  // namespace

std::unique_ptr<PendingCollective> MpiCommunicator::start_all_reduce(float* data, std::size_t count) {
  auto pending = std::make_unique<MpiPending>("MPI_Iallreduce");
  for (std::size_t off = 0; off < count; off += limit_) {
    const std::size_t c = std::min(limit_, count - off);
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Iallreduce(MPI_IN_PLACE, data + off, as_int(c), MPI_FLOAT, MPI_SUM, comm_, &request), "MPI_Iallreduce");
    pending->requests().push_back(request);
  }
  return pending;
}

void MpiCommunicator::all_gather(const float* send, std::size_t count, float* recv) {
  const auto n = static_cast<std::size_t>(size_);
  if (count * n <= limit_) {
    check(MPI_Allgather(send, as_int(count), MPI_FLOAT, recv, as_int(count), MPI_FLOAT, comm_),
          "MPI_Allgather");
    return;
  }
  // Slice [off, off + c) of every rank's block per call; the strided type places each
  // rank's slice in its block of recv.
  const std::size_t chunk = block_chunk(limit_);
  for (std::size_t off = 0; off < count; off += chunk) {
    const std::size_t c = std::min(chunk, count - off);
    const StridedBlock block(c, count);
    check(MPI_Allgather(send + off, as_int(c), MPI_FLOAT, recv + off, 1, block.get(), comm_),
          "MPI_Allgather");
  }
}

void MpiCommunicator::reduce_scatter(const float* send, float* recv, std::size_t count) {
  const auto n = static_cast<std::size_t>(size_);
  if (count * n <= limit_) {
    check(MPI_Reduce_scatter_block(send, recv, as_int(count), MPI_FLOAT, MPI_SUM, comm_),
          "MPI_Reduce_scatter_block");
    return;
  }
  // MPI_SUM is defined on predefined types only, so slices are packed contiguously
  // into a staging buffer rather than described by a strided type.
  const std::size_t chunk = block_chunk(std::min(limit_, kMaxStagingElements));
  std::vector<float> staging(std::min(chunk, count) * n);
  for (std::size_t off = 0; off < count; off += chunk) {
    const std::size_t c = std::min(chunk, count - off);
    for (std::size_t p = 0; p < n; ++p)
      std::copy_n(send + p * count + off, c, staging.data() + p * c);
    check(MPI_Reduce_scatter_block(staging.data(), recv + off, as_int(c), MPI_FLOAT, MPI_SUM, comm_),
          "MPI_Reduce_scatter_block");
  }
}

void MpiCommunicator::all_to_all(const float* send, float* recv, std::size_t count) {
  const auto n = static_cast<std::size_t>(size_);
  if (count * n <= limit_) {
    check(MPI_Alltoall(send, as_int(count), MPI_FLOAT, recv, as_int(count), MPI_FLOAT, comm_),
          "MPI_Alltoall");
    return;
  }
  const std::size_t chunk = block_chunk(limit_);
  for (std::size_t off = 0; off < count; off += chunk) {
    const std::size_t c = std::min(chunk, count - off);
    const StridedBlock block(c, count);
    check(MPI_Alltoall(send + off, 1, block.get(), recv + off, 1, block.get(), comm_),
          "MPI_Alltoall");
  }
}

void MpiCommunicator::all_to_all_v(const float* send, std::span<const std::size_t> send_counts,
                                   float* recv, std::span<const std::size_t> recv_counts) {
  // Point-to-point, as NCCL users write all-to-all-v (grouped ncclSend/ncclRecv) and as
  // Open MPI's linear MPI_Alltoallv does: no int displacements to overflow, and no
  // agreement among ranks needed before choosing a path. Messages longer than limit_
  // go as slices; sender and receiver slice one count alike, and MPI keeps messages
  // between two ranks with one tag in order.
  const auto n = static_cast<std::size_t>(size_);
  const auto me = static_cast<std::size_t>(rank_);
  assert(send_counts.size() == n && recv_counts.size() == n);
  std::vector<std::size_t> send_at(n + 1, 0), recv_at(n + 1, 0);
  for (std::size_t p = 0; p < n; ++p) {
    send_at[p + 1] = send_at[p] + send_counts[p];
    recv_at[p + 1] = recv_at[p] + recv_counts[p];
  }
  assert(send_counts[me] == recv_counts[me]);
  std::vector<MPI_Request> requests;
  // Peers in the order me+1, me+2, ... so that not every rank sends to rank 0 first.
  for (std::size_t k = 1; k < n; ++k) {
    const std::size_t p = (me + n - k) % n;
    for (std::size_t off = 0; off < recv_counts[p]; off += limit_) {
      requests.emplace_back();
      check(MPI_Irecv(recv + recv_at[p] + off, as_int(std::min(limit_, recv_counts[p] - off)), MPI_FLOAT,
                      static_cast<int>(p), kAllToAllVTag, comm_, &requests.back()),
            "MPI_Irecv");
    }
  }
  for (std::size_t k = 1; k < n; ++k) {
    const std::size_t p = (me + k) % n;
    for (std::size_t off = 0; off < send_counts[p]; off += limit_) {
      requests.emplace_back();
      check(MPI_Isend(send + send_at[p] + off, as_int(std::min(limit_, send_counts[p] - off)), MPI_FLOAT,
                      static_cast<int>(p), kAllToAllVTag, comm_, &requests.back()),
            "MPI_Isend");
    }
  }
  std::copy_n(send + send_at[me], send_counts[me], recv + recv_at[me]);
  check(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE),
        "MPI_Waitall");
}

void MpiCommunicator::send(const float* data, std::size_t count, int peer) {
  for (std::size_t off = 0; off < count; off += limit_)
    check(MPI_Send(data + off, as_int(std::min(limit_, count - off)), MPI_FLOAT, peer, kSendTag, comm_),
          "MPI_Send");
}

void MpiCommunicator::recv(float* data, std::size_t count, int peer) {
  for (std::size_t off = 0; off < count; off += limit_)
    check(MPI_Recv(data + off, as_int(std::min(limit_, count - off)), MPI_FLOAT, peer, kSendTag, comm_,
                   MPI_STATUS_IGNORE),
          "MPI_Recv");
}

void MpiCommunicator::send_recv(const float* send, std::size_t send_count, int dst, float* recv,
                                std::size_t recv_count, int src) {
  // Both sides split alike: one side's send count is the other's receive count.
  for (std::size_t off = 0; off < std::max(send_count, recv_count); off += limit_) {
    const std::size_t s = off < send_count ? std::min(limit_, send_count - off) : 0;
    const std::size_t r = off < recv_count ? std::min(limit_, recv_count - off) : 0;
    check(MPI_Sendrecv(send + (s > 0 ? off : 0), as_int(s), MPI_FLOAT, dst, kSendTag, recv + (r > 0 ? off : 0),
                       as_int(r), MPI_FLOAT, src, kSendTag, comm_, MPI_STATUS_IGNORE),
          "MPI_Sendrecv");
  }
}

void MpiCommunicator::exchange(std::span<const Transfer> transfers) {
  // Receives posted first, so that the sends find them; slices as send/recv cut them, which
  // MPI keeps in order between two ranks with one tag.
  std::vector<MPI_Request> requests;
  for (const bool sends : {false, true})
    for (const Transfer& t : transfers) {
      if (t.send != sends) continue;
      assert(t.tag >= 0 && t.tag < 8);
      for (std::size_t off = 0; off < t.count; off += limit_) {
        const int n = as_int(std::min(limit_, t.count - off));
        requests.emplace_back();
        if (sends)
          check(MPI_Isend(t.data + off, n, MPI_FLOAT, t.peer, kExchangeTag + t.tag, comm_, &requests.back()),
                "MPI_Isend");
        else
          check(MPI_Irecv(t.data + off, n, MPI_FLOAT, t.peer, kExchangeTag + t.tag, comm_, &requests.back()),
                "MPI_Irecv");
      }
    }
  if (requests.empty()) return;
  check(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
}

void MpiCommunicator::abort(int code) {
  MPI_Abort(comm_, code);
  std::_Exit(code);  // MPI_Abort does not return; should it, leave all the same
}

double MpiCommunicator::max_over_ranks(double value) {
  double out = 0;
  check(MPI_Allreduce(&value, &out, 1, MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
  return out;
}

std::vector<std::string> MpiCommunicator::gather_strings(const std::string& s) {
  const auto n = static_cast<std::size_t>(size_);
  // Every rank learns every length, so all of them reject an oversized gather alike.
  unsigned long long len = s.size();
  std::vector<unsigned long long> lens(n);
  check(MPI_Allgather(&len, 1, MPI_UNSIGNED_LONG_LONG, lens.data(), 1, MPI_UNSIGNED_LONG_LONG, comm_),
        "MPI_Allgather");
  unsigned long long total = 0;
  for (unsigned long long l : lens) total += l;
  if (total > static_cast<unsigned long long>(INT_MAX))
    throw std::runtime_error("gather_strings: " + std::to_string(total) +
                             " bytes in all exceed one MPI_Gatherv (at most 2^31-1)");
  std::vector<int> counts(n), displs(n);
  int at = 0;
  for (std::size_t p = 0; p < n; ++p) {
    counts[p] = static_cast<int>(lens[p]);
    displs[p] = at;
    at += counts[p];
  }
  std::string all(rank_ == 0 ? static_cast<std::size_t>(total) : 0, '\0');
  check(MPI_Gatherv(s.data(), static_cast<int>(len), MPI_CHAR, all.data(), counts.data(), displs.data(),
                    MPI_CHAR, 0, comm_),
        "MPI_Gatherv");
  if (rank_ != 0) return {};
  std::vector<std::string> out;
  out.reserve(n);
  for (std::size_t p = 0; p < n; ++p)
    out.push_back(all.substr(static_cast<std::size_t>(displs[p]), static_cast<std::size_t>(counts[p])));
  return out;
}

}  // namespace moesim
