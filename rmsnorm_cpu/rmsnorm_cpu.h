#pragma once

#include <optional>

#include <torch/all.h>

#include "norm_order.h"
#include "row_layout.h"

// CPU forward: bit-for-bit what the transformers module of `order` computes
// with eager ATen on the CPU. `out` is contiguous with the input's shape.
void rms_norm_cpu(torch::Tensor& out, const torch::Tensor& input,
                  const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                  double epsilon, rmsnorm::NormOrder order);

// residual_out = residual + x (in the residual's dtype), out = the norm of
// residual_out cast to x's dtype. All tensors contiguous, same shape.
void add_rms_norm_cpu(torch::Tensor& out, torch::Tensor& residual_out, const torch::Tensor& x,
                      const torch::Tensor& residual, const torch::Tensor& weight, double epsilon,
                      rmsnorm::NormOrder order);

// Gradients of rms_norm (fp32 accumulation, fp64 for double inputs);
// dweight is the same for any thread count. Contiguous tensors.
void rms_norm_backward_cpu(torch::Tensor& grad_input, torch::Tensor& grad_weight,
                           const torch::Tensor& grad_output, const torch::Tensor& input,
                           const std::optional<torch::Tensor>& weight, double epsilon,
                           rmsnorm::NormOrder order);
