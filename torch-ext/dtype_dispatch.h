#pragma once

// Dtype dispatch at the edge of the CPU and CUDA kernels: which C++ types one
// call instantiates. The binding has already rejected every other combination.

#include <torch/all.h>

#include <optional>
#include <type_traits>

#include "norm_order.h"

namespace rmsnorm {

// Calls f with a value of the C++ type of `dtype`: float, Half or BFloat16,
// and double where kWithDouble (the CPU's fp64 path, for gradcheck).
template <bool kWithDouble, typename F>
void visit_input_dtype(at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kFloat: f(float{}); return;
    case at::kHalf: f(c10::Half{}); return;
    case at::kBFloat16: f(c10::BFloat16{}); return;
    default: break;
  }
  if constexpr (kWithDouble) {
    if (dtype == at::kDouble) return f(double{});
  }
  TORCH_CHECK(false, "rms_norm: unsupported dtype ", dtype);
}

// Calls run(W{}, O{}, has_weight, fp32_scale) for one call on T inputs: W the
// weight's type, O the output's (and the incoming gradient's), has_weight and
// fp32_scale (Olmo/Gemma order) as std::bool_constant. The weight is T or
// Wide (float32; double for double inputs on the CPU).
template <typename T, typename Wide, typename F>
void visit_weight_and_order(const std::optional<torch::Tensor>& weight, at::ScalarType input_dtype,
                            NormOrder order, F&& run) {
  const bool llama = order == NormOrder::kLlama;
  if (!weight) {
    run(T{}, T{}, std::false_type{}, std::false_type{});
  } else if (weight->scalar_type() == input_dtype) {
    if (llama) run(T{}, T{}, std::true_type{}, std::false_type{});
    else run(T{}, T{}, std::true_type{}, std::true_type{});
  } else if (llama) {
    run(Wide{}, Wide{}, std::true_type{}, std::false_type{});  // wide weight: the product is wide
  } else {
    run(Wide{}, T{}, std::true_type{}, std::true_type{});      // one cast to T at the end
  }
}

// Calls run(R{}, W{}) for the fused add on A inputs: R the residual stream's
// type, W the weight's; each is A or Wide.
template <typename A, typename Wide, typename F>
void visit_residual_and_weight(at::ScalarType x_dtype, at::ScalarType residual_dtype,
                               at::ScalarType weight_dtype, F&& run) {
  const bool wide_residual = residual_dtype != x_dtype;
  const bool wide_weight = weight_dtype != x_dtype;
  if constexpr (std::is_same_v<A, Wide>) {
    run(A{}, A{});
  } else if (!wide_residual && !wide_weight) {
    run(A{}, A{});
  } else if (!wide_residual) {
    run(A{}, Wide{});
  } else if (!wide_weight) {
    run(Wide{}, A{});
  } else {
    run(Wide{}, Wide{});
  }
}

}  // namespace rmsnorm
