#pragma once

// The ATen names our kernels use (rmsnorm_cpu/, rmsnorm_cuda/, dtype_dispatch.h),
// spelled with torch's stable C ABI only, for the torch-stable-abi variants.
//
// The kernel sources are compiled unchanged: the builder puts compat/ first on
// the include path of a stable build, and its <torch/all.h>, <ATen/Parallel.h>,
// <c10/cuda/CUDAGuard.h>, ... include this header instead of ATen. Everything
// here is header-only over torch/csrc/stable and torch/headeronly; the build
// defines TORCH_TARGET_VERSION, under which torch's own non-stable headers
// (c10/util/Half.h, ATen/...) refuse to compile, so nothing of ATen can slip in.
// A kernel that starts using an ATen call not listed here fails to compile in
// the stable build, loudly.

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Exception.h>
#include <torch/headeronly/util/Half.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <vector>

#if defined(CUDA_KERNEL)
#include <cuda_runtime.h>
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>

#include <atomic>
#include <mutex>
#endif

#ifndef TORCH_CHECK
#define TORCH_CHECK(cond, ...) STD_TORCH_CHECK(cond, __VA_ARGS__)
#endif

namespace at {
using ScalarType = torch::headeronly::ScalarType;
constexpr ScalarType kFloat = ScalarType::Float;
constexpr ScalarType kHalf = ScalarType::Half;
constexpr ScalarType kBFloat16 = ScalarType::BFloat16;
constexpr ScalarType kDouble = ScalarType::Double;

template <class F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain_size, const F& f) {
  torch::stable::parallel_for(begin, end, grain_size, f);
}
}  // namespace at

namespace torch {

// `input.options().dtype(at::kFloat)`: what a new tensor is made like.
struct __attribute__((visibility("hidden"))) CompatOptions {
  torch::stable::Device device;
  at::ScalarType scalar_type;
  CompatOptions dtype(at::ScalarType other) const { return {device, other}; }
};

// torch::Tensor for the kernels: the stable tensor plus the few ATen members
// they call that torch::stable::Tensor spells differently.
class __attribute__((visibility("hidden"))) Tensor : public torch::stable::Tensor {
 public:
  Tensor() = default;
  Tensor(const torch::stable::Tensor& other) : torch::stable::Tensor(other) {}  // NOLINT: implicit on purpose
  using torch::stable::Tensor::data_ptr;
  template <typename T>
  T* data_ptr() const {
    return mutable_data_ptr<T>();
  }
  CompatOptions options() const { return {device(), scalar_type()}; }
};

inline Tensor empty(std::initializer_list<int64_t> sizes, const CompatOptions& options) {
  const std::vector<int64_t> dims(sizes);
  return torch::stable::empty(dims, options.scalar_type, std::nullopt, options.device);
}

}  // namespace torch

#if defined(CUDA_KERNEL)

#define C10_CUDA_CHECK(expr)                                                                        \
  do {                                                                                              \
    const cudaError_t rmsnorm_compat_err = (expr);                                                  \
    STD_TORCH_CHECK(rmsnorm_compat_err == cudaSuccess, "CUDA error: ", cudaGetErrorString(rmsnorm_compat_err)); \
  } while (0)
#define C10_CUDA_KERNEL_LAUNCH_CHECK() C10_CUDA_CHECK(cudaGetLastError())

namespace c10::cuda {
// Sets the tensor's device for the scope (torch's own guard, through the C ABI).
class OptionalCUDAGuard {
 public:
  explicit OptionalCUDAGuard(const torch::stable::Device& device) : guard_(device.index()) {}

 private:
  torch::stable::accelerator::DeviceGuard guard_;
};
}  // namespace c10::cuda

namespace at::cuda {
inline cudaStream_t getCurrentCUDAStream(int device) {
  void* stream = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(device, &stream));
  return static_cast<cudaStream_t>(stream);
}

// cudaGetDeviceProperties once per device, as ATen caches them. (Not
// std::call_once: that imports pthread_once@GLIBC_2.34, past manylinux_2_28.)
inline const cudaDeviceProp* getDeviceProperties(int device) {
  constexpr int kMaxDevices = 64;
  static std::atomic<bool> ready[kMaxDevices];
  static cudaDeviceProp props[kMaxDevices];
  static std::mutex mutex;
  STD_TORCH_CHECK(device >= 0 && device < kMaxDevices, "device index out of range");
  if (!ready[device].load(std::memory_order_acquire)) {
    const std::lock_guard<std::mutex> lock(mutex);
    if (!ready[device].load(std::memory_order_relaxed)) {
      C10_CUDA_CHECK(cudaGetDeviceProperties(&props[device], device));
      ready[device].store(true, std::memory_order_release);
    }
  }
  return &props[device];
}
}  // namespace at::cuda

#endif  // CUDA_KERNEL
