#pragma once

// Device helpers shared by the forward, fused-add and backward kernels: float
// conversion, the row reduction, the inverse RMS, the per-element rounding of
// each NormOrder, and programmatic dependent launch. Host launch helpers at
// the end.

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/all.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>

#include "dtype_dispatch.h"
#include "launch_config.h"
#include "norm_order.h"
#include "row_layout.h"
#include "vector_io.cuh"

namespace rmsnorm {

// bf16 -> fp32 is a 16-bit shift; written as one, the compiler recomputes it
// where needed instead of keeping a float copy of the row live (95 registers
// instead of 60 for bf16 with cvt.f32.bf16, which halved occupancy).
__device__ __forceinline__ float to_float(c10::BFloat16 v) { return __uint_as_float(uint32_t(v.x) << 16); }
__device__ __forceinline__ float to_float(c10::Half v) { return static_cast<float>(v); }
__device__ __forceinline__ float to_float(float v) { return v; }

// Half `high` of a word of two bf16/fp16 values, as float.
template <typename T>
__device__ __forceinline__ float half_word_as_float(uint32_t word, bool high) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return __uint_as_float(high ? (word & 0xffff0000u) : (word << 16));
  } else {
    return to_float(T(uint16_t(high ? (word >> 16) : (word & 0xffffu)), T::from_bits()));
  }
}

// Element i (a constant in unrolled loops) of a packed vector, as float.
template <typename T, int N>
__device__ __forceinline__ float element_as_float(const PackedVec<T, N>& packed, int i) {
  if constexpr (sizeof(T) == 4) {
    return __uint_as_float(packed.words[i]);
  } else {
    return half_word_as_float<T>(packed.words[i / 2], (i & 1) != 0);
  }
}

// Two floats rounded to T (bf16/fp16) in one conversion, lo in the low half:
// cvt.rn.{bf16,f16}x2.f32, the instruction static_cast<T> of each (cvt.rn
// to one bf16/fp16 on sm_80+) pairs into.
template <typename T>
__device__ __forceinline__ uint32_t round_pair(float lo, float hi) {
  uint32_t packed;
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
  } else {
    static_assert(std::is_same_v<T, c10::Half>, "bf16 or fp16");
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
  }
  return packed;
}

// a * b of two pairs of bf16/fp16 values, each rounded once to the type:
// fma with -0, and the product of two 16-bit values is exact in fp32 (a bf16
// product too small for fp32's subnormals rounds to zero either way), so
// this is static_cast<T>(__fmul_rn(a, b)) of each, ATen's bf16/fp16 multiply.
template <typename T>
__device__ __forceinline__ uint32_t multiply_pair(uint32_t a, uint32_t b) {
  uint32_t product;
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(product) : "r"(a), "r"(b), "r"(0x80008000u));
  } else {
    static_assert(std::is_same_v<T, c10::Half>, "bf16 or fp16");
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(product) : "r"(a), "r"(b), "r"(0x80008000u));
  }
  return product;
}

template <typename T>
__device__ __forceinline__ void set_pair(T& lo, T& hi, uint32_t packed) {
  lo = T(uint16_t(packed & 0xffffu), T::from_bits());
  hi = T(uint16_t(packed >> 16), T::from_bits());
}

// Sums each of `values` over the threads of one row; every thread gets the
// totals. Fixed order (butterfly inside a warp, then warps in index order), so
// the result is the same on every run. Rows wider than a warp go through
// shared memory; kReused adds the barrier a caller needs to call this again
// (a loop over rows) without overwriting sums still being read.
// The butterfly inside a warp: each run of threads_per_row lanes (up to 32)
// gets its totals.
template <int N>
__device__ __forceinline__ void warp_row_sum(float (&values)[N], int threads_per_row) {
  const int width = threads_per_row < 32 ? threads_per_row : 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    if (offset < width) {
#pragma unroll
      for (int n = 0; n < N; ++n) values[n] += __shfl_xor_sync(0xffffffffu, values[n], offset);
    }
  }
}

template <int N, bool kReused = false>
__device__ __forceinline__ void row_sum(float (&values)[N], int threads_per_row_log2) {
  const int threads_per_row = 1 << threads_per_row_log2;
  warp_row_sum(values, threads_per_row);
  if (threads_per_row <= 32) return;

  __shared__ float warp_sums[N][32];
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
#pragma unroll
    for (int n = 0; n < N; ++n) warp_sums[n][warp] = values[n];
  }
  __syncthreads();
  const int warps_per_row = threads_per_row >> 5;
  const int first_warp = (warp / warps_per_row) * warps_per_row;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    float total = 0.f;
    for (int i = 0; i < warps_per_row; ++i) total += warp_sums[n][first_warp + i];
    values[n] = total;
  }
  if constexpr (kReused) __syncthreads();
}

__device__ __forceinline__ float row_sum(float value, int threads_per_row_log2) {
  float values[1] = {value};
  row_sum<1>(values, threads_per_row_log2);
  return values[0];
}

// ATen forms mean(x^2) as a sum of rounded squares times a factor, and the
// inverse RMS with rsqrtf; doing the same keeps the rounding of HF eager.
__device__ __forceinline__ float inverse_rms(float sum_sq, float mean_factor, float eps) {
  return rsqrtf(__fadd_rn(__fmul_rn(sum_sq, mean_factor), eps));
}

// The factor the normalized value is multiplied by in fp32 (Olmo and Gemma
// orders): the weight, or 1 + weight rounded to fp32 as Gemma's
// `1.0 + self.weight.float()` does. A select, not a branch: this runs per
// element, and branches there cost 0.7 us per decode call on the H100.
template <typename W>
__device__ __forceinline__ float fp32_scale(W w, bool add_one) {
  const float f = to_float(w);
  const float one_plus = __fadd_rn(1.f, f);
  return add_one ? one_plus : f;
}

// One output element from x (fp32) and the row's inverse RMS. kFp32Scale:
// Olmo/Gemma order (one cast at the end), else Llama order (see
// norm_order.h); fixed per kernel instance for the same reason as above. O is
// the output dtype: W for a Llama-order norm with a weight, T otherwise (or
// the fused op's x dtype).
template <typename T, typename W, typename O, bool kHasWeight, bool kFp32Scale>
__device__ __forceinline__ O normalize(float x, float inv_rms, W w, bool add_one) {
  const float normed = __fmul_rn(x, inv_rms);
  if constexpr (!kHasWeight) {
    return static_cast<O>(static_cast<T>(normed));
  } else if constexpr (kFp32Scale) {
    return static_cast<O>(__fmul_rn(fp32_scale(w, add_one), normed));
  } else {
    const T rounded = static_cast<T>(normed);  // round to T first, as HF does
    return static_cast<O>(__fmul_rn(to_float(w), to_float(rounded)));
  }
}

// normalize() over one vector of N elements (w unused without a weight).
// bf16/fp16 in the Llama order round in pairs (round_pair: half the
// conversions of one per element, and on the FMA pipe), with the same bits.
template <typename T, typename W, typename O, int N, bool kHasWeight, bool kFp32Scale>
__device__ __forceinline__ Vec<O, N> normalize_vec(const Vec<T, N>& x, float inv_rms, const Vec<W, N>& w,
                                                   bool add_one) {
  Vec<O, N> y;
  constexpr bool kPairs = sizeof(T) == 2 && sizeof(O) == 2 && N % 2 == 0 && !kFp32Scale &&
                          (kHasWeight || std::is_same_v<O, T>);
  if constexpr (kPairs) {
#pragma unroll
    for (int i = 0; i < N; i += 2) {
      const uint32_t rounded =
          round_pair<T>(__fmul_rn(to_float(x.v[i]), inv_rms), __fmul_rn(to_float(x.v[i + 1]), inv_rms));
      if constexpr (kHasWeight && std::is_same_v<W, T> && std::is_same_v<O, T>) {
        // HF's `weight * hidden_states.to(input_dtype)`: a 16-bit multiply
        set_pair(y.v[i], y.v[i + 1], multiply_pair<T>(bits_of_pair(w.v[i], w.v[i + 1]), rounded));
      } else if constexpr (kHasWeight) {
        const float lo = __fmul_rn(to_float(w.v[i]), half_word_as_float<T>(rounded, false));
        const float hi = __fmul_rn(to_float(w.v[i + 1]), half_word_as_float<T>(rounded, true));
        set_pair(y.v[i], y.v[i + 1], round_pair<O>(lo, hi));
      } else {
        set_pair(y.v[i], y.v[i + 1], rounded);
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      y.v[i] = normalize<T, W, O, kHasWeight, kFp32Scale>(to_float(x.v[i]), inv_rms, kHasWeight ? w.v[i] : W(0.f),
                                                          add_one);
    }
  }
  return y;
}

// The weight in shared memory, for rows that start off a 16-byte boundary
// (odd hidden sizes such as 4097, storage offsets): their chunks meet the
// weight at any element offset, which global memory serves only element by
// element. Two copies for 2-byte weights, the second shifted by one element,
// so that every chunk finds its weights 4-byte aligned in one of them; zero
// padding on both sides covers the edge chunks that hang over the row.
template <typename W>
struct StagedWeight {
  static constexpr int kPad = 8;
  static constexpr int kCopies = sizeof(W) == 2 ? 2 : 1;
  __host__ __device__ static int copy_stride(int hidden) { return (hidden + 2 * kPad + 8) & ~7; }
  static size_t bytes(int hidden) { return size_t(kCopies) * copy_stride(hidden) * sizeof(W); }
};

template <typename W>
__device__ __forceinline__ void stage_weight(W* staged, const W* weight, int hidden) {
  using Staged = StagedWeight<W>;
  const int stride = Staged::copy_stride(hidden);
  for (int i = threadIdx.x; i < stride; i += blockDim.x) {
#pragma unroll
    for (int copy = 0; copy < Staged::kCopies; ++copy) {
      const int e = i - Staged::kPad - copy;
      staged[copy * stride + i] = (e >= 0 && e < hidden) ? weight[e] : W(0.f);
    }
  }
  __syncthreads();
}

// Weight elements [first, first + N), first >= -kPad + 1, first + N <= hidden + kPad.
template <int N, typename W>
__device__ __forceinline__ Vec<W, N> staged_weight_chunk(const W* staged, int hidden, int first) {
  using Staged = StagedWeight<W>;
  Vec<W, N> w;
  int index = first + Staged::kPad;
  if constexpr (sizeof(W) == 2) {
    if (index & 1) index += Staged::copy_stride(hidden) + 1;  // the shifted copy: even index
    const uint32_t* words = reinterpret_cast<const uint32_t*>(staged + index);
#pragma unroll
    for (int i = 0; i < N / 2; ++i) reinterpret_cast<uint32_t*>(w.v)[i] = words[i];
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) w.v[i] = staged[index + i];
  }
  return w;
}

// The in-row elements of an edge chunk, zero outside the row. Out of line for
// the same reason as the stores below; element loads (not the chunk's whole
// 16-byte window) so that no byte outside the row is read: initcheck flags
// the padding of an allocation as uninitialized even when it is masked off.
template <typename T, int N>
__device__ __noinline__ Vec<T, N> load_chunk_elements(const T* row, int first, int hidden) {
  Vec<T, N> value;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const int e = first + i;
    value.v[i] = (e >= 0 && e < hidden) ? row[e] : T(0.f);
  }
  return value;
}

// Element stores of a chunk that hangs over the row's ends or whose output
// address is not 16-byte aligned. Out of line so that nvcc cannot predicate
// these stores onto every chunk of the unrolled loop (which halved the
// bandwidth of odd rows).
template <typename O, int N>
__device__ __noinline__ void store_chunk_elements(O* out_row, int first, int hidden, Vec<O, N> y) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const int e = first + i;
    if (e >= 0 && e < hidden) out_row[e] = y.v[i];
  }
}

// Programmatic dependent launch (sm_90): the next kernel in the stream may be
// scheduled while this one finishes, and this one starts its blocks before the
// previous kernel has drained. Every global read waits for the previous grid,
// so the overlap never reads data that is still being written.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// ---- host side ----

// PDL needs sm_90; RMSNORM_DISABLE_PDL=1 turns it off (for A/B timing).
inline bool use_programmatic_launch(int device) {
  static const bool disabled = [] {
    const char* env = std::getenv("RMSNORM_DISABLE_PDL");
    return env != nullptr && env[0] == '1';
  }();
  return !disabled && at::cuda::getDeviceProperties(device)->major >= 9;
}

// The order in which the forward sums a row's squares. Default ("aten"):
// the order ATen's CUDA `mean` picks for that shape, so the result is bit
// for bit HF's on CUDA at every batch shape (and, like HF, depends on the
// number of rows). RMSNORM_SUM_ORDER=batch_invariant: one order per hidden
// size, whatever the number of rows (a token normalizes to the same bits at
// decode and in prefill), within an fp32 ulp of the inverse RMS of HF's, and
// faster on large shapes (benchmarks/NOTES.md v10). Read once per process.
inline bool use_aten_sum_order() {
  static const bool aten = [] {
    const char* env = std::getenv("RMSNORM_SUM_ORDER");
    const std::string order = env == nullptr ? "" : env;
    TORCH_CHECK(order.empty() || order == "aten" || order == "batch_invariant",
                "rms_norm: RMSNORM_SUM_ORDER must be 'aten' (the default: HF's bits) or 'batch_invariant', got '",
                order, "'");
    return order != "batch_invariant";
  }();
  return aten;
}

// A block may take this much shared memory, static and dynamic together,
// without cudaFuncAttributeMaxDynamicSharedMemorySize.
constexpr size_t kDefaultSharedBytes = 48 * 1024;
// At least the static shared memory of every kernel here (5 KB the most:
// tests/test_build.py reads it from the built library).
constexpr size_t kStaticSharedBound = 8 * 1024;

// Lets `kernel` take `bytes` of dynamic shared memory on `device` beside its
// static shared memory. The driver call is made once per kernel, device and
// larger size, not on every launch (the span kernel takes > 48 KB at 8x4096
// decode); sizes every launch may take return before the lock.
template <typename... KernelArgs>
void allow_dynamic_smem(void (*kernel)(KernelArgs...), size_t bytes, int device) {
  if (bytes + kStaticSharedBound <= kDefaultSharedBytes) return;
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, size_t> allowed;
  const std::lock_guard<std::mutex> lock(mutex);
  size_t& granted = allowed[{reinterpret_cast<const void*>(kernel), device}];
  if (granted >= bytes) return;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  granted = bytes;
}

template <typename... KernelArgs, typename... Args>
void launch_kernel_with_smem(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, cudaStream_t stream,
                             bool programmatic, size_t dynamic_smem, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = dynamic_smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = programmatic ? 1 : 0;
  C10_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

template <typename... KernelArgs, typename... Args>
void launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, cudaStream_t stream,
                   bool programmatic, Args&&... args) {
  launch_kernel_with_smem(kernel, grid, block, stream, programmatic, 0, std::forward<Args>(args)...);
}

// ATen's mean: float(number of outputs) / float(number of inputs).
inline float mean_factor_of(const RowLayout& layout) {
  return static_cast<float>(layout.rows) / static_cast<float>(layout.rows * layout.hidden);
}

template <typename T>
const T* data_of(const torch::Tensor& t) {
  return static_cast<const T*>(t.data_ptr());
}

template <typename T>
T* mutable_data_of(torch::Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

}  // namespace rmsnorm
