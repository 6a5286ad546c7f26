// RMSNorm backward on CUDA for every NormOrder, accumulated in fp32.
//
// With n = x * r, r = rsqrt(mean(x^2) + eps) and g the gradient reaching n
//   Llama: g = T(dy * w)           (autograd of `w * T(n)`), dw = sum dy * T(n)
//   Olmo:  g = dy * w              dw = sum dy * n
//   Gemma: g = dy * (1 + w)        dw = sum dy * n
// and dx = r * (g - n * mean(g * n)).
//
// dweight is deterministic: each thread accumulates its columns over its
// rows in registers, each block adds its rows' sums in a fixed order and
// writes one partial row, and a second kernel sums the partials column by
// column in a fixed order. No atomics.

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

// Two values rounded to T and back to float: one cvt.rn.{bf16,f16}x2 for a
// pair of 16-bit values (the same bits as two static_casts), nothing for fp32.
template <typename T>
__device__ __forceinline__ void round_to_T_pair(float& lo, float& hi) {
  if constexpr (sizeof(T) == 2) {
    const uint32_t rounded = round_pair<T>(lo, hi);
    lo = half_word_as_float<T>(rounded, false);
    hi = half_word_as_float<T>(rounded, true);
  }
}

// grad_of_normed of elements i and i + 1 of a chunk. Llama order with x, dy
// and the weight of one 16-bit type: T(dy * w) of the pair in one packed
// multiply, straight from the packed registers. The backward issues about
// half as many instructions as the SMs can at the copy rate, and unpacking
// dy and w, multiplying and rounding took 7 per pair (NOTES.md v12).
template <typename T, typename W, typename G, bool kHasWeight, bool kFp32Scale, int N>
__device__ __forceinline__ void grads_of_pair(const PackedVec<G, N>& dy, const PackedVec<W, N>& w, int i,
                                              bool add_one, float& g0, float& g1) {
  constexpr bool kPackedProduct =
      kHasWeight && !kFp32Scale && sizeof(T) == 2 && std::is_same_v<W, T> && std::is_same_v<G, T>;
  if constexpr (kPackedProduct) {
    const uint32_t product = multiply_pair<T>(dy.words[i / 2], w.words[i / 2]);
    g0 = half_word_as_float<T>(product, false);
    g1 = half_word_as_float<T>(product, true);
  } else {
    const float dy0 = element_as_float(dy, i), dy1 = element_as_float(dy, i + 1);
    if constexpr (!kHasWeight) {
      g0 = dy0;
      g1 = dy1;
    } else {
      const float w0 = element_as_float(w, i), w1 = element_as_float(w, i + 1);
      if constexpr (kFp32Scale) {
        g0 = __fmul_rn(dy0, fp32_scale(w0, add_one));
        g1 = __fmul_rn(dy1, fp32_scale(w1, add_one));
      } else {
        g0 = __fmul_rn(dy0, w0);
        g1 = __fmul_rn(dy1, w1);
        round_to_T_pair<T>(g0, g1);
      }
    }
  }
}

// The launch bound of the row kernel with kChunks chunks per thread, from
// the table in launch_config.h: it sets the registers a thread may take.
constexpr int backward_block_bound(int chunks) {
  for (const auto& rule : kBackwardChunkRules) {
    if (rule.chunks_per_thread == chunks) return rule.max_threads_per_block;
  }
  return kMaxThreadsPerBlock;
}

__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

// row_sum for the row kernel: each row of the block (slot) meets at its own
// named barrier (1 + slot), so the rows of a block do not wait for each
// other. Fixed order: butterfly in a warp, then the row's warps in order.
template <int N>
__device__ __forceinline__ void slot_row_sum(float (&values)[N], int threads_per_row_log2, int slot) {
  const int threads_per_row = 1 << threads_per_row_log2;
  warp_row_sum(values, threads_per_row);
  if (threads_per_row <= 32) return;
  __shared__ float warp_sums[1024 / 32][N];  // a block has at most 1024 threads
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
#pragma unroll
    for (int n = 0; n < N; ++n) warp_sums[warp][n] = values[n];
  }
  named_barrier(1 + slot, threads_per_row);
  const int warps_per_row = threads_per_row >> 5;
  const int first_warp = slot * warps_per_row;
#pragma unroll
  for (int n = 0; n < N; ++n) values[n] = 0.f;
  for (int i = 0; i < warps_per_row; ++i) {
#pragma unroll
    for (int n = 0; n < N; ++n) values[n] += warp_sums[first_warp + i][n];
  }
  named_barrier(1 + slot, threads_per_row);  // read before the next row writes
}

// Rows held in registers, 16-byte chunks, a persistent grid: a block's rows
// (slots) walk over the rows with a stride of the grid and keep their dweight
// share in registers (each thread owns the same columns in every row). x, dy
// and the weight stay packed, two 16-bit values to a register (as arrays of
// Vec they took a register per element). At the end the block adds its slots'
// dweight sums in slot order and writes one partial row.
template <typename T, typename W, typename G, int kChunks, bool kHasWeight, bool kFp32Scale>
__global__ void __launch_bounds__(backward_block_bound(kChunks)) rms_norm_backward_rows_kernel(
    const BackwardArgs<T, W, G> args) {
  constexpr int kVec = 16 / sizeof(T);
  using XChunk = PackedVec<T, kVec>;
  using GradChunk = PackedVec<G, kVec>;
  using WeightChunk = PackedVec<W, kVec>;
  const int threads_per_row = 1 << args.threads_per_row_log2;
  const int rows_per_block = blockDim.x >> args.threads_per_row_log2;
  const int lane = threadIdx.x & (threads_per_row - 1);
  const int slot = threadIdx.x >> args.threads_per_row_log2;
  const int num_chunks = args.hidden / kVec;
  auto chunk_in_row = [&](int k) { return lane + k * threads_per_row < num_chunks; };
  auto chunk_start = [&](int k) { return (lane + k * threads_per_row) * kVec; };

  const bool add_one = args.order == NormOrder::kGemma;
  float dw[kHasWeight ? kChunks : 1][kVec] = {};
  WeightChunk w[kHasWeight ? kChunks : 1] = {};
  wait_for_previous_grid();
  if constexpr (kHasWeight) {
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      if (chunk_in_row(k)) w[k] = WeightChunk::load(args.weight + chunk_start(k));
    }
  }

  // The loop runs over groups of rows_per_block rows, the same trip count for
  // every slot: rows narrower than a warp share one, and its shuffles need
  // all lanes. A slot past the last row computes on zeros and stores nothing.
  const int64_t group_stride = int64_t(gridDim.x) * rows_per_block;
  for (int64_t group_row = int64_t(blockIdx.x) * rows_per_block; group_row < args.rows; group_row += group_stride) {
    const int64_t row = group_row + slot;
    const bool active = row < args.rows;
    const int64_t row_start = row * args.hidden;
    XChunk x[kChunks] = {};
    GradChunk dy[kChunks] = {};
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      if (!active || !chunk_in_row(k)) continue;
      x[k] = XChunk::load_readonly(args.input + row_start + chunk_start(k));
      dy[k] = GradChunk::load_readonly(args.grad_output + row_start + chunk_start(k));
    }
    // sum x^2 and sum g * x, even and odd elements apart (shorter chains).
    // fmaf: the backward matches HF within a tolerance, not bit for bit.
    float sums[2] = {0.f, 0.f}, odd_sums[2] = {0.f, 0.f};
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      if (!chunk_in_row(k)) continue;
#pragma unroll
      for (int i = 0; i < kVec; i += 2) {
        const float f0 = element_as_float(x[k], i), f1 = element_as_float(x[k], i + 1);
        float g0, g1;
        grads_of_pair<T, W, G, kHasWeight, kFp32Scale>(dy[k], w[kHasWeight ? k : 0], i, add_one, g0, g1);
        sums[0] = fmaf(f0, f0, sums[0]);
        odd_sums[0] = fmaf(f1, f1, odd_sums[0]);
        sums[1] = fmaf(g0, f0, sums[1]);
        odd_sums[1] = fmaf(g1, f1, odd_sums[1]);
      }
    }
    sums[0] += odd_sums[0];
    sums[1] += odd_sums[1];
    slot_row_sum<2>(sums, args.threads_per_row_log2, slot);
    const float inv_rms = inverse_rms(sums[0], args.mean_factor, args.eps);
    // dx = r * (g - n * mean(g * n)), mean(g * n) = r * mean(g * x)
    const float mean_gn = sums[1] * args.mean_factor * inv_rms;
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      if (!active || !chunk_in_row(k)) continue;
      uint32_t dx_words[4];
#pragma unroll
      for (int i = 0; i < kVec; i += 2) {
        const float n0 = element_as_float(x[k], i) * inv_rms;
        const float n1 = element_as_float(x[k], i + 1) * inv_rms;
        float g0, g1;
        grads_of_pair<T, W, G, kHasWeight, kFp32Scale>(dy[k], w[kHasWeight ? k : 0], i, add_one, g0, g1);
        const float dx0 = inv_rms * fmaf(-n0, mean_gn, g0);
        const float dx1 = inv_rms * fmaf(-n1, mean_gn, g1);
        if constexpr (sizeof(T) == 2) {
          dx_words[i / 2] = round_pair<T>(dx0, dx1);
        } else {
          dx_words[i] = __float_as_uint(dx0);
          dx_words[i + 1] = __float_as_uint(dx1);
        }
        if constexpr (kHasWeight) {
          float m0 = n0, m1 = n1;  // n as the forward used it
          if constexpr (!kFp32Scale) round_to_T_pair<T>(m0, m1);
          dw[k][i] = fmaf(element_as_float(dy[k], i), m0, dw[k][i]);
          dw[k][i + 1] = fmaf(element_as_float(dy[k], i + 1), m1, dw[k][i + 1]);
        }
      }
      store_16_bytes(args.grad_input + row_start + chunk_start(k), dx_words[0], dx_words[1], dx_words[2],
                     dx_words[3]);
    }
  }
  allow_next_grid();
  if constexpr (kHasWeight) {
    float* partial = args.partials + int64_t(blockIdx.x) * args.hidden;
    auto store_sums = [&](float* row, const float* added) {
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        if (!chunk_in_row(k)) continue;
#pragma unroll
        for (int i = 0; i < kVec; i += 4) {
          float4 v = make_float4(dw[k][i], dw[k][i + 1], dw[k][i + 2], dw[k][i + 3]);
          if (added != nullptr) {
            const float4 a = *reinterpret_cast<const float4*>(added + chunk_start(k) + i);
            v = make_float4(a.x + v.x, a.y + v.y, a.z + v.z, a.w + v.w);
          }
          *reinterpret_cast<float4*>(row + chunk_start(k) + i) = v;
        }
      }
    };
    if (rows_per_block == 1) {
      store_sums(partial, nullptr);
    } else {
      extern __shared__ float4 block_dweight_storage[];
      float* block_dweight = reinterpret_cast<float*>(block_dweight_storage);
      for (int s = 0; s < rows_per_block; ++s) {
        if (slot == s) store_sums(block_dweight, s == 0 ? nullptr : block_dweight);
        __syncthreads();
      }
      for (int c = threadIdx.x; c < args.hidden / 4; c += blockDim.x) {
        reinterpret_cast<float4*>(partial)[c] = block_dweight_storage[c];
      }
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
  const BackwardLaunchConfig config = pick_backward_launch_config(args.hidden / kVec, args.rows, num_sms);
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
  auto resident_grid = [&](auto kernel, int threads, int64_t work_items, size_t smem = 0) {
    int per_sm = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    return int(std::min<int64_t>(work_items, int64_t(num_sms) * std::max(per_sm, 1)));
  };
  if (aligned && !config.any_length) {
    args.threads_per_row_log2 = config.threads_per_row_log2;
    auto launch_rows = [&](auto chunks_tag) {
      constexpr int kChunks = decltype(chunks_tag)::value;
      auto* kernel = rms_norm_backward_rows_kernel<T, W, G, kChunks, kHasWeight, kFp32Scale>;
      // The block's dweight sums meet in shared memory when it holds several rows.
      const size_t smem = kHasWeight && config.rows_per_block > 1 ? size_t(args.hidden) * sizeof(float) : 0;
      allow_dynamic_smem(kernel, smem, device);
      const int64_t blocks_wanted = (args.rows + config.rows_per_block - 1) / config.rows_per_block;
      const int grid = resident_grid(kernel, config.threads_per_block(), blocks_wanted, smem);
      prepare_partials(grid);
      launch_kernel_with_smem(kernel, dim3(grid), dim3(config.threads_per_block()), stream, programmatic, smem,
                              args);
    };
    switch (config.chunks_per_thread) {
      case 2: launch_rows(std::integral_constant<int, 2>{}); break;
      case 4: launch_rows(std::integral_constant<int, 4>{}); break;
      default: TORCH_CHECK(false, "rms_norm backward: no kernel for ", config.chunks_per_thread, " chunks per thread");
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
