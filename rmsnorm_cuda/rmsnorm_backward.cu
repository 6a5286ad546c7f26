// RMSNorm backward on CUDA for every NormOrder, accumulated in fp32.
//
// With n = x * r, r = rsqrt(mean(x^2) + eps) and g the gradient reaching n
//   Llama: g = T(dy * w)           (autograd of `w * T(n)`), dw = sum dy * T(n)
//   Olmo:  g = dy * w              dw = sum dy * n
//   Gemma: g = dy * (1 + w)        dw = sum dy * n
// and dx = r * (g - n * mean(g * n)).
//
// dweight is deterministic: each block (each row slot of a block) accumulates
// its rows' contributions in registers and writes one partial row; a second
// kernel sums the partials column by column in a fixed order. No atomics.

#include <c10/cuda/CUDAGuard.h>
#include <torch/all.h>

#include "norm_math.cuh"

namespace rmsnorm {

template <typename T, typename W, typename G>
struct BackwardArgs {
  T* grad_input;            // [rows, hidden], contiguous
  const G* grad_output;     // [rows, hidden], contiguous
  const T* input;           // [rows, hidden], contiguous
  const W* weight;          // [hidden] or null
  float* partials;          // [num_partials, hidden] when a weight is given
  int64_t rows;
  int hidden;
  int threads_per_row_log2;
  float mean_factor;
  float eps;
  NormOrder order;
};

// The gradient reaching the normalized value n, before it meets r. The order
// is a template argument (kFp32Scale: Olmo/Gemma), not a per-element branch.
template <typename T, typename W, bool kHasWeight, bool kFp32Scale>
__device__ __forceinline__ float grad_of_normed(float dy, W w, bool add_one) {
  if constexpr (!kHasWeight) {
    return dy;
  } else if constexpr (kFp32Scale) {
    return __fmul_rn(dy, fp32_scale(w, add_one));
  } else {
    return to_float(static_cast<T>(__fmul_rn(dy, to_float(w))));
  }
}

// What dy multiplies for dweight: the normalized value as the forward used it.
template <typename T, bool kFp32Scale>
__device__ __forceinline__ float normed_for_weight(float normed) {
  return kFp32Scale ? normed : to_float(static_cast<T>(normed));
}

// Rows held in registers, 16-byte chunks, a persistent grid: the block walks
// over groups of rows_per_block rows and keeps its dweight share in registers
// (each thread owns the same columns in every row).
template <typename T, typename W, typename G, int kVecsPerThread, bool kHasWeight, bool kFp32Scale>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_backward_rows_kernel(
    const BackwardArgs<T, W, G> args) {
  constexpr int kVec = 16 / sizeof(T);
  const int threads_per_row = 1 << args.threads_per_row_log2;
  const int rows_per_block = blockDim.x >> args.threads_per_row_log2;
  const int lane = threadIdx.x & (threads_per_row - 1);
  const int slot = threadIdx.x >> args.threads_per_row_log2;
  const int num_chunks = args.hidden / kVec;
  const int64_t num_groups = (args.rows + rows_per_block - 1) / rows_per_block;
  auto chunk_in_row = [&](int k) { return lane + k * threads_per_row < num_chunks; };
  auto chunk_start = [&](int k) { return (lane + k * threads_per_row) * kVec; };

  const bool add_one = args.order == NormOrder::kGemma;
  float dw[kHasWeight ? kVecsPerThread : 1][kVec] = {};
  Vec<W, kVec> w[kHasWeight ? kVecsPerThread : 1];
  wait_for_previous_grid();
  if constexpr (kHasWeight) {
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (chunk_in_row(k)) w[k] = load_vec<W, kVec>(args.weight + chunk_start(k));
    }
  }

  // The next group's x and dy are requested before this group's reductions,
  // so that a block always has loads in flight (one row at a time left the
  // backward at 0.63 of the copy rate).
  Vec<T, kVec> x[kVecsPerThread], x_next[kVecsPerThread];
  Vec<G, kVec> dy[kVecsPerThread], dy_next[kVecsPerThread];
  auto row_of = [&](int64_t group) { return group * rows_per_block + slot; };
  auto load_group = [&](int64_t group, Vec<T, kVec>(&xs)[kVecsPerThread], Vec<G, kVec>(&dys)[kVecsPerThread]) {
    const int64_t row = row_of(group);
    if (group >= num_groups || row >= args.rows) return;
    const int64_t row_start = row * args.hidden;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (!chunk_in_row(k)) continue;
      xs[k] = load_vec_readonly<T, kVec>(args.input + row_start + chunk_start(k));
      dys[k] = load_vec_readonly<G, kVec>(args.grad_output + row_start + chunk_start(k));
    }
  };
  load_group(blockIdx.x, x, dy);

  for (int64_t group = blockIdx.x; group < num_groups; group += gridDim.x) {
    const int64_t row = row_of(group);
    const bool active = row < args.rows;  // idle slots still join the reductions
    const int64_t row_start = (active ? row : 0) * args.hidden;
    load_group(group + gridDim.x, x_next, dy_next);
    float sums[2] = {0.f, 0.f};  // sum x^2, sum g * x
    if (active) {
#pragma unroll
      for (int k = 0; k < kVecsPerThread; ++k) {
        if (!chunk_in_row(k)) continue;
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
          const float f = to_float(x[k].v[i]);
          const float g = grad_of_normed<T, W, kHasWeight, kFp32Scale>(to_float(dy[k].v[i]),
                                                           kHasWeight ? w[k].v[i] : W(0.f), add_one);
          sums[0] = __fadd_rn(sums[0], __fmul_rn(f, f));
          sums[1] = __fadd_rn(sums[1], __fmul_rn(g, f));
        }
      }
    }
    row_sum<2, true>(sums, args.threads_per_row_log2);
    if (!active) break;  // only the last group has idle slots
    const float inv_rms = inverse_rms(sums[0], args.mean_factor, args.eps);
    // mean(g * n) = r * mean(g * x)
    const float mean_gn = __fmul_rn(__fmul_rn(sums[1], args.mean_factor), inv_rms);
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (!chunk_in_row(k)) continue;
      Vec<T, kVec> dx;
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        const float dyf = to_float(dy[k].v[i]);
        const float normed = __fmul_rn(to_float(x[k].v[i]), inv_rms);
        const float g = grad_of_normed<T, W, kHasWeight, kFp32Scale>(dyf, kHasWeight ? w[k].v[i] : W(0.f), add_one);
        dx.v[i] = static_cast<T>(__fmul_rn(inv_rms, __fsub_rn(g, __fmul_rn(normed, mean_gn))));
        if constexpr (kHasWeight) {
          dw[k][i] = __fadd_rn(dw[k][i], __fmul_rn(dyf, normed_for_weight<T, kFp32Scale>(normed)));
        }
      }
      store_vec<T, kVec>(args.grad_input + row_start + chunk_start(k), dx);
    }
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      x[k] = x_next[k];
      dy[k] = dy_next[k];
    }
  }
  allow_next_grid();
  if constexpr (kHasWeight) {
    float* partial = args.partials + (int64_t(blockIdx.x) * rows_per_block + slot) * args.hidden;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (!chunk_in_row(k)) continue;
#pragma unroll
      for (int i = 0; i < kVec; ++i) partial[chunk_start(k) + i] = dw[k][i];
    }
  }
}

// Any row length and alignment: one row per block at a time, element by
// element, two passes (the second mostly from L2). Each thread owns columns
// threadIdx.x + j * blockDim.x of its block's partial row in global memory.
template <typename T, typename W, typename G, bool kHasWeight, bool kFp32Scale>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_backward_any_kernel(
    const BackwardArgs<T, W, G> args) {
  const int hidden = args.hidden;
  const bool add_one = args.order == NormOrder::kGemma;
  float* partial = kHasWeight ? args.partials + int64_t(blockIdx.x) * hidden : nullptr;
  wait_for_previous_grid();
  if constexpr (kHasWeight) {
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) partial[c] = 0.f;
  }
  auto weight_at = [&](int c) { return kHasWeight ? args.weight[c] : W(0.f); };
  for (int64_t row = blockIdx.x; row < args.rows; row += gridDim.x) {
    const T* x = args.input + row * hidden;
    const G* dy = args.grad_output + row * hidden;
    float sums[2] = {0.f, 0.f};
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
      const float f = to_float(x[c]);
      const float g = grad_of_normed<T, W, kHasWeight, kFp32Scale>(to_float(dy[c]), weight_at(c), add_one);
      sums[0] = __fadd_rn(sums[0], __fmul_rn(f, f));
      sums[1] = __fadd_rn(sums[1], __fmul_rn(g, f));
    }
    row_sum<2, true>(sums, args.threads_per_row_log2);
    const float inv_rms = inverse_rms(sums[0], args.mean_factor, args.eps);
    const float mean_gn = __fmul_rn(__fmul_rn(sums[1], args.mean_factor), inv_rms);
    T* dx = args.grad_input + row * hidden;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
      const float dyf = to_float(dy[c]);
      const float normed = __fmul_rn(to_float(x[c]), inv_rms);
      const float g = grad_of_normed<T, W, kHasWeight, kFp32Scale>(dyf, weight_at(c), add_one);
      dx[c] = static_cast<T>(__fmul_rn(inv_rms, __fsub_rn(g, __fmul_rn(normed, mean_gn))));
      if constexpr (kHasWeight) {
        partial[c] = __fadd_rn(partial[c], __fmul_rn(dyf, normed_for_weight<T, kFp32Scale>(normed)));
      }
    }
  }
  allow_next_grid();
}

// dweight[c] = W(sum over p of partials[p][c]) in a fixed order. A block
// owns 32 columns; its kSumSplits warps each add a contiguous range of p (one
// coalesced 128-byte row segment per p), then warp 0 adds the kSumSplits
// results in order. The order depends only on the shape. One thread per
// column walking all p (the first version) had too few loads in flight:
// ~400 dependent L2 round trips per thread at 8192x4096.
constexpr int kSumSplits = 16;

template <typename W>
__global__ void __launch_bounds__(32 * kSumSplits) rms_norm_sum_partials_kernel(
    W* grad_weight, const float* partials, int num_partials, int hidden) {
  __shared__ float split_sums[kSumSplits][32];
  const int lane = threadIdx.x & 31, split = threadIdx.x >> 5;
  const int c = blockIdx.x * 32 + lane;
  const int per_split = (num_partials + kSumSplits - 1) / kSumSplits;
  const int first = split * per_split, last = min(num_partials, first + per_split);
  wait_for_previous_grid();
  float total = 0.f;
  if (c < hidden) {
#pragma unroll 8
    for (int p = first; p < last; ++p) total = __fadd_rn(total, partials[int64_t(p) * hidden + c]);
  }
  split_sums[split][lane] = total;
  __syncthreads();
  if (split != 0 || c >= hidden) return;
  total = split_sums[0][lane];
#pragma unroll
  for (int s = 1; s < kSumSplits; ++s) total = __fadd_rn(total, split_sums[s][lane]);
  grad_weight[c] = static_cast<W>(total);
}

template <typename T, typename W, typename G, bool kHasWeight, bool kFp32Scale>
void launch_backward(BackwardArgs<T, W, G> args, torch::Tensor& grad_weight, const torch::Tensor& input,
                     int device, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool programmatic = use_programmatic_launch(device);
  const int num_sms = at::cuda::getDeviceProperties(device)->multiProcessorCount;
  const bool aligned = args.hidden % kVec == 0 && is_aligned(args.input, 16) &&
                       is_aligned(args.grad_output, sizeof(G) * kVec) && is_aligned(args.grad_input, 16) &&
                       (!kHasWeight || is_aligned(args.weight, sizeof(W) * kVec));
  const BackwardLaunchConfig config = pick_backward_launch_config(args.hidden / kVec);
  torch::Tensor partials;
  int num_partials = 0;

  auto prepare_partials = [&](int count) {
    num_partials = count;
    if constexpr (kHasWeight) {
      partials = torch::empty({count, int64_t(args.hidden)}, input.options().dtype(at::kFloat));
      args.partials = partials.data_ptr<float>();
    }
  };

  // A persistent grid of as many blocks as fit at once: the number of dweight
  // partials, and with it the summation order, depends only on the shape and
  // the device.
  auto resident_grid = [&](auto kernel, int threads, int64_t work_items) {
    int per_sm = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0));
    return int(std::min<int64_t>(work_items, int64_t(num_sms) * std::max(per_sm, 1)));
  };
  if (aligned && !config.any_length) {
    const int rows_per_block = config.rows_per_block;
    const int64_t groups = (args.rows + rows_per_block - 1) / rows_per_block;
    args.threads_per_row_log2 = config.threads_per_row_log2;
    auto launch_rows = [&](auto vecs_tag) {
      constexpr int kNV = decltype(vecs_tag)::value;
      auto* kernel = rms_norm_backward_rows_kernel<T, W, G, kNV, kHasWeight, kFp32Scale>;
      const int grid = resident_grid(kernel, config.threads_per_block(), groups);
      prepare_partials(grid * rows_per_block);
      launch_kernel(kernel, dim3(grid), dim3(config.threads_per_block()), stream, programmatic, args);
    };
    switch (config.vecs_per_thread) {
      case 1: launch_rows(std::integral_constant<int, 1>{}); break;
      case 2: launch_rows(std::integral_constant<int, 2>{}); break;
      default: launch_rows(std::integral_constant<int, 4>{}); break;
    }
  } else {
    auto* kernel = rms_norm_backward_any_kernel<T, W, G, kHasWeight, kFp32Scale>;
    const int grid = resident_grid(kernel, kBackwardAnyThreads, args.rows);
    args.threads_per_row_log2 = ceil_log2(kBackwardAnyThreads);
    prepare_partials(grid);
    launch_kernel(kernel, dim3(grid), dim3(kBackwardAnyThreads), stream, programmatic, args);
  }
  if constexpr (kHasWeight) {
    const int blocks = (args.hidden + 31) / 32;
    launch_kernel(rms_norm_sum_partials_kernel<W>, dim3(blocks), dim3(32 * kSumSplits), stream, programmatic,
                  static_cast<W*>(grad_weight.data_ptr()), static_cast<const float*>(args.partials),
                  num_partials, args.hidden);
  }
}

}  // namespace rmsnorm

// grad_input: like input; grad_weight: like weight (ignored without one).
// All tensors contiguous; rows >= 1, hidden >= 1.
void rms_norm_backward_cuda(torch::Tensor& grad_input, torch::Tensor& grad_weight,
                            const torch::Tensor& grad_output, const torch::Tensor& input,
                            const std::optional<torch::Tensor>& weight, double epsilon,
                            rmsnorm::NormOrder order) {
  using namespace rmsnorm;
  const c10::cuda::OptionalCUDAGuard device_guard(input.device());
  const int device = input.get_device();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device);
  const int64_t hidden = input.size(-1);
  RowLayout layout;
  layout.hidden = hidden;
  layout.rows = input.numel() / hidden;

  visit_input_dtype<false>(input.scalar_type(), [&](auto input_tag) {
    using T = decltype(input_tag);
    auto run = [&](auto weight_tag, auto grad_tag, auto has_weight, auto fp32_scale) {
      using W = decltype(weight_tag);
      using G = decltype(grad_tag);
      BackwardArgs<T, W, G> args{static_cast<T*>(grad_input.data_ptr()),
                                 static_cast<const G*>(grad_output.data_ptr()),
                                 static_cast<const T*>(input.data_ptr()),
                                 has_weight ? static_cast<const W*>(weight->data_ptr()) : nullptr,
                                 nullptr, layout.rows, int(hidden), 0, mean_factor_of(layout),
                                 static_cast<float>(epsilon), order};
      launch_backward<T, W, G, decltype(has_weight)::value, decltype(fp32_scale)::value>(args, grad_weight, input, device, stream);
    };
    visit_weight_and_order<T, float>(weight, input.scalar_type(), order, run);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
