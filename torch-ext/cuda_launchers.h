#pragma once

// The CUDA launchers (rmsnorm_cuda/*.cu) that both bindings, ATen's and the
// stable ABI's, call; they exist in CUDA variants only.

#include <optional>

#include <torch/all.h>

#include "norm_order.h"
#include "row_layout.h"

#if defined(CUDA_KERNEL)
void rms_norm_cuda(torch::Tensor& out, const torch::Tensor& input,
                   const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                   double epsilon, rmsnorm::NormOrder order);
void add_rms_norm_cuda(torch::Tensor& out, torch::Tensor& residual_out, const torch::Tensor& x,
                       const torch::Tensor& residual, const torch::Tensor& weight,
                       const rmsnorm::RowLayout& layout, double epsilon, rmsnorm::NormOrder order);
void rms_norm_backward_cuda(torch::Tensor& grad_input, torch::Tensor& grad_weight,
                            const torch::Tensor& grad_output, const torch::Tensor& input,
                            const std::optional<torch::Tensor>& weight, double epsilon,
                            rmsnorm::NormOrder order);
#endif
