// The NCCL communicator on the GPUs of this machine, one rank (the lent GPU machines have
// one GPU): every collective against its closed form, and the collective benchmark.
// Skipped with a message when no GPU is visible. Multi-rank NCCL needs several GPUs and
// is not tested here.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <vector>

#include "src/comm/nccl_communicator.hpp"
#include "src/comm/self_communicator.hpp"
#include "src/profiler/collective_bench.hpp"

namespace moesim {
namespace {

class Nccl : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) GTEST_SKIP() << "no CUDA device visible: NCCL needs a GPU";
  }
};

std::vector<float> download(const float* d, std::size_t n) {
  std::vector<float> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

TEST_F(Nccl, OneRankCollectivesAreTheirClosedForms) {
  SelfCommunicator self;
  NcclCommunicator nccl(self, 0);
  EXPECT_EQ(nccl.size(), 1);
  EXPECT_FALSE(nccl_version().empty());
  const std::size_t n = 1000;
  std::vector<float> host(n);
  for (std::size_t i = 0; i < n; ++i) host[i] = 0.5f + static_cast<float>(i);
  float* a = nccl.allocate(n);
  float* b = nccl.allocate(n);
  nccl.upload(a, host.data(), n);
  nccl.all_reduce(a, n);  // the sum over one rank
  nccl.wait();
  EXPECT_EQ(download(a, n), host);
  for (int op = 0; op < 4; ++op) {
    nccl.upload(b, std::vector<float>(n, -1.0f).data(), n);
    const std::size_t counts[] = {n};
    if (op == 0) nccl.all_gather(a, n, b);
    if (op == 1) nccl.reduce_scatter(a, b, n);
    if (op == 2) nccl.all_to_all(a, b, n);
    if (op == 3) nccl.all_to_all_v(a, counts, b, counts);
    nccl.wait();
    EXPECT_EQ(download(b, n), host) << "op " << op;
  }
  nccl.release(a);
  nccl.release(b);
}

TEST_F(Nccl, BenchmarkRunsEveryCollective) {
  SelfCommunicator self;
  NcclCommunicator nccl(self, 0);
  CollectiveGrid grid;
  grid.max_bytes = 1 << 20;
  grid.target_seconds = 0.001;
  const auto samples = measure_collectives(nccl, grid, {});
  EXPECT_EQ(samples.size(), 5u * 6u);  // 1 KiB .. 1 MiB by 4: 6 sizes
  for (const CollectiveSample& s : samples) {
    EXPECT_GT(s.seconds, 0);
    EXPECT_EQ(s.busbw, 0);  // one rank moves nothing between ranks
  }
}

}  // namespace
}  // namespace moesim
