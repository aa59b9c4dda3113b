// Small host-side helpers for the CUDA kernels and their callers: device detection,
// CUDA/cuBLAS return codes turned into exceptions naming the call, an RAII device buffer,
// stream-ordered scratch and an RAII cuBLAS handle. Built only with the CUDA toolkit (MOESIM_KERNELS_CUDA).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

namespace moesim::kernels::cuda {

// Thrown for any failing CUDA or cuBLAS call; what() names the call and the error.
struct CudaError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void check(cudaError_t status, const char* call);
void check(cublasStatus_t status, const char* call);

// True when the runtime loads and sees at least one GPU (cudaGetDeviceCount > 0).
bool device_available();

// A device array of n elements of T, freed on destruction.
template <class T>
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t n) : size_(n)
    {
        if (n > 0) {
            void* p = nullptr;
            check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
            data_ = static_cast<T*>(p);
        }
    }
    explicit DeviceBuffer(std::span<const T> host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer()
    {
        if (data_) {
            cudaFree(data_);
        }
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : data_(o.data_), size_(o.size_)
    {
        o.data_ = nullptr;
        o.size_ = 0;
    }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept
    {
        std::swap(data_, o.data_);
        std::swap(size_, o.size_);
        return *this;
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }

    void upload(std::span<const T> host)
    {
        if (host.size() != size_) {
            throw std::invalid_argument("DeviceBuffer::upload: size mismatch");
        }
        if (size_ > 0) {
            check(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice),
                  "cudaMemcpy(host to device)");
        }
    }
    std::vector<T> download() const
    {
        std::vector<T> host(size_);
        if (size_ > 0) {
            check(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost),
                  "cudaMemcpy(device to host)");
        }
        return host;
    }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

// Scratch from the stream-ordered allocator: cudaMallocAsync on `stream`, cudaFreeAsync
// on the same stream when destroyed (also when a later call throws), so work issued on
// the stream before then may still use it.
class StreamScratch {
public:
    StreamScratch(std::size_t bytes, cudaStream_t stream) : stream_(stream)
    {
        check(cudaMallocAsync(&data_, bytes > 0 ? bytes : 1, stream), "cudaMallocAsync");
    }
    ~StreamScratch() { cudaFreeAsync(data_, stream_); }
    StreamScratch(const StreamScratch&) = delete;
    StreamScratch& operator=(const StreamScratch&) = delete;
    template <class T>
    T* as() const
    {
        return static_cast<T*>(data_);
    }

private:
    void* data_ = nullptr;
    cudaStream_t stream_;
};

// The stream a cuBLAS handle issues its work on.
cudaStream_t stream_of(cublasHandle_t handle);

// A cuBLAS handle, created on construction and destroyed with the object.
class CublasHandle {
public:
    CublasHandle();
    ~CublasHandle();
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    cublasHandle_t get() const { return handle_; }

private:
    cublasHandle_t handle_ = nullptr;
};

}  // namespace moesim::kernels::cuda
