// The main of a GoogleTest program run under mpirun: every rank runs every test; rank 0
// prints GoogleTest's output, the others only their failures (prefixed with the rank); and
// every rank exits non-zero if any rank failed, so mpirun and ctest see it.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "src/comm/mpi_communicator.hpp"

namespace moesim::testing {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                   r.message());
  }

 private:
  int rank_;
};

inline int run_mpi_tests(int argc, char** argv) {
  moesim::MpiSession session;
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  const int result = RUN_ALL_TESTS();
  int worst = result;
  MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}

}  // namespace moesim::testing
