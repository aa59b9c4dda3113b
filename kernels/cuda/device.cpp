// CUDA/cuBLAS error checks, device detection and the cuBLAS handle.
#include "kernels/cuda/device.hpp"

#include <string>

namespace moesim::kernels::cuda {

void check(cudaError_t status, const char* call)
{
    if (status != cudaSuccess) {
        throw CudaError(std::string(call) + " failed: " + cudaGetErrorName(status) + " (" +
                        cudaGetErrorString(status) + ")");
    }
}

void check(cublasStatus_t status, const char* call)
{
    if (status != CUBLAS_STATUS_SUCCESS) {
        throw CudaError(std::string(call) + " failed: " + cublasGetStatusName(status) + " (" +
                        cublasGetStatusString(status) + ")");
    }
}

bool device_available()
{
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error so later calls start clean
        return false;
    }
    return count > 0;
}

cudaStream_t stream_of(cublasHandle_t handle)
{
    cudaStream_t stream = nullptr;
    check(cublasGetStream(handle, &stream), "cublasGetStream");
    return stream;
}

CublasHandle::CublasHandle()
{
    check(cublasCreate(&handle_), "cublasCreate");
}

CublasHandle::~CublasHandle()
{
    if (handle_) {
        cublasDestroy(handle_);
    }
}

}  // namespace moesim::kernels::cuda
