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

#include "dtype_dispatch.h"

#include <ATen/Parallel.h>

#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>
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

// sum of squares of x[0..n): ATen's order for float; plain order for the
// double path (which exists for gradcheck, not for bitwise claims).
float sum_of_squares(const float* x, float* squares, int64_t n) {
  for (int64_t i = 0; i < n; ++i) squares[i] = x[i] * x[i];
  return aten_order_sum(squares, n);
}

double sum_of_squares(const double* x, double* /*squares*/, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += x[i] * x[i];
  return total;
}

// fp32 for every float dtype, as HF computes; fp64 for double inputs.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename Acc>
Acc inverse_rms(Acc sum_sq, int64_t hidden, Acc eps) {
  const Acc variance = sum_sq / static_cast<Acc>(hidden);
  return Acc(1) / std::sqrt(variance + eps);  // ATen's rsqrt on the CPU
}

template <typename W, typename Acc>
Acc fp32_scale(W w, NormOrder order) {
  const Acc f = static_cast<Acc>(w);
  return order == NormOrder::kGemma ? Acc(1) + f : f;
}

// One row from its fp32 (or fp64) values into O, rounded as `order` says.
template <typename T, typename W, typename O, typename Acc, bool kHasWeight>
void normalize_row(O* out_row, const Acc* x, Acc* scratch, const W* weight, int64_t hidden, Acc eps,
                   NormOrder order) {
  const Acc inv_rms = inverse_rms<Acc>(sum_of_squares(x, scratch, hidden), hidden, eps);
  for (int64_t i = 0; i < hidden; ++i) {
    const Acc normed = x[i] * inv_rms;
    if constexpr (!kHasWeight) {
      out_row[i] = static_cast<O>(static_cast<T>(normed));
    } else if (order == NormOrder::kLlama) {
      const T rounded = static_cast<T>(normed);  // round to T first, as HF does
      out_row[i] = static_cast<O>(static_cast<Acc>(weight[i]) * static_cast<Acc>(rounded));
    } else {
      out_row[i] = static_cast<O>(fp32_scale<W, Acc>(weight[i], order) * normed);
    }
  }
}

int64_t rows_per_task(int64_t hidden) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(hidden, 1)); }

template <typename T, typename W, typename O, bool kHasWeight>
void rms_norm_rows(O* out, const T* input, const W* weight, const RowLayout& layout, double eps,
                   NormOrder order) {
  using Acc = acc_t<T>;
  const int64_t hidden = layout.hidden;
  at::parallel_for(0, layout.rows, rows_per_task(hidden), [&](int64_t begin, int64_t end) {
    std::vector<Acc> x(hidden), scratch(hidden);
    for (int64_t row = begin; row < end; ++row) {
      const T* x_row = input + layout.offset_of(row);
      for (int64_t i = 0; i < hidden; ++i) x[i] = static_cast<Acc>(x_row[i]);
      normalize_row<T, W, O, Acc, kHasWeight>(out + row * hidden, x.data(), scratch.data(), weight, hidden,
                                              static_cast<Acc>(eps), order);
    }
  });
}

// residual_out = T(x + residual), out = A(norm(residual_out)); rows contiguous.
// Each row is read before it is written, so out may be x and residual_out
// may be residual (the in-place op).
template <typename A, typename T, typename W>
void add_rms_norm_rows(A* out, T* residual_out, const A* x_in, const T* residual, const W* weight,
                       int64_t rows, int64_t hidden, double eps, NormOrder order) {
  using Acc = acc_t<T>;
  at::parallel_for(0, rows, rows_per_task(hidden), [&](int64_t begin, int64_t end) {
    std::vector<Acc> x(hidden), scratch(hidden);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t start = row * hidden;
      for (int64_t i = 0; i < hidden; ++i) {
        const T sum = static_cast<T>(static_cast<Acc>(x_in[start + i]) + static_cast<Acc>(residual[start + i]));
        residual_out[start + i] = sum;
        x[i] = static_cast<Acc>(sum);
      }
      normalize_row<T, W, A, Acc, true>(out + start, x.data(), scratch.data(), weight, hidden,
                                        static_cast<Acc>(eps), order);
    }
  });
}

// Backward (see rmsnorm_backward.cu for the formulas). dweight: each task of
// kRowsPerPartial rows writes one partial row, summed afterwards in task
// order: the same bits for any thread count.
constexpr int64_t kRowsPerPartial = 32;

template <typename T, typename W, typename G, bool kHasWeight>
void rms_norm_backward_rows(T* grad_input, W* grad_weight, const G* grad_output, const T* input,
                            const W* weight, int64_t rows, int64_t hidden, double eps, NormOrder order) {
  using Acc = acc_t<T>;
  const int64_t num_partials = (rows + kRowsPerPartial - 1) / kRowsPerPartial;
  std::vector<Acc> partials(kHasWeight ? num_partials * hidden : 0);
  auto grad_of_normed = [&](Acc dy, int64_t i) -> Acc {
    if constexpr (!kHasWeight) {
      return dy;
    } else {
      if (order == NormOrder::kLlama) return static_cast<Acc>(static_cast<T>(dy * static_cast<Acc>(weight[i])));
      return dy * fp32_scale<W, Acc>(weight[i], order);
    }
  };
  at::parallel_for(0, num_partials, 1, [&](int64_t first_task, int64_t last_task) {
    std::vector<Acc> x(hidden), scratch(hidden);
    for (int64_t task = first_task; task < last_task; ++task) {
      Acc* partial = kHasWeight ? partials.data() + task * hidden : nullptr;
      const int64_t row_end = std::min(rows, (task + 1) * kRowsPerPartial);
      for (int64_t row = task * kRowsPerPartial; row < row_end; ++row) {
        const T* x_row = input + row * hidden;
        const G* dy_row = grad_output + row * hidden;
        for (int64_t i = 0; i < hidden; ++i) x[i] = static_cast<Acc>(x_row[i]);
        const Acc inv_rms = inverse_rms<Acc>(sum_of_squares(x.data(), scratch.data(), hidden), hidden,
                                             static_cast<Acc>(eps));
        Acc dot = 0;  // sum g * n
        for (int64_t i = 0; i < hidden; ++i) {
          dot += grad_of_normed(static_cast<Acc>(dy_row[i]), i) * (x[i] * inv_rms);
        }
        const Acc mean_gn = dot / static_cast<Acc>(hidden);
        T* dx_row = grad_input + row * hidden;
        for (int64_t i = 0; i < hidden; ++i) {
          const Acc dy = static_cast<Acc>(dy_row[i]);
          const Acc normed = x[i] * inv_rms;
          dx_row[i] = static_cast<T>(inv_rms * (grad_of_normed(dy, i) - normed * mean_gn));
          if constexpr (kHasWeight) {
            const Acc used = order == NormOrder::kLlama ? static_cast<Acc>(static_cast<T>(normed)) : normed;
            partial[i] += dy * used;
          }
        }
      }
    }
  });
  if constexpr (kHasWeight) {
    at::parallel_for(0, hidden, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        Acc total = 0;
        for (int64_t p = 0; p < num_partials; ++p) total += partials[p * hidden + i];
        grad_weight[i] = static_cast<W>(total);
      }
    });
  }
}

template <typename T>
using fp32_or_double = acc_t<T>;

}  // namespace
}  // namespace rmsnorm

void rms_norm_cpu(torch::Tensor& out, const torch::Tensor& input,
                  const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                  double epsilon, rmsnorm::NormOrder order) {
  using namespace rmsnorm;
  visit_input_dtype<true>(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    auto run = [&](auto weight_tag, auto out_tag, auto has_weight, auto /*fp32_scale: order at run time*/) {
      using W = decltype(weight_tag);
      using O = decltype(out_tag);
      rms_norm_rows<T, W, O, decltype(has_weight)::value>(
          out.mutable_data_ptr<O>(), input.const_data_ptr<T>(), has_weight ? weight->const_data_ptr<W>() : nullptr,
          layout, epsilon, order);
    };
    visit_weight_and_order<T, fp32_or_double<T>>(weight, input.scalar_type(), order, run);
  });
}

void add_rms_norm_cpu(torch::Tensor& out, torch::Tensor& residual_out, const torch::Tensor& x,
                      const torch::Tensor& residual, const torch::Tensor& weight, double epsilon,
                      rmsnorm::NormOrder order) {
  using namespace rmsnorm;
  const int64_t hidden = x.size(-1);
  const int64_t rows = x.numel() / hidden;
  visit_input_dtype<true>(x.scalar_type(), [&](auto tag) {
    using A = decltype(tag);
    auto run = [&](auto residual_tag, auto weight_tag) {
      using T = decltype(residual_tag);
      using W = decltype(weight_tag);
      add_rms_norm_rows<A, T, W>(out.mutable_data_ptr<A>(), residual_out.mutable_data_ptr<T>(),
                                 x.const_data_ptr<A>(), residual.const_data_ptr<T>(),
                                 weight.const_data_ptr<W>(), rows, hidden, epsilon, order);
    };
    visit_residual_and_weight<A, fp32_or_double<A>>(x.scalar_type(), residual.scalar_type(), weight.scalar_type(),
                                                    run);
  });
}

void rms_norm_backward_cpu(torch::Tensor& grad_input, torch::Tensor& grad_weight,
                           const torch::Tensor& grad_output, const torch::Tensor& input,
                           const std::optional<torch::Tensor>& weight, double epsilon,
                           rmsnorm::NormOrder order) {
  using namespace rmsnorm;
  const int64_t hidden = input.size(-1);
  const int64_t rows = input.numel() / hidden;
  visit_input_dtype<true>(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    auto run = [&](auto weight_tag, auto grad_tag, auto has_weight, auto /*fp32_scale: order at run time*/) {
      using W = decltype(weight_tag);
      using G = decltype(grad_tag);
      constexpr bool kHasWeight = decltype(has_weight)::value;
      rms_norm_backward_rows<T, W, G, kHasWeight>(
          grad_input.mutable_data_ptr<T>(), kHasWeight ? grad_weight.mutable_data_ptr<W>() : nullptr,
          grad_output.const_data_ptr<G>(), input.const_data_ptr<T>(),
          kHasWeight ? weight->const_data_ptr<W>() : nullptr, rows, hidden, epsilon, order);
    };
    visit_weight_and_order<T, fp32_or_double<T>>(weight, input.scalar_type(), order, run);
  });
}
