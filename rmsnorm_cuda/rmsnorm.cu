// RMSNorm forward on CUDA with Hugging Face Llama rounding:
//   y = weight * T(x_f32 * rsqrt(mean(x_f32^2) + eps))
// where the normalized row is rounded to the input dtype T *before* the weight
// multiply, and the product is formed in the promoted dtype of weight and T.

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/all.h>

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

// ATen forms mean(x^2) as a sum of rounded squares times a factor, and the
// inverse RMS with rsqrtf; doing the same keeps the rounding of HF eager.
__device__ __forceinline__ float inverse_rms(float sum_sq, float mean_factor, float eps) {
  return rsqrtf(__fadd_rn(__fmul_rn(sum_sq, mean_factor), eps));
}

template <typename T, typename W, bool kHasWeight>
__device__ __forceinline__ out_t<T, W, kHasWeight> normalize(float x, float inv_rms, W w) {
  const T normed = static_cast<T>(__fmul_rn(x, inv_rms));  // round to T first, as HF does
  if constexpr (kHasWeight) {
    return static_cast<W>(__fmul_rn(static_cast<float>(w), static_cast<float>(normed)));
  } else {
    return normed;
  }
}

// Rows short enough to live in registers: one read of x, one write of y.
template <typename T, typename W, int kVec, int kVecsPerThread, bool kHasWeight>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_rows_kernel(
    out_t<T, W, kHasWeight>* __restrict__ out,  // [rows, hidden], contiguous
    const T* __restrict__ input,                // rows placed by `layout`
    const W* __restrict__ weight,               // [hidden], null if !kHasWeight
    const RowLayout layout, const int threads_per_row_log2, const float mean_factor,
    const float eps) {
  using O = out_t<T, W, kHasWeight>;
  const int threads_per_row = 1 << threads_per_row_log2;
  const int lane = threadIdx.x & (threads_per_row - 1);
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x >> threads_per_row_log2) +
                      (threadIdx.x >> threads_per_row_log2);
  const bool active = row < layout.rows;  // idle threads still join the reduction
  const int num_vecs = int(layout.hidden / kVec);

  Vec<T, kVec> x[kVecsPerThread];
  float sum_sq = 0.f;
  if (active) {
    const T* x_row = input + layout.offset_of(row);
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int v = lane + k * threads_per_row;
      if (v < num_vecs) x[k] = load_vec<T, kVec>(x_row + int64_t(v) * kVec);
    }
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int v = lane + k * threads_per_row;
      if (v < num_vecs) {
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
          const float f = static_cast<float>(x[k].v[i]);
          sum_sq = __fadd_rn(sum_sq, __fmul_rn(f, f));
        }
      }
    }
  }
  sum_sq = row_sum(sum_sq, threads_per_row_log2);
  if (!active) return;
  const float inv_rms = inverse_rms(sum_sq, mean_factor, eps);

  O* out_row = out + row * layout.hidden;
#pragma unroll
  for (int k = 0; k < kVecsPerThread; ++k) {
    const int v = lane + k * threads_per_row;
    if (v < num_vecs) {
      Vec<W, kVec> w;
      if constexpr (kHasWeight) w = load_vec<W, kVec>(weight + int64_t(v) * kVec);
      Vec<O, kVec> y;
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        y.v[i] = normalize<T, W, kHasWeight>(static_cast<float>(x[k].v[i]), inv_rms,
                                             kHasWeight ? w.v[i] : W(0));
      }
      store_vec<O, kVec>(out_row + int64_t(v) * kVec, y);
    }
  }
}

// Rows too long for registers (hidden beyond 128K bf16, or long odd rows):
// one block per row, x read twice (the second read mostly hits L2).
template <typename T, typename W, int kVec, bool kHasWeight>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_wide_kernel(
    out_t<T, W, kHasWeight>* __restrict__ out, const T* __restrict__ input,
    const W* __restrict__ weight, const RowLayout layout, const int threads_per_row_log2,
    const float mean_factor, const float eps) {
  using O = out_t<T, W, kHasWeight>;
  const int64_t row = blockIdx.x;
  const int num_vecs = int(layout.hidden / kVec);
  const T* x_row = input + layout.offset_of(row);

  float sum_sq = 0.f;
  for (int v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    const Vec<T, kVec> x = load_vec<T, kVec>(x_row + int64_t(v) * kVec);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float f = static_cast<float>(x.v[i]);
      sum_sq = __fadd_rn(sum_sq, __fmul_rn(f, f));
    }
  }
  sum_sq = row_sum(sum_sq, threads_per_row_log2);
  const float inv_rms = inverse_rms(sum_sq, mean_factor, eps);

  O* out_row = out + row * layout.hidden;
  for (int v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    const Vec<T, kVec> x = load_vec<T, kVec>(x_row + int64_t(v) * kVec);
    Vec<W, kVec> w;
    if constexpr (kHasWeight) w = load_vec<W, kVec>(weight + int64_t(v) * kVec);
    Vec<O, kVec> y;
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      y.v[i] = normalize<T, W, kHasWeight>(static_cast<float>(x.v[i]), inv_rms,
                                           kHasWeight ? w.v[i] : W(0));
    }
    store_vec<O, kVec>(out_row + int64_t(v) * kVec, y);
  }
}

template <typename T, typename W, int kVec, bool kHasWeight>
void launch_with_vec(const LaunchConfig& config, void* out, const void* input, const void* weight,
                     const RowLayout& layout, float mean_factor, float eps, cudaStream_t stream) {
  using O = out_t<T, W, kHasWeight>;
  auto* out_ptr = static_cast<O*>(out);
  const auto* in_ptr = static_cast<const T*>(input);
  const auto* w_ptr = static_cast<const W*>(weight);
  const int log2 = config.threads_per_row_log2;

  if (config.wide) {
    rms_norm_wide_kernel<T, W, kVec, kHasWeight><<<dim3(layout.rows), kWideThreadsPerBlock, 0, stream>>>(
        out_ptr, in_ptr, w_ptr, layout, log2, mean_factor, eps);
    return;
  }
  const dim3 grid((layout.rows + config.rows_per_block - 1) / config.rows_per_block);
  const int block = config.threads_per_block();
#define RMSNORM_LAUNCH_ROWS(NV)                                                          \
  rms_norm_rows_kernel<T, W, kVec, NV, kHasWeight><<<grid, block, 0, stream>>>(          \
      out_ptr, in_ptr, w_ptr, layout, log2, mean_factor, eps)
  if constexpr (kVec == 1) {
    RMSNORM_LAUNCH_ROWS(16);
  } else {
    switch (config.vecs_per_thread) {
      case 1: RMSNORM_LAUNCH_ROWS(1); break;
      case 2: RMSNORM_LAUNCH_ROWS(2); break;
      case 4: RMSNORM_LAUNCH_ROWS(4); break;
      case 8: RMSNORM_LAUNCH_ROWS(8); break;
      default: RMSNORM_LAUNCH_ROWS(16); break;
    }
  }
#undef RMSNORM_LAUNCH_ROWS
}

// Widest vector (16 bytes of input) every pointer, stride and the hidden size allow.
template <typename T, typename W, typename O>
int pick_vector_width(const void* out, const void* input, const void* weight, const RowLayout& layout) {
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
            cudaStream_t stream) {
  using O = out_t<T, W, kHasWeight>;
  const int vec = pick_vector_width<T, W, O>(out, input, weight, layout);
  const LaunchConfig config = pick_launch_config(layout.rows, layout.hidden, vec);
  // ATen's mean: float(number of outputs) / float(number of inputs).
  const float mean_factor =
      static_cast<float>(layout.rows) / static_cast<float>(layout.rows * layout.hidden);
  constexpr int kFull = 16 / sizeof(T);
  if (vec == kFull) {
    launch_with_vec<T, W, kFull, kHasWeight>(config, out, input, weight, layout, mean_factor, eps, stream);
  } else {
    launch_with_vec<T, W, 1, kHasWeight>(config, out, input, weight, layout, mean_factor, eps, stream);
  }
}

}  // namespace rmsnorm

void rms_norm_cuda(torch::Tensor& out, const torch::Tensor& input,
                   const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                   double epsilon) {
  const c10::cuda::OptionalCUDAGuard device_guard(input.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const float eps = static_cast<float>(epsilon);
  const void* w_ptr = weight ? weight->data_ptr() : nullptr;

  // Dtype dispatch at the edge; the binding has already rejected other dtypes
  // and weights that are neither the input dtype nor float32.
  auto dispatch = [&](auto input_tag) {
    using T = decltype(input_tag);
    if (!weight) {
      rmsnorm::launch<T, T, false>(out.data_ptr(), input.data_ptr(), nullptr, layout, eps, stream);
    } else if (weight->scalar_type() == input.scalar_type()) {
      rmsnorm::launch<T, T, true>(out.data_ptr(), input.data_ptr(), w_ptr, layout, eps, stream);
    } else {
      rmsnorm::launch<T, float, true>(out.data_ptr(), input.data_ptr(), w_ptr, layout, eps, stream);
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
