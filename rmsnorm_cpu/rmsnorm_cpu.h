#pragma once

#include <optional>

#include <torch/all.h>

#include "row_layout.h"

// CPU forward: bit-for-bit what Hugging Face's LlamaRMSNorm computes with
// eager ATen on the CPU. `out` is contiguous with the input's shape.
void rms_norm_cpu(torch::Tensor& out, const torch::Tensor& input,
                  const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                  double epsilon);
