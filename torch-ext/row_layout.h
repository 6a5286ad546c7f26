#pragma once

// How the rows of an input tensor sit in memory. RMSNorm reduces over the
// last dimension; the leading dimensions are folded into as few "row
// dimensions" as their strides allow, so that Qwen3's q_norm/k_norm views
// (B, S, heads, head_dim), whose rows are not evenly spaced, are read in
// place instead of being copied.

#include <cstdint>

#if defined(__CUDACC__)
#define RMSNORM_HOST_DEVICE __host__ __device__
#else
#define RMSNORM_HOST_DEVICE
#endif

namespace rmsnorm {

constexpr int kMaxRowDims = 3;

struct RowLayout {
  int64_t rows = 0;                      // product of all leading sizes
  int64_t hidden = 0;                    // size of the last dimension
  int num_dims = 1;                      // folded leading dimensions in use
  int64_t sizes[kMaxRowDims] = {0, 1, 1};    // outermost first
  int64_t strides[kMaxRowDims] = {0, 0, 0};  // in elements

  // Element offset of the first element of `row`. The loop is unrolled over
  // constant indices so that a kernel reads sizes/strides straight from its
  // parameters (a run-time index would copy the struct to local memory).
  RMSNORM_HOST_DEVICE inline int64_t offset_of(int64_t row) const {
    if (num_dims == 1) return row * strides[0];
    int64_t offset = 0;
#pragma unroll
    for (int d = kMaxRowDims - 1; d >= 0; --d) {
      if (d < num_dims) {
        offset += (row % sizes[d]) * strides[d];
        row /= sizes[d];
      }
    }
    return offset;
  }
};

}  // namespace rmsnorm
