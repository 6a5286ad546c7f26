// RMSNorm on the CPU with exactly the rounding of HF's eager forward
//   variance = x_f32.pow(2).mean(-1); y = w * T(x_f32 * rsqrt(variance + eps)).
//
// Bitwise equality hinges on the variance: ATen's CPU `mean` is `sum / N`,
// and its `sum` is a cascade sum (aten/src/ATen/native/cpu/SumKernel.cpp) whose
// order we reproduce here: 8-float lanes (sum has no AVX512 kernel, so AVX512
// machines run the AVX2 one), 4 interleaved accumulators, and level-wise
// carries every 16 steps. Everything else is one IEEE operation per step,
// compiled without FMA contraction (-ffp-contract=off).

#include "rmsnorm_cpu.h"

#include <ATen/Parallel.h>

#include <array>
#include <cmath>
#include <cstring>
#include <vector>

namespace rmsnorm {
namespace {

// Floats per Vectorized<float> in ATen's CPU sum kernel.
constexpr int64_t kSumLanes = 8;
constexpr int64_t kInterleave = 4;  // ATen's ilp_factor
constexpr int64_t kLevels = 4;

int64_t ceil_log2_aten(int64_t x) {
  if (x <= 2) return 1;
  int64_t log2 = 0;
  uint64_t v = static_cast<uint64_t>(x - 1);
  while (v != 0) {
    ++log2;
    v >>= 1;
  }
  return log2;
}

// Sums `count` groups of kInterleave blocks of kLanes floats, each block an
// independent set of lanes, into kInterleave partial blocks (ATen's
// multi_row_sum). Block (i, k) starts at data[(i * kInterleave + k) * kLanes].
template <int64_t kLanes>
std::array<std::array<float, kLanes>, kInterleave> cascade_partials(const float* data,
                                                                     int64_t count) {
  const int64_t level_power = std::max<int64_t>(4, ceil_log2_aten(count) / kLevels);
  const int64_t level_step = int64_t{1} << level_power;
  const int64_t level_mask = level_step - 1;

  float acc[kLevels][kInterleave][kLanes] = {};
  auto add_group = [&](int64_t i) {
    for (int64_t k = 0; k < kInterleave; ++k) {
      const float* block = data + (i * kInterleave + k) * kLanes;
      for (int64_t l = 0; l < kLanes; ++l) acc[0][k][l] += block[l];
    }
  };

  int64_t i = 0;
  while (i + level_step <= count) {
    for (int64_t j = 0; j < level_step; ++j, ++i) add_group(i);
    for (int64_t level = 1; level < kLevels; ++level) {
      for (int64_t k = 0; k < kInterleave; ++k) {
        for (int64_t l = 0; l < kLanes; ++l) {
          acc[level][k][l] += acc[level - 1][k][l];
          acc[level - 1][k][l] = 0.f;
        }
      }
      if ((i & (level_mask << (level * level_power))) != 0) break;
    }
  }
  for (; i < count; ++i) add_group(i);
  for (int64_t level = 1; level < kLevels; ++level) {
    for (int64_t k = 0; k < kInterleave; ++k) {
      for (int64_t l = 0; l < kLanes; ++l) acc[0][k][l] += acc[level][k][l];
    }
  }

  std::array<std::array<float, kLanes>, kInterleave> partials;
  for (int64_t k = 0; k < kInterleave; ++k) {
    for (int64_t l = 0; l < kLanes; ++l) partials[k][l] = acc[0][k][l];
  }
  return partials;
}

// ATen's row_sum over `count` blocks of kLanes floats: interleaved partials,
// leftover blocks into partial 0, then partials 1..3 into partial 0.
template <int64_t kLanes>
std::array<float, kLanes> row_sum(const float* data, int64_t count) {
  const int64_t groups = count / kInterleave;
  auto partials = cascade_partials<kLanes>(data, groups);
  for (int64_t b = groups * kInterleave; b < count; ++b) {
    for (int64_t l = 0; l < kLanes; ++l) partials[0][l] += data[b * kLanes + l];
  }
  for (int64_t k = 1; k < kInterleave; ++k) {
    for (int64_t l = 0; l < kLanes; ++l) partials[0][l] += partials[k][l];
  }
  return partials[0];
}

// sum(squares[0..n)) in the order of ATen's contiguous inner sum.
float aten_order_sum(const float* squares, int64_t n) {
  if (n < kSumLanes) return row_sum<1>(squares, n)[0];
  const int64_t blocks = n / kSumLanes;
  const auto lanes = row_sum<kSumLanes>(squares, blocks);
  float total = 0.f;
  for (int64_t i = blocks * kSumLanes; i < n; ++i) total += squares[i];
  for (int64_t l = 0; l < kSumLanes; ++l) total += lanes[l];
  return total;
}

template <typename T, typename W, typename O, bool kHasWeight>
void rms_norm_rows(O* out, const T* input, const W* weight, const RowLayout& layout, float eps) {
  const int64_t hidden = layout.hidden;
  const float hidden_f = static_cast<float>(hidden);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(hidden, 1));
  at::parallel_for(0, layout.rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> x(hidden), squares(hidden);
    for (int64_t row = begin; row < end; ++row) {
      const T* x_row = input + layout.offset_of(row);
      for (int64_t i = 0; i < hidden; ++i) {
        x[i] = static_cast<float>(x_row[i]);
        squares[i] = x[i] * x[i];
      }
      const float variance = aten_order_sum(squares.data(), hidden) / hidden_f;
      const float inv_rms = 1.0f / std::sqrt(variance + eps);  // ATen's rsqrt on the CPU
      O* out_row = out + row * hidden;
      for (int64_t i = 0; i < hidden; ++i) {
        const T normed = static_cast<T>(x[i] * inv_rms);
        if constexpr (kHasWeight) {
          out_row[i] = static_cast<O>(static_cast<float>(weight[i]) * static_cast<float>(normed));
        } else {
          out_row[i] = normed;
        }
      }
    }
  });
}

template <typename T>
void dispatch_weight(torch::Tensor& out, const torch::Tensor& input,
                     const std::optional<torch::Tensor>& weight, const RowLayout& layout,
                     float eps) {
  const T* in = input.const_data_ptr<T>();
  if (!weight) {
    rms_norm_rows<T, T, T, false>(out.mutable_data_ptr<T>(), in, nullptr, layout, eps);
  } else if (weight->scalar_type() == input.scalar_type()) {
    rms_norm_rows<T, T, T, true>(out.mutable_data_ptr<T>(), in, weight->const_data_ptr<T>(),
                                 layout, eps);
  } else {
    rms_norm_rows<T, float, float, true>(out.mutable_data_ptr<float>(), in,
                                         weight->const_data_ptr<float>(), layout, eps);
  }
}

}  // namespace
}  // namespace rmsnorm

void rms_norm_cpu(torch::Tensor& out, const torch::Tensor& input,
                  const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                  double epsilon) {
  const float eps = static_cast<float>(epsilon);
  switch (input.scalar_type()) {
    case at::kFloat: rmsnorm::dispatch_weight<float>(out, input, weight, layout, eps); break;
    case at::kHalf: rmsnorm::dispatch_weight<at::Half>(out, input, weight, layout, eps); break;
    case at::kBFloat16: rmsnorm::dispatch_weight<at::BFloat16>(out, input, weight, layout, eps); break;
    default: TORCH_CHECK(false, "rms_norm: unsupported input dtype ", input.scalar_type());
  }
}
