#pragma once

#include <optional>

#include <torch/all.h>

// Allocating form: returns a new contiguous tensor with the input's shape and
// dtype torch.result_type(weight, input).
torch::Tensor rms_norm(const torch::Tensor& input, const std::optional<torch::Tensor>& weight,
                       double epsilon);

// Writing form: `out` must already have the input's shape and the result dtype.
void rms_norm_out(torch::Tensor& out, const torch::Tensor& input,
                  const std::optional<torch::Tensor>& weight, double epsilon);
