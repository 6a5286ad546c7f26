// Op registration and argument checks. Both ops run on CPU and CUDA tensors in
// every variant: a CUDA build of torch always loads the CUDA variant, which
// must still serve a model kernelized on the CPU.

#include <ATen/MemoryOverlap.h>
#include <torch/library.h>

#include <string>

#include "registration.h"
#include "torch_binding.h"

#include "rmsnorm_cpu.h"
#include "row_layout.h"

#if defined(CUDA_KERNEL)
void rms_norm_cuda(torch::Tensor& out, const torch::Tensor& input,
                   const std::optional<torch::Tensor>& weight, const rmsnorm::RowLayout& layout,
                   double epsilon);
#endif

namespace {

// Error messages are assembled from strings only. Streaming a number into
// TORCH_CHECK's message (an int64, or an IntArrayRef) crashed with SIGSEGV on
// the H100 image (torch 2.11, extension built by its gcc 13) while strings and
// dtype names streamed fine: the number formatting of gcc 13's headers does
// not agree with the older libstdc++ loaded there. "[2, 4096]":
std::string format_dims(c10::IntArrayRef dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(dims[i]);
  }
  return text + "]";
}

bool is_supported_dtype(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16;
}

void check_arguments(const torch::Tensor& input, const std::optional<torch::Tensor>& weight) {
  TORCH_CHECK(input.defined(), "rms_norm: input is an undefined tensor");
  TORCH_CHECK(input.dim() >= 1,
              "rms_norm: input must have at least one dimension (the hidden size), got a 0-d tensor");
  TORCH_CHECK(is_supported_dtype(input.scalar_type()),
              "rms_norm: input dtype must be float32, float16 or bfloat16, got ", input.scalar_type());
  TORCH_CHECK(input.is_cpu() || input.is_cuda(), "rms_norm: input is on ", input.device().str(),
              "; expected a CPU or CUDA tensor");
#if !defined(CUDA_KERNEL)
  TORCH_CHECK(!input.is_cuda(), "rms_norm: this build of the kernel is CPU-only; input is on ",
              input.device().str());
#endif
  if (!weight) return;
  const int64_t hidden = input.size(-1);
  TORCH_CHECK(weight->dim() == 1 && weight->size(0) == hidden, "rms_norm: weight must be 1-D with ",
              std::to_string(hidden), " elements (the input's last dimension), got shape ", format_dims(weight->sizes()));
  TORCH_CHECK(weight->scalar_type() == input.scalar_type() || weight->scalar_type() == at::kFloat,
              "rms_norm: weight dtype must be the input's (", input.scalar_type(),
              ") or float32, got ", weight->scalar_type());
  TORCH_CHECK(weight->device() == input.device(), "rms_norm: weight is on ", weight->device().str(),
              " but input is on ", input.device().str(), "; both must be on the same device");
}

at::ScalarType result_dtype(const torch::Tensor& input, const std::optional<torch::Tensor>& weight) {
  return weight ? weight->scalar_type() : input.scalar_type();  // weight is T or float32
}

void check_out(const torch::Tensor& out, const torch::Tensor& input,
               const std::optional<torch::Tensor>& weight) {
  TORCH_CHECK(out.sizes() == input.sizes(), "rms_norm: out must have the input's shape ",
              format_dims(input.sizes()), ", got ", format_dims(out.sizes()));
  const auto expected = result_dtype(input, weight);
  TORCH_CHECK(out.scalar_type() == expected, "rms_norm: out must have dtype ", expected,
              " (torch.result_type(weight, input)), got ", out.scalar_type());
  TORCH_CHECK(out.device() == input.device(), "rms_norm: out is on ", out.device().str(),
              " but input is on ", input.device().str());
  TORCH_CHECK(out.is_contiguous(), "rms_norm: out must be contiguous, got strides ",
              format_dims(out.strides()));
  TORCH_CHECK(at::get_overlap_status(out, input) == at::MemOverlapStatus::No,
              "rms_norm: out must not share memory with the input; pass a separate tensor");
  if (weight) {
    TORCH_CHECK(at::get_overlap_status(out, *weight) == at::MemOverlapStatus::No,
                "rms_norm: out must not share memory with the weight");
  }
}

// Folds the leading dimensions into at most kMaxRowDims (outermost first);
// returns false when the rows need more, in which case the caller copies.
bool fold_rows(const torch::Tensor& input, rmsnorm::RowLayout& layout) {
  layout.hidden = input.size(-1);
  layout.rows = layout.hidden == 0 ? 0 : input.numel() / layout.hidden;
  // Innermost first while folding; fixed arrays keep the decode path free of
  // heap allocations.
  int64_t sizes[rmsnorm::kMaxRowDims], strides[rmsnorm::kMaxRowDims];
  int count = 0;
  for (int64_t d = input.dim() - 2; d >= 0; --d) {
    const int64_t size = input.size(d), stride = input.stride(d);
    if (size == 1) continue;
    if (count > 0 && stride == strides[count - 1] * sizes[count - 1]) {
      sizes[count - 1] *= size;
    } else if (count == rmsnorm::kMaxRowDims) {
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

void run(torch::Tensor& out, const torch::Tensor& input_arg,
         const std::optional<torch::Tensor>& weight_arg, double epsilon) {
  torch::Tensor input = input_arg;
  if (input.numel() == 0) return;
  rmsnorm::RowLayout layout;
  if (input.stride(-1) != 1 || !fold_rows(input, layout)) {
    input = input.contiguous();
    TORCH_CHECK(fold_rows(input, layout), "rms_norm: internal error folding rows");
  }
  std::optional<torch::Tensor> weight = weight_arg;
  if (weight && !weight->is_contiguous()) weight = weight->contiguous();

  if (input.is_cuda()) {
#if defined(CUDA_KERNEL)
    rms_norm_cuda(out, input, weight, layout, epsilon);
#endif
  } else {
    rms_norm_cpu(out, input, weight, layout, epsilon);
  }
}

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& input, const std::optional<torch::Tensor>& weight,
                       double epsilon) {
  check_arguments(input, weight);
  torch::Tensor out = torch::empty(input.sizes(), input.options().dtype(result_dtype(input, weight)));
  run(out, input, weight, epsilon);
  return out;
}

void rms_norm_out(torch::Tensor& out, const torch::Tensor& input,
                  const std::optional<torch::Tensor>& weight, double epsilon) {
  check_arguments(input, weight);
  check_out(out, input, weight);
  run(out, input, weight, epsilon);
}

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("rms_norm(Tensor input, Tensor? weight, float epsilon) -> Tensor");
  ops.def("rms_norm_out(Tensor! out, Tensor input, Tensor? weight, float epsilon) -> ()");
  ops.impl("rms_norm", c10::DeviceType::CPU, &rms_norm);
  ops.impl("rms_norm_out", c10::DeviceType::CPU, &rms_norm_out);
#if defined(CUDA_KERNEL)
  ops.impl("rms_norm", c10::DeviceType::CUDA, &rms_norm);
  ops.impl("rms_norm_out", c10::DeviceType::CUDA, &rms_norm_out);
#endif
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
