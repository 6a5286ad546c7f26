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

  // Rows one after another, each right after the last (a single row too).
  RMSNORM_HOST_DEVICE inline bool is_dense() const {
    return num_dims == 1 && (rows == 1 || strides[0] == hidden);
  }

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

// Folds the leading dimensions of `input` (any tensor type with dim(),
// size(d), stride(d), numel(): the ATen and the stable-ABI bindings) into at
// most kMaxRowDims, outermost first; false when the rows need more, in which
// case the caller copies. Fixed arrays keep the decode path free of heap
// allocations.
template <typename Tensor>
bool fold_rows(const Tensor& input, RowLayout& layout) {
  layout.hidden = input.size(-1);
  layout.rows = layout.hidden == 0 ? 0 : input.numel() / layout.hidden;
  int64_t sizes[kMaxRowDims], strides[kMaxRowDims];  // innermost first while folding
  int count = 0;
  for (int64_t d = input.dim() - 2; d >= 0; --d) {
    const int64_t size = input.size(d), stride = input.stride(d);
    if (size == 1) continue;
    if (count > 0 && stride == strides[count - 1] * sizes[count - 1]) {
      sizes[count - 1] *= size;
    } else if (count == kMaxRowDims) {
      return false;
    } else {
      sizes[count] = size;
      strides[count] = stride;
      ++count;
    }
  }
  if (count == 0) {  // a single row
    sizes[0] = 1;
    strides[0] = layout.hidden;
    count = 1;
  }
  layout.num_dims = count;
  for (int i = 0; i < count; ++i) {
    layout.sizes[i] = sizes[count - 1 - i];
    layout.strides[i] = strides[count - 1 - i];
  }
  return true;
}

}  // namespace rmsnorm
