#pragma once

// Aligned vectors of N elements, so that a thread moves 16 bytes of a bf16,
// fp16 or fp32 row with one instruction (LDG.128 / STG.128).

#include <cstdint>

namespace rmsnorm {

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> load_vec(const T* ptr) {
  return *reinterpret_cast<const Vec<T, N>*>(ptr);
}

template <typename T, int N>
__device__ __forceinline__ void store_vec(T* ptr, const Vec<T, N>& value) {
  *reinterpret_cast<Vec<T, N>*>(ptr) = value;
}

template <typename T>
__host__ __device__ inline bool is_aligned(const T* ptr, int64_t bytes) {
  return reinterpret_cast<std::uintptr_t>(ptr) % bytes == 0;
}

}  // namespace rmsnorm
