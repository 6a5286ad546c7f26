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
  int vec = 1;                   // elements per vector access
  int vecs_per_thread = 1;       // register-held vectors per thread (1..16)
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

// (largest vector count per row, vectors each thread should hold).
// Short rows keep 4 vectors per thread so more rows are in flight; longer rows
// hold 8 so that fewer warps share a row and its reduction stays cheap. Scalar
// rows (odd hidden sizes) hold 16 elements per thread.
struct VecsPerThreadRule {
  int64_t max_vecs_per_row;
  int target_vecs_per_thread;
};
// Blocks stay at or under 512 threads so that each thread may use up to 128
// registers: 16 register-held vectors take 64 of them (measured on sm_90: a
// 1024-thread bound caps at 64 and spills the row to local memory).
constexpr int kMaxThreadsPerBlock = 512;
constexpr int kMaxThreadsPerRowLog2 = 9;
constexpr VecsPerThreadRule kVectorRules[] = {
    {64, 4},     // bf16 hidden <= 512 (q/k-norm head dims)
    {4096, 8},   // bf16 hidden <= 32768
    {8192, 16},  // bf16 hidden <= 65536: 512 threads x 16 vectors
};
constexpr int64_t kScalarMaxRow = 512 * 16;   // odd hidden sizes up to 8192
constexpr int kThreadsPerBlockTarget = 256;
constexpr int kWideThreadsPerBlock = kMaxThreadsPerBlock;

inline LaunchConfig pick_launch_config(int64_t rows, int64_t hidden, int vec) {
  LaunchConfig config;
  config.vec = vec;
  const int64_t num_vecs = hidden / vec;

  int target = 0;
  if (vec == 1) {
    target = num_vecs <= kScalarMaxRow ? 16 : 0;
  } else {
    for (const auto& rule : kVectorRules) {
      if (num_vecs <= rule.max_vecs_per_row) {
        target = rule.target_vecs_per_thread;
        break;
      }
    }
  }
  if (target == 0) {
    config.wide = true;
    config.threads_per_row_log2 = kMaxThreadsPerRowLog2;
    config.rows_per_block = 1;
    return config;
  }

  const int64_t threads_needed = (num_vecs + target - 1) / target;
  config.threads_per_row_log2 = std::min(ceil_log2(threads_needed), kMaxThreadsPerRowLog2);
  const int64_t threads_per_row = int64_t{1} << config.threads_per_row_log2;
  const int64_t vecs_per_thread = (num_vecs + threads_per_row - 1) / threads_per_row;
  config.vecs_per_thread = vec == 1 ? 16 : int(int64_t{1} << ceil_log2(vecs_per_thread));

  // Several rows per block for short rows, but no more rows than exist.
  const int64_t rows_wanted = std::max<int64_t>(1, kThreadsPerBlockTarget / threads_per_row);
  config.rows_per_block = int(std::min<int64_t>(rows_wanted, int64_t{1} << ceil_log2(std::max<int64_t>(rows, 1))));
  return config;
}

}  // namespace rmsnorm
