#pragma once

#include <optional>
#include <tuple>

#include <torch/all.h>

// `order` is a rmsnorm::NormOrder (norm_order.h): 0 Llama, 1 Olmo, 2 Gemma.

// Allocating form: a new contiguous tensor of the input's shape; dtype
// torch.result_type(weight, input) in Llama order, the input's otherwise.
torch::Tensor rms_norm(const torch::Tensor& input, const std::optional<torch::Tensor>& weight,
                       double epsilon, int64_t order);

// Writing form: `out` must already have the input's shape and the result dtype.
void rms_norm_out(torch::Tensor& out, const torch::Tensor& input,
                  const std::optional<torch::Tensor>& weight, double epsilon, int64_t order);

// Fused residual add: returns (norm(residual + x) in x's dtype, residual + x
// in the residual's dtype).
std::tuple<torch::Tensor, torch::Tensor> add_rms_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                      const torch::Tensor& weight, double epsilon,
                                                      int64_t order);

// In place, as vLLM's fused_add_rms_norm: residual <- residual + x, x <- norm(residual).
void add_rms_norm_(torch::Tensor& x, torch::Tensor& residual, const torch::Tensor& weight, double epsilon,
                   int64_t order);

// (grad_input, grad_weight); grad_weight is empty without a weight.
std::tuple<torch::Tensor, torch::Tensor> rms_norm_backward(const torch::Tensor& grad_output,
                                                           const torch::Tensor& input,
                                                           const std::optional<torch::Tensor>& weight,
                                                           double epsilon, int64_t order);
