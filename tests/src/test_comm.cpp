// The MPI communicator and the collective benchmark against closed forms, run under
// mpirun with 2 and 4 ranks. Every collective is checked both in whole MPI calls and
// split into slices of at most 5 elements, the path that counts above 2^31-1 take.
#include <gtest/gtest.h>
#include <mpi.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "src/comm/mpi_communicator.hpp"
#include "tests/src/mpi_test_main.hpp"
#include "src/core/error.hpp"
#include "src/profiler/collective_bench.hpp"

namespace moesim {
namespace {

using std::size_t;

class MpiComm : public ::testing::TestWithParam<size_t> {
 protected:
  MpiCommunicator comm{MPI_COMM_WORLD, GetParam()};
  int r = comm.rank();
  int n = comm.size();
  size_t ur = static_cast<size_t>(r);
  size_t un = static_cast<size_t>(n);
};

TEST_P(MpiComm, Identity) {
  int world_rank = -1, world_size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  EXPECT_EQ(comm.name(), "mpi");
  EXPECT_EQ(r, world_rank);
  EXPECT_EQ(n, world_size);
  EXPECT_TRUE(MpiSession::launched_by_mpirun());
  const std::string v = mpi_library_version();
  EXPECT_NE(v.find("MPI"), std::string::npos) << v;
  EXPECT_EQ(v.find('\n'), std::string::npos) << v;
  comm.barrier();
}

TEST_P(MpiComm, AllReduceSumsRankValues) {
  // Rank q holds (q + 1)(i + 1); the sum is (i + 1) n(n + 1)/2.
  const size_t count = 37;
  std::vector<float> data(count);
  for (size_t i = 0; i < count; ++i) data[i] = static_cast<float>((ur + 1) * (i + 1));
  comm.all_reduce(data.data(), count);
  for (size_t i = 0; i < count; ++i)
    EXPECT_EQ(data[i], static_cast<float>((i + 1) * un * (un + 1) / 2)) << "element " << i;
}

TEST_P(MpiComm, AllGatherIsRankMajor) {
  const size_t count = 13;
  std::vector<float> send(count), recv(count * un, -1.0f);
  for (size_t i = 0; i < count; ++i) send[i] = static_cast<float>(ur * 1000 + i);
  comm.all_gather(send.data(), count, recv.data());
  for (size_t p = 0; p < un; ++p)
    for (size_t i = 0; i < count; ++i)
      EXPECT_EQ(recv[p * count + i], static_cast<float>(p * 1000 + i)) << "block " << p << " element " << i;
}

TEST_P(MpiComm, ReduceScatterSumsOwnBlock) {
  // Rank q's element j of the send buffer is (q + 1)(j + 1); block r sums to
  // n(n + 1)/2 (r count + i + 1).
  const size_t count = 11;
  std::vector<float> send(count * un), recv(count, -1.0f);
  for (size_t j = 0; j < count * un; ++j) send[j] = static_cast<float>((ur + 1) * (j + 1));
  comm.reduce_scatter(send.data(), recv.data(), count);
  for (size_t i = 0; i < count; ++i)
    EXPECT_EQ(recv[i], static_cast<float>(un * (un + 1) / 2 * (ur * count + i + 1))) << "element " << i;
}

TEST_P(MpiComm, AllToAllDeliversEachPeersBlock) {
  const size_t count = 9;
  std::vector<float> send(count * un), recv(count * un, -1.0f);
  for (size_t p = 0; p < un; ++p)
    for (size_t i = 0; i < count; ++i) send[p * count + i] = static_cast<float>(ur * 10000 + p * 100 + i);
  comm.all_to_all(send.data(), recv.data(), count);
  for (size_t p = 0; p < un; ++p)
    for (size_t i = 0; i < count; ++i)
      EXPECT_EQ(recv[p * count + i], static_cast<float>(p * 10000 + ur * 100 + i)) << "from " << p << " element " << i;
}

TEST_P(MpiComm, AllToAllVDeliversUnevenBlocks) {
  // Rank q sends peer p 4((q + 2p) mod 3) elements: 0, 4 or 8, so some counts are zero
  // and some exceed a 5-element slice.
  auto count = [](size_t from, size_t to) { return 4 * ((from + 2 * to) % 3); };
  std::vector<size_t> send_counts(un), recv_counts(un);
  std::vector<float> send;
  size_t recv_total = 0;
  for (size_t p = 0; p < un; ++p) {
    send_counts[p] = count(ur, p);
    recv_counts[p] = count(p, ur);
    recv_total += recv_counts[p];
    for (size_t j = 0; j < send_counts[p]; ++j) send.push_back(static_cast<float>(ur * 10000 + p * 100 + j));
  }
  bool any_zero = false;
  for (size_t c : send_counts) any_zero |= c == 0;
  EXPECT_TRUE(any_zero);
  send.push_back(0);  // keeps data() valid when this rank sends nothing
  std::vector<float> recv(recv_total + 1, -1.0f);
  comm.all_to_all_v(send.data(), send_counts, recv.data(), recv_counts);
  size_t at = 0;
  for (size_t p = 0; p < un; ++p)
    for (size_t j = 0; j < recv_counts[p]; ++j, ++at)
      EXPECT_EQ(recv[at], static_cast<float>(p * 10000 + ur * 100 + j)) << "from " << p << " element " << j;
  EXPECT_EQ(recv[recv_total], -1.0f) << "wrote past the last block";
}

TEST_P(MpiComm, SendRecvRing) {
  if (n < 2) GTEST_SKIP() << "a ring needs two ranks";
  const size_t count = 12;
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  std::vector<float> out(count), in(count, -1.0f);
  for (size_t i = 0; i < count; ++i) out[i] = static_cast<float>(ur * 100 + i);
  // Even ranks send first, odd ranks receive first: no cycle of blocking sends.
  if (r % 2 == 0) {
    comm.send(out.data(), count, next);
    comm.recv(in.data(), count, prev);
  } else {
    comm.recv(in.data(), count, prev);
    comm.send(out.data(), count, next);
  }
  for (size_t i = 0; i < count; ++i)
    EXPECT_EQ(in[i], static_cast<float>(static_cast<size_t>(prev) * 100 + i)) << "element " << i;
}

// Every rank sends to both neighbours and receives from both in one exchange: each
// direction on its own tag, and two messages of one tag to the same peer arrive in order
// (with 2 ranks both neighbours are the one peer).
TEST_P(MpiComm, ExchangeWithBothNeighbours) {
  if (n < 2) GTEST_SKIP() << "a ring needs two ranks";
  const size_t count = 12;
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  std::vector<std::vector<float>> out(3, std::vector<float>(count)), in(3, std::vector<float>(count, -1.0f));
  for (size_t k = 0; k < 3; ++k)
    for (size_t i = 0; i < count; ++i) out[k][i] = static_cast<float>(k * 10000 + ur * 100 + i);
  // Receives listed first: exchange starts them all before it waits for any.
  const std::vector<Communicator::Transfer> transfers = {
      {false, in[0].data(), count, prev, 0}, {false, in[1].data(), count, next, 1},
      {false, in[2].data(), count, prev, 0}, {true, out[0].data(), count, next, 0},
      {true, out[1].data(), count, prev, 1}, {true, out[2].data(), count, next, 0}};
  comm.exchange(transfers);
  for (size_t i = 0; i < count; ++i) {
    EXPECT_EQ(in[0][i], static_cast<float>(static_cast<size_t>(prev) * 100 + i)) << "element " << i;
    EXPECT_EQ(in[1][i], static_cast<float>(10000 + static_cast<size_t>(next) * 100 + i)) << "element " << i;
    EXPECT_EQ(in[2][i], static_cast<float>(20000 + static_cast<size_t>(prev) * 100 + i)) << "element " << i;
  }
  comm.exchange({});  // nothing to move: returns at once
}

TEST_P(MpiComm, MaxOverRanks) {
  EXPECT_EQ(comm.max_over_ranks(1.5 * r), 1.5 * (n - 1));
  EXPECT_EQ(comm.max_over_ranks(-1.0 * r), 0.0);
}

TEST_P(MpiComm, GatherStringsInRankOrder) {
  // Rank 0's string is empty: a zero-length contribution.
  auto text = [](int q) { return q == 0 ? std::string() : "rank" + std::to_string(q) + std::string(static_cast<size_t>(q), '+'); };
  const std::vector<std::string> all = comm.gather_strings(text(r));
  if (r != 0) {
    EXPECT_TRUE(all.empty());
    return;
  }
  ASSERT_EQ(all.size(), un);
  for (int q = 0; q < n; ++q) EXPECT_EQ(all[static_cast<size_t>(q)], text(q));
}

TEST_P(MpiComm, ErrorsNameTheMpiCall) {
  float x = 1;
  try {
    comm.send(&x, 1, n);  // no such rank
    ADD_FAILURE() << "send to rank " << n << " did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("MPI_Send"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Calls, MpiComm, ::testing::Values(static_cast<size_t>(INT_MAX), size_t{5}),
                         [](const ::testing::TestParamInfo<size_t>& param_info) {
                           return param_info.param == INT_MAX ? std::string("whole") : "split" + std::to_string(param_info.param);
                         });

TEST(BusFactor, NcclTestsClosedForms) {
  const BenchCollective halves[] = {BenchCollective::all_gather, BenchCollective::reduce_scatter,
                                    BenchCollective::all_to_all, BenchCollective::all_to_all_v};
  EXPECT_EQ(bus_factor(BenchCollective::all_reduce, 1), 0.0);
  EXPECT_EQ(bus_factor(BenchCollective::all_reduce, 2), 1.0);
  EXPECT_EQ(bus_factor(BenchCollective::all_reduce, 8), 1.75);
  for (BenchCollective op : halves) {
    EXPECT_EQ(bus_factor(op, 1), 0.0) << to_string(op);
    EXPECT_EQ(bus_factor(op, 2), 0.5) << to_string(op);
    EXPECT_EQ(bus_factor(op, 8), 0.875) << to_string(op);
  }
}

TEST(MeasureCollectives, TinyGridOneSamplePerOpAndSize) {
  MpiCommunicator comm;
  CollectiveGrid grid;
  grid.min_bytes = 1024;
  grid.max_bytes = 64 * 1024;
  grid.warmup = 1;
  grid.target_seconds = 0.01;
  std::vector<std::pair<int, int>> calls;
  const std::vector<CollectiveSample> samples =
      measure_collectives(comm, grid, [&](int done, int total) { calls.emplace_back(done, total); });

  const double sizes[] = {1024, 4096, 16384, 65536};  // divisible by 4 n^2 for n = 2, 4
  ASSERT_EQ(samples.size(), grid.ops.size() * 4);
  std::string key;
  for (size_t k = 0; k < samples.size(); ++k) {
    const CollectiveSample& s = samples[k];
    EXPECT_EQ(s.op, grid.ops[k / 4]) << k;
    EXPECT_EQ(s.bytes, sizes[k % 4]) << k;
    EXPECT_EQ(s.ranks, comm.size());
    EXPECT_GT(s.seconds, 0) << to_string(s.op) << " " << s.bytes;
    EXPECT_EQ(s.algbw, s.bytes / s.seconds);
    EXPECT_EQ(s.busbw, s.algbw * bus_factor(s.op, comm.size()));
    key += std::string(to_string(s.op)) + ":" + std::to_string(s.bytes) + ";";
  }
  if (comm.rank() == 0) {
    ASSERT_EQ(calls.size(), samples.size());
    for (size_t k = 0; k < calls.size(); ++k)
      EXPECT_EQ(calls[k], std::make_pair(static_cast<int>(k) + 1, static_cast<int>(samples.size())));
  } else {
    EXPECT_TRUE(calls.empty());
  }
  const std::vector<std::string> keys = comm.gather_strings(key);
  for (size_t q = 0; q < keys.size(); ++q) EXPECT_EQ(keys[q], key) << "rank " << q << " measured other points";
}

TEST(MeasureCollectives, SizesRoundToWholeBlocks) {
  MpiCommunicator comm;
  const double n = comm.size();
  CollectiveGrid grid;
  grid.min_bytes = 1000;  // 250 floats: 248 with 2 ranks (4 | 248), 240 with 4 (16 | 240)
  grid.max_bytes = 1000;
  grid.warmup = 0;
  grid.min_iterations = 1;
  grid.target_seconds = 0;
  grid.ops = {BenchCollective::all_to_all_v, BenchCollective::all_reduce};
  const std::vector<CollectiveSample> samples = measure_collectives(comm, grid, {});
  ASSERT_EQ(samples.size(), 2u);
  for (const CollectiveSample& s : samples) EXPECT_EQ(s.bytes, 4 * n * n * std::floor(250 / (n * n)));
  EXPECT_EQ(samples[0].op, BenchCollective::all_to_all_v);

  grid.min_bytes = grid.max_bytes = 4;  // one float: no whole blocks, skipped
  EXPECT_TRUE(measure_collectives(comm, grid, {}).empty());
}

TEST(MeasureCollectives, RejectsABadGrid) {
  MpiCommunicator comm;
  CollectiveGrid grid;
  grid.factor = 1;
  try {
    measure_collectives(comm, grid, {});
    ADD_FAILURE() << "factor 1 accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "factor");
  }
}

}  // namespace
}  // namespace moesim

int main(int argc, char** argv) { return moesim::testing::run_mpi_tests(argc, argv); }
