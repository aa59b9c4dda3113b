// Helpers for the CUDA-vs-CPU tests: a fixture that skips without a GPU, device copies of
// host vectors, an elementwise comparison with absolute + relative tolerance, and the
// relative error in norm.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "kernels/cuda/device.hpp"

namespace moesim::kernels::test {

class CudaTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!cuda::device_available()) {
            GTEST_SKIP() << "no CUDA device visible (cudaGetDeviceCount returned 0 or failed); "
                            "the CUDA-vs-CPU comparison needs a GPU";
        }
    }
};

template <class T>
cuda::DeviceBuffer<T> to_device(const std::vector<T>& host)
{
    return cuda::DeviceBuffer<T>(std::span<const T>(host));
}

// |actual - expected| <= abs_tol + rel_tol * |expected| for every element.
inline void expect_close(const std::vector<float>& actual, const std::vector<float>& expected,
                         double abs_tol, double rel_tol, const std::string& what)
{
    ASSERT_EQ(actual.size(), expected.size()) << what;
    int reported = 0;
    for (std::size_t i = 0; i < actual.size() && reported < 5; ++i) {
        const double tol = abs_tol + rel_tol * std::fabs(static_cast<double>(expected[i]));
        if (!(std::fabs(static_cast<double>(actual[i]) - expected[i]) <= tol)) {
            ADD_FAILURE() << what << "[" << i << "]: CUDA " << actual[i] << " vs CPU " << expected[i]
                          << " (tolerance " << tol << ")";
            ++reported;
        }
    }
}

// ||actual - expected|| / ||expected|| (in double; NaN when either holds a NaN or the
// sizes differ, so that a comparison with it fails). Elements equal to `fill` on both
// sides (padding a kernel must leave alone) are left out of both norms.
inline double relative_error(const std::vector<float>& actual, const std::vector<float>& expected,
                             float fill = NAN)
{
    if (actual.size() != expected.size()) {
        return NAN;
    }
    double diff = 0, ref = 0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        if (actual[i] == fill && expected[i] == fill) {
            continue;
        }
        const double a = actual[i], e = expected[i];
        diff += (a - e) * (a - e);
        ref += e * e;
    }
    return ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

}  // namespace moesim::kernels::test
