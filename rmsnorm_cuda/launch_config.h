#pragma once

// Launch heuristics for the forward kernel, as one small table.
//
// A row is spread over `threads_per_row` threads (a power of two); each thread
// keeps its share of the row in registers (`vecs_per_thread` vectors of
// `vec` elements), so x is read from DRAM exactly once. The split depends only
// on the hidden size and the vector width, never on the number of rows: a
// token is normalized with the same summation order whether it is decoded
// alone or prefilled among thousands (batch invariance).

#include <algorithm>
#include <cstdint>

namespace rmsnorm {

struct LaunchConfig {
  int vec = 1;                   // elements per 16-byte chunk
  int vecs_per_thread = 1;       // register-held chunks per thread (1, 2, 4, 8)
  int threads_per_row_log2 = 0;  // log2 of threads cooperating on a row
  int rows_per_block = 1;
  bool wide = false;             // row too long for registers: two passes
  int threads_per_block() const { return (1 << threads_per_row_log2) * rows_per_block; }
};

inline int ceil_log2(int64_t x) {
  int log2 = 0;
  while ((int64_t{1} << log2) < x) ++log2;
  return log2;
}

// (largest chunk count per row, chunks each thread should hold). Up to 8K
// bf16 a thread holds 4 chunks and the row's weight beside them (prefetched
// before the reduction: one memory latency per call instead of two at
// decode); longer rows hold 8 chunks and fetch the weight afterwards (with
// the weight too, 8 chunks spill on sm_90).
struct VecsPerThreadRule {
  int64_t max_vecs_per_row;
  int target_vecs_per_thread;
};
// Blocks stay at or under 512 threads so that each thread may use up to 128
// registers (measured on sm_90: a 1024-thread bound caps at 64 and spilled
// rows of 8 and 16 chunks to local memory).
constexpr int kMaxThreadsPerBlock = 512;
constexpr int kMaxThreadsPerRowLog2 = 9;
constexpr VecsPerThreadRule kVectorRules[] = {
    {1024, 4},   // bf16 hidden <= 8192: q/k-norm head dims to LLM widths
    {4096, 8},   // bf16 hidden <= 32768: 512 threads x 8 chunks
    // Longer rows (16 chunks spill on sm_90) take the wide two-pass kernel.
};
constexpr int kThreadsPerBlockTarget = 256;
constexpr int kWideThreadsPerBlock = kMaxThreadsPerBlock;

inline int floor_log2(int64_t x) {
  int log2 = 0;
  while ((int64_t{2} << log2) <= x) ++log2;
  return log2;
}

// Chunk counts the general (unaligned-row) kernel is compiled for, when the
// caller asks for counts fitted to the row. Odd rows (4097 bf16 spans 513-514
// chunks) rounded up to a power of two leave registers idle. Fitted counts
// measured (H100, 8192x4097 / 8192x5121, benchmarks/NOTES.md v7): fp16 0.588
// -> 0.664 and 0.629 -> 0.689 of copy; bf16 0.577 -> 0.480 and 0.621 -> 0.504
// (its 5-chunk instance takes 84 registers to fp16's 60: a quarter fewer
// blocks per SM); fp32 0.821 -> 0.807. So only fp16 asks for them.
constexpr int kUnalignedVecsPerThread[] = {1, 2, 4, 5, 6, 8};
constexpr int kUnalignedTargetVecs = 4;

inline int unaligned_vecs_per_thread(int64_t needed) {
  for (int vecs : kUnalignedVecsPerThread) {
    if (vecs >= needed) return vecs;
  }
  return 0;  // too long for registers
}

// `hidden` counts the elements a row may span in 16-byte chunks of `vec`.
// Aligned rows: the fewest threads (a power of two) that keep each at or
// under the rule's chunk count, which is then rounded up to a power of two.
// fit_chunks (unaligned fp16 rows): the most threads that still give each at
// least kUnalignedTargetVecs chunks, and exactly as many chunks as that takes.
inline LaunchConfig pick_launch_config(int64_t rows, int64_t hidden, int vec, bool fit_chunks = false) {
  LaunchConfig config;
  config.vec = vec;
  const int64_t num_vecs = hidden / vec;

  int target = 0;
  for (const auto& rule : kVectorRules) {
    if (num_vecs <= rule.max_vecs_per_row) {
      target = rule.target_vecs_per_thread;
      break;
    }
  }
  if (fit_chunks && target != 0) {
    const int64_t threads_wanted = std::max<int64_t>(1, num_vecs / kUnalignedTargetVecs);
    config.threads_per_row_log2 = std::min(floor_log2(threads_wanted), kMaxThreadsPerRowLog2);
    const int64_t threads_per_row = int64_t{1} << config.threads_per_row_log2;
    config.vecs_per_thread = unaligned_vecs_per_thread((num_vecs + threads_per_row - 1) / threads_per_row);
    if (config.vecs_per_thread == 0) target = 0;
  }
  if (target == 0) {
    config.wide = true;
    config.threads_per_row_log2 = kMaxThreadsPerRowLog2;
    config.rows_per_block = 1;
    return config;
  }

  if (!fit_chunks) {
    const int64_t threads_needed = (num_vecs + target - 1) / target;
    config.threads_per_row_log2 = std::min(ceil_log2(threads_needed), kMaxThreadsPerRowLog2);
    const int64_t threads_per_row = int64_t{1} << config.threads_per_row_log2;
    const int64_t vecs_per_thread = (num_vecs + threads_per_row - 1) / threads_per_row;
    config.vecs_per_thread = int(int64_t{1} << ceil_log2(vecs_per_thread));
  }
  const int64_t threads_per_row = int64_t{1} << config.threads_per_row_log2;

  // Several rows per block for short rows, but no more rows than exist.
  const int64_t rows_wanted = std::max<int64_t>(1, kThreadsPerBlockTarget / threads_per_row);
  config.rows_per_block = int(std::min<int64_t>(rows_wanted, int64_t{1} << ceil_log2(std::max<int64_t>(rows, 1))));
  return config;
}

// HF's variance is ATen's CUDA `mean` of the fp32 squares, and ATen sums a
// row in an order it picks from the number of rows and the hidden size
// (scripts/aten_reduce_order.py: the spec, checked bit for bit against torch
// 2.11 on the H100). This is that choice (setReduceConfig of Reduce.cuh for a
// contiguous float (rows, hidden) tensor reduced over its last dimension,
// vt0 = input_vec_size = 4, at most 512 threads), so that the forward sums
// in the same order and every rounding after it is the same: bit for bit HF.
struct AtenSumLayout {
  bool vectorized = false;  // float4 groups of the squares (hidden >= 128)
  int lanes = 1;            // ATen's block width: threads across a row
  int warps = 1;            // block height when a row is also split across warps
  int rows_per_block = 1;   // block height when it is not
  bool supported = true;    // false where ATen splits a row over blocks
  int threads_per_row() const { return lanes * warps; }
  int threads_per_block() const { return threads_per_row() * rows_per_block; }
};
constexpr int kAtenMaxThreads = 512;
constexpr int kAtenVec = 4;

inline int64_t last_pow2(int64_t n) {
  int64_t p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

inline AtenSumLayout pick_aten_sum_layout(int64_t rows, int64_t hidden, int sm_count, int max_threads_per_sm) {
  AtenSumLayout layout;
  if (hidden <= 1 || rows < 1) return layout;  // a one-element sum has no order
  layout.vectorized = hidden >= 128;
  const int64_t dim0 = layout.vectorized ? hidden / kAtenVec : hidden;
  const int64_t dim0_pow2 = dim0 < kAtenMaxThreads ? last_pow2(dim0) : kAtenMaxThreads;
  const int64_t dim1_pow2 = rows < kAtenMaxThreads ? last_pow2(rows) : kAtenMaxThreads;
  int64_t width = std::min<int64_t>(dim0_pow2, 32);
  const int64_t height = std::min<int64_t>(dim1_pow2, kAtenMaxThreads / width);
  width = std::min<int64_t>(dim0_pow2, kAtenMaxThreads / height);
  // values per thread count elements, even when loads are float4
  const bool split_warps = (hidden + width - 1) / width >= std::min<int64_t>(height * 16, 256);
  layout.lanes = int(width);
  layout.warps = split_warps ? int(height) : 1;
  layout.rows_per_block = split_warps ? 1 : int(height);
  if (split_warps) {
    const int64_t step = width * height;
    const int64_t values_per_thread = (hidden + step - 1) / step;
    const int64_t target_grid = int64_t(sm_count) * (max_threads_per_sm / (width * height));
    if (values_per_thread >= 256 && rows <= target_grid) {
      const int64_t by_grid = (target_grid + rows - 1) / rows;
      const int64_t by_min = (values_per_thread + 15) / 16, by_max = (values_per_thread + 255) / 256;
      layout.supported = std::max(std::min(by_grid, by_min), by_max) <= 1;
    }
  }
  return layout;
}

// The ATen-order forward with rows in registers (rms_norm_aten_registers_kernel):
// each thread is one of ATen's threads of its row and holds exactly that
// thread's float4 groups (and the few head and tail elements ATen gives it
// for hidden sizes that are not a multiple of 4). Chosen before the span
// kernel wherever a thread's groups fit in kAtenRegisterBytes, unless the
// rows are too few for it (below). Measured on the H200 (bf16, fraction of
// copy; benchmarks/NOTES.md v11): 8192x4096 0.92 (span 0.83), 8192x896 0.93
// (0.64), 65536x128 0.78 (0.38), 1x4096 2.13 us (2.79); but 128x4096 4.6 us
// (span 3.6) and 8x4096 3.3 us (3.0), where a few warps each walk 16-32
// groups. Decode batches and ATen's split layouts are the folded kernel's
// since v18; the register kernel keeps what that declines, e.g. 2-3 rows
// of 7940-8192 and 4-15 rows of 8192 (ATen splits those over 64-256
// lanes), one row past 8192, rows that are not whole float4 groups.
struct AtenRegisterConfig {
  bool supported = false;
  int groups_per_thread = 1;  // an entry of kAtenRegisterGroupCounts
  int rows_per_thread = 1;    // 1, or a kShortRowGroups entry / groups_per_thread
  int slots = 1;              // rows side by side in a block
  int threads = 32;           // per block: slots whole rows of ATen threads
  bool prefetch_l2 = false;   // each thread asks L2 for its share of the rows a wave ahead
};
constexpr int kAtenRegisterGroupCounts[] = {1, 2, 4, 8, 16, 24, 32, 48};  // instantiated
constexpr int kAtenRegisterBytes = 384;  // 96 registers of row per thread
// Per block, when rows are many: small blocks, so that the SM's registers
// hold as many warps as possible (112 registers a thread at 32 groups:
// 8192x4096 0.88 with 256-thread blocks, 0.92 with 64). Several short rows
// per thread: 128, as each block is brief and 64-thread blocks spent the
// SM's time starting blocks (H200 bf16, 48 registers: 65536x128 0.78 of copy
// at 64, 0.93 at 128, 0.90 at 256; 32768x256 0.82 / 0.99 / 0.97; achieved
// occupancy 35 % of 62 % at 64; benchmarks/NOTES.md v15).
constexpr int kAtenRegisterThreadsTarget = 64;
constexpr int kAtenShortRowThreadsTarget = 128;
// Fewer threads than this per SM in all, and 8 groups or more per thread:
// the row-block kernel (else the span kernel), which spread each row over
// more threads.
constexpr int kAtenRegisterMinThreadsPerSm = 128;
inline bool few_rows_for_registers(int64_t rows, const AtenSumLayout& sum, int sm_count) {
  return rows * sum.threads_per_row() < int64_t(kAtenRegisterMinThreadsPerSm) * sm_count;
}
// Groups in flight per thread over several short rows, by ATen's threads
// per row. Measured (H200, bf16): 65536x128 0.73 at 4 (four rows of one
// group), 0.55 at 8; 8192x8192 (512 threads, 4 groups) 0.65 at one row,
// 0.72 at two (split layouts: the folded kernel's since v18, so the 512
// rule applies only with RMSNORM_FOLDED=0).
struct ShortRowRule {
  int threads_per_row;
  int groups;
};
constexpr ShortRowRule kShortRowGroups[] = {{32, 4}, {512, 8}};
// L2 prefetch a wave ahead, for rows of more threads than a warp (8192x8192:
// 0.78 -> 0.87); one-warp rows lose with it (32768x4096 0.96 -> 0.75).
constexpr int kAtenRegisterPrefetchMinThreads = 64;

inline AtenRegisterConfig pick_aten_register_config(int64_t rows, int64_t hidden, int element_bytes,
                                                    const AtenSumLayout& sum, int sm_count,
                                                    int threads_target = 0) {  // 0: the table's
  AtenRegisterConfig config;
  if (!sum.supported || !sum.vectorized || rows < 1) return config;
  const int64_t threads_per_row = sum.threads_per_row();
  // A row holds at most hidden / 4 whole groups (fewer when it starts off one).
  const int64_t needed = (hidden / kAtenVec + threads_per_row - 1) / threads_per_row;
  int groups = 0;
  for (int count : kAtenRegisterGroupCounts) {
    if (count >= needed) {
      groups = count;
      break;
    }
  }
  if (groups == 0 || int64_t(groups) * kAtenVec * element_bytes > kAtenRegisterBytes) return config;
  if (groups >= 8 && few_rows_for_registers(rows, sum, sm_count)) return config;
  config.supported = true;
  config.groups_per_thread = groups;
  // Short rows: several rows per thread, when there are rows enough for every SM.
  for (const auto& rule : kShortRowGroups) {
    if (threads_per_row == rule.threads_per_row && groups < rule.groups &&
        rows >= int64_t(rule.groups / groups) * sm_count) {
      config.rows_per_thread = rule.groups / groups;
    }
  }
  // Rows of a block side by side: about threads_target threads, but no fewer
  // than about four blocks per SM while rows last (few rows: one row per
  // block, spread over the SMs).
  const int64_t row_sets = (rows + config.rows_per_thread - 1) / config.rows_per_thread;
  if (threads_target <= 0) {
    threads_target = config.rows_per_thread > 1 ? kAtenShortRowThreadsTarget : kAtenRegisterThreadsTarget;
  }
  int64_t slots = std::max<int64_t>(1, threads_target / threads_per_row);
  slots = std::min<int64_t>(slots, std::max<int64_t>(1, row_sets / (4 * int64_t(sm_count))));
  config.slots = int(slots);
  config.threads = int(slots * threads_per_row);
  config.prefetch_l2 = threads_per_row >= kAtenRegisterPrefetchMinThreads;
  return config;
}

// The short-row kernel (rms_norm_aten_short_rows_kernel): ATen's one-warp
// rows of one or two float4 groups a lane (hidden 128-256) of bf16/fp16,
// where the register kernel would hold several rows a thread, two of ATen's
// lanes a thread (16-byte chunks) and rows of whole chunks (launch_aten_short_rows
// checks the pointers and strides). Two groups' chunks a thread (two rows
// of 128, one of 256: 32 bytes, as the register kernel's four rows of one
// 8-byte group), 256 threads. Measured against the register kernel (H200,
// bf16, fraction of copy; benchmarks/NOTES.md v21): 65536x128 0.93 ->
// 0.98 (Nsight: 92 -> 60 warp instructions a row), 131072x128 0.94 ->
// 1.00, 65536x136 0.79 -> 0.97, 4096x128 0.71 -> 0.95, fp16 65536x128
// 0.97 -> 1.00; four rows a thread (64 bytes), one (16), four
// lanes a thread (98 registers at two rows) and blocks of 64 or 128 threads
// were slower; so was fp32 at any rows a thread (65536x128 0.95 -> 0.91 at
// two rows, 0.93 at one), which stays with the register kernel.
constexpr int kShortRowLanes = 2;
constexpr int kShortRowGroupsPerThread = 2;  // groups a lane x rows a thread
constexpr int kShortRowThreads = 256;
struct AtenShortRowConfig {
  bool supported = false;
  int groups_per_lane = 1;  // 1 or 2
  int rows_per_thread = 2;
  int threads = kShortRowThreads;
  int64_t rows_per_block() const { return int64_t(threads / (32 / kShortRowLanes)) * rows_per_thread; }
};
inline AtenShortRowConfig pick_aten_short_row_config(int64_t hidden, int element_bytes, const AtenSumLayout& sum,
                                                     const AtenRegisterConfig& registers) {
  AtenShortRowConfig config;
  const bool short_rows = element_bytes == 2 && sum.supported && sum.vectorized && sum.threads_per_row() == 32 &&
                          hidden <= 256 && hidden % (kAtenVec * kShortRowLanes) == 0;
  if (!short_rows || !registers.supported || registers.rows_per_thread == 1) return config;
  config.supported = true;
  config.groups_per_lane = int((hidden + 32 * kAtenVec - 1) / (32 * kAtenVec));
  config.rows_per_thread = kShortRowGroupsPerThread / config.groups_per_lane;
  return config;
}

// ATen's threads of a row folded into fewer, a block per row
// (rms_norm_aten_folded_kernel): each thread holds several of ATen's
// threads' float4 groups and runs the first levels of ATen's tree over its
// own totals, so that the tree takes one barrier and nothing else goes
// through shared memory.
// - Decode batches: under 8 rows ATen gives a row 128-512 lanes of one
//   block, whose tree walks shared memory with a barrier per level over 32
//   (the register kernel: one gather instead, and a barrier more to share
//   the inverse RMS). Here 128 or 256 threads take a row, each of at most
//   8 groups (128 threads, eight-fold the work of ATen's 512 threads each,
//   spent more time issuing than the barriers had cost: bf16 1x8192 2.31 ->
//   2.38 us; v18 build L). Rows of whole float4 groups, unfused.
// - ATen's split layouts (8164-8192-wide rows over 16 warps of 32 lanes),
//   at any row count: 16-bit rows of a 16-bit weight on 256 threads of two
//   ATen threads, others on 512, where the row-block kernel went through 32
//   KB of fp32 squares in shared memory (four blocks per SM) and the
//   register kernel (under 264 rows) through three barriers a row. H200,
//   fraction of copy, folded against the kernel before (v18 build M): bf16
//   8192x8192 0.949 -> 0.967, 2048x8192 0.918 -> 0.958, 512x8192 0.91 ->
//   1.07, 128x8192 0.85 -> 1.00, 32x8192 0.76 -> 0.94; fp32 8192x8192
//   0.964 -> 0.987.
struct AtenFoldedConfig {
  bool supported = false;
  bool split = false;       // ATen's split layout (else an unsplit one of 128-512 lanes)
  bool reload = false;      // split rows read twice (kFoldedReloadMinRowsPerSm)
  int aten_per_thread = 1;  // ATen's threads a thread: 4, 2 or 1
  int groups = 1;           // float4 groups per ATen thread, rounded up to an instance
  int threads = 0;
};
// Blocks per SM the split rows' instances are compiled for: bf16 rows of a
// bf16 weight in Llama order on 256 threads fit 48 registers (five blocks;
// the row-block kernel held four); fp16 (its conversions), the fp32-scale
// orders (sm_80 spilled 8 bytes at 48) and the fused op's addend beside x
// take more without spilling (48 registers spilled 56 bytes, the fused
// op's 64 registers 32): 64 at four blocks, 80 at three. 512 threads (fp32
// rows, and 16-bit rows beside an fp32 weight): 64, the fused op's 128
// (fp32 in Olmo/Gemma order spilled 8 bytes at 64 on sm_80 and sm_89).
constexpr int folded_split_min_blocks(int threads, bool bf16_rows, bool fp32_scale, bool fused) {
  if (threads == kAtenMaxThreads) return fused ? 1 : 2;
  if (fused) return 3;
  return bf16_rows && !fp32_scale ? 5 : 4;
}
// Decode instances: ATen's lanes a row, its float4 groups a lane (rounded
// up; an entry holds every count up to it), threads a row. Up to 8 groups
// a thread: one row up to 8192 wide, 2-3 rows up to 7936 (ATen splits
// wider ones over two warps), 4-7 rows up to 4096.
struct FoldedDecodeInstance {
  int lanes;
  int groups;
  int threads;
};
constexpr FoldedDecodeInstance kFoldedDecodeInstances[] = {
    {512, 1, 128}, {512, 2, 128}, {512, 4, 256},  // 1 row
    {256, 2, 128}, {256, 4, 128}, {256, 8, 256},  // 2-3 rows
    {128, 2, 128}, {128, 4, 128}, {128, 8, 128}};  // 4-7 rows
// (1x4096 and 2-3x4096 on 256 threads of half the groups ran as fast as on
// 128: bf16 1x4096 1.66 / 1.67 us, fp16 1.70 / 1.67; v18 build P.)
constexpr int kFoldedSplitGroups = 4;  // ATen's 512 threads of an 8164-8192-wide row: 4 groups or fewer each
// Split rows (unfused) from kFoldedReloadMinRowsPerSm rows per SM read x
// twice: the sum from loads that ask L2 to keep x (evict_last), then x again
// from L2 with the weight, so that no register holds the row through the
// sum and six blocks fit an SM instead of five (bf16) or three instead of
// two (fp32). Fewer rows lose the second L2 round trip. H200, fraction of
// copy, the same build (v19 build U, two passes): 8192x8192 bf16 0.971 /
// 0.966 -> 0.979 / 0.979, fp16 0.978 / 0.973 -> 0.988 / 0.987, fp32 0.981 /
// 0.985 -> 0.997 / 0.995; 2048x8192 bf16 0.950 -> 0.934, 256x8192 0.99 ->
// 0.81. (Asking L2 for the rows a wave ahead instead, as the register
// kernel does, lost: 8192x8192 bf16 0.90.) The crossover (build Y, read
// once / twice): bf16 3072x8192 0.966 / 0.930, 4224 0.972 / 0.968, 6144
// 0.974 / 0.978, 8192 0.973 / 0.982; fp32 4224 0.990 / 0.987, 6144 0.990 /
// 0.988, 8192 0.991 / 0.994: 48 rows per SM (6336 on 132 SMs).
constexpr int kFoldedReloadMinRowsPerSm = 48;
// Blocks per SM of the reload instances. Hopper's ptxas holds them in 40
// registers (six 256-thread blocks, three 512-thread; the fp32-scale 512
// instance spilled 8 bytes at three: two); sm_80 and sm_89 spilled 8-96
// bytes at those bounds and the bf16 one 16-24 even at five blocks (CI,
// torch 2.14 variant), so elsewhere they take four 256-thread blocks or two
// 512-thread ones, and the rule reads twice on Hopper only (measured there
// alone; elsewhere only RMSNORM_FOLDED_RELOAD=1 runs them).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ != 900
constexpr bool kReloadOnHopperBounds = false;
#else
constexpr bool kReloadOnHopperBounds = true;  // sm_90, and the host pass
#endif
constexpr int folded_reload_min_blocks(int threads, bool fp32_scale) {
  if (!kReloadOnHopperBounds) return threads == kAtenMaxThreads ? 2 : 4;
  if (threads == kAtenMaxThreads) return fp32_scale ? 2 : 3;
  return fp32_scale ? 5 : 6;
}

// rows, sm_count and hopper decide only `reload` (sm_count 0: never).
inline AtenFoldedConfig pick_aten_folded_config(int64_t hidden, int element_bytes, int weight_bytes,
                                                const AtenSumLayout& sum, bool fused, int64_t rows = 0,
                                                int sm_count = 0, bool hopper = false) {
  AtenFoldedConfig config;
  if (!sum.supported || !sum.vectorized) return config;
  if (sum.warps > 1) {
    if (sum.lanes != 32 || sum.threads_per_row() != kAtenMaxThreads) return config;
    if ((hidden / kAtenVec + kAtenMaxThreads - 1) / kAtenMaxThreads > kFoldedSplitGroups) return config;
    config.supported = true;
    config.split = true;
    // (a wider weight beside 16-bit rows: 80 registers at 256 threads spilled)
    config.aten_per_thread = element_bytes == 2 && weight_bytes == 2 ? 2 : 1;
    config.groups = kFoldedSplitGroups;
    config.threads = kAtenMaxThreads / config.aten_per_thread;
    config.reload = !fused && hopper && sm_count > 0 && rows >= int64_t(kFoldedReloadMinRowsPerSm) * sm_count;
    return config;
  }
  if (fused) return config;
  const int64_t needed = (hidden / kAtenVec + sum.lanes - 1) / sum.lanes;
  for (const auto& instance : kFoldedDecodeInstances) {  // (fewest groups first)
    if (instance.lanes == sum.lanes && instance.groups >= needed) {
      config.supported = true;
      config.aten_per_thread = instance.lanes / instance.threads;
      config.groups = instance.groups;
      config.threads = instance.threads;
      return config;
    }
  }
  return config;
}

// The ATen-order forward with a block per row (rms_norm_aten_row_block_kernel):
// a thread per ATen lane for the sum, and enough threads beside them that
// none holds more than row_block_chunks_per_thread 16-byte chunks of the
// row. For what the register kernel declines in ATen's unsplit layouts of
// at most 128 lanes: few rows (8 to ~500 of 4096), and rows too long for
// its registers; and aligned rows of ATen's layouts split over warps of 32
// lanes (8164-8192 wide, 16 rows or more: a thread is one or two of ATen's
// 512 threads of the row, the same number each; since v18 the folded
// kernel's, here only with RMSNORM_FOLDED=0). Measured (H200, benchmarks/NOTES.md
// v14), against the span kernel that took them before: bf16 8x4096 3.11 ->
// 2.43 us, 128x4096 3.67 -> 2.99 us; fp32 8192x4096 0.86 -> 0.99 of copy.
// `odd_rows`: dense rows that start off 16-byte boundaries (hidden * element
// bytes not a multiple of 16), read as the tensor's own 16-byte chunks from
// the one before the row's first element: one chunk more than the row holds.
struct AtenRowBlockConfig {
  bool supported = false;
  int threads = 0;
  size_t staged_bytes = 0;  // dynamic shared memory: the fp32 squares of the row's chunks (odd rows: the chunks)
};
// Aligned rows hold x and the weight from the start, odd rows neither
// through the sum (their weight is loaded after it, x waits in shared
// memory): one chunk more, so that odd rows take as many warps as aligned
// ones (4097: 128 threads, where four chunks a thread took 160 and the
// fifth warp's sum, addresses and barrier waits; v16).
constexpr int kRowBlockChunksPerThread = 4;
constexpr int kOddRowBlockChunksPerThread = 5;
constexpr int row_block_chunks_per_thread(bool odd_rows) {
  return odd_rows ? kOddRowBlockChunksPerThread : kRowBlockChunksPerThread;
}
// Blocks of 512 threads per SM the kernel is compiled for (its register
// cap: 65536 / (512 * blocks)). Aligned rows (weight and input of one
// type) at most 64 registers: left to itself, nvcc put all eight float4
// loads of a lane's sum batch in flight at once (80 registers: 8192x5120
// 0.98 -> 0.84; v16 build F). Odd rows wait out the sum with the row in
// shared memory, not in registers (v20): 40 registers, 12 blocks of 128
// threads per SM, where holding x through the sum took 64 (8 blocks;
// 8192x4097 0.84 -> 0.92 of copy). A weight of another type: 128
// registers for aligned rows, 64 for odd ones (56 used, no spill).
constexpr int row_block_min_blocks(bool same_types, bool odd_rows) {
  if (odd_rows) return same_types ? 3 : 2;
  return same_types ? 2 : 1;
}
// ATen's split layouts (8164-8192-wide rows: 16 warps of 32 lanes) at up to
// two of ATen's threads a thread: 8192 bf16 at 256 threads of four chunks.
constexpr int kRowBlockMaxAtenThreadsPerThread = 2;
// Wider layouts (1-3 rows: 1x4096 has 512 lanes) are the folded and register kernels'.
constexpr int kRowBlockMaxLanes = 128;
// ATen splits wider rows (from 8164 over 16 warps; with fewer than 16 rows
// over more lanes, or over blocks).
constexpr int64_t kRowBlockMaxHidden = 8192;

inline AtenRowBlockConfig pick_aten_row_block_config(int64_t hidden, int element_bytes, const AtenSumLayout& sum,
                                                     bool odd_rows = false) {
  AtenRowBlockConfig config;
  if (!sum.supported || !sum.vectorized || sum.lanes > kRowBlockMaxLanes) return config;
  const bool split = sum.warps > 1;
  // Split layouts: ATen's 32-lane one (16 rows or more), aligned rows only
  // (odd rows' head and tail are not ported to it).
  if (split && (odd_rows || sum.lanes != 32)) return config;
  const int64_t row_bytes = hidden * element_bytes;
  if ((row_bytes % 16 != 0) != odd_rows || hidden > kRowBlockMaxHidden) {
    return config;
  }
  const int64_t elements_per_chunk = 16 / element_bytes;
  // Odd rows: up to elements_per_chunk - 1 elements of the row before in its first chunk.
  const int64_t chunks = (hidden + (odd_rows ? elements_per_chunk - 1 : 0) + elements_per_chunk - 1) /
                         elements_per_chunk;
  const int64_t per_thread = row_block_chunks_per_thread(odd_rows);
  int64_t threads = std::max<int64_t>(split ? 32 : sum.lanes, (chunks + per_thread - 1) / per_thread);
  threads = (threads + 31) / 32 * 32;
  if (split) {
    // Each thread the same number of ATen's threads (the kernel relies on
    // it): the most it may hold where those threads hold the row's chunks,
    // else one.
    const int64_t aten_threads = sum.threads_per_row();
    const int64_t fewest = aten_threads / kRowBlockMaxAtenThreadsPerThread;
    if (threads > aten_threads) return config;
    threads = threads <= fewest ? fewest : aten_threads;
  }
  if (threads > kAtenMaxThreads) return config;
  config.supported = true;
  config.threads = int(threads);
  config.staged_bytes = odd_rows ? size_t(chunks) * 16 : size_t(chunks * elements_per_chunk) * sizeof(float);
  return config;
}

// Few rows: where every row of an unsplit aligned layout is resident at
// once (at most kRowBlockFewRowsPerSm a SM), a row's latency is its warps'
// serial instructions (loads, squares, normalize, stores: 455 a warp at
// 128x4096 bf16 on 128 threads, one warp a scheduler; Nsight, NOTES.md v22b),
// so the row takes more threads of kRowBlockFewRowsChunksPerThread chunks,
// as many as the SM holds for its rows (the kernel's register cap:
// 512 * row_block_min_blocks threads a SM). H200, bf16 unless named, us,
// 4 -> 2 chunks a thread: 8x4096 2.13 -> 2.09, 32x4096 2.48 -> 2.42,
// 128x4096 2.79 -> 2.73 (fp16 2.80 -> 2.75, fp32 at 512 threads 3.22 ->
// 3.19), 256x4096 3.25 -> 3.22, 512x4096 4.21 -> 4.17, 64x3584 2.57 -> 2.53,
// 128x5120 2.97 -> 2.92; one chunk a thread (512 threads) lost at 128x4096
// (2.78), and fp32 512x4096 at 512 threads, two rows of four resident,
// 5.89 -> 7.16 (hence the SM's share).
constexpr int kRowBlockFewRowsChunksPerThread = 2;
constexpr int kRowBlockFewRowsPerSm = 4;
inline int row_block_threads_for_rows(const AtenRowBlockConfig& config, int64_t hidden, int element_bytes,
                                      bool same_types, const AtenSumLayout& sum, bool odd_rows, int64_t rows,
                                      int sm_count) {
  if (!config.supported || odd_rows || sum.warps > 1 || rows <= 0 || sm_count <= 0) return config.threads;
  const int64_t rows_per_sm = (rows + sm_count - 1) / sm_count;
  if (rows_per_sm > kRowBlockFewRowsPerSm) return config.threads;
  const int64_t chunks = hidden * element_bytes / 16;
  const int64_t wanted = (chunks + kRowBlockFewRowsChunksPerThread - 1) / kRowBlockFewRowsChunksPerThread;
  const int64_t threads_per_sm = int64_t(kAtenMaxThreads) * row_block_min_blocks(same_types, false);
  const int64_t fitting = threads_per_sm / rows_per_sm / 32 * 32;
  const int64_t threads = std::min<int64_t>({(wanted + 31) / 32 * 32, fitting, kAtenMaxThreads});
  return std::max(config.threads, int(threads));
}

// Rows the register kernel holds that the row-block kernel moves faster:
// where ATen's threads hold min_groups float4 groups of the row or more
// (hidden / 4 / ATen's threads per row, as the rows are, not as the
// register kernel rounds them up), at any row count (the register kernel
// declines rows too few for its one-warp rows). Measured (H200,
// benchmarks/NOTES.md v16, register -> row block, fraction of copy):
// aligned bf16 8192x2048 (16 groups) 0.93 -> 0.99, 8192x3072 (24) 0.95 ->
// 0.99, 8192x4096 0.97 -> 0.99, 2048x4096 0.92 -> 0.97, 1024x4096 0.79 ->
// 0.98, 528x4096 0.67 -> 0.83, 1024x2048 0.93 -> 0.95; fp16 2048x4096
// 0.86 -> 0.97; fp32 8192x768 (6) / 896 / 1024 0.95-0.97 -> 1.00; but
// bf16 8192x1536 (12) 0.93 -> 0.86, 8192x1024 (8) 0.96 -> 0.78 and fp32
// 8192x512 (4) 1.01 -> 0.78. Odd rows (dense, off 16-byte boundaries),
// whose register kernel reads float4 groups in 8-byte loads and shifts
// each weight group into place: bf16 8192x4097 (32) 0.73 -> 0.84,
// 8192x5121 (40) 0.67 -> 0.81, 8192x3073 (24) 0.76 -> 0.83, 8192x2049
// (16) 0.76 -> 0.79, 2048x4097 0.79 / 0.79; fp16 alike; fp32 8192x2049
// (16) 0.82 -> 0.96 (row blocks either way); but bf16 8192x1025 (8) 0.76
// -> 0.63.
struct RowBlockOverRegistersRule {
  int element_bytes;
  bool odd_rows;
  int min_groups;
};
constexpr RowBlockOverRegistersRule kRowBlockOverRegisters[] = {
    {2, false, 16}, {4, false, 6},  // aligned rows
    {2, true, 16},  {4, true, 16}};  // odd rows

// ATen's split layouts (8164-8192-wide rows, 16 warps a row), from this many
// rows per SM where the register kernel holds them (the fused op's, which
// it declines, at any row count). H200, register -> row block, fraction of
// copy, ours-only A/B run of v17 build I:
// bf16 8192x8192 0.930 -> 0.949, fp16 0.73 -> 0.95, fp32 0.957 -> 0.962;
// 2048x8192 0.81 -> 0.93, 512x8192 0.89 -> 0.91; but 64x8192 0.80 ->
// 0.77, 16x8192 2.55 -> 2.68 us: few rows keep ATen's 512 threads a row).
// Since v18 the folded kernel takes these layouts first (RMSNORM_FOLDED=0
// restores this rule, for A/B runs).
constexpr int kSplitRowBlockMinRowsPerSm = 2;

// The row-block kernel's own table is consulted last, for the shapes the
// rule picks.
inline bool row_block_over_registers(int64_t rows, int64_t hidden, int element_bytes, bool odd_rows,
                                     const AtenSumLayout& sum, const AtenRegisterConfig& registers, int sm_count) {
  if (!registers.supported) return false;
  if (sum.warps > 1) {
    return rows >= int64_t(kSplitRowBlockMinRowsPerSm) * sm_count &&
           pick_aten_row_block_config(hidden, element_bytes, sum, odd_rows).supported;
  }
  const int64_t groups = hidden / kAtenVec / sum.threads_per_row();
  for (const auto& rule : kRowBlockOverRegisters) {
    if (rule.element_bytes == element_bytes && rule.odd_rows == odd_rows && groups >= rule.min_groups) {
      return pick_aten_row_block_config(hidden, element_bytes, sum, odd_rows).supported;
    }
  }
  return false;
}

// How the ATen-order forward moves rows: a block takes `rows_per_block`
// consecutive rows of a dense input as one span of memory, copies it to
// shared memory in 16-byte windows, sums each row there with its
// AtenSumLayout threads (blockDim / threads_per_row rows at a time) and
// normalizes the span from there. Loads and stores are full 16-byte vectors
// whatever ATen's layout is, also for odd hidden sizes; only the sum reads
// in ATen's pattern, from shared memory.
struct AtenSpanConfig {
  bool supported = false;      // else the general ATen-order kernel
  bool few_blocks = false;     // fewer than two blocks per SM (decode)
  int rows_per_block = 1;
  int threads = 32;
  int64_t span_bytes = 0;      // shared memory for the block's rows
};
constexpr int64_t kSpanTargetBytes = 32 * 1024;  // per block, when rows are many
constexpr int kSpanThreadsPerBlock = 256;
constexpr int64_t kSpanMaxBytes = 64 * 1024;     // longer rows: the general kernel
constexpr int kSpanMinHidden = 16;               // a 16-byte window spans at most two rows

// span_target_bytes / threads_target: kSpanTargetBytes / kSpanThreadsPerBlock
// unless a benchmark overrides them (RMSNORM_SPAN_TUNE, rmsnorm.cu).
inline AtenSpanConfig pick_aten_span_config(int64_t rows, int64_t hidden, int element_bytes, bool rows_aligned,
                                            const AtenSumLayout& sum, int sm_count,
                                            int64_t span_target_bytes = kSpanTargetBytes,
                                            int threads_target = kSpanThreadsPerBlock) {
  AtenSpanConfig config;
  const int64_t threads_per_row = sum.threads_per_row();
  const int64_t row_bytes = hidden * element_bytes;
  if (!sum.supported || hidden < kSpanMinHidden || rows < 1 || threads_per_row > kAtenMaxThreads) return config;
  // Few rows: one per block, so that they spread over the SMs. Many: about
  // span_target_bytes per block, as long as there are two blocks per SM.
  int64_t rows_per_block = std::max<int64_t>(1, span_target_bytes / row_bytes);
  rows_per_block = std::min<int64_t>(rows_per_block, std::max<int64_t>(1, rows / (2 * int64_t(sm_count))));
  rows_per_block = std::min<int64_t>(rows_per_block, kAtenMaxThreads);  // one inverse RMS slot per row
  const int64_t span_bytes = rows_per_block * row_bytes;
  // A span that starts off a 16-byte boundary touches one window more.
  const int64_t windows = (span_bytes + 15) / 16 + (rows_aligned ? 0 : 1);
  if (windows * 16 > kSpanMaxBytes) return config;
  const int64_t spans = (rows + rows_per_block - 1) / rows_per_block;
  config.few_blocks = spans < 2 * int64_t(sm_count);
  // Few blocks: a thread per window (up to 512), for latency. Whole warps,
  // and whole rows of ATen threads (the sum's trees index by row).
  int64_t threads = config.few_blocks ? std::min<int64_t>(windows, kAtenMaxThreads) : threads_target;
  threads = std::max<int64_t>(threads, threads_per_row);
  const int64_t multiple = std::max<int64_t>(32, threads_per_row);
  threads = std::min<int64_t>(kAtenMaxThreads, (threads + multiple - 1) / multiple * multiple);
  config.supported = true;
  config.rows_per_block = int(rows_per_block);
  config.threads = int(threads);
  config.span_bytes = windows * 16;
  return config;
}

// Backward (rmsnorm_backward.cu; measurements in benchmarks/NOTES.md, v12).
// A thread holds x, dy and the weight of its chunks packed, and the dweight
// sums of its columns in fp32 (kVec floats per chunk); no row is prefetched:
// more resident threads moved more bytes than a second row in registers.
//   chunks  rows of           registers  threads per SM
//   2       <= 512 chunks     64         2048 (bf16 hidden <= 4096)
//   4       <= 2048 chunks    128        512  (bf16 hidden <= 16384)
// Several rows share a block, each with its own named barrier, so that the
// block adds its rows' dweight sums before writing one partial row: the
// partials (one per block) and the kernel that adds them stay small.
// Longer rows, and rows whose chunks are not 16-byte aligned, take the
// any-length kernel.
struct BackwardLaunchConfig {
  int chunks_per_thread = 2;
  int threads_per_row_log2 = 0;
  int rows_per_block = 1;
  bool any_length = false;
  int threads_per_block() const { return (1 << threads_per_row_log2) * rows_per_block; }
};
struct BackwardChunkRule {
  int64_t max_chunks_per_row;
  int chunks_per_thread;
  int max_threads_per_block;  // the kernel's launch bound for that chunk count
};
constexpr BackwardChunkRule kBackwardChunkRules[] = {
    {512, 2, 1024},
    {2048, 4, 512},
};
constexpr int kBackwardMaxRowsPerBlock = 8;  // named barriers 1..8, one per row
constexpr int kBackwardAnyThreads = 256;

// rows: spread over at least `sm_count` blocks before rows share one.
inline BackwardLaunchConfig pick_backward_launch_config(int64_t num_chunks, int64_t rows, int sm_count) {
  BackwardLaunchConfig config;
  const BackwardChunkRule* rule = nullptr;
  for (const auto& candidate : kBackwardChunkRules) {
    if (num_chunks <= candidate.max_chunks_per_row) {
      rule = &candidate;
      break;
    }
  }
  if (rule == nullptr) {
    config.any_length = true;
    return config;
  }
  config.chunks_per_thread = rule->chunks_per_thread;
  const int64_t threads_wanted = (num_chunks + rule->chunks_per_thread - 1) / rule->chunks_per_thread;
  config.threads_per_row_log2 = ceil_log2(threads_wanted);
  const int64_t threads_per_row = int64_t{1} << config.threads_per_row_log2;
  int64_t rows_per_block = std::max<int64_t>(1, rule->max_threads_per_block / threads_per_row);
  rows_per_block = std::min<int64_t>(rows_per_block, kBackwardMaxRowsPerBlock);
  rows_per_block = std::min<int64_t>(rows_per_block, std::max<int64_t>(1, rows / std::max(1, sm_count)));
  config.rows_per_block = int(rows_per_block);
  return config;
}

}  // namespace rmsnorm
