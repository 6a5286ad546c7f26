// RMSNorm forward on CUDA, and the fused residual add + RMSNorm, with the
// rounding of the transformers module each NormOrder names (norm_order.h):
//   Llama: y = weight * T(x_f32 * rsqrt(mean(x_f32^2) + eps))
//   Olmo / Gemma: y = T(scale_f32 * x_f32 * rsqrt(...)), one cast at the end.
// Fused add: input_out = T(addend + input) is stored, then normalized exactly
// as the plain op would normalize it (so it equals HF's add, then norm).

#include <c10/cuda/CUDAGuard.h>
#include <torch/all.h>

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <type_traits>
#include <utility>

#include "norm_math.cuh"

namespace rmsnorm {

// Pointers and sizes of one launch. O: output dtype. A: the fused op's x
// dtype (added to `input`, the residual stream); unused otherwise. No
// __restrict__: the in-place fused op writes `out` over `addend` and
// `input_out` over `input` (each element is read before it is written, by the
// same thread).
template <typename T, typename W, typename O, typename A>
struct NormArgs {
  O* out;                // [rows, hidden], contiguous
  const T* input;        // rows placed by `layout` (contiguous when fused)
  const W* weight;       // [hidden], null for a weightless norm
  const A* addend;       // fused: [rows, hidden] contiguous; else null
  T* input_out;          // fused: where T(addend + input) goes; else null
  RowLayout layout;
  int threads_per_row_log2;
  float mean_factor;
  float eps;
  NormOrder order;
};

// The hot path, every LLM's hidden states: rows of whole 16-byte chunks at
// 16-byte boundaries, no fused add. Kept as its own minimal kernel with
// __restrict__ pointers: the general kernel below, run on these rows, measured
// 2-4% slower at 8192x4096 and +0.4 us per decode call (benchmarks/NOTES.md).
// A row is spread over 2^threads_per_row_log2 threads, each holding
// kVecsPerThread chunks in registers: x is read from DRAM once.
template <typename T, typename W, typename O, int kVecsPerThread, bool kHasWeight, bool kFp32Scale>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_aligned_rows_kernel(
    O* __restrict__ out, const T* __restrict__ input, const W* __restrict__ weight, const RowLayout layout,
    const int threads_per_row_log2, const float mean_factor, const float eps, const bool add_one) {
  constexpr int kVec = 16 / sizeof(T);
  // A weight of the input's width is fetched with x, before the reduction, so
  // that decode-sized launches pay one memory latency instead of two.
  constexpr bool kPrefetchWeight = kHasWeight && sizeof(W) == sizeof(T) && kVecsPerThread <= 4;
  const int threads_per_row = 1 << threads_per_row_log2;
  const int lane = threadIdx.x & (threads_per_row - 1);
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x >> threads_per_row_log2) +
                      (threadIdx.x >> threads_per_row_log2);
  const bool active = row < layout.rows;  // idle threads still join the reduction
  const int num_chunks = int(layout.hidden) / kVec;
  auto chunk_in_row = [&](int k) { return lane + k * threads_per_row < num_chunks; };
  auto chunk_start = [&](int k) { return (lane + k * threads_per_row) * kVec; };

  wait_for_previous_grid();
  const T* x_row = input + layout.offset_of(active ? row : 0);
  Vec<T, kVec> x[kVecsPerThread];
  Vec<W, kVec> w[kPrefetchWeight ? kVecsPerThread : 1];
  float sum_sq = 0.f;
  if (active) {
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (chunk_in_row(k)) x[k] = load_vec<T, kVec>(x_row + chunk_start(k));
    }
    if constexpr (kPrefetchWeight) {
#pragma unroll
      for (int k = 0; k < kVecsPerThread; ++k) {
        if (chunk_in_row(k)) w[k] = load_vec<W, kVec>(weight + chunk_start(k));
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
    Vec<W, kVec> wk;
    if constexpr (kPrefetchWeight) {
      wk = w[k];
    } else if constexpr (kHasWeight) {
      wk = load_vec<W, kVec>(weight + chunk_start(k));
    }
    const Vec<O, kVec> y = normalize_vec<T, W, O, kVec, kHasWeight, kFp32Scale>(x[k], inv_rms, wk, add_one);
    store_vec<O, kVec>(out_row + chunk_start(k), y);
  }
}

// Every other row the register path takes: rows that start off a 16-byte
// boundary or end inside a chunk (odd hidden sizes such as 4097, storage
// offsets), and the fused add (aligned rows only; others go to the wide kernel).
//
// A row is cut into 16-byte chunks aligned in memory, the first and last of
// which may hang over the row's ends: rows of odd length still move full
// 16-byte vectors through their body, and only the two edge chunks go element
// by element (out-of-row lanes hold 0, which adds nothing to the sum of
// squares). The weight of such a row is misaligned too: it is staged in
// shared memory (StagedWeight) by a grid of resident blocks that each walk
// over many groups of rows.
template <typename T, typename W, typename O, typename A, int kVecsPerThread, bool kHasWeight,
          bool kAlignedRows, bool kFusedAdd, bool kFp32Scale>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_rows_kernel(const NormArgs<T, W, O, A> args) {
  static_assert(kAlignedRows || !kFusedAdd, "the fused op takes aligned rows only");
  constexpr int kVec = 16 / sizeof(T);
  constexpr bool kStageWeight = kHasWeight && !kAlignedRows;
  constexpr bool kPrefetchWeight = kHasWeight && kAlignedRows && sizeof(W) == sizeof(T) && kVecsPerThread <= 4;
  extern __shared__ __align__(16) unsigned char staged_weight_bytes[];
  W* staged = reinterpret_cast<W*>(staged_weight_bytes);
  const RowLayout& layout = args.layout;
  const int threads_per_row_log2 = args.threads_per_row_log2;
  const W* weight = args.weight;
  const int threads_per_row = 1 << threads_per_row_log2;
  const int lane = threadIdx.x & (threads_per_row - 1);
  const int rows_per_block = blockDim.x >> threads_per_row_log2;
  const int64_t num_groups = (layout.rows + rows_per_block - 1) / rows_per_block;
  const int hidden = int(layout.hidden);
  const bool add_one = args.order == NormOrder::kGemma;

  wait_for_previous_grid();
  if constexpr (kStageWeight) stage_weight(staged, weight, hidden);
  auto normalize_group = [&](int64_t group) {
    const int64_t row = group * rows_per_block + (threadIdx.x >> threads_per_row_log2);
    const bool active = row < layout.rows;  // idle threads still join the reduction
    const T* x_row = args.input + layout.offset_of(active ? row : 0);
    // Elements between the 16-byte boundary below the row start and the row start.
    const int head =
        kAlignedRows ? 0 : int((reinterpret_cast<std::uintptr_t>(x_row) / sizeof(T)) % kVec);
    const int num_chunks = (head + hidden + kVec - 1) / kVec;
    auto chunk_start = [&](int k) { return (lane + k * threads_per_row) * kVec - head; };
    auto chunk_in_row = [&](int k) { return lane + k * threads_per_row < num_chunks; };
    auto chunk_is_full = [&](int first) { return kAlignedRows || (first >= 0 && first + kVec <= hidden); };

    Vec<T, kVec> x[kVecsPerThread];
    Vec<W, kVec> w[kPrefetchWeight ? kVecsPerThread : 1];
    float sum_sq = 0.f;
    if (active) {
#pragma unroll
      for (int k = 0; k < kVecsPerThread; ++k) {
        if (!chunk_in_row(k)) continue;
        const int first = chunk_start(k);
        x[k] = chunk_is_full(first) ? load_vec<T, kVec>(x_row + first)
                                    : load_chunk_elements<T, kVec>(x_row, first, hidden);
        if constexpr (kFusedAdd) {
          const int64_t at = row * layout.hidden + first;
          const Vec<A, kVec> a = load_vec<A, kVec>(args.addend + at);
#pragma unroll
          for (int i = 0; i < kVec; ++i) {
            x[k].v[i] = static_cast<T>(__fadd_rn(to_float(a.v[i]), to_float(x[k].v[i])));
          }
          store_vec<T, kVec>(args.input_out + at, x[k]);
        }
      }
      if constexpr (kPrefetchWeight) {
#pragma unroll
        for (int k = 0; k < kVecsPerThread; ++k) {
          if (chunk_in_row(k)) w[k] = load_vec<W, kVec>(weight + chunk_start(k));
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
    {
      float sums[1] = {sum_sq};
      row_sum<1, !kAlignedRows>(sums, threads_per_row_log2);
      sum_sq = sums[0];
    }
    allow_next_grid();
    if (!active) return;
    const float inv_rms = inverse_rms(sum_sq, args.mean_factor, args.eps);

    O* out_row = args.out + row * layout.hidden;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (!chunk_in_row(k)) continue;
      const int first = chunk_start(k);
      Vec<W, kVec> wk;
      if constexpr (kPrefetchWeight) {
        wk = w[k];
      } else if constexpr (kStageWeight) {
        wk = staged_weight_chunk<kVec>(staged, hidden, first);
      } else if constexpr (kHasWeight) {
        wk = load_vec<W, kVec>(weight + first);
      }
      const Vec<O, kVec> y = normalize_vec<T, W, O, kVec, kHasWeight, kFp32Scale>(x[k], inv_rms, wk, add_one);
      if (kAlignedRows || (chunk_is_full(first) && is_aligned(out_row + first, sizeof(Vec<O, kVec>)))) {
        store_vec<O, kVec>(out_row + first, y);
      } else {
        store_chunk_elements<O, kVec>(out_row, first, hidden, y);
      }
    }
  };
  if constexpr (kAlignedRows) {
    normalize_group(blockIdx.x);  // one group per block (a loop here cost registers)
  } else {
    for (int64_t group = blockIdx.x; group < num_groups; group += gridDim.x) normalize_group(group);
  }
}

// Rows too long for registers (beyond 32K bf16 / 16K fp32), and the fused op
// on rows that are not 16-byte aligned: one block per row, the row read twice
// (the second read mostly hits L2). Fused, the first pass stores
// T(addend + input) and the second pass reads that back.
template <typename T, typename W, typename O, typename A, int kVec, bool kHasWeight, bool kFusedAdd,
          bool kFp32Scale>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) rms_norm_wide_kernel(const NormArgs<T, W, O, A> args) {
  const RowLayout& layout = args.layout;
  const int64_t row = blockIdx.x;
  const int num_vecs = int(layout.hidden / kVec);
  wait_for_previous_grid();
  const T* x_row = args.input + layout.offset_of(row);
  const int64_t row_start = row * layout.hidden;  // of out, addend and input_out

  float sum_sq = 0.f;
  for (int v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    Vec<T, kVec> x = load_vec<T, kVec>(x_row + int64_t(v) * kVec);
    if constexpr (kFusedAdd) {
      const Vec<A, kVec> a = load_vec<A, kVec>(args.addend + row_start + int64_t(v) * kVec);
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        x.v[i] = static_cast<T>(__fadd_rn(to_float(a.v[i]), to_float(x.v[i])));
      }
      store_vec<T, kVec>(args.input_out + row_start + int64_t(v) * kVec, x);
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float f = to_float(x.v[i]);
      sum_sq = __fadd_rn(sum_sq, __fmul_rn(f, f));
    }
  }
  sum_sq = row_sum(sum_sq, args.threads_per_row_log2);  // its barrier also publishes input_out
  allow_next_grid();
  const float inv_rms = inverse_rms(sum_sq, args.mean_factor, args.eps);
  const bool add_one = args.order == NormOrder::kGemma;

  const T* normed_row = kFusedAdd ? args.input_out + row_start : x_row;
  O* out_row = args.out + row_start;
  for (int v = threadIdx.x; v < num_vecs; v += blockDim.x) {
    const Vec<T, kVec> x = load_vec<T, kVec>(normed_row + int64_t(v) * kVec);
    Vec<W, kVec> w;
    if constexpr (kHasWeight) w = load_vec<W, kVec>(args.weight + int64_t(v) * kVec);
    const Vec<O, kVec> y = normalize_vec<T, W, O, kVec, kHasWeight, kFp32Scale>(x, inv_rms, w, add_one);
    store_vec<O, kVec>(out_row + int64_t(v) * kVec, y);
  }
}

constexpr int kMaxTreeLeaves = kAtenMaxThreads / 32;  // lanes / 32 and y's are at most 16

// v[m] = v[m] + v[m + offset] for m < offset, offset = count/2 .. 1 (count a
// power of two up to kMaxTreeLeaves). Templated levels keep every index a
// constant, so v stays in registers.
template <int kOffset>
__device__ __forceinline__ void halving_tree(float (&v)[kMaxTreeLeaves], int count) {
  if (kOffset < count) {
#pragma unroll
    for (int m = 0; m < kOffset; ++m) v[m] = __fadd_rn(v[m], v[m + kOffset]);
  }
  if constexpr (kOffset > 1) halving_tree<kOffset / 2>(v, count);
}

// The tree over `count` values of the block's shared `partials`, `stride`
// apart from this thread's own (at `own`).
__device__ __forceinline__ float gathered_tree_sum(const float* partials, int count, int stride,
                                                   int own = int(threadIdx.x)) {
  float v[kMaxTreeLeaves];
#pragma unroll
  for (int m = 0; m < kMaxTreeLeaves; ++m) v[m] = m < count ? partials[own + m * stride] : 0.f;
  halving_tree<kMaxTreeLeaves / 2>(v, count);
  return v[0];
}

// The last levels of ATen's lane tree, inside a warp: offsets 16 .. 1 below
// `width` (an xor butterfly leaves every lane with the sum shfl_down's tree
// gives lane 0).
__device__ __forceinline__ float warp_butterfly_sum(float total, int width, unsigned mask) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    if (offset < width) total = __fadd_rn(total, __shfl_xor_sync(mask, total, offset));
  }
  return total;
}

// ATen's block_x_reduce then block_y_reduce for every row of the block: the
// row's threads are threadIdx.x = slot * threads_per_row + g, g = lane + y *
// lanes. A halving tree over the lanes (v[i] += v[i + offset], offset =
// lanes/2 .. 1), then over the y's. Where ATen walks the first levels of the
// lane tree through shared memory with a barrier per level, lane i < 32 here
// gathers v[i + 32m] and runs those levels over m in registers: the same
// additions in the same order. An xor butterfly inside a warp leaves lane 0
// with the sum shfl_down's tree gives it. The total is valid in g == 0. Every
// thread of the block calls this (barriers and shuffles).
__device__ __forceinline__ float aten_tree_sum(float total, const AtenSumLayout& sum, int g, float* partials) {
  const int lanes = sum.lanes;
  const int lane = g & (lanes - 1);
  if (lanes > 32) {
    partials[threadIdx.x] = total;
    __syncthreads();
    if (lane < 32) total = gathered_tree_sum(partials, lanes / 32, 32);
    __syncthreads();
  }
  const unsigned mask = blockDim.x >= 32 ? 0xffffffffu : ((1u << blockDim.x) - 1u);  // a block under a warp
  total = warp_butterfly_sum(total, lanes < 32 ? lanes : 32, mask);
  if (sum.warps > 1) {
    partials[threadIdx.x] = total;
    __syncthreads();
    if (g == 0) total = gathered_tree_sum(partials, sum.warps, lanes);
    __syncthreads();
  }
  return total;
}

// ATen's lane-tree levels between the kWidth threads of a row (t: a
// thread's index among them; offsets kWidth / 2 .. 1, an xor butterfly),
// for kRows rows at once, a thread holding kValues values a row (its
// adjacent ATen lanes, whose own levels the caller runs in registers).
// While several rows remain a thread keeps half of them (the upper half
// where its offset bit is set) and sends its partner the other half, so
// each level moves kValues values a thread where row by row it would move
// kRows times as many (65536x128: 6 shuffles for four rows instead of 20).
// Every partial sum is the one the row-by-row butterfly forms (a + b == b +
// a bitwise). On return totals[0] is row t / (kWidth / kRows)'s.
template <int kWidth, int kRows, int kValues>
__device__ __forceinline__ void butterfly_sums_of_rows(float (&totals)[kRows][kValues], int t) {
  static_assert(kRows >= 1 && kRows <= kWidth && (kRows & (kRows - 1)) == 0, "a power of two of rows");
#pragma unroll
  for (int offset = kWidth / 2, held = kRows; offset > 0; offset >>= 1) {
    if (held > 1) {
      const bool upper = (t & offset) != 0;
      held /= 2;
#pragma unroll
      for (int i = 0; i < held; ++i) {
#pragma unroll
        for (int v = 0; v < kValues; ++v) {
          const float kept = upper ? totals[held + i][v] : totals[i][v];
          const float sent = upper ? totals[i][v] : totals[held + i][v];
          totals[i][v] = __fadd_rn(kept, __shfl_xor_sync(0xffffffffu, sent, offset));
        }
      }
    } else {
#pragma unroll
      for (int v = 0; v < kValues; ++v) {
        totals[0][v] = __fadd_rn(totals[0][v], __shfl_xor_sync(0xffffffffu, totals[0][v], offset));
      }
    }
  }
}

// aten_tree_sum of kRows one-warp rows at once (ATen's lanes = 32, a lane a
// thread): on return totals[0] is the total of row lane / (32 / kRows),
// valid in every lane.
template <int kRows>
__device__ __forceinline__ void warp_tree_sums_of_rows(float (&totals)[kRows]) {
  float values[kRows][1];
#pragma unroll
  for (int r = 0; r < kRows; ++r) values[r][0] = totals[r];
  butterfly_sums_of_rows<32>(values, int(threadIdx.x) & 31);
  totals[0] = values[0][0];
}

// The non-vectorized layout (hidden < 128): element j to thread j mod
// threads_per_row, accumulator (j / threads_per_row) mod 4, four at a time
// so that the accumulators stay in registers.
template <typename T>
__device__ __forceinline__ void aten_strided_squares(float (&acc)[4], const T* row, int hidden, int g,
                                                     int threads_per_row) {
  for (int e = g; e < hidden; e += 4 * threads_per_row) {
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int at = e + s * threads_per_row;
      if (at < hidden) {
        const float f = to_float(row[at]);
        acc[s] = __fadd_rn(acc[s], __fmul_rn(f, f));
      }
    }
  }
}

// In the ATen order (the default, norm_math.cuh), every forward (plain or fused,
// any alignment) that the span kernel declines, with the row's sum of
// squares in ATen's order (AtenSumLayout; scripts/aten_reduce_order.py has
// the spec step by step): the row's `threads_per_row` threads each keep four
// accumulators over float4 groups of the squares (group k to thread k mod
// threads_per_row; the misaligned head of the fp32 squares' row and its tail
// to accumulator 0 of the first lanes), combine them ((a0 + a1) + a2) + a3,
// then a halving tree over the lanes and, if split, over the warps. The
// second pass normalizes the row, which the first just brought into L1/L2.
constexpr int kMaxAtenRowsPerBlock = kAtenMaxThreads;

template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale>
__global__ void __launch_bounds__(kAtenMaxThreads) rms_norm_aten_order_kernel(const NormArgs<T, W, O, A> args,
                                                                              const AtenSumLayout sum) {
  constexpr int kVec = 16 / sizeof(T);
  __shared__ float partials[kAtenMaxThreads];
  __shared__ float inv_rms_of_slot[kMaxAtenRowsPerBlock];
  const RowLayout& layout = args.layout;
  const int threads_per_row = sum.lanes * sum.warps;
  const int t = threadIdx.x;
  const int slot = t / threads_per_row;
  const int g = t - slot * threads_per_row;  // ATen's thread index within the row
  const int lane = g % sum.lanes, warp = g / sum.lanes;
  const int64_t row = int64_t(blockIdx.x) * sum.rows_per_block + slot;
  const bool active = row < layout.rows;
  const int hidden = int(layout.hidden);
  const bool add_one = args.order == NormOrder::kGemma;

  wait_for_previous_grid();
  const T* x_row = args.input + layout.offset_of(active ? row : 0);
  const int64_t dense_start = (active ? row : 0) * layout.hidden;  // out, addend, input_out
  // An element as the sum sees it: fused, T(addend + input), stored once here.
  auto element = [&](int e) -> float {
    T v = x_row[e];
    if constexpr (kFusedAdd) {
      v = static_cast<T>(__fadd_rn(to_float(args.addend[dense_start + e]), to_float(v)));
      args.input_out[dense_start + e] = v;
    }
    return to_float(v);
  };
  auto square = [](float f) { return __fmul_rn(f, f); };

  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  if (active) {
    if (sum.vectorized) {
      // HF's squares are a fresh fp32 tensor: row r starts at element r * hidden.
      const int shift = int((row * layout.hidden) % kAtenVec);
      const int head = shift == 0 ? 0 : kAtenVec - shift;
      if (warp == 0 && shift > 0 && lane >= shift && lane < kAtenVec) acc[0] = square(element(lane - shift));
      const int num_groups = (hidden - head) / kAtenVec;
      const bool groups_aligned =
          is_aligned(x_row + head, sizeof(T) * kAtenVec) &&
          (!kFusedAdd || (is_aligned(args.addend + dense_start + head, sizeof(A) * kAtenVec) &&
                          is_aligned(args.input_out + dense_start + head, sizeof(T) * kAtenVec)));
#pragma unroll 4
      for (int k = g; k < num_groups; k += threads_per_row) {
        const int first = head + k * kAtenVec;
        float f[kAtenVec];
        if (groups_aligned) {
          Vec<T, kAtenVec> v = load_vec<T, kAtenVec>(x_row + first);
          if constexpr (kFusedAdd) {
            const Vec<A, kAtenVec> a = load_vec<A, kAtenVec>(args.addend + dense_start + first);
#pragma unroll
            for (int i = 0; i < kAtenVec; ++i) v.v[i] = static_cast<T>(__fadd_rn(to_float(a.v[i]), to_float(v.v[i])));
            store_vec<T, kAtenVec>(args.input_out + dense_start + first, v);
          }
#pragma unroll
          for (int i = 0; i < kAtenVec; ++i) f[i] = to_float(v.v[i]);
        } else {
#pragma unroll
          for (int i = 0; i < kAtenVec; ++i) f[i] = element(first + i);
        }
#pragma unroll
        for (int i = 0; i < kAtenVec; ++i) acc[i] = __fadd_rn(acc[i], square(f[i]));
      }
      const int tail = (hidden - head) % kAtenVec;
      if (warp == 0 && lane < tail) acc[0] = __fadd_rn(acc[0], square(element(head + num_groups * kAtenVec + lane)));
    } else {
      // Element j to thread j mod threads_per_row, accumulator (j / threads_per_row) mod 4.
      for (int e = g; e < hidden; e += 4 * threads_per_row) {
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          if (e + s * threads_per_row < hidden) acc[s] = __fadd_rn(acc[s], square(element(e + s * threads_per_row)));
        }
      }
    }
  }
  float total = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[1]), acc[2]), acc[3]);

  total = aten_tree_sum(total, sum, g, partials);
  if (g == 0) inv_rms_of_slot[slot] = inverse_rms(total, args.mean_factor, args.eps);
  __syncthreads();  // also publishes the fused op's input_out to the whole block
  allow_next_grid();
  if (!active) return;
  const float inv_rms = inv_rms_of_slot[slot];

  const T* normed_row = kFusedAdd ? args.input_out + dense_start : x_row;
  O* out_row = args.out + dense_start;
  const bool chunks_aligned = hidden % kVec == 0 && is_aligned(normed_row, 16) &&
                              is_aligned(out_row, sizeof(O) * kVec) &&
                              (!kHasWeight || is_aligned(args.weight, sizeof(W) * kVec));
  if (chunks_aligned) {
    for (int c = g; c < hidden / kVec; c += threads_per_row) {
      const Vec<T, kVec> x = load_vec<T, kVec>(normed_row + c * kVec);
      Vec<W, kVec> w;
      if constexpr (kHasWeight) w = load_vec<W, kVec>(args.weight + c * kVec);
      const Vec<O, kVec> y = normalize_vec<T, W, O, kVec, kHasWeight, kFp32Scale>(x, inv_rms, w, add_one);
      store_vec<O, kVec>(out_row + c * kVec, y);
    }
  } else {
    for (int e = g; e < hidden; e += threads_per_row) {
      out_row[e] = normalize<T, W, O, kHasWeight, kFp32Scale>(to_float(normed_row[e]), inv_rms,
                                                              kHasWeight ? args.weight[e] : W(0.f), add_one);
    }
  }
}

// The ATen-order forward with rows in registers (AtenRegisterConfig): each
// thread is ATen's thread g of its row and loads exactly g's float4 groups
// (group k to thread k mod threads_per_row, in increasing k; 8 bytes a group
// for bf16/fp16, 16 for fp32, a warp's groups side by side in memory), sums
// them into ATen's four accumulators, runs ATen's trees (aten_tree_sum) and
// normalizes from the same registers. x is read once and there is no
// shared-memory pass; where ATen gives a row one warp (>= 16 rows, hidden
// < 8192: most prefill shapes; kOneWarpRows, so that a thread's groups sit
// at constant offsets) there is no barrier either, and every lane ends the
// xor tree with the row's total. Groups past the row's end hold zero, which
// adds nothing to an accumulator; their results are not stored. A block
// holds `slots` rows side by side and each thread kRows rows: block b's rows
// are b * rows_per_block + r * slots + slot.
// kHeadTail: rows that do not start on a float4 group of HF's fp32 squares
// (hidden not a multiple of 4; dense rows only, which start at element
// row * hidden of the squares). Their groups are still 4-element aligned in
// memory (the squares' groups are the tensor's), and each row's head (its
// elements before the first group) and tail go element by element to the
// threads ATen gives them: head element e to thread shift + e, initializing
// accumulator 0; tail element e added to accumulator 0 of thread e last. The
// weight's groups of such rows are `head` columns off its aligned ones:
// PackedVec::load_shifted (measured with element loads, H200 bf16 v12:
// 8192x4097 0.60, 8192x5121 0.51 of copy).
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale,
          bool kHeadTail, bool kOneWarpRows, int kGroups, int kRows>
__global__ void __launch_bounds__(kAtenMaxThreads) rms_norm_aten_registers_kernel(const NormArgs<T, W, O, A> args,
                                                                                  const AtenSumLayout layout_of_sum,
                                                                                  const int64_t prefetch_rows) {
  static_assert(kRows == 1 || kGroups <= 4, "several rows per thread only for short rows");
  static_assert(!kHeadTail || (kRows == 1 && !kFusedAdd), "odd rows: one per thread, unfused");
  using Group = PackedVec<T, kAtenVec>;
  using WeightGroup = PackedVec<W, kAtenVec>;
  // The weight before the sum, when a thread holds few groups (decode: one
  // memory latency per call instead of two).
  constexpr bool kPrefetchWeight = kHasWeight && kRows == 1 && kGroups <= 4;
  // Odd rows: the weight of every group is loaded (a group past the row
  // reads the first one, unused), since a condition around the two loads of
  // load_shifted compiled to a branch per group (H200 bf16: 8192x4097 0.61
  // -> 0.72 of copy). Not at 48 groups, whose registers are full: there the
  // extra loads spilled 200 bytes (8192x5121 0.55, conditional 0.56-0.61;
  // benchmarks/NOTES.md v13).
  constexpr bool kWeightOfEveryGroup = kHeadTail && kGroups <= 32;
  // Several one-warp rows per thread: their sums in one butterfly.
  constexpr bool kRowsInOneButterfly = kOneWarpRows && kRows > 1;
  // Loads of the weight and the addend go in batches of kBatch groups, each
  // batch before its stores: the pointers may alias (the in-place fused op),
  // so the compiler keeps every load behind the stores before it, and a load
  // per group would put an L2 round trip between consecutive stores
  // (measured: 128x4096 took 9.3 us, the span kernel 3.6). 64 bytes of
  // weight per batch, 32 where the row already takes most registers.
  constexpr int kBatchBytes = kGroups * kAtenVec * sizeof(T) > 256 ? 32 : 64;
  constexpr int kBatch = std::min<int>(kGroups, std::max<int>(1, kBatchBytes / (kAtenVec * sizeof(W))));
  static_assert(kGroups % kBatch == 0, "whole batches");
  __shared__ float partials[kAtenMaxThreads];
  __shared__ float inv_rms_of_slot[kRows][kAtenMaxThreads / 32];
  const RowLayout& layout = args.layout;
  const AtenSumLayout& sum = layout_of_sum;
  const int hidden = int(layout.hidden);
  const int threads_per_row = kOneWarpRows ? 32 : sum.lanes * sum.warps;
  const int slots = int(blockDim.x) / threads_per_row;
  const int slot = int(threadIdx.x) / threads_per_row;
  const int g = int(threadIdx.x) - slot * threads_per_row;  // ATen's thread index within the row
  const int group_step = threads_per_row * kAtenVec;      // elements between a thread's groups
  const bool add_one = args.order == NormOrder::kGemma;

  // Where each of the thread's rows and its groups are: `head`, elements
  // before the row's first group; `groups_end`, where its groups end,
  // relative to the first group; `first`, dense index of the thread's group 0.
  int64_t row[kRows], first[kRows];
  int head[kRows], groups_end[kRows];
  bool active[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    row[r] = (int64_t(blockIdx.x) * kRows + r) * slots + slot;
    active[r] = row[r] < layout.rows;
    const int64_t start = (active[r] ? row[r] : 0) * layout.hidden;
    head[r] = 0;
    if constexpr (kHeadTail) head[r] = int((kAtenVec - start % kAtenVec) % kAtenVec);
    groups_end[r] = (hidden - head[r]) / kAtenVec * kAtenVec;
    first[r] = start + head[r] + g * kAtenVec;
  }
  // Group k of row r is this thread's (row r active, k within the row).
  auto has_group = [&](int r, int k) { return active[r] && g * kAtenVec + k * group_step < groups_end[r]; };
  // Head element of this thread (shift <= g < 4) and tail element (g < tail), as dense indices or -1.
  auto head_element = [&](int r) -> int64_t {
    const int shift = (kAtenVec - head[r]) % kAtenVec;
    return head[r] > 0 && g >= shift && g < kAtenVec ? first[r] - head[r] - g * kAtenVec + (g - shift) : -1;
  };
  auto tail_element = [&](int r) -> int64_t {
    const int tail = hidden - head[r] - groups_end[r];
    return g < tail ? first[r] - g * kAtenVec + groups_end[r] + g : -1;
  };

  wait_for_previous_grid();
  Group x[kRows][kGroups];
  T head_x[kRows], tail_x[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    // Aligned rows may be strided (row_layout.h); head/tail rows are dense.
    const T* x_first = kHeadTail ? args.input + first[r]
                                 : args.input + layout.offset_of(active[r] ? row[r] : 0) + g * kAtenVec;
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
#pragma unroll
      for (int i = 0; i < Group::kWords; ++i) x[r][k].words[i] = 0u;  // +0 in every dtype
      if (has_group(r, k)) x[r][k] = Group::load(x_first + k * group_step);
    }
    head_x[r] = tail_x[r] = T(0.f);
    if constexpr (kHeadTail) {
      const int64_t h = head_element(r), t = tail_element(r);
      if (active[r] && h >= 0) head_x[r] = args.input[h];
      if (active[r] && t >= 0) tail_x[r] = args.input[t];
    }
    if constexpr (kFusedAdd) {
#pragma unroll
      for (int k0 = 0; k0 < kGroups; k0 += kBatch) {
        Vec<A, kAtenVec> a[kBatch];
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
          if (has_group(r, k0 + j)) a[j] = load_vec<A, kAtenVec>(args.addend + first[r] + (k0 + j) * group_step);
        }
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
          const int k = k0 + j;
          Vec<T, kAtenVec> added;
#pragma unroll
          for (int i = 0; i < kAtenVec; ++i) {
            added.v[i] = static_cast<T>(__fadd_rn(to_float(a[j].v[i]), element_as_float(x[r][k], i)));
          }
          if (has_group(r, k)) {
            store_vec<T, kAtenVec>(args.input_out + first[r] + k * group_step, added);
            x[r][k] = Group::of(added);
          }
        }
      }
    }
  }
  if (prefetch_rows > 0) {  // this thread's share of the lines of its rows a wave ahead, into L2
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t ahead = row[r] + prefetch_rows;
      if (ahead >= layout.rows) continue;
      const char* base = reinterpret_cast<const char*>(args.input + (kHeadTail ? ahead * layout.hidden
                                                                             : layout.offset_of(ahead)));
      for (int line = g; line * 128 < hidden * int(sizeof(T)); line += threads_per_row) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(base + line * 128));
      }
    }
  }
  // Weight of the thread's group k (aligned rows: one vector load).
  auto weight_group = [&](int r, int k) {
    const int col = int(first[r] - row[r] * layout.hidden) + k * group_step;
    if constexpr (kHeadTail) {
      // The row's groups start `head` columns past the weight's (aligned)
      // groups: two aligned loads and a shift, not four element loads.
      const bool in_row = has_group(r, k);
      return WeightGroup::load_shifted(args.weight + (in_row ? col - head[r] : 0), in_row ? head[r] : 0);
    } else {
      return WeightGroup::load(args.weight + col);
    }
  };
  WeightGroup w[kPrefetchWeight ? kGroups : 1];
  if constexpr (kPrefetchWeight) {
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
      if (kWeightOfEveryGroup || has_group(0, k)) w[k] = weight_group(0, k);
    }
  }

  float inv_rms[kRows], totals[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float acc[kAtenVec] = {0.f, 0.f, 0.f, 0.f};
    if constexpr (kHeadTail) acc[0] = __fmul_rn(to_float(head_x[r]), to_float(head_x[r]));
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
#pragma unroll
      for (int i = 0; i < kAtenVec; ++i) {
        const float f = element_as_float(x[r][k], i);
        acc[i] = __fadd_rn(acc[i], __fmul_rn(f, f));
      }
    }
    if constexpr (kHeadTail) acc[0] = __fadd_rn(acc[0], __fmul_rn(to_float(tail_x[r]), to_float(tail_x[r])));
    totals[r] = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[1]), acc[2]), acc[3]);
    if constexpr (!kRowsInOneButterfly) {
      inv_rms[r] = inverse_rms(aten_tree_sum(totals[r], sum, g, partials), args.mean_factor, args.eps);
    }
  }
  if constexpr (kRowsInOneButterfly) {
    // Lane (32 / kRows) * r ends with row r's total: one inverse RMS per
    // lane, then each row's from its lane.
    warp_tree_sums_of_rows(totals);
    const float own_inv_rms = inverse_rms(totals[0], args.mean_factor, args.eps);
#pragma unroll
    for (int r = 0; r < kRows; ++r) inv_rms[r] = __shfl_sync(0xffffffffu, own_inv_rms, r * (32 / kRows));
  }
  if constexpr (!kOneWarpRows) {  // the total is ATen's in g == 0 only
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (g == 0) inv_rms_of_slot[r][slot] = inv_rms[r];
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRows; ++r) inv_rms[r] = inv_rms_of_slot[r][slot];
  }
  allow_next_grid();

  if constexpr (kHeadTail) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (!active[r]) continue;
      const int64_t h = head_element(r), t = tail_element(r);
      const int64_t row_start = row[r] * layout.hidden;
      if (h >= 0) {
        args.out[h] = normalize<T, W, O, kHasWeight, kFp32Scale>(
            to_float(head_x[r]), inv_rms[r], kHasWeight ? args.weight[h - row_start] : W(0.f), add_one);
      }
      if (t >= 0) {
        args.out[t] = normalize<T, W, O, kHasWeight, kFp32Scale>(
            to_float(tail_x[r]), inv_rms[r], kHasWeight ? args.weight[t - row_start] : W(0.f), add_one);
      }
    }
  }
  // The weight in batches, every load of a batch issued before its stores.
  // Several rows per thread are aligned rows: one weight, loaded for the first.
#pragma unroll
  for (int k0 = 0; k0 < kGroups; k0 += kBatch) {
    WeightGroup wb[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      if constexpr (kPrefetchWeight) {
        wb[j] = w[k0 + j];
      } else if constexpr (kHasWeight) {
        if (kWeightOfEveryGroup || has_group(0, k0 + j)) wb[j] = weight_group(0, k0 + j);
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      O* const out_first = args.out + first[r];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int k = k0 + j;
        const Vec<O, kAtenVec> y = normalize_vec<T, W, O, kAtenVec, kHasWeight, kFp32Scale>(
            x[r][k].vec(), inv_rms[r], wb[j].vec(), add_one);
        if (has_group(r, k)) store_vec<O, kAtenVec>(out_first + k * group_step, y);
      }
    }
  }
}

// ATen's short one-warp rows (one or two float4 groups a lane: hidden 128 -
// 256, e.g. Qwen3's q_norm / k_norm over head_dim 128), kLanes of ATen's
// lanes side by side in a thread: lane g = kLanes * t + j holds group k at
// element 4 * g + 128 * k, so a thread's groups k are one chunk of 4 *
// kLanes elements (16 bytes of bf16 at kLanes = 2) and a row takes 32 /
// kLanes threads. What the register kernel spends on a row per thread
// (its index, pointers, predicates, the butterfly, the inverse RMS) is then
// spent by half or a quarter as many threads (65536x128, Nsight: ~92 warp
// instructions a row in the register kernel, ~60 here at two lanes,
// torch.compile's ~43). The sums are ATen's:
// each lane's four accumulators over its groups in increasing k, then the
// lane tree's offsets 16 .. 1, those of kLanes and more between threads
// (butterfly_sums_of_rows, one value per ATen lane) and the last in
// registers. Rows of whole chunks at 16-byte boundaries, unfused; block b's
// rows are b * kRows * slots + r * slots + slot.
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFp32Scale, int kLanes, int kGroups,
          int kRows>
__global__ void __launch_bounds__(kAtenMaxThreads) rms_norm_aten_short_rows_kernel(const NormArgs<T, W, O, A> args) {
  constexpr int kThreadsPerRow = 32 / kLanes;
  constexpr int kChunk = kAtenVec * kLanes;  // elements of a thread's group k
  constexpr int kGroupStep = 32 * kAtenVec;  // elements between group k and k + 1 of a lane
  static_assert(kLanes >= 2 && kLanes <= 4 && (kLanes & (kLanes - 1)) == 0, "2 or 4 lanes a thread");
  using Chunk = PackedVec<T, kChunk>;
  using WeightChunk = PackedVec<W, kChunk>;
  const RowLayout& layout = args.layout;
  const int hidden = int(layout.hidden);
  const int slots = int(blockDim.x) / kThreadsPerRow;
  const int slot = int(threadIdx.x) / kThreadsPerRow;
  const int t = int(threadIdx.x) % kThreadsPerRow;
  const int col = t * kChunk;
  const bool add_one = args.order == NormOrder::kGemma;
  auto has_group = [&](int k) { return col + k * kGroupStep < hidden; };

  int64_t row[kRows];
  bool active[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    row[r] = (int64_t(blockIdx.x) * kRows + r) * slots + slot;
    active[r] = row[r] < layout.rows;
  }
  wait_for_previous_grid();
  Chunk x[kRows][kGroups];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const T* x_row = args.input + layout.offset_of(active[r] ? row[r] : 0) + col;
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
#pragma unroll
      for (int i = 0; i < Chunk::kWords; ++i) x[r][k].words[i] = 0u;  // +0 adds nothing to a sum of squares
      if (active[r] && has_group(k)) x[r][k] = Chunk::load(x_row + k * kGroupStep);
    }
  }
  // The weight before the sum: one memory latency per block, not two.
  WeightChunk w[kGroups];
  if constexpr (kHasWeight) {
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
      if (has_group(k)) w[k] = WeightChunk::load(args.weight + col + k * kGroupStep);
    }
  }

  // Each ATen lane's total: ((a0 + a1) + a2) + a3 of its four accumulators.
  float totals[kRows][kLanes];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int j = 0; j < kLanes; ++j) {
      // ATen's accumulators start at 0; 0 + f * f is f * f bitwise (a square
      // is +0 or more, or NaN), so they start at group 0's squares.
      float acc[kAtenVec];
#pragma unroll
      for (int k = 0; k < kGroups; ++k) {
#pragma unroll
        for (int i = 0; i < kAtenVec; ++i) {
          const float f = element_as_float(x[r][k], j * kAtenVec + i);
          acc[i] = k == 0 ? __fmul_rn(f, f) : __fadd_rn(acc[i], __fmul_rn(f, f));
        }
      }
      totals[r][j] = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[1]), acc[2]), acc[3]);
    }
  }
  // Lane offsets 16 .. kLanes: thread offsets kThreadsPerRow / 2 .. 1;
  // thread t ends with row t / (kThreadsPerRow / kRows)'s lanes.
  butterfly_sums_of_rows<kThreadsPerRow>(totals, t);
  // Lane offsets below kLanes, in registers (lane j + offset onto lane j).
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
#pragma unroll
    for (int j = 0; j < offset; ++j) totals[0][j] = __fadd_rn(totals[0][j], totals[0][j + offset]);
  }
  const float own_inv_rms = inverse_rms(totals[0][0], args.mean_factor, args.eps);
  const int first_lane_of_slot = (int(threadIdx.x) & 31) - t;
  float inv_rms[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    inv_rms[r] = __shfl_sync(0xffffffffu, own_inv_rms, first_lane_of_slot + r * (kThreadsPerRow / kRows));
  }
  allow_next_grid();

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    O* const out_row = args.out + row[r] * layout.hidden + col;
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
      const Vec<O, kChunk> y = normalize_vec<T, W, O, kChunk, kHasWeight, kFp32Scale>(x[r][k].vec(), inv_rms[r],
                                                                                           w[k].vec(), add_one);
      if (active[r] && has_group(k)) store_vec<O, kChunk>(out_row + k * kGroupStep, y);
    }
  }
}

// ATen's threads of a row folded into fewer (AtenFoldedConfig): a block per
// row; thread t is ATen's threads a = t + blockDim * j (j <
// kAtenPerThread) of the row and holds their float4 groups (a's group k at
// element 4 * (a + aten_threads * k), aten_threads being ATen's lanes *
// warps = kThreads * kAtenPerThread; zero past the row, and +0 adds
// nothing to a sum of squares) and the weight's, all loaded before the
// sum, 8 bytes a group (fp32: 16) and a warp's side by side. x is read once and only partial sums go through
// shared memory: ATen's tree takes one barrier, after which every thread
// holds the total (no second barrier to share the inverse RMS).
// - !kSplit, ATen's unsplit layouts of 128-512 lanes (decode batches of 1-7
//   rows, 128 or 256 threads): the lane tree's levels from lanes / 2 down
//   to kThreads add the thread's own totals (halving over j), the levels
//   down to 32 are gathered from shared memory by every warp, then the
//   butterfly.
// - kSplit, ATen's 16 warps of 32 lanes (8164-8192-wide rows): each of the
//   thread's ATen threads' butterfly, the warps' levels down to blockDim /
//   32 (y + 8 onto y for two a thread) in registers, the rest over the
//   block's warp totals, gathered by every warp.
// kReload (split rows, unfused, many rows: kFoldedReloadMinRowsPerSm): x
// is summed and dropped, then read again from L2 with the weight after the
// barrier, so that more blocks fit an SM.
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale,
          bool kSplit, int kThreads, int kAtenPerThread, int kGroups, bool kReload = false>
__global__ void __launch_bounds__(
    kThreads, kReload  ? folded_reload_min_blocks(kThreads, kFp32Scale)
              : kSplit ? folded_split_min_blocks(kThreads, std::is_same_v<T, c10::BFloat16>, kFp32Scale, kFusedAdd)
                       : 1)
    rms_norm_aten_folded_kernel(const NormArgs<T, W, O, A> args) {
  static_assert(kSplit || !kFusedAdd, "decode batches: unfused");
  static_assert(!kReload || (kSplit && !kFusedAdd), "reload: split rows, unfused");
  using Group = PackedVec<T, kAtenVec>;
  using WeightGroup = PackedVec<W, kAtenVec>;
  // ATen's threads of the row: a constant, so that every group's offset from
  // the thread's first is one (decode shapes are latency-bound: address
  // arithmetic per group showed; the first build took lanes as an argument).
  constexpr int kAtenThreads = kThreads * kAtenPerThread;
  __shared__ float partials[kThreads];
  const RowLayout& layout = args.layout;
  const int hidden = int(layout.hidden);
  const int64_t row = blockIdx.x;
  const int64_t dense_start = row * layout.hidden;  // out, addend and input_out are dense
  const int t = int(threadIdx.x);
  const int lane = t & 31;
  auto column = [&](int j, int k) { return (t + kThreads * j + kAtenThreads * k) * kAtenVec; };
  auto has_group = [&](int j, int k) { return column(j, k) < hidden; };

  wait_for_previous_grid();
  const T* const x_row = args.input + layout.offset_of(row);
  Group x[kAtenPerThread][kGroups];
  WeightGroup w[kAtenPerThread][kGroups];
#pragma unroll
  for (int j = 0; j < kAtenPerThread; ++j) {
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
#pragma unroll
      for (int i = 0; i < Group::kWords; ++i) x[j][k].words[i] = 0u;  // +0 in every dtype
      if (has_group(j, k)) {
        if constexpr (kReload) {  // read again after the sum: L2 is asked to keep it
          x[j][k] = Group::load_with_policy(x_row + column(j, k), l2_policy<L2Priority::kEvictLast>());
        } else {
          x[j][k] = Group::load(x_row + column(j, k));
        }
      }
    }
  }
  if constexpr (kHasWeight && !kReload) {  // before the sum: one memory latency per row
#pragma unroll
    for (int j = 0; j < kAtenPerThread; ++j) {
#pragma unroll
      for (int k = 0; k < kGroups; ++k) {
        if (has_group(j, k)) w[j][k] = WeightGroup::load(args.weight + column(j, k));
      }
    }
  }
  if constexpr (kFusedAdd) {  // every load before the first store (the pointers may alias)
    Vec<A, kAtenVec> a[kAtenPerThread][kGroups];
#pragma unroll
    for (int j = 0; j < kAtenPerThread; ++j) {
#pragma unroll
      for (int k = 0; k < kGroups; ++k) {
        if (has_group(j, k)) a[j][k] = load_vec<A, kAtenVec>(args.addend + dense_start + column(j, k));
      }
    }
#pragma unroll
    for (int j = 0; j < kAtenPerThread; ++j) {
#pragma unroll
      for (int k = 0; k < kGroups; ++k) {
        if (!has_group(j, k)) continue;
        Vec<T, kAtenVec> added;
#pragma unroll
        for (int i = 0; i < kAtenVec; ++i) {
          added.v[i] = static_cast<T>(__fadd_rn(to_float(a[j][k].v[i]), element_as_float(x[j][k], i)));
        }
        store_vec<T, kAtenVec>(args.input_out + dense_start + column(j, k), added);
        x[j][k] = Group::of(added);
      }
    }
  }
  float totals[kAtenPerThread];
#pragma unroll
  for (int j = 0; j < kAtenPerThread; ++j) {
    float acc[kAtenVec] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
#pragma unroll
      for (int i = 0; i < kAtenVec; ++i) {
        const float f = element_as_float(x[j][k], i);
        acc[i] = __fadd_rn(acc[i], __fmul_rn(f, f));
      }
    }
    totals[j] = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[1]), acc[2]), acc[3]);
    if constexpr (kSplit) totals[j] = warp_butterfly_sum(totals[j], 32, 0xffffffffu);
  }
#pragma unroll
  for (int offset = kAtenPerThread / 2; offset > 0; offset /= 2) {
#pragma unroll
    for (int m = 0; m < offset; ++m) totals[m] = __fadd_rn(totals[m], totals[m + offset]);
  }
  float total;
  if constexpr (kSplit) {
    if (lane == 0) partials[t / 32] = totals[0];
    __syncthreads();
    total = gathered_tree_sum(partials, kThreads / 32, 1, 0);
  } else {
    partials[t] = totals[0];
    __syncthreads();
    total = warp_butterfly_sum(gathered_tree_sum(partials, kThreads / 32, 32, lane), 32, 0xffffffffu);
  }
  allow_next_grid();
  const float inv_rms = inverse_rms(total, args.mean_factor, args.eps);

  const bool add_one = args.order == NormOrder::kGemma;
  O* const out_row = args.out + dense_start;
  if constexpr (kReload) {
    // x again (from L2) and the weight, half the groups at a time: the
    // registers of the row are not held through the sum, so more rows fit
    // an SM.
    constexpr int kBatch = kGroups >= 2 ? kGroups / 2 : 1;
#pragma unroll
    for (int k0 = 0; k0 < kGroups; k0 += kBatch) {
#pragma unroll
      for (int j = 0; j < kAtenPerThread; ++j) {
#pragma unroll
        for (int k = k0; k < k0 + kBatch; ++k) {
          if (has_group(j, k)) {
            x[j][k] = Group::load_with_policy(x_row + column(j, k), l2_policy<L2Priority::kEvictFirst>());
            if constexpr (kHasWeight) w[j][k] = WeightGroup::load(args.weight + column(j, k));
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kAtenPerThread; ++j) {
#pragma unroll
        for (int k = k0; k < k0 + kBatch; ++k) {
          const Vec<O, kAtenVec> y = normalize_vec<T, W, O, kAtenVec, kHasWeight, kFp32Scale>(
              x[j][k].vec(), inv_rms, w[j][k].vec(), add_one);
          if (has_group(j, k)) store_vec<O, kAtenVec>(out_row + column(j, k), y);
        }
      }
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < kAtenPerThread; ++j) {
#pragma unroll
    for (int k = 0; k < kGroups; ++k) {
      const Vec<O, kAtenVec> y = normalize_vec<T, W, O, kAtenVec, kHasWeight, kFp32Scale>(
          x[j][k].vec(), inv_rms, w[j][k].vec(), add_one);
      if (has_group(j, k)) store_vec<O, kAtenVec>(out_row + column(j, k), y);
    }
  }
}

// The in-span elements of a window at the span's ends, zero elsewhere
// (element loads: no byte outside the tensor is read).
template <typename T, int N>
__device__ __noinline__ Vec<T, N> load_window_elements(const T* input, int64_t first, int64_t span_begin,
                                                       int64_t span_end) {
  Vec<T, N> value;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const int64_t e = first + i;
    value.v[i] = (e >= span_begin && e < span_end) ? input[e] : T(0.f);
  }
  return value;
}

// A window of an odd-sized row that reaches into the next row or past the
// span, element by element (out of line, as store_chunk_elements).
template <typename T, typename W, typename O, int N, bool kHasWeight, bool kFp32Scale>
__device__ __noinline__ void normalize_window_elements(O* out, int64_t first, Vec<T, N> x, int position,
                                                       int span_length, int hidden, const float* inv_rms_of_slot,
                                                       const W* staged, bool add_one) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const int p = position + i;
    if (p < 0 || p >= span_length) continue;
    const int slot = p / hidden;
    const int col = p - slot * hidden;
    W w = W(0.f);
    if constexpr (kHasWeight) w = staged[col + StagedWeight<W>::kPad];
    out[first + i] = normalize<T, W, O, kHasWeight, kFp32Scale>(to_float(x.v[i]), inv_rms_of_slot[slot], w, add_one);
  }
}

// Global -> shared copy of one 16-byte window that needs no register:
// every window of a span is in flight at once (sm_80+).
__device__ __forceinline__ void copy_window_async(void* shared, const void* global) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(address), "l"(global) : "memory");
}

__device__ __forceinline__ void commit_async_copies() { asm volatile("cp.async.commit_group;" ::: "memory"); }

// Waits until at most N committed groups of this thread are still in flight.
template <int N>
__device__ __forceinline__ void wait_for_async_groups() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Where the rows of one span sit: dense element indices of out, input and
// addend, and its 16-byte windows.
struct SpanGeometry {
  int64_t first_row;
  int rows_here;
  int64_t span_begin;    // dense index of the span's first element
  int span_length;       // elements
  int64_t first_window;  // index of the window that holds span_begin
  int span_shift;        // window elements before the span
  int num_windows;

  template <int kVec>
  __device__ __forceinline__ static SpanGeometry of(int64_t span_index, int rows_per_block, int64_t rows,
                                                    int hidden) {
    SpanGeometry span;
    span.first_row = span_index * rows_per_block;
    span.rows_here = int(std::min<int64_t>(rows_per_block, rows - span.first_row));
    span.span_begin = span.first_row * hidden;
    span.span_length = span.rows_here * hidden;
    span.first_window = span.span_begin / kVec;
    span.span_shift = int(span.span_begin - span.first_window * kVec);
    span.num_windows = (span.span_shift + span.span_length + kVec - 1) / kVec;
    return span;
  }
};

// The ATen-order forward for dense rows (AtenSpanConfig). Each block of a
// resident grid walks spans of rows_per_block rows: a span is copied to
// shared memory in 16-byte windows (cp.async, no registers, all in flight;
// the next span's copy runs while this one is summed and normalized: two
// buffers); each row's AtenSumLayout threads then sum its squares there in
// ATen's order (4 accumulators over float4 groups, head and tail to
// accumulator 0 of the first lanes, the trees of aten_tree_sum), as many
// rows at a time as the block has threads for; then the block normalizes
// the span from shared memory. x is read from DRAM once, in full 16-byte
// loads, whatever ATen's layout or the hidden size, with few registers, so
// that blocks of ATen's 512 threads per row still fill an SM.
// kAlignedRows: hidden a multiple of 16 bytes and every pointer 16-byte
// aligned, so windows never cross rows. Otherwise (odd hidden sizes) the
// weight is staged in shared memory, a window may hold the end of one row
// and the start of the next (normalized element by element), and the windows
// a span shares with its neighbours are copied whole but only its own
// elements are used (the tensor's last window, which may end past the
// tensor, element by element). kWeightInShared (few blocks, decode): the
// weight is copied beside the span, one memory latency in all. The fused op
// (aligned rows only) adds through registers and stores input_out on the way.
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale,
          bool kAlignedRows, bool kWeightInShared>
__global__ void __launch_bounds__(kAtenMaxThreads) rms_norm_aten_span_kernel(const NormArgs<T, W, O, A> args,
                                                                             const AtenSumLayout sum,
                                                                             const int rows_per_block,
                                                                             const int span_bytes) {
  static_assert(kAlignedRows || !(kFusedAdd || kWeightInShared), "aligned rows only");
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kWeightVec = 16 / sizeof(W);
  constexpr bool kStageWeight = kHasWeight && !kAlignedRows;
  using Window = Vec<T, kVec>;
  extern __shared__ __align__(16) unsigned char span_shared[];
  T* const first_buffer = reinterpret_cast<T*>(span_shared);
  T* const second_buffer = reinterpret_cast<T*>(span_shared + span_bytes);
  W* staged = reinterpret_cast<W*>(span_shared + 2 * span_bytes);  // odd rows, or kWeightInShared
  __shared__ float partials[kAtenMaxThreads];
  __shared__ float inv_rms_of_slot[kAtenMaxThreads];
  const int64_t rows = args.layout.rows;
  const int hidden = int(args.layout.hidden);
  const int64_t total_elements = rows * hidden;
  const int threads_per_row = sum.lanes * sum.warps;
  const int rows_per_pass = blockDim.x / threads_per_row;
  const int pass_slot = threadIdx.x / threads_per_row;
  const int g = threadIdx.x - pass_slot * threads_per_row;  // ATen's thread index within the row
  const int lane = g & (sum.lanes - 1), y = g / sum.lanes;
  const bool add_one = args.order == NormOrder::kGemma;
  auto square = [](float f) { return __fmul_rn(f, f); };
  // Aligned rows start on float4 groups of HF's fp32 squares (hidden is a
  // multiple of 4) and hold whole windows: where a thread's windows and groups
  // fall is fixed once here, not divided out per window or per row.
  const int windows_per_row = hidden / kVec;
  const int first_window_row = int(threadIdx.x) / windows_per_row;
  const int first_window_col = int(threadIdx.x) - first_window_row * windows_per_row;
  const int window_step_rows = int(blockDim.x) / windows_per_row;
  const int window_step_cols = int(blockDim.x) - window_step_rows * windows_per_row;
  const int aligned_groups = hidden / kAtenVec;
  const int my_aligned_groups = g < aligned_groups ? (aligned_groups - g + threads_per_row - 1) / threads_per_row : 0;

  // Copies (or, fused, adds and stores) one span's windows into `buffer`.
  auto fetch_span = [&](const SpanGeometry& span, T* buffer) {
    const T* input = args.input + span.first_window * kVec;
    for (int window = threadIdx.x; window < span.num_windows; window += blockDim.x) {
      const int64_t first = (span.first_window + window) * kVec;
      Window* to = reinterpret_cast<Window*>(buffer + window * kVec);
      if constexpr (kFusedAdd) {
        Window x = load_vec<T, kVec>(input + window * kVec);
        const Vec<A, kVec> a = load_vec<A, kVec>(args.addend + first);
#pragma unroll
        for (int i = 0; i < kVec; ++i) x.v[i] = static_cast<T>(__fadd_rn(to_float(a.v[i]), to_float(x.v[i])));
        store_vec<T, kVec>(args.input_out + first, x);
        *to = x;
      } else if (kAlignedRows || first + kVec <= total_elements) {
        copy_window_async(to, input + window * kVec);
      } else {
        *to = load_window_elements<T, kVec>(args.input, first, span.span_begin, span.span_begin + span.span_length);
      }
    }
    commit_async_copies();
  };

  wait_for_previous_grid();
  if constexpr (kWeightInShared && kHasWeight) {  // in the first span's group of copies
    for (int v = threadIdx.x; v < hidden / kWeightVec; v += blockDim.x) {
      copy_window_async(staged + v * kWeightVec, args.weight + v * kWeightVec);
    }
  }
  const int64_t num_spans = (rows + rows_per_block - 1) / rows_per_block;
  int64_t span_index = blockIdx.x;  // the grid has at most num_spans blocks
  fetch_span(SpanGeometry::of<kVec>(span_index, rows_per_block, rows, hidden), first_buffer);
  if constexpr (kStageWeight) stage_weight(staged, args.weight, hidden);  // while the span is in flight
  for (int step = 0; span_index < num_spans; ++step, span_index += gridDim.x) {
    const SpanGeometry span = SpanGeometry::of<kVec>(span_index, rows_per_block, rows, hidden);
    const T* buffer = (step & 1) ? second_buffer : first_buffer;
    const int64_t next_index = span_index + gridDim.x;
    if (next_index < num_spans) {  // its buffer was last read before the barrier that ended the previous step
      fetch_span(SpanGeometry::of<kVec>(next_index, rows_per_block, rows, hidden),
                 (step & 1) ? first_buffer : second_buffer);
      wait_for_async_groups<1>();
    } else {
      wait_for_async_groups<0>();
    }
    __syncthreads();

    // Each row's ATen threads, rows_per_pass rows at a time: groups of 4
    // squares at dense element indices that are multiples of 4 (HF's fp32
    // squares are a fresh tensor), so group k of a row starting at dense
    // r * hidden is at head + 4k, 4-element aligned in shared memory too.
    for (int pass = 0; pass < span.rows_here; pass += rows_per_pass) {
      const int slot = pass + pass_slot;
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      if (slot < span.rows_here) {
        const T* row = buffer + span.span_shift + slot * hidden;
        if (kAlignedRows && sum.vectorized) {
          const T* group = row + g * kAtenVec;
          const int group_step = threads_per_row * kAtenVec;
#pragma unroll 4
          for (int k = 0; k < my_aligned_groups; ++k, group += group_step) {
            const Vec<T, kAtenVec> v = *reinterpret_cast<const Vec<T, kAtenVec>*>(group);
#pragma unroll
            for (int i = 0; i < kAtenVec; ++i) acc[i] = __fadd_rn(acc[i], square(to_float(v.v[i])));
          }
        } else if (sum.vectorized) {
          const int64_t dense_row = (span.first_row + slot) * hidden;
          const int shift = int(dense_row % kAtenVec);
          const int head = shift == 0 ? 0 : kAtenVec - shift;
          if (y == 0 && shift > 0 && lane >= shift && lane < kAtenVec) acc[0] = square(to_float(row[lane - shift]));
          const int num_groups = (hidden - head) / kAtenVec;
          const T* groups = row + head;
#pragma unroll 4
          for (int k = g; k < num_groups; k += threads_per_row) {
            const Vec<T, kAtenVec> v = *reinterpret_cast<const Vec<T, kAtenVec>*>(groups + k * kAtenVec);
#pragma unroll
            for (int i = 0; i < kAtenVec; ++i) acc[i] = __fadd_rn(acc[i], square(to_float(v.v[i])));
          }
          const int tail = (hidden - head) % kAtenVec;
          if (y == 0 && lane < tail) acc[0] = __fadd_rn(acc[0], square(to_float(groups[num_groups * kAtenVec + lane])));
        } else {
          aten_strided_squares(acc, row, hidden, g, threads_per_row);
        }
      }
      float total = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[1]), acc[2]), acc[3]);
      total = aten_tree_sum(total, sum, g, partials);
      if (g == 0 && slot < span.rows_here) inv_rms_of_slot[slot] = inverse_rms(total, args.mean_factor, args.eps);
    }
    __syncthreads();
    allow_next_grid();

    if constexpr (kAlignedRows) {
      // Row and column of each window by steps (kAlignedRows: span_shift 0).
      O* const out_span = args.out + span.span_begin;
      int row_slot = first_window_row, col = first_window_col;
#pragma unroll 4
      for (int window = threadIdx.x; window < span.num_windows; window += blockDim.x) {
        const Window x = *reinterpret_cast<const Window*>(buffer + window * kVec);
        Vec<W, kVec> wk;
        if constexpr (kWeightInShared && kHasWeight) {
          wk = *reinterpret_cast<const Vec<W, kVec>*>(staged + col * kVec);
        } else if constexpr (kHasWeight) {
          wk = load_vec<W, kVec>(args.weight + col * kVec);
        }
        const float inv_rms = inv_rms_of_slot[row_slot];
        const Vec<O, kVec> out = normalize_vec<T, W, O, kVec, kHasWeight, kFp32Scale>(x, inv_rms, wk, add_one);
        store_vec<O, kVec>(out_span + window * kVec, out);
        row_slot += window_step_rows;
        col += window_step_cols;
        if (col >= windows_per_row) {
          col -= windows_per_row;
          ++row_slot;
        }
      }
    } else {
      // Odd rows: a window may straddle two rows or the span's ends.
#pragma unroll 4
      for (int window = threadIdx.x; window < span.num_windows; window += blockDim.x) {
        const int64_t first = (span.first_window + window) * kVec;
        const int position = window * kVec - span.span_shift;
        const int row_slot = position >= 0 ? position / hidden : 0;
        const int col = position - row_slot * hidden;
        const Window x = *reinterpret_cast<const Window*>(buffer + window * kVec);
        if (position >= 0 && position + kVec <= span.span_length && col + kVec <= hidden) {
          Vec<W, kVec> wk;
          if constexpr (kStageWeight) wk = staged_weight_chunk<kVec>(staged, hidden, col);
          const float inv_rms = inv_rms_of_slot[row_slot];
          const Vec<O, kVec> out = normalize_vec<T, W, O, kVec, kHasWeight, kFp32Scale>(x, inv_rms, wk, add_one);
          store_vec<O, kVec>(args.out + first, out);
        } else {
          normalize_window_elements<T, W, O, kVec, kHasWeight, kFp32Scale>(
              args.out, first, x, position, span.span_length, hidden, inv_rms_of_slot, staged, add_one);
        }
      }
    }
    __syncthreads();  // the buffer and the slots are reused two and one steps on
  }
}

// A float4 group of a row staged in shared memory, as loaded (read after
// the barrier that publishes it): 4 elements of S, 8 bytes for bf16 / fp16,
// 16 for fp32 (and for the fp32 squares aligned rows stage), by its 32-bit
// shared address (through a generic pointer nvcc rebuilt the window's base,
// S2R SR_CgaCtaId and three more, before each predicated load of the sum:
// ~9 instructions per square; v15). Volatile with a memory clobber: the
// loads stay after the barrier.
template <typename S>
struct StagedGroup {
  uint32_t words[sizeof(S)];  // 4 elements
};
template <typename S>
__device__ __forceinline__ StagedGroup<S> load_staged_group(uint32_t address) {
  StagedGroup<S> group;
  if constexpr (sizeof(S) == 4) {
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(group.words[0]), "=r"(group.words[1]), "=r"(group.words[2]), "=r"(group.words[3])
                 : "r"(address)
                 : "memory");
  } else {
    asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];"
                 : "=r"(group.words[0]), "=r"(group.words[1])
                 : "r"(address)
                 : "memory");
  }
  return group;
}

// Element q of a staged group as float.
template <typename S>
__device__ __forceinline__ float staged_element(const StagedGroup<S>& group, int q) {
  if constexpr (sizeof(S) == 4) {
    return __uint_as_float(group.words[q]);
  } else {
    return half_word_as_float<S>(group.words[q / 2], (q & 1) != 0);
  }
}

// One staged group into ATen's four accumulators, in order. kSquare: the
// group holds the row's elements, each squared here (to float, times
// itself, rounded once: the same operation on the same value as where
// aligned rows form their squares), else it holds the squares.
template <typename S, bool kSquare>
__device__ __forceinline__ void add_staged_group(float4& acc, const StagedGroup<S>& group) {
  float f[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    f[q] = staged_element(group, q);
    if constexpr (kSquare) f[q] = __fmul_rn(f[q], f[q]);
  }
  acc.x = __fadd_rn(acc.x, f[0]);
  acc.y = __fadd_rn(acc.y, f[1]);
  acc.z = __fadd_rn(acc.z, f[2]);
  acc.w = __fadd_rn(acc.w, f[3]);
}

// ATen's thread of a row adding the squares of its float4 groups first,
// first + stride, ... (below num_groups) of the row staged in shared memory
// (from `address`, group `first`), in order, one group into each of four
// accumulators. A batch of groups is in flight at once: whole batches
// unchecked, then one batch more whose groups past the row add zeros (acc +
// 0 == acc bitwise: the accumulators are sums of squares, never -0), so
// that a lane with fewer groups than its warp's others (4097: lane 31 has
// 31, the others 32; ATen threads 510 and 511 of a split 8184-wide row 3
// of 4) waits on one batch, not on a load a group.
template <typename S, bool kSquare, int kBatch>
__device__ __forceinline__ void add_strided_groups(float4& acc, uint32_t address, int first, int stride,
                                                   int num_groups) {
  constexpr uint32_t kGroupBytes = kAtenVec * sizeof(S);
  const uint32_t step = uint32_t(stride) * kGroupBytes;
  int k = first;
  for (; k + (kBatch - 1) * stride < num_groups; k += kBatch * stride) {
    StagedGroup<S> batch[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) batch[b] = load_staged_group<S>(address + uint32_t(b) * step);
#pragma unroll
    for (int b = 0; b < kBatch; ++b) add_staged_group<S, kSquare>(acc, batch[b]);
    address += kBatch * step;
  }
  if (k < num_groups) {
    StagedGroup<S> batch[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      batch[b] = k + b * stride < num_groups ? load_staged_group<S>(address + uint32_t(b) * step) : StagedGroup<S>{};
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) add_staged_group<S, kSquare>(acc, batch[b]);
  }
}

__device__ __forceinline__ float joined(const float4& acc) {
  return __fadd_rn(__fadd_rn(__fadd_rn(acc.x, acc.y), acc.z), acc.w);
}

// Calls f(std::integral_constant<int, kShift>) for the runtime shift
// (0 <= shift < N): a block-uniform branch, after which a shift is
// register picks and funnel shifts by constants (by a runtime shift, the
// odd-row kernel spent ~58 instructions a chunk selecting words; v16).
template <int N, int kShift = 0, typename F>
__device__ __forceinline__ void with_constant_shift(int shift, F&& f) {
  if constexpr (kShift + 1 < N) {
    if (shift != kShift) {
      with_constant_shift<N, kShift + 1>(shift, f);
      return;
    }
  }
  f(std::integral_constant<int, kShift>{});
}

// The ATen-order forward with a block per row (AtenRowBlockConfig): rows of
// ATen's unsplit layouts at most 128 lanes wide that the register kernel
// declines (and the folded kernel does not take: decode batches of up to
// 4096 are its), for being few (8 to ~500 rows of 4096: a lane's 8-32
// groups would be summed by one warp while the SMs idle) or too long for
// its registers (fp32 past 3072, fp16 past 4096, the fused op past 256
// bytes a thread), or odd; and aligned rows that ATen splits over 16 warps
// (8164 to 8192 wide; `warps` > 1, below), since v18 the folded kernel's:
// here only with RMSNORM_FOLDED=0 (v17 took them from the register kernel
// at two rows per SM and more). ATen's order makes each lane add its
// groups' squares one after another into four accumulators; here lane g
// is thread g, adding the same values in the same order from the row
// staged in shared memory, and ((a0 + a1) + a2) + a3 joins them. The row
// arrives in 16-byte chunks, at most row_block_chunks_per_thread(kOddRows)
// a thread. Aligned rows: x and the weight in flight together, each thread
// squares its chunks into shared memory and later normalizes them from its
// registers. Odd rows (kOddRows): x goes to shared memory as loaded, the
// lanes square their groups from there, and after the sum each thread
// takes its chunks back from there with their weight (from L1 mostly):
// no register holds the row through the sum, so that 12 blocks of 128
// threads fit an SM instead of 8 (v20: 8192x4097 0.84 -> 0.92 of copy;
// aligned rows lost that way, 8192x4096 0.98 -> 0.95: their weight's
// latency after the sum and the lanes' squares, where odd rows already
// loaded the weight there).
// kOddRows: dense rows that start off 16-byte boundaries (hidden * element
// bytes not a multiple of 16; input, out and weight on 16-byte boundaries,
// unfused). The chunks are the tensor's, from the one that holds the row's
// first element: `shift` elements of the row before (and of the row after)
// are loaded and ignored; the first and last chunks are stored element by
// element (the rows beside own the rest of their bytes). The sum is ATen's
// for a row whose fp32 squares start `head` elements before a float4
// group: head element e initializes accumulator 0 of lane squares_shift +
// e, the tail is added to accumulator 0 of the first lanes last (as
// rms_norm_aten_span_kernel and the register kernel's kHeadTail).
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale,
          bool kOddRows>
__global__ void __launch_bounds__(kAtenMaxThreads, row_block_min_blocks(sizeof(W) == sizeof(T), kOddRows))
    rms_norm_aten_row_block_kernel(const NormArgs<T, W, O, A> args, const int lanes, const int warps) {
  static_assert(!(kOddRows && kFusedAdd), "odd rows: unfused");
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kChunks = row_block_chunks_per_thread(kOddRows);
  using Chunk = PackedVec<T, kVec>;
  using WeightChunk = PackedVec<W, kVec>;
  // What the sum reads: odd rows' elements as loaded, aligned rows' fp32 squares.
  using Staged = std::conditional_t<kOddRows, T, float>;
  extern __shared__ __align__(16) unsigned char row_block_staged[];
  Staged* const staged = reinterpret_cast<Staged*>(row_block_staged);
  __shared__ float lane_totals[kRowBlockMaxLanes];
  const RowLayout& layout = args.layout;
  const int hidden = int(layout.hidden);
  const int64_t row = blockIdx.x;
  const int64_t dense_start = row * layout.hidden;  // out, addend and input_out are dense
  // Odd rows: elements of the row before in the row's first chunk.
  const int shift = kOddRows ? int(dense_start % kVec) : 0;
  const int num_chunks = (shift + hidden + kVec - 1) / kVec;
  const T* x_row = args.input + (kOddRows ? dense_start : layout.offset_of(row));
  O* const out_row = args.out + dense_start;
  const bool add_one = args.order == NormOrder::kGemma;
  // The row's chunk in this thread's slot j. Odd rows: the last slot's
  // chunks end at the block's last thread, so that the row's two edge
  // chunks (stored element by element) fall to different warps; thread 0
  // held both at 128 threads (128x4097 4.0 -> 4.6 us).
  auto chunk_of = [&](int j) {
    const int t = int(threadIdx.x), threads = int(blockDim.x);
    return kOddRows && j == kChunks - 1 ? num_chunks - threads + t : t + j * threads;
  };
  auto has_chunk = [&](int j) {
    return kOddRows && j == kChunks - 1 ? chunk_of(j) >= j * int(blockDim.x) : chunk_of(j) < num_chunks;
  };
  // Chunk j's place among the row's chunks, and the row's column of its first element.
  auto place = [&](int j) { return chunk_of(j) * kVec; };
  auto column = [&](int j) { return place(j) - shift; };
  // Odd rows: chunk j lies in the row, and the pair of weight chunks its
  // weight is shifted from (from place - kVec when shift > 0) lies in the weight.
  auto whole = [&](int j) { return !kOddRows || (column(j) >= 0 && place(j) + kVec <= hidden); };

  wait_for_previous_grid();
  // Every chunk's x is loaded before any is used (a use, or a call on one
  // path, between the loads made each chunk wait for the one before).
  // Aligned rows hold x and the weight until they are stored.
  Chunk x[kChunks];
  WeightChunk w[kChunks];
  // Odd rows: the last row's last chunk may end past the tensor (a check
  // on the block's row first: 64-bit sums per chunk cost ~6 instructions).
  const bool last_row = row + 1 == layout.rows;
  auto past_end = [&](int j) { return kOddRows && last_row && column(j) + kVec > hidden; };
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    if (!has_chunk(j)) continue;
    if (!past_end(j)) x[j] = Chunk::load(x_row + column(j));
    if constexpr (kHasWeight && !kOddRows) w[j] = WeightChunk::load(args.weight + column(j));
  }
  if constexpr (kOddRows) {
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      if (has_chunk(j) && past_end(j)) {
        x[j] = Chunk::of(load_window_elements<T, kVec>(args.input, dense_start + column(j), dense_start,
                                                       dense_start + hidden));
      }
    }
  }
  if constexpr (kFusedAdd) {  // every load above before the first store (the pointers may alias)
    Vec<A, kVec> a[kChunks];
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      if (has_chunk(j)) a[j] = load_vec<A, kVec>(args.addend + dense_start + column(j));
    }
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      if (!has_chunk(j)) continue;
      Vec<T, kVec> added;
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        added.v[i] = static_cast<T>(__fadd_rn(to_float(a[j].v[i]), element_as_float(x[j], i)));
      }
      store_vec<T, kVec>(args.input_out + dense_start + column(j), added);
      x[j] = Chunk::of(added);
    }
  }
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    if (!has_chunk(j)) continue;
    if constexpr (kOddRows) {
      copy_words<16>(staged + place(j), x[j].words);
    } else {
      float4* const to = reinterpret_cast<float4*>(staged + place(j));
#pragma unroll
      for (int i = 0; i < kVec; i += 4) {
        float f[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) f[e] = element_as_float(x[j], i + e);
        to[i / 4] = make_float4(__fmul_rn(f[0], f[0]), __fmul_rn(f[1], f[1]), __fmul_rn(f[2], f[2]),
                                __fmul_rn(f[3], f[3]));
      }
    }
  }
  __syncthreads();

  // Unsplit layouts: ATen's lane g is thread g here: it adds element q of its groups g,
  // g + lanes, ... into accumulator q, one group (one shared load) at a time,
  // and joins them ((a0 + a1) + a2) + a3, as ATen's thread does. (Four
  // threads per lane, one per accumulator, spent four warps' predicates,
  // addresses and loads on what one warp's loads do; v16.)
  // HF's fp32 squares are a fresh dense tensor: its row starts `head`
  // elements before a float4 group, and groups sits on 4 elements (shift +
  // head is a multiple of 4).
  const int g = int(threadIdx.x);
  const int squares_shift = kOddRows ? int(dense_start % kAtenVec) : 0;
  const int head = squares_shift == 0 ? 0 : kAtenVec - squares_shift;
  const Staged* const row_staged = staged + shift;  // column p at row_staged[p]
  const Staged* const groups = row_staged + head;
  auto square_at = [](const Staged* element) {  // odd rows' head and tail elements
    const float f = to_float(*element);
    return __fmul_rn(f, f);
  };
  const int num_groups = (hidden - head) / kAtenVec;
  // float4 groups of a lane's sum in flight at once (odd fp32 rows: 4, for 40 registers)
  constexpr int kSumBatch = kOddRows && sizeof(T) == 4 ? 4 : 8;
  constexpr int kSplitSumBatch = 4;  // split layouts: a thread's two ATen threads, 4 groups each at 8192
  const uint32_t groups_address = static_cast<uint32_t>(__cvta_generic_to_shared(groups));
  constexpr uint32_t kGroupBytes = kAtenVec * sizeof(Staged);
  const int lane = int(threadIdx.x) & 31;
  float total;
  if (kOddRows || warps == 1) {
    if (g < lanes) {
      float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
      if (kOddRows && squares_shift > 0 && g >= squares_shift && g < kAtenVec) {
        acc.x = square_at(row_staged + g - squares_shift);
      }
      add_strided_groups<Staged, kOddRows, kSumBatch>(acc, groups_address + uint32_t(g) * kGroupBytes, g, lanes,
                                                      num_groups);
      if (kOddRows && g < (hidden - head) % kAtenVec) {
        acc.x = __fadd_rn(acc.x, square_at(groups + num_groups * kAtenVec + g));
      }
      lane_totals[g] = joined(acc);
    }
    __syncthreads();
    allow_next_grid();
    // aten_tree_sum's levels for one row (gathered in registers, then the
    // butterfly), in every warp: each ends with the total in all its lanes,
    // where one warp and a broadcast through shared memory would take a barrier.
    total = lanes > 32 ? gathered_tree_sum(lane_totals, lanes / 32, 32, lane) : lane_totals[lane];
    total = warp_butterfly_sum(total, 32, 0xffffffffu);
  } else {
    // ATen splits the row over `warps` warps of 32 lanes (8164-8192 wide): its
    // thread lane + 32 y adds groups of that index modulo 32 * warps, the
    // lanes' tree runs first, then the warps' (v[y] += v[y + offset],
    // offset = warps / 2 .. 1). Thread t here is ATen's threads t + r *
    // blockDim (r < per_thread: y, y + warps / per_thread, ...), so the
    // warps' first levels pair two of its own totals, in registers; the
    // block's warps run the rest.
    const int aten_threads = 32 * warps;
    const int per_thread = aten_threads / int(blockDim.x);
    float totals[kRowBlockMaxAtenThreadsPerThread];
#pragma unroll
    for (int r = 0; r < kRowBlockMaxAtenThreadsPerThread; ++r) {
      totals[r] = 0.f;
      if (r < per_thread) {
        const int aten_g = g + r * int(blockDim.x);
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        add_strided_groups<Staged, kOddRows, kSplitSumBatch>(
            acc, groups_address + uint32_t(aten_g) * kGroupBytes, aten_g, aten_threads, num_groups);
        totals[r] = warp_butterfly_sum(joined(acc), 32, 0xffffffffu);
      }
    }
#pragma unroll
    for (int offset = kRowBlockMaxAtenThreadsPerThread / 2; offset > 0; offset /= 2) {
      if (offset < per_thread) {
#pragma unroll
        for (int m = 0; m < offset; ++m) totals[m] = __fadd_rn(totals[m], totals[m + offset]);
      }
    }
    if (lane == 0) lane_totals[threadIdx.x / 32] = totals[0];
    __syncthreads();
    allow_next_grid();
    total = gathered_tree_sum(lane_totals, int(blockDim.x) / 32, 1, 0);
  }
  const float inv_rms = inverse_rms(total, args.mean_factor, args.eps);
  // Chunks [kFirst, kEnd): odd rows' weight (from L1 mostly) and x (from
  // shared memory), then normalized and stored.
  auto finish_chunks = [&](auto first_constant, auto end_constant) {
    constexpr int kFirst = decltype(first_constant)::value, kEnd = decltype(end_constant)::value;
    if constexpr (kHasWeight && kOddRows) {
      // A chunk's weight is the pair of the weight's aligned chunks around
      // its columns, shifted by the row's `shift`. Addresses are clamped
      // into the weight: a chunk that is not whole gathers its in-row
      // elements after the switch.
      const int last_whole = (hidden / kVec - 1) * kVec;  // the weight's last whole 16-byte chunk
      with_constant_shift<kVec>(shift, [&](auto shift_constant) {
        constexpr int kShift = decltype(shift_constant)::value;
#pragma unroll
        for (int j = kFirst; j < kEnd; ++j) {
          if (!has_chunk(j)) continue;
          const WeightChunk high = WeightChunk::load(args.weight + min(place(j), last_whole));
          if constexpr (kShift == 0) {
            w[j] = high;
          } else {
            const WeightChunk low = WeightChunk::load(args.weight + min(max(place(j) - kVec, 0), last_whole));
            w[j] = WeightChunk::template from_pair<kVec - kShift>(low, high);
          }
        }
      });
#pragma unroll
      for (int j = kFirst; j < kEnd; ++j) {
        if (!has_chunk(j) || whole(j)) continue;
        Vec<W, kVec> gathered;
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
          const int c = column(j) + i;
          gathered.v[i] = c >= 0 && c < hidden ? args.weight[c] : W(0.f);
        }
        w[j] = WeightChunk::of(gathered);
      }
    }
    // Odd rows' x from shared memory, into fresh registers (assigned in
    // place, x's chunks past the row would have kept their loaded values
    // live through the sum: 48 bytes of spills at 40 registers).
    Chunk reloaded[kChunks];
    if constexpr (kOddRows) {
#pragma unroll
      for (int j = kFirst; j < kEnd; ++j) {
        if (has_chunk(j)) reloaded[j] = Chunk::load(staged + place(j));
      }
    }
#pragma unroll
    for (int j = kFirst; j < kEnd; ++j) {
      if (!has_chunk(j)) continue;
      const Chunk& xj = kOddRows ? reloaded[j] : x[j];
      const Vec<O, kVec> y = normalize_vec<T, W, O, kVec, kHasWeight, kFp32Scale>(xj.vec(), inv_rms,
                                                                                w[j].vec(), add_one);
      if (whole(j)) {
        store_vec<O, kVec>(out_row + column(j), y);
      } else {
        // Odd rows' first and last chunks, which the rows beside share:
        // their in-row elements one by one.
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
          const int c = column(j) + i;
          if (c >= 0 && c < hidden) out_row[c] = y.v[i];
        }
      }
    }
  };
  using std::integral_constant;
  if constexpr (kOddRows) {
    // Two chunks a step, each step's weight loaded before its stores (a
    // store between a load and its use made each chunk wait; the pointers
    // may alias), so that few chunks' x and weight are live at once: every
    // chunk's weight pair in flight at once took 74 registers and the SM 6
    // blocks of 128 threads instead of 8 (8192x4097 0.80 -> 0.77; v16).
    constexpr int kStep = 2;
    finish_chunks(integral_constant<int, 0>{}, integral_constant<int, kStep>{});
    finish_chunks(integral_constant<int, kStep>{}, integral_constant<int, 2 * kStep>{});
    static_assert(kChunks > 2 * kStep && kChunks <= 3 * kStep, "three steps");
    finish_chunks(integral_constant<int, 2 * kStep>{}, integral_constant<int, kChunks>{});
  } else {
    finish_chunks(integral_constant<int, 0>{}, integral_constant<int, kChunks>{});
  }
}

// True when every pointer the kernel touches sits on a multiple of
// `elements` elements of its own type (the weight only if `with_weight`).
template <typename T, typename W, typename O, typename A>
bool pointers_on(const NormArgs<T, W, O, A>& args, int elements, bool with_weight = true) {
  return is_aligned(args.input, sizeof(T) * elements) && is_aligned(args.out, sizeof(O) * elements) &&
         (!with_weight || args.weight == nullptr || is_aligned(args.weight, sizeof(W) * elements)) &&
         (args.addend == nullptr || is_aligned(args.addend, sizeof(A) * elements)) &&
         (args.input_out == nullptr || is_aligned(args.input_out, sizeof(T) * elements));
}

// ... and every row of every tensor starts on such a multiple and spans
// whole ones: 16-byte chunks of the input (the batch-invariant and span
// kernels' aligned rows) or float4 groups (the register kernel).
template <typename T, typename W, typename O, typename A>
bool rows_on(const NormArgs<T, W, O, A>& args, int elements) {
  const RowLayout& layout = args.layout;
  if (layout.hidden % elements != 0) return false;
  for (int d = 0; d < layout.num_dims; ++d) {
    if (layout.strides[d] % elements != 0) return false;
  }
  return pointers_on(args, elements);
}

// RMSNORM_ROW_BLOCK=0: the span kernel wherever the row-block kernel would
// run, and the register kernel wherever it takes the shape; =all: the
// row-block kernel wherever it takes the shape, before the register kernel
// (A/B runs in one build; the folded kernel, where it takes the shape,
// still runs first unless RMSNORM_FOLDED=0).
enum class RowBlockUse { kOff, kByTable, kWherever };
inline RowBlockUse row_block_use() {
  static const RowBlockUse use = [] {
    const char* env = std::getenv("RMSNORM_ROW_BLOCK");
    if (env == nullptr) return RowBlockUse::kByTable;
    if (env[0] == '0') return RowBlockUse::kOff;
    return std::string(env) == "all" ? RowBlockUse::kWherever : RowBlockUse::kByTable;
  }();
  return use;
}

// Rows the row-block kernel reads as odd rows: dense, off 16-byte
// boundaries only because of their size, unfused, every pointer on one.
template <typename T, typename W, typename O, typename A, bool kFusedAdd>
bool odd_rows_for_row_block(const NormArgs<T, W, O, A>& args) {
  const RowLayout& layout = args.layout;
  return !kFusedAdd && layout.is_dense() && (layout.hidden * int64_t(sizeof(T))) % 16 != 0 &&
         is_aligned(args.input, 16) && is_aligned(args.out, 16) &&
         (args.weight == nullptr || is_aligned(args.weight, 16));
}

// f(std::integral_constant<size_t, I>{}) for I = 0 .. N - 1: host code
// that instantiates one kernel per entry of a constexpr table.
template <typename F, size_t... I>
void for_each_index_of(F&& f, std::index_sequence<I...>) {
  (f(std::integral_constant<size_t, I>{}), ...);
}
template <size_t N, typename F>
void for_each_index(F&& f) {
  for_each_index_of(f, std::make_index_sequence<N>{});
}

// The folded kernel where AtenFoldedConfig takes the shape (rows of whole
// float4 groups: `whole_groups`, rows_on(args, kAtenVec)); false otherwise.
// RMSNORM_FOLDED=0: never (the register or row-block kernel instead, for
// A/B runs in one build).
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale>
bool launch_aten_folded(const NormArgs<T, W, O, A>& args, const AtenSumLayout& sum, bool whole_groups,
                        const cudaDeviceProp* props, cudaStream_t stream, bool programmatic) {
  static const bool disabled = [] {
    const char* env = std::getenv("RMSNORM_FOLDED");
    return env != nullptr && env[0] == '0';
  }();
  // RMSNORM_FOLDED_RELOAD=0 / 1: split rows read once / twice whatever the
  // row count, for A/B runs in one build.
  static const int reload_override = [] {
    const char* env = std::getenv("RMSNORM_FOLDED_RELOAD");
    return env == nullptr ? -1 : (env[0] == '1' ? 1 : 0);
  }();
  if (disabled || !whole_groups) return false;
  const AtenFoldedConfig config = pick_aten_folded_config(args.layout.hidden, int(sizeof(T)), int(sizeof(W)), sum,
                                                          kFusedAdd, args.layout.rows, props->multiProcessorCount,
                                                          props->major == 9);
  if (!config.supported) return false;
  // (config.reload only for unfused split rows; the override likewise)
  const bool reload = reload_override < 0 ? config.reload : reload_override == 1 && config.split && !kFusedAdd;
  bool launched = false;
  auto launch_with = [&](auto split_tag, auto threads_tag, auto per_thread_tag, auto groups_tag) {
    constexpr bool kSplit = decltype(split_tag)::value;
    constexpr int kThreads = decltype(threads_tag)::value, kPerThread = decltype(per_thread_tag)::value;
    constexpr int kGroups = decltype(groups_tag)::value;
    if constexpr (kSplit || !kFusedAdd) {
      auto run = [&](auto kernel) {
        launch_kernel(kernel, dim3(unsigned(args.layout.rows)), dim3(kThreads), stream, programmatic, args);
      };
      launched = true;
      if constexpr (kSplit && !kFusedAdd) {
        if (reload) {
          run(rms_norm_aten_folded_kernel<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale, kSplit, kThreads, kPerThread,
                                          kGroups, true>);
          return;
        }
      }
      run(rms_norm_aten_folded_kernel<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale, kSplit, kThreads, kPerThread,
                                      kGroups>);
    }
  };
  using std::bool_constant;
  using std::integral_constant;
  if (config.split) {
    // 16-bit rows of a 16-bit weight on 256 threads of two ATen threads,
    // others on 512 of one (each instance compiled only for the types the
    // config gives it).
    constexpr bool k16BitRowsAndWeight = sizeof(T) == 2 && sizeof(W) == 2;
    constexpr int kThreads = k16BitRowsAndWeight ? 256 : kAtenMaxThreads;
    if (config.threads == kThreads) {
      launch_with(bool_constant<true>{}, integral_constant<int, kThreads>{},
                  integral_constant<int, kAtenMaxThreads / kThreads>{}, integral_constant<int, kFoldedSplitGroups>{});
    }
  } else {
    // The decode instance the config names, one per kFoldedDecodeInstances entry.
    for_each_index<std::size(kFoldedDecodeInstances)>([&](auto index) {
      constexpr FoldedDecodeInstance kInstance = kFoldedDecodeInstances[decltype(index)::value];
      if (config.threads == kInstance.threads && config.groups == kInstance.groups &&
          config.aten_per_thread * kInstance.threads == kInstance.lanes) {
        launch_with(bool_constant<false>{}, integral_constant<int, kInstance.threads>{},
                    integral_constant<int, kInstance.lanes / kInstance.threads>{},
                    integral_constant<int, kInstance.groups>{});
      }
    });
  }
  return launched;
}

// The short-row kernel where AtenShortRowConfig takes the shape and every
// row is whole 16-byte chunks at 16-byte boundaries (`rows_aligned`:
// rows_on, pointers and strides); false otherwise. RMSNORM_SHORT_ROWS=0:
// the register kernel instead (A/B runs in one build).
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFp32Scale>
bool launch_aten_short_rows(const NormArgs<T, W, O, A>& args, const AtenSumLayout& sum,
                            const AtenRegisterConfig& registers, bool rows_aligned, cudaStream_t stream,
                            bool programmatic) {
  static const bool disabled = [] {
    const char* env = std::getenv("RMSNORM_SHORT_ROWS");
    return env != nullptr && env[0] == '0';
  }();
  const RowLayout& layout = args.layout;
  const AtenShortRowConfig config = pick_aten_short_row_config(layout.hidden, int(sizeof(T)), sum, registers);
  if (disabled || !config.supported || !rows_aligned) return false;
  if constexpr (sizeof(T) == 2) {
    const int64_t rows_per_block = config.rows_per_block();
    const dim3 grid(unsigned((layout.rows + rows_per_block - 1) / rows_per_block));
    constexpr int kLanes = kShortRowLanes, kAll = kShortRowGroupsPerThread;
    if (config.groups_per_lane == 1) {
      launch_kernel(rms_norm_aten_short_rows_kernel<T, W, O, A, kHasWeight, kFp32Scale, kLanes, 1, kAll>, grid,
                    dim3(config.threads), stream, programmatic, args);
    } else {
      launch_kernel(rms_norm_aten_short_rows_kernel<T, W, O, A, kHasWeight, kFp32Scale, kLanes, 2, kAll / 2>, grid,
                    dim3(config.threads), stream, programmatic, args);
    }
    return true;
  }
  return false;
}

// The register kernel where AtenRegisterConfig takes the shape (or, for
// the shapes AtenShortRowConfig takes from it, the short-row kernel); false
// otherwise (the span kernel or the general one then runs). Rows of whole
// groups (any row strides that keep them so), or dense rows that are not
// (hidden not a multiple of 4: kHeadTail; not fused, an odd-sized residual
// stream being rare).
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale>
bool launch_aten_registers(const NormArgs<T, W, O, A>& args, const AtenSumLayout& sum, bool whole_groups,
                           bool rows_aligned, bool odd_rows, const cudaDeviceProp* props, cudaStream_t stream,
                           bool programmatic) {
  // RMSNORM_ATEN_REGISTERS=0: the span kernel instead (of the short-row kernel too), for A/B runs in one build.
  static const bool disabled = [] {
    const char* env = std::getenv("RMSNORM_ATEN_REGISTERS");
    return env != nullptr && env[0] == '0';
  }();
  const RowLayout& layout = args.layout;
  if (disabled) return false;
  const bool dense = layout.is_dense();
  const bool head_tail = !whole_groups && !kFusedAdd && dense && pointers_on(args, kAtenVec);
  if (!whole_groups && !head_tail) return false;
  // RMSNORM_REG_THREADS: the block size to aim for, for sweeps in one build.
  static const int threads_target = [] {
    const char* env = std::getenv("RMSNORM_REG_THREADS");
    return env != nullptr ? std::atoi(env) : 0;  // 0: the table's
  }();
  AtenRegisterConfig config = pick_aten_register_config(layout.rows, layout.hidden, int(sizeof(T)), sum,
                                                        props->multiProcessorCount, threads_target);
  if (!config.supported) return false;
  const RowBlockUse row_block = row_block_use();
  if ((rows_aligned || odd_rows) && row_block != RowBlockUse::kOff) {
    const bool over = row_block == RowBlockUse::kWherever
                          ? pick_aten_row_block_config(layout.hidden, int(sizeof(T)), sum, odd_rows).supported
                          : row_block_over_registers(layout.rows, layout.hidden, int(sizeof(T)), odd_rows, sum,
                                                     config, props->multiProcessorCount);
    if (over) return false;  // the row-block kernel, next
  }
  if (head_tail || kFusedAdd) config.rows_per_thread = 1;  // (instantiated for one row per thread only)
  bool launched = false;
  const bool one_warp_rows = sum.threads_per_row() == 32;
  if constexpr (!kFusedAdd) {
    if (launch_aten_short_rows<T, W, O, A, kHasWeight, kFp32Scale>(args, sum, config, rows_aligned, stream,
                                                                  programmatic)) {
      return true;
    }
  }
  // RMSNORM_REG_PREFETCH=0 / 1: the L2 prefetch off / on whatever the
  // table says, for A/B runs in one build.
  static const int prefetch_override = [] {
    const char* env = std::getenv("RMSNORM_REG_PREFETCH");
    return env == nullptr ? -1 : (env[0] == '1' ? 1 : 0);
  }();
  const bool prefetch = prefetch_override < 0 ? config.prefetch_l2 : prefetch_override == 1;
  auto launch_with = [&](auto groups_tag, auto rows_tag) {
    constexpr int kGroups = decltype(groups_tag)::value, kRows = decltype(rows_tag)::value;
    // The instances compiled (each one for every CUDA arch): rows that fit in
    // 96 registers (fp16 at 48 groups spills: its conversions stay live as
    // floats); the fused op for ATen's one-warp rows only, one row per thread
    // and at most 64 registers of row (prefill; bf16 at 48 groups spilled:
    // 8192x5120 0.59 of copy, the span kernel 0.82; decode-sized fused calls
    // take the span kernel too); odd rows likewise, unfused; several rows per
    // thread as kShortRowGroups has them. Other shapes fall through to the
    // span kernel.
    constexpr int kRowBytes = kGroups * kAtenVec * int(sizeof(T));
    constexpr bool kFits = kRowBytes <= (kFusedAdd ? 256 : kAtenRegisterBytes) &&
                           !(std::is_same_v<T, c10::Half> && kGroups > 32);
    constexpr bool kOneWarpInstance = kRows == 1 || kGroups * kRows == 4;
    constexpr bool kAnyWidthInstance = (kRows == 1 && kGroups <= 32) || kGroups * kRows == 8;
    if constexpr (kFits) {
      const int64_t rows_per_block = int64_t(config.slots) * kRows;  // the grid follows the instance
      const dim3 grid(unsigned((layout.rows + rows_per_block - 1) / rows_per_block));
      auto run = [&](auto kernel) {
        int64_t prefetch_rows = 0;  // a wave of resident blocks ahead
        if (prefetch && int64_t(grid.x) > props->multiProcessorCount) {
          // Once per kernel instance: rows of more than a warp take one row per block, one block size.
          static const int per_sm = [&] {
            int blocks = 0;
            C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, config.threads, 0));
            return std::max(blocks, 1);
          }();
          prefetch_rows = rows_per_block * per_sm * props->multiProcessorCount;
        }
        launch_kernel(kernel, grid, dim3(config.threads), stream, programmatic, args, sum, prefetch_rows);
        launched = true;
      };
      if (head_tail) {
        if constexpr (!kFusedAdd && kRows == 1) {
          if (one_warp_rows) {
            run(rms_norm_aten_registers_kernel<T, W, O, A, kHasWeight, false, kFp32Scale, true, true, kGroups, 1>);
          }
        }
      } else if (one_warp_rows) {
        if constexpr (kOneWarpInstance && (!kFusedAdd || kRows == 1)) {
          run(rms_norm_aten_registers_kernel<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale, false, true, kGroups,
                                             kRows>);
        }
      } else if constexpr (kAnyWidthInstance && !kFusedAdd) {
        run(rms_norm_aten_registers_kernel<T, W, O, A, kHasWeight, false, kFp32Scale, false, false, kGroups, kRows>);
      }
    }
  };
  using std::integral_constant;
  const int rows_per_thread = config.rows_per_thread;
  switch (config.groups_per_thread) {
    case 1:
      rows_per_thread == 4 ? launch_with(integral_constant<int, 1>{}, integral_constant<int, 4>{})
                           : launch_with(integral_constant<int, 1>{}, integral_constant<int, 1>{});
      break;
    case 2:
      rows_per_thread == 2 ? launch_with(integral_constant<int, 2>{}, integral_constant<int, 2>{})
                           : launch_with(integral_constant<int, 2>{}, integral_constant<int, 1>{});
      break;
    case 4:
      rows_per_thread == 2 ? launch_with(integral_constant<int, 4>{}, integral_constant<int, 2>{})
                           : launch_with(integral_constant<int, 4>{}, integral_constant<int, 1>{});
      break;
    case 8: launch_with(integral_constant<int, 8>{}, integral_constant<int, 1>{}); break;
    case 16: launch_with(integral_constant<int, 16>{}, integral_constant<int, 1>{}); break;
    case 24: launch_with(integral_constant<int, 24>{}, integral_constant<int, 1>{}); break;
    case 32: launch_with(integral_constant<int, 32>{}, integral_constant<int, 1>{}); break;
    case 48: launch_with(integral_constant<int, 48>{}, integral_constant<int, 1>{}); break;
    default: break;
  }
  return launched;
}

// The row-block kernel where AtenRowBlockConfig takes the shape (after the
// register kernel declined it); false otherwise. Rows of whole 16-byte
// chunks (rows_on), strided or not, and odd rows (odd_rows_for_row_block).
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale>
bool launch_aten_row_block(const NormArgs<T, W, O, A>& args, const AtenSumLayout& sum, bool rows_aligned,
                           bool odd_rows, const cudaDeviceProp* props, int device, cudaStream_t stream,
                           bool programmatic) {
  const RowLayout& layout = args.layout;
  if (row_block_use() == RowBlockUse::kOff || !(rows_aligned || odd_rows)) return false;
  const AtenRowBlockConfig config = pick_aten_row_block_config(layout.hidden, int(sizeof(T)), sum, odd_rows);
  if (!config.supported) return false;
  // RMSNORM_ROW_BLOCK_FEW=0: few rows keep the table's threads (A/B runs in one build).
  static const bool few_rows_threads = [] {
    const char* env = std::getenv("RMSNORM_ROW_BLOCK_FEW");
    return env == nullptr || env[0] != '0';
  }();
  const int threads = few_rows_threads
                          ? row_block_threads_for_rows(config, layout.hidden, int(sizeof(T)), sizeof(W) == sizeof(T),
                                                       sum, odd_rows, layout.rows, props->multiProcessorCount)
                          : config.threads;
  auto launch_with = [&](auto kernel) {
    allow_dynamic_smem(kernel, config.staged_bytes, device);
    launch_kernel_with_smem(kernel, dim3(unsigned(layout.rows)), dim3(threads), stream, programmatic,
                            config.staged_bytes, args, sum.lanes, sum.warps);
  };
  if (odd_rows) {
    if constexpr (!kFusedAdd) {
      launch_with(rms_norm_aten_row_block_kernel<T, W, O, A, kHasWeight, false, kFp32Scale, true>);
    }
  } else {
    launch_with(rms_norm_aten_row_block_kernel<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale, false>);
  }
  return true;
}

// The span kernel for dense rows whose input and output start on 16-byte
// boundaries (the fused op: aligned rows only); false when it does not apply
// (strided or offset rows, rows beyond 64 KB, tiny rows): the general
// ATen-order kernel then runs.
template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale>
bool launch_aten_span(const NormArgs<T, W, O, A>& args, const AtenSumLayout& sum, bool rows_aligned,
                      const cudaDeviceProp* props, int device, cudaStream_t stream, bool programmatic) {
  const RowLayout& layout = args.layout;
  const bool dense = layout.is_dense();
  if (!dense || !is_aligned(args.input, 16) || !is_aligned(args.out, 16)) return false;
  if (kFusedAdd && !rows_aligned) return false;
  // RMSNORM_SPAN_TUNE="BYTES,THREADS": the span size and block size to aim
  // for, for sweeps in one build (benchmarks/NOTES.md v10).
  static const std::pair<int64_t, int> tune = [] {
    const char* env = std::getenv("RMSNORM_SPAN_TUNE");
    long long bytes = kSpanTargetBytes;
    int threads = kSpanThreadsPerBlock;
    if (env != nullptr) std::sscanf(env, "%lld,%d", &bytes, &threads);
    return std::pair<int64_t, int>(bytes, threads);
  }();
  const AtenSpanConfig config = pick_aten_span_config(layout.rows, layout.hidden, int(sizeof(T)), rows_aligned, sum,
                                                      props->multiProcessorCount, tune.first, tune.second);
  if (!config.supported) return false;
  // The weight rides in 16-byte async copies: whole windows, aligned.
  const bool weight_in_shared = kHasWeight && rows_aligned && config.few_blocks && is_aligned(args.weight, 16) &&
                                (layout.hidden * int64_t(sizeof(W))) % 16 == 0;
  size_t extra_bytes = 0;
  if (kHasWeight && !rows_aligned) extra_bytes = StagedWeight<W>::bytes(int(layout.hidden));
  if (weight_in_shared) extra_bytes = size_t(layout.hidden) * sizeof(W);
  const size_t smem = 2 * size_t(config.span_bytes) + extra_bytes;  // two span buffers
  constexpr size_t kStaticBytes = 2 * kAtenMaxThreads * sizeof(float);
  if (smem + kStaticBytes > props->sharedMemPerBlockOptin) return false;
  const int64_t num_spans = (layout.rows + config.rows_per_block - 1) / config.rows_per_block;
  auto launch_with = [&](auto kernel) {
    allow_dynamic_smem(kernel, smem, device);
    // A resident grid: each block stages the weight once and overlaps the
    // copy of its next span with the work on this one.
    int64_t blocks = num_spans;
    if (num_spans > props->multiProcessorCount) {  // (decode skips the occupancy query)
      int per_sm = 0;
      C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, config.threads, smem));
      blocks = std::min<int64_t>(num_spans, int64_t(props->multiProcessorCount) * std::max(per_sm, 1));
    }
    launch_kernel_with_smem(kernel, dim3(unsigned(blocks)), dim3(config.threads), stream, programmatic, smem, args,
                            sum, config.rows_per_block, int(config.span_bytes));
  };
  if (rows_aligned) {
    if (weight_in_shared) {
      launch_with(rms_norm_aten_span_kernel<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale, true, true>);
    } else {
      launch_with(rms_norm_aten_span_kernel<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale, true, false>);
    }
  } else if constexpr (!kFusedAdd) {
    launch_with(rms_norm_aten_span_kernel<T, W, O, A, kHasWeight, false, kFp32Scale, false, false>);
  }
  return true;
}

template <typename T, typename W, typename O, typename A, bool kHasWeight, bool kFusedAdd, bool kFp32Scale>
void launch(NormArgs<T, W, O, A> args, int device, cudaStream_t stream) {
  constexpr int kFull = 16 / sizeof(T);
  const RowLayout& layout = args.layout;
  args.mean_factor = mean_factor_of(layout);
  const bool programmatic = use_programmatic_launch(device);

  // Chunks per row: ceil((head + hidden) / kFull) with head up to kFull - 1
  // when rows may start off a 16-byte boundary.
  const bool rows_aligned = rows_on(args, kFull);
  if (use_aten_sum_order()) {
    const cudaDeviceProp* props = at::cuda::getDeviceProperties(device);
    const AtenSumLayout sum = pick_aten_sum_layout(layout.rows, layout.hidden, props->multiProcessorCount,
                                                   props->maxThreadsPerMultiProcessor);
    // Rows off 16-byte boundaries that the row-block kernel reads (checked once; aligned rows skip it).
    const bool odd_rows = !rows_aligned && odd_rows_for_row_block<T, W, O, A, kFusedAdd>(args);
    // Rows of whole float4 groups (the folded and register kernels'; checked once).
    const bool whole_groups = rows_aligned || rows_on(args, kAtenVec);
    if (sum.supported && launch_aten_folded<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale>(
                             args, sum, whole_groups, props, stream, programmatic)) {
      return;
    }
    if (sum.supported && launch_aten_registers<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale>(
                             args, sum, whole_groups, rows_aligned, odd_rows, props, stream, programmatic)) {
      return;
    }
    if (sum.supported && launch_aten_row_block<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale>(
                             args, sum, rows_aligned, odd_rows, props, device, stream, programmatic)) {
      return;
    }
    if (sum.supported && launch_aten_span<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale>(
                             args, sum, rows_aligned, props, device, stream, programmatic)) {
      return;
    }
    if (sum.supported) {
      const dim3 grid(unsigned((layout.rows + sum.rows_per_block - 1) / sum.rows_per_block));
      launch_kernel(rms_norm_aten_order_kernel<T, W, O, A, kHasWeight, kFusedAdd, kFp32Scale>, grid,
                    dim3(sum.threads_per_block()), stream, programmatic, args, sum);
      return;
    }
  }
  // Fitted chunk counts pay off for fp16 only (launch_config.h).
  constexpr bool kFitChunks = !kFusedAdd && std::is_same_v<T, c10::Half>;
  LaunchConfig config = pick_launch_config(layout.rows, layout.hidden + (rows_aligned ? 0 : 2 * (kFull - 1)),
                                           kFull, kFitChunks && !rows_aligned);
  if (kFusedAdd && !rows_aligned) config.wide = true;
  if (!config.wide) {
    const dim3 grid((layout.rows + config.rows_per_block - 1) / config.rows_per_block);
    const dim3 block(config.threads_per_block());
    args.threads_per_row_log2 = config.threads_per_row_log2;
    auto launch_unaligned = [&](auto vecs_tag) {
      constexpr int kNV = decltype(vecs_tag)::value;
      auto* kernel = rms_norm_rows_kernel<T, W, O, A, kNV, kHasWeight, false, false, kFp32Scale>;
      const size_t smem = kHasWeight ? StagedWeight<W>::bytes(int(layout.hidden)) : 0;
      allow_dynamic_smem(kernel, smem, device);  // odd rows past 12K elements
      int per_sm = 0;
      C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, int(block.x), smem));
      const int64_t resident = int64_t(at::cuda::getDeviceProperties(device)->multiProcessorCount) *
                               std::max(per_sm, 1);
      const dim3 staged_grid(unsigned(std::min<int64_t>(grid.x, resident)));
      launch_kernel_with_smem(kernel, staged_grid, block, stream, programmatic, smem, args);
    };
    auto launch_rows = [&](auto vecs_tag) {
      constexpr int kNV = decltype(vecs_tag)::value;
      if constexpr (kFusedAdd) {
        launch_kernel(rms_norm_rows_kernel<T, W, O, A, kNV, kHasWeight, true, true, kFp32Scale>, grid, block,
                      stream, programmatic, args);
      } else if (rows_aligned) {
        launch_kernel(rms_norm_aligned_rows_kernel<T, W, O, kNV, kHasWeight, kFp32Scale>, grid, block, stream,
                      programmatic, args.out, args.input, args.weight, layout, args.threads_per_row_log2,
                      args.mean_factor, args.eps, args.order == NormOrder::kGemma);
      } else {
        launch_unaligned(vecs_tag);
      }
    };
    switch (config.vecs_per_thread) {
      case 1: launch_rows(std::integral_constant<int, 1>{}); break;
      case 2: launch_rows(std::integral_constant<int, 2>{}); break;
      case 4: launch_rows(std::integral_constant<int, 4>{}); break;
      case 8: launch_rows(std::integral_constant<int, 8>{}); break;
      // Fitted counts of unaligned fp16 rows only, so only that kernel has them.
      case 5: if constexpr (kFitChunks) launch_unaligned(std::integral_constant<int, 5>{}); break;
      case 6: if constexpr (kFitChunks) launch_unaligned(std::integral_constant<int, 6>{}); break;
      default: TORCH_CHECK(false, "rms_norm: internal error: no kernel for this row split");
    }
    return;
  }
  const dim3 grid(layout.rows), block(kWideThreadsPerBlock);
  args.threads_per_row_log2 = ceil_log2(kWideThreadsPerBlock);
  if (rows_aligned) {
    launch_kernel(rms_norm_wide_kernel<T, W, O, A, kFull, kHasWeight, kFusedAdd, kFp32Scale>, grid, block, stream,
                  programmatic, args);
  } else {
    launch_kernel(rms_norm_wide_kernel<T, W, O, A, 1, kHasWeight, kFusedAdd, kFp32Scale>, grid, block, stream,
                  programmatic, args);
  }
}

}  // namespace rmsnorm

void rms_norm_cuda(torch::Tensor& out, const torch::Tensor& input,
                   const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                   double epsilon, rmsnorm::NormOrder order) {
  using namespace rmsnorm;
  const c10::cuda::OptionalCUDAGuard device_guard(input.device());
  const int device = input.get_device();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device);

  // Dtype dispatch at the edge; the binding has already rejected other dtypes
  // and weights that are neither the input dtype nor float32.
  visit_input_dtype<false>(input.scalar_type(), [&](auto input_tag) {
    using T = decltype(input_tag);
    auto run = [&](auto weight_tag, auto out_tag, auto has_weight, auto fp32_scale) {
      using W = decltype(weight_tag);
      using O = decltype(out_tag);
      NormArgs<T, W, O, T> args{mutable_data_of<O>(out), data_of<T>(input),
                                has_weight ? data_of<W>(*weight) : nullptr, nullptr, nullptr,
                                layout, 0, 0.f, static_cast<float>(epsilon), order};
      launch<T, W, O, T, decltype(has_weight)::value, false, decltype(fp32_scale)::value>(args, device, stream);
    };
    visit_weight_and_order<T, float>(weight, input.scalar_type(), order, run);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void add_rms_norm_cuda(torch::Tensor& out, torch::Tensor& residual_out, const torch::Tensor& x,
                       const torch::Tensor& residual, const torch::Tensor& weight,
                       const rmsnorm::RowLayout& layout, double epsilon, rmsnorm::NormOrder order) {
  using namespace rmsnorm;
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  const int device = x.get_device();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device);

  // x: A; residual stream: T (A or float32); weight: A or float32; out: A.
  visit_input_dtype<false>(x.scalar_type(), [&](auto x_tag) {
    using A = decltype(x_tag);
    auto run = [&](auto residual_tag, auto weight_tag) {
      using T = decltype(residual_tag);
      using W = decltype(weight_tag);
      NormArgs<T, W, A, A> args{mutable_data_of<A>(out), data_of<T>(residual), data_of<W>(weight),
                                data_of<A>(x), mutable_data_of<T>(residual_out), layout, 0, 0.f,
                                static_cast<float>(epsilon), order};
      if (order == NormOrder::kLlama) {
        launch<T, W, A, A, true, true, false>(args, device, stream);
      } else {
        launch<T, W, A, A, true, true, true>(args, device, stream);
      }
    };
    visit_residual_and_weight<A, float>(x.scalar_type(), residual.scalar_type(), weight.scalar_type(), run);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
