// RMSNorm forward on CUDA with Hugging Face Llama rounding:
//   y = weight * T(x_f32 * rsqrt(mean(x_f32^2) + eps))
// where the normalized row is rounded to the input dtype T *before* the weight
// multiply, and the product is formed in the promoted dtype of weight and T.

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/all.h>

#include <cstdlib>
#include <utility>

#include "launch_config.h"
#include "row_layout.h"
#include "vector_io.cuh"

namespace rmsnorm {

// The output dtype is torch.result_type(weight, input): W when a weight is
// given (W is T or float32), T for a weightless norm.
template <typename T, typename W, bool kHasWeight>
using out_t = std::conditional_t<kHasWeight, W, T>;

// Sum of `value` over the threads of one row; every thread gets the total.
// Fixed order (butterfly inside a warp, then warps in index order), so the
// result is the same on every run.
__device__ __forceinline__ float row_sum(float value, int threads_per_row_log2) {
  const int threads_per_row = 1 << threads_per_row_log2;
  const int width = threads_per_row < 32 ? threads_per_row : 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    if (offset < width) value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  if (threads_per_row <= 32) return value;

  __shared__ float warp_sums[32];
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) warp_sums[warp] = value;
  __syncthreads();
  const int warps_per_row = threads_per_row >> 5;
  const int first_warp = (warp / warps_per_row) * warps_per_row;
  float total = 0.f;
  for (int i = 0; i < warps_per_row; ++i) total += warp_sums[first_warp + i];
  return total;
}

// bf16 -> fp32 is a 16-bit shift; written as one, the compiler recomputes it
// where needed instead of keeping a float copy of the row live (95 registers
// instead of 60 for bf16 with cvt.f32.bf16, which halved occupancy).
__device__ __forceinline__ float to_float(c10::BFloat16 v) { return __uint_as_float(uint32_t(v.x) << 16); }
__device__ __forceinline__ float to_float(c10::Half v) { return static_cast<float>(v); }
__device__ __forceinline__ float to_float(float v) { return v; }

// ATen forms mean(x^2) as a sum of rounded squares times a factor, and the
// inverse RMS with rsqrtf; doing the same keeps the rounding of HF eager.
__device__ __forceinline__ float inverse_rms(float sum_sq, float mean_factor, float eps) {
  return rsqrtf(__fadd_rn(__fmul_rn(sum_sq, mean_factor), eps));
}

// Weight elements [first, first + N) as a vector: one aligned load in the row
// body, element loads (0 outside the row) at the edges and in rows whose
// start is not 16-byte aligned. The weight itself is 16-byte aligned (the
// host falls back to the wide kernel otherwise).
template <int N, typename W>
__device__ __forceinline__ Vec<W, N> load_weight_chunk(const W* weight, int first, int hidden) {
  if (first >= 0 && first + N <= hidden && is_aligned(weight + first, sizeof(Vec<W, N>))) {
    return load_vec<W, N>(weight + first);
  }
  Vec<W, N> w;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const int e = first + i;
    w.v[i] = (e >= 0 && e < hidden) ? weight[e] : W(0.f);
  }
  return w;
}

template <typename T, typename W, bool kHasWeight>
__device__ __forceinline__ out_t<T, W, kHasWeight> normalize(float x, float inv_rms, W w) {
  const T normed = static_cast<T>(__fmul_rn(x, inv_rms));  // round to T first, as HF does
  if constexpr (kHasWeight) {
    return static_cast<W>(__fmul_rn(to_float(w), to_float(normed)));
  } else {
    return normed;
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

// Rows short enough to live in registers: one read of x, one write of y.
//
// A row is cut into 16-byte chunks aligned in memory, the first and last of
// which may hang over the row's ends: rows of odd length (4097) or at odd
// addresses still move full 16-byte vectors through their body, and only the
// two edge chunks go element by element (out-of-row lanes hold 0, which adds
// nothing to the sum of squares).
//
// kAlignedRows (every row starts on a 16-byte boundary and spans whole chunks,
// as in every LLM's hidden states) compiles the edge handling away: with it
// present nvcc predicates the element loads and stores of the edge path onto
// every chunk, which cost 40% of bf16 bandwidth on the H100.
template <typename T, typename W, int kVecsPerThread, bool kHasWeight, bool kAlignedRows>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_rows_kernel(
    out_t<T, W, kHasWeight>* __restrict__ out,  // [rows, hidden], contiguous
    const T* __restrict__ input,                // rows placed by `layout`
    const W* __restrict__ weight,               // [hidden], null if !kHasWeight
    const RowLayout layout, const int threads_per_row_log2, const float mean_factor,
    const float eps) {
  using O = out_t<T, W, kHasWeight>;
  constexpr int kVec = 16 / sizeof(T);
  // A weight of the input's width is fetched with x, before the reduction, so
  // that decode-sized launches pay one memory latency instead of two.
  constexpr bool kPrefetchWeight = kHasWeight && sizeof(W) == sizeof(T) && kVecsPerThread <= 4;
  const int threads_per_row = 1 << threads_per_row_log2;
  const int lane = threadIdx.x & (threads_per_row - 1);
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x >> threads_per_row_log2) +
                      (threadIdx.x >> threads_per_row_log2);
  const bool active = row < layout.rows;  // idle threads still join the reduction
  const int hidden = int(layout.hidden);

  wait_for_previous_grid();
  const T* x_row = input + layout.offset_of(active ? row : 0);
  // Elements between the 16-byte boundary below the row start and the row start.
  const int head =
      kAlignedRows ? 0 : int((reinterpret_cast<std::uintptr_t>(x_row) / sizeof(T)) % kVec);
  const int num_chunks = (head + hidden + kVec - 1) / kVec;
  auto chunk_start = [&](int k) { return (lane + k * threads_per_row) * kVec - head; };
  auto chunk_in_row = [&](int k) { return lane + k * threads_per_row < num_chunks; };
  auto chunk_is_full = [&](int first) {
    return kAlignedRows || (first >= 0 && first + kVec <= hidden);
  };

  Vec<T, kVec> x[kVecsPerThread];
  Vec<W, kVec> w[kPrefetchWeight ? kVecsPerThread : 1];
  float sum_sq = 0.f;
  if (active) {
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (!chunk_in_row(k)) continue;
      const int first = chunk_start(k);
      // Edge chunks read their whole aligned 16-byte window and zero the lanes
      // outside the row: a window never leaves the 16-byte-aligned allocation
      // that holds the row, and element loads here (issued, predicated, for
      // every chunk) halved the bandwidth of odd rows.
      x[k] = load_vec<T, kVec>(x_row + first);
      if (!chunk_is_full(first)) {
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
          const int e = first + i;
          if (e < 0 || e >= hidden) x[k].v[i] = T(0.f);
        }
      }
    }
    if constexpr (kPrefetchWeight) {
#pragma unroll
      for (int k = 0; k < kVecsPerThread; ++k) {
        if (!chunk_in_row(k)) continue;
        if constexpr (kAlignedRows) {
          w[k] = load_vec<W, kVec>(weight + chunk_start(k));
        } else {
          w[k] = load_weight_chunk<kVec>(weight, chunk_start(k), hidden);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (!chunk_in_row(k)) continue;
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        const float f = to_float(x[k].v[i]);
        sum_sq = __fadd_rn(sum_sq, __fmul_rn(f, f));
      }
    }
  }
  sum_sq = row_sum(sum_sq, threads_per_row_log2);
  allow_next_grid();
  if (!active) return;
  const float inv_rms = inverse_rms(sum_sq, mean_factor, eps);

  O* out_row = out + row * layout.hidden;
#pragma unroll
  for (int k = 0; k < kVecsPerThread; ++k) {
    if (!chunk_in_row(k)) continue;
    const int first = chunk_start(k);
    Vec<W, kVec> wk;
    if constexpr (kPrefetchWeight) {
      wk = w[k];
    } else if constexpr (kHasWeight && kAlignedRows) {
      wk = load_vec<W, kVec>(weight + first);
    } else if constexpr (kHasWeight) {
      wk = load_weight_chunk<kVec>(weight, first, hidden);
    }
    Vec<O, kVec> y;
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      y.v[i] = normalize<T, W, kHasWeight>(to_float(x[k].v[i]), inv_rms,
                                           kHasWeight ? wk.v[i] : W(0.f));
    }
    if (kAlignedRows || (chunk_is_full(first) && is_aligned(out_row + first, sizeof(Vec<O, kVec>)))) {
      store_vec<O, kVec>(out_row + first, y);
    } else {
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        const int e = first + i;
        if (e >= 0 && e < hidden) out_row[e] = y.v[i];
      }
    }
  }
}

// Rows too long for registers (beyond 32K bf16 / 16K fp32):
// one block per row, x read twice (the second read mostly hits L2).
template <typename T, typename W, int kVec, bool kHasWeight>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_wide_kernel(
    out_t<T, W, kHasWeight>* __restrict__ out, const T* __restrict__ input,
    const W* __restrict__ weight, const RowLayout layout, const int threads_per_row_log2,
    const float mean_factor, const float eps) {
  using O = out_t<T, W, kHasWeight>;
  const int64_t row = blockIdx.x;
  const int num_vecs = int(layout.hidden / kVec);
  wait_for_previous_grid();
  const T* x_row = input + layout.offset_of(row);

  float sum_sq = 0.f;
  for (int v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    const Vec<T, kVec> x = load_vec<T, kVec>(x_row + int64_t(v) * kVec);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float f = to_float(x.v[i]);
      sum_sq = __fadd_rn(sum_sq, __fmul_rn(f, f));
    }
  }
  sum_sq = row_sum(sum_sq, threads_per_row_log2);
  allow_next_grid();
  const float inv_rms = inverse_rms(sum_sq, mean_factor, eps);

  O* out_row = out + row * layout.hidden;
  for (int v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    const Vec<T, kVec> x = load_vec<T, kVec>(x_row + int64_t(v) * kVec);
    Vec<W, kVec> w;
    if constexpr (kHasWeight) w = load_vec<W, kVec>(weight + int64_t(v) * kVec);
    Vec<O, kVec> y;
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      y.v[i] = normalize<T, W, kHasWeight>(to_float(x.v[i]), inv_rms,
                                           kHasWeight ? w.v[i] : W(0));
    }
    store_vec<O, kVec>(out_row + int64_t(v) * kVec, y);
  }
}

// PDL needs sm_90; RMSNORM_DISABLE_PDL=1 turns it off (for A/B timing).
inline bool use_programmatic_launch(int device) {
  static const bool disabled = [] {
    const char* env = std::getenv("RMSNORM_DISABLE_PDL");
    return env != nullptr && env[0] == '1';
  }();
  return !disabled && at::cuda::getDeviceProperties(device)->major >= 9;
}

template <typename... KernelArgs, typename... Args>
void launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, cudaStream_t stream,
                   bool programmatic, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = programmatic ? 1 : 0;
  C10_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

// Widest vector the wide kernel may use: 16 bytes of input when every
// pointer, stride and the hidden size allow it, else single elements.
template <typename T, typename W, typename O>
int wide_vector_width(const void* out, const void* input, const void* weight, const RowLayout& layout) {
  constexpr int kFull = 16 / sizeof(T);
  if (layout.hidden % kFull != 0) return 1;
  for (int d = 0; d < layout.num_dims; ++d) {
    if (layout.strides[d] % kFull != 0) return 1;
  }
  if (!is_aligned(static_cast<const T*>(input), sizeof(T) * kFull)) return 1;
  if (!is_aligned(static_cast<const O*>(out), sizeof(O) * kFull)) return 1;
  if (weight != nullptr && !is_aligned(static_cast<const W*>(weight), sizeof(W) * kFull)) return 1;
  return kFull;
}

template <typename T, typename W, bool kHasWeight>
void launch(void* out, const void* input, const void* weight, const RowLayout& layout, float eps,
            int device, cudaStream_t stream) {
  using O = out_t<T, W, kHasWeight>;
  constexpr int kFull = 16 / sizeof(T);
  auto* out_ptr = static_cast<O*>(out);
  const auto* in_ptr = static_cast<const T*>(input);
  const auto* w_ptr = static_cast<const W*>(weight);
  // ATen's mean: float(number of outputs) / float(number of inputs).
  const float mean_factor =
      static_cast<float>(layout.rows) / static_cast<float>(layout.rows * layout.hidden);
  const bool programmatic = use_programmatic_launch(device);

  // Chunks per row: ceil((head + hidden) / kFull) with head up to kFull - 1
  // when rows may start off a 16-byte boundary.
  const bool rows_aligned = wide_vector_width<T, W, O>(out, input, weight, layout) == kFull;
  const LaunchConfig config =
      pick_launch_config(layout.rows, layout.hidden + (rows_aligned ? 0 : 2 * (kFull - 1)), kFull);
  if (!config.wide) {
    const dim3 grid((layout.rows + config.rows_per_block - 1) / config.rows_per_block);
    const dim3 block(config.threads_per_block());
    const int log2 = config.threads_per_row_log2;
#define RMSNORM_LAUNCH_ROWS(NV)                                                                    \
  launch_kernel(rows_aligned ? rms_norm_rows_kernel<T, W, NV, kHasWeight, true>                     \
                             : rms_norm_rows_kernel<T, W, NV, kHasWeight, false>,                   \
                grid, block, stream, programmatic, out_ptr, in_ptr, w_ptr, layout, log2, mean_factor, eps)
    switch (config.vecs_per_thread) {
      case 1: RMSNORM_LAUNCH_ROWS(1); break;
      case 2: RMSNORM_LAUNCH_ROWS(2); break;
      case 4: RMSNORM_LAUNCH_ROWS(4); break;
      default: RMSNORM_LAUNCH_ROWS(8); break;
    }
#undef RMSNORM_LAUNCH_ROWS
    return;
  }
  const dim3 grid(layout.rows), block(kWideThreadsPerBlock);
  const int log2 = ceil_log2(kWideThreadsPerBlock);
  if (rows_aligned) {
    launch_kernel(rms_norm_wide_kernel<T, W, kFull, kHasWeight>, grid, block, stream, programmatic,
                  out_ptr, in_ptr, w_ptr, layout, log2, mean_factor, eps);
  } else {
    launch_kernel(rms_norm_wide_kernel<T, W, 1, kHasWeight>, grid, block, stream, programmatic,
                  out_ptr, in_ptr, w_ptr, layout, log2, mean_factor, eps);
  }
}

}  // namespace rmsnorm

void rms_norm_cuda(torch::Tensor& out, const torch::Tensor& input,
                   const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                   double epsilon) {
  const c10::cuda::OptionalCUDAGuard device_guard(input.device());
  const int device = input.get_device();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device);
  const float eps = static_cast<float>(epsilon);
  const void* w_ptr = weight ? weight->data_ptr() : nullptr;

  // Dtype dispatch at the edge; the binding has already rejected other dtypes
  // and weights that are neither the input dtype nor float32.
  auto dispatch = [&](auto input_tag) {
    using T = decltype(input_tag);
    if (!weight) {
      rmsnorm::launch<T, T, false>(out.data_ptr(), input.data_ptr(), nullptr, layout, eps, device, stream);
    } else if (weight->scalar_type() == input.scalar_type()) {
      rmsnorm::launch<T, T, true>(out.data_ptr(), input.data_ptr(), w_ptr, layout, eps, device, stream);
    } else {
      rmsnorm::launch<T, float, true>(out.data_ptr(), input.data_ptr(), w_ptr, layout, eps, device, stream);
    }
  };
  switch (input.scalar_type()) {
    case at::kFloat: dispatch(float{}); break;
    case at::kHalf: dispatch(at::Half{}); break;
    case at::kBFloat16: dispatch(at::BFloat16{}); break;
    default: TORCH_CHECK(false, "rms_norm: unsupported input dtype ", input.scalar_type());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
