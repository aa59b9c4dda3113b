// The collective benchmark: a size ladder, warm-up, then per-iteration timing whose
// median (of the slowest rank) becomes a sample.
#include "src/profiler/collective_bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <string>

#include "src/core/error.hpp"

namespace moesim {
namespace {

// An all_reduce in place multiplies the buffer by the rank count each iteration; refill
// it (untimed) every this many iterations, before n^k overflows: 2^64 < 1e30.
constexpr int kRefillEvery = 64;

// Memory from the communicator (host for MPI, device for NCCL), released on scope exit.
class CommBuffer {
 public:
  CommBuffer(Communicator& comm, std::size_t count) : comm_(comm), data_(comm.allocate(count)) {}
  ~CommBuffer() { comm_.release(data_); }
  CommBuffer(const CommBuffer&) = delete;
  CommBuffer& operator=(const CommBuffer&) = delete;
  float* data() { return data_; }

 private:
  Communicator& comm_;
  float* data_;
};

void validate(const CollectiveGrid& g) {
  auto bad = [](const std::string& field, const std::string& expected, double got) {
    throw InputError("collective grid", field, "expected " + expected + ", got " + std::to_string(got));
  };
  if (!(g.min_bytes > 0)) bad("min_bytes", "a positive number of bytes", g.min_bytes);
  if (!(g.max_bytes >= g.min_bytes)) bad("max_bytes", "at least min_bytes", g.max_bytes);
  if (!(g.factor > 1)) bad("factor", "a factor above 1", g.factor);
  if (g.warmup < 0) bad("warmup", "0 or more iterations", g.warmup);
  if (g.min_iterations < 1) bad("min_iterations", "1 or more iterations", g.min_iterations);
  if (g.max_iterations < g.min_iterations) bad("max_iterations", "at least min_iterations", g.max_iterations);
  if (!(g.target_seconds >= 0)) bad("target_seconds", "0 or more seconds", g.target_seconds);
  if (g.ops.empty()) bad("ops", "at least one collective", 0);
}

// Element counts of the ladder: whole floats, divisible by ranks^2, distinct, non-zero.
std::vector<std::size_t> ladder(const CollectiveGrid& g, int ranks) {
  const auto unit = static_cast<std::size_t>(ranks) * static_cast<std::size_t>(ranks);
  std::vector<std::size_t> out;
  // The relative slack keeps max_bytes itself when factor^k lands a rounding error away.
  for (double b = g.min_bytes; b <= g.max_bytes * (1 + 1e-12); b *= g.factor) {
    std::size_t n = static_cast<std::size_t>(b / sizeof(float));
    n -= n % unit;
    if (n > 0 && (out.empty() || out.back() != n)) out.push_back(n);
  }
  return out;
}

// What rank `from` sends to each peer in all_to_all_v: shares proportional to
// 1 + (from + p) mod n of `total`, the remainder to the last peer. The weights of every
// rank sum to n(n+1)/2, so every rank sends (and on average receives) `total`.
std::vector<std::size_t> uneven_split(std::size_t total, int from, int ranks) {
  const auto n = static_cast<std::size_t>(ranks);
  const std::size_t weights = n * (n + 1) / 2;
  std::vector<std::size_t> counts(n);
  std::size_t given = 0;
  for (std::size_t p = 0; p < n; ++p) {
    counts[p] = total * (1 + (static_cast<std::size_t>(from) + p) % n) / weights;
    given += counts[p];
  }
  counts[n - 1] += total - given;
  return counts;
}

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// One point: the median over iterations of the slowest rank's time. `prepare` runs
// untimed before every iteration. The iteration count follows from the first timed
// iteration's max over ranks, a value every rank holds alike, so all ranks run the same
// number of collectives.
double time_point(Communicator& comm, const CollectiveGrid& g, const std::function<void()>& prepare,
                  const std::function<void()>& op) {
  comm.barrier();
  for (int i = 0; i < g.warmup; ++i) {
    prepare();
    op();
  }
  comm.barrier();
  std::vector<double> times;
  prepare();
  times.push_back(comm.max_over_ranks(seconds_of(op)));
  const double wanted = times[0] > 0 ? std::ceil(g.target_seconds / times[0]) : g.max_iterations;
  const int iterations = static_cast<int>(
      std::clamp(wanted, static_cast<double>(g.min_iterations), static_cast<double>(g.max_iterations)));
  for (int i = 1; i < iterations; ++i) {
    prepare();
    // The max over ranks after each iteration also lines the ranks up for the next one.
    times.push_back(comm.max_over_ranks(seconds_of(op)));
  }
  return median(std::move(times));
}

}  // namespace

const char* to_string(BenchCollective c) {
  switch (c) {
    case BenchCollective::all_reduce: return "all_reduce";
    case BenchCollective::all_gather: return "all_gather";
    case BenchCollective::reduce_scatter: return "reduce_scatter";
    case BenchCollective::all_to_all: return "all_to_all";
    case BenchCollective::all_to_all_v: return "all_to_all_v";
  }
  return "?";
}

double bus_factor(BenchCollective op, int ranks) {
  const double n = ranks;
  switch (op) {
    case BenchCollective::all_reduce: return 2 * (n - 1) / n;
    case BenchCollective::all_gather:
    case BenchCollective::reduce_scatter:
    case BenchCollective::all_to_all:
    case BenchCollective::all_to_all_v: return (n - 1) / n;
  }
  return 0;
}

std::vector<CollectiveSample> measure_collectives(Communicator& comm, const CollectiveGrid& grid,
                                                  const std::function<void(int, int)>& progress) {
  validate(grid);
  const int ranks = comm.size();
  const auto n_ranks = static_cast<std::size_t>(ranks);
  const std::vector<std::size_t> sizes = ladder(grid, ranks);
  const int total = static_cast<int>(sizes.size() * grid.ops.size());
  int done = 0;

  std::vector<CollectiveSample> samples;
  samples.reserve(static_cast<std::size_t>(total));
  for (const std::size_t n : sizes) {
    const std::size_t block = n / n_ranks;
    const std::vector<std::size_t> send_counts = uneven_split(n, comm.rank(), ranks);
    std::vector<std::size_t> recv_counts(n_ranks);
    std::size_t recv_total = 0;
    for (int p = 0; p < ranks; ++p) {
      // The split is a closed form, so each rank computes what its peers send it; counts
      // need no exchange (and floats could not carry counts above 2^24 exactly).
      recv_counts[static_cast<std::size_t>(p)] = uneven_split(n, p, ranks)[static_cast<std::size_t>(comm.rank())];
      recv_total += recv_counts[static_cast<std::size_t>(p)];
    }
    const std::size_t recv_size = std::max(n, recv_total);
    std::vector<float> host(recv_size);
    for (std::size_t i = 0; i < recv_size; ++i) host[i] = 1.0f + static_cast<float>(i % 7);
    CommBuffer send(comm, n), recv(comm, recv_size);
    comm.upload(send.data(), host.data(), n);
    std::fill(host.begin(), host.end(), 1.0f);
    comm.upload(recv.data(), host.data(), recv_size);

    for (const BenchCollective op : grid.ops) {
      std::function<void()> prepare = [] {};
      std::function<void()> run;
      switch (op) {
        case BenchCollective::all_reduce:
          comm.upload(recv.data(), host.data(), n);
          prepare = [&, calls = 0]() mutable {
            if (++calls % kRefillEvery == 0) comm.upload(recv.data(), host.data(), n);
          };
          run = [&] { comm.all_reduce(recv.data(), n); };
          break;
        case BenchCollective::all_gather:
          run = [&] { comm.all_gather(send.data(), block, recv.data()); };
          break;
        case BenchCollective::reduce_scatter:
          run = [&] { comm.reduce_scatter(send.data(), recv.data(), block); };
          break;
        case BenchCollective::all_to_all:
          run = [&] { comm.all_to_all(send.data(), recv.data(), block); };
          break;
        case BenchCollective::all_to_all_v:
          run = [&] { comm.all_to_all_v(send.data(), send_counts, recv.data(), recv_counts); };
          break;
      }
      CollectiveSample s{op, ranks, static_cast<double>(n * sizeof(float)), 0, 0, 0};
      // A collective is timed to its completion: NCCL only enqueues it on a stream.
      s.seconds = time_point(comm, grid, prepare, [&] {
        run();
        comm.wait();
      });
      s.algbw = s.bytes / s.seconds;
      s.busbw = s.algbw * bus_factor(op, ranks);
      samples.push_back(s);
      ++done;
      if (progress && comm.rank() == 0) progress(done, total);
    }
  }

  // Measured size-major so each size's buffers are allocated once; reported op-major.
  auto op_index = [&](BenchCollective op) {
    return std::find(grid.ops.begin(), grid.ops.end(), op) - grid.ops.begin();
  };
  std::stable_sort(samples.begin(), samples.end(), [&](const CollectiveSample& a, const CollectiveSample& b) {
    return op_index(a.op) < op_index(b.op);
  });
  return samples;
}

}  // namespace moesim
