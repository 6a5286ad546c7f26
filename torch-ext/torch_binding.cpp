// Op registration and argument checks. Both ops run on CPU and CUDA tensors in
// every variant: a CUDA build of torch always loads the CUDA variant, which
// must still serve a model kernelized on the CPU.

#include <ATen/MemoryOverlap.h>
#include <torch/library.h>

#include <string>

#include "registration.h"
#include "torch_binding.h"

#include "rmsnorm_cpu.h"
#include "cuda_launchers.h"
#include "row_layout.h"


using rmsnorm::NormOrder;

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
  return dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble;
}

NormOrder checked_order(const char* op, int64_t order) {
  TORCH_CHECK(rmsnorm::is_valid_order(order), op, ": order must be 0 (llama), 1 (olmo) or 2 (gemma), got ",
              std::to_string(order));
  return static_cast<NormOrder>(order);
}

// float32 weights may go with any input (fp32 master weights); float64 only
// with float64 inputs, which run on the CPU (gradcheck).
bool weight_dtype_allowed(at::ScalarType weight, at::ScalarType input) {
  return weight == input || (weight == at::kFloat && input != at::kDouble);
}

void check_input(const char* op, const char* name, const torch::Tensor& input) {
  TORCH_CHECK(input.defined(), op, ": ", name, " is an undefined tensor");
  TORCH_CHECK(input.dim() >= 1, op, ": ", name,
              " must have at least one dimension (the hidden size), got a 0-d tensor");
  TORCH_CHECK(is_supported_dtype(input.scalar_type()), op, ": ", name,
              " dtype must be float32, float16 or bfloat16 (float64 on the CPU), got ", input.scalar_type());
  TORCH_CHECK(input.is_cpu() || input.is_cuda(), op, ": ", name, " is on ", input.device().str(),
              "; expected a CPU or CUDA tensor");
  TORCH_CHECK(!(input.is_cuda() && input.scalar_type() == at::kDouble), op,
              ": float64 runs on the CPU only (it exists for gradcheck); got a float64 CUDA tensor");
#if !defined(CUDA_KERNEL)
  TORCH_CHECK(!input.is_cuda(), op, ": this build of the kernel is CPU-only; ", name, " is on ",
              input.device().str());
#endif
}

void check_weight(const char* op, const torch::Tensor& input, const torch::Tensor& weight) {
  const int64_t hidden = input.size(-1);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == hidden, op, ": weight must be 1-D with ",
              std::to_string(hidden), " elements (the input's last dimension), got shape ",
              format_dims(weight.sizes()));
  TORCH_CHECK(weight_dtype_allowed(weight.scalar_type(), input.scalar_type()), op,
              ": weight dtype must be the input's (", input.scalar_type(), ") or float32, got ",
              weight.scalar_type());
  TORCH_CHECK(weight.device() == input.device(), op, ": weight is on ", weight.device().str(),
              " but input is on ", input.device().str(), "; both must be on the same device");
}

void check_arguments(const torch::Tensor& input, const std::optional<torch::Tensor>& weight) {
  check_input("rms_norm", "input", input);
  if (weight) check_weight("rms_norm", input, *weight);
}

// Llama order: torch.result_type(weight, input); Olmo and Gemma cast to the
// input's dtype at the end.
at::ScalarType result_dtype(const torch::Tensor& input, const std::optional<torch::Tensor>& weight,
                            NormOrder order) {
  return weight && order == NormOrder::kLlama ? weight->scalar_type() : input.scalar_type();
}

void check_out(const torch::Tensor& out, const torch::Tensor& input,
               const std::optional<torch::Tensor>& weight, NormOrder order) {
  TORCH_CHECK(out.sizes() == input.sizes(), "rms_norm: out must have the input's shape ",
              format_dims(input.sizes()), ", got ", format_dims(out.sizes()));
  const auto expected = result_dtype(input, weight, order);
  TORCH_CHECK(out.scalar_type() == expected, "rms_norm: out must have dtype ", expected,
              " (the result dtype of this input, weight and order), got ", out.scalar_type());
  TORCH_CHECK(out.device() == input.device(), "rms_norm: out is on ", out.device().str(),
              " but input is on ", input.device().str());
  TORCH_CHECK(out.is_contiguous(), "rms_norm: out must be contiguous, got strides ",
              format_dims(out.strides()));
  // get_overlap_status answers TooHard for any gapped view (x[:, ::2]) even
  // when the storages differ, so only tensors that share a storage are judged.
  auto overlaps = [&](const torch::Tensor& other) {
    return out.is_alias_of(other) && at::get_overlap_status(out, other) != at::MemOverlapStatus::No;
  };
  TORCH_CHECK(!overlaps(input), "rms_norm: out must not share memory with the input; pass a separate tensor");
  if (weight) TORCH_CHECK(!overlaps(*weight), "rms_norm: out must not share memory with the weight");
}

void run(torch::Tensor& out, const torch::Tensor& input_arg,
         const std::optional<torch::Tensor>& weight_arg, double epsilon, NormOrder order) {
  torch::Tensor input = input_arg;
  if (input.numel() == 0) return;
  rmsnorm::RowLayout layout;
  if (input.stride(-1) != 1 || !rmsnorm::fold_rows(input, layout)) {
    input = input.contiguous();
    TORCH_CHECK(rmsnorm::fold_rows(input, layout), "rms_norm: internal error folding rows");
  }
  std::optional<torch::Tensor> weight = weight_arg;
  if (weight && !weight->is_contiguous()) weight = weight->contiguous();

  if (input.is_cuda()) {
#if defined(CUDA_KERNEL)
    rms_norm_cuda(out, input, weight, layout, epsilon, order);
#endif
  } else {
    rms_norm_cpu(out, input, weight, layout, epsilon, order);
  }
}

void check_same_placement(const char* op, const torch::Tensor& x, const torch::Tensor& residual) {
  TORCH_CHECK(residual.sizes() == x.sizes(), op, ": residual must have x's shape ", format_dims(x.sizes()),
              ", got ", format_dims(residual.sizes()));
  TORCH_CHECK(residual.device() == x.device(), op, ": residual is on ", residual.device().str(),
              " but x is on ", x.device().str());
  TORCH_CHECK(residual.scalar_type() == x.scalar_type() || residual.scalar_type() == at::kFloat, op,
              ": residual dtype must be x's (", x.scalar_type(), ") or float32 (an fp32 residual stream), got ",
              residual.scalar_type());
}

// The fused ops' arguments: both tensors, their placement, the weight.
NormOrder check_fused_arguments(const char* op, int64_t order_arg, const torch::Tensor& x,
                                const torch::Tensor& residual, const torch::Tensor& weight) {
  const NormOrder order = checked_order(op, order_arg);
  check_input(op, "x", x);
  check_input(op, "residual", residual);
  check_same_placement(op, x, residual);
  TORCH_CHECK(weight.defined(), op, ": weight is required (the fused op has no weightless form), got None");
  check_weight(op, x, weight);
  return order;
}

void run_add(torch::Tensor& out, torch::Tensor& residual_out, const torch::Tensor& x,
             const torch::Tensor& residual, const torch::Tensor& weight_arg, double epsilon, NormOrder order) {
  if (x.numel() == 0) return;
  const torch::Tensor weight = weight_arg.contiguous();
  if (x.is_cuda()) {
#if defined(CUDA_KERNEL)
    rmsnorm::RowLayout layout;
    layout.hidden = x.size(-1);
    layout.rows = x.numel() / layout.hidden;
    layout.sizes[0] = layout.rows;
    layout.strides[0] = layout.hidden;
    add_rms_norm_cuda(out, residual_out, x, residual, weight, layout, epsilon, order);
#endif
  } else {
    add_rms_norm_cpu(out, residual_out, x, residual, weight, epsilon, order);
  }
}

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& input, const std::optional<torch::Tensor>& weight,
                       double epsilon, int64_t order_arg) {
  const NormOrder order = checked_order("rms_norm", order_arg);
  check_arguments(input, weight);
  torch::Tensor out = torch::empty(input.sizes(), input.options().dtype(result_dtype(input, weight, order)));
  run(out, input, weight, epsilon, order);
  return out;
}

void rms_norm_out(torch::Tensor& out, const torch::Tensor& input,
                  const std::optional<torch::Tensor>& weight, double epsilon, int64_t order_arg) {
  const NormOrder order = checked_order("rms_norm", order_arg);
  check_arguments(input, weight);
  check_out(out, input, weight, order);
  run(out, input, weight, epsilon, order);
}


std::tuple<torch::Tensor, torch::Tensor> add_rms_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                      const torch::Tensor& weight, double epsilon,
                                                      int64_t order_arg) {
  constexpr const char* kOp = "add_rms_norm";
  const NormOrder order = check_fused_arguments(kOp, order_arg, x, residual, weight);
  const torch::Tensor x_c = x.contiguous(), residual_c = residual.contiguous();
  torch::Tensor out = torch::empty_like(x_c, at::MemoryFormat::Contiguous);
  torch::Tensor residual_out = torch::empty_like(residual_c, at::MemoryFormat::Contiguous);
  run_add(out, residual_out, x_c, residual_c, weight, epsilon, order);
  return {out, residual_out};
}

void add_rms_norm_(torch::Tensor& x, torch::Tensor& residual, const torch::Tensor& weight, double epsilon,
                   int64_t order_arg) {
  constexpr const char* kOp = "add_rms_norm_";
  const NormOrder order = check_fused_arguments(kOp, order_arg, x, residual, weight);
  TORCH_CHECK(x.is_contiguous() && residual.is_contiguous(), kOp,
              ": the in-place form needs contiguous x and residual (got strides ", format_dims(x.strides()),
              " and ", format_dims(residual.strides()), "); use add_rms_norm for strided tensors");
  TORCH_CHECK(at::get_overlap_status(x, residual) == at::MemOverlapStatus::No, kOp,
              ": x and residual must not share memory");
  TORCH_CHECK(at::get_overlap_status(x, weight) == at::MemOverlapStatus::No &&
                  at::get_overlap_status(residual, weight) == at::MemOverlapStatus::No,
              kOp, ": x and residual must not share memory with the weight");
  run_add(x, residual, x, residual, weight, epsilon, order);
}

std::tuple<torch::Tensor, torch::Tensor> rms_norm_backward(const torch::Tensor& grad_output,
                                                           const torch::Tensor& input,
                                                           const std::optional<torch::Tensor>& weight,
                                                           double epsilon, int64_t order_arg) {
  constexpr const char* kOp = "rms_norm_backward";
  const NormOrder order = checked_order(kOp, order_arg);
  check_input(kOp, "input", input);
  if (weight) check_weight(kOp, input, *weight);
  TORCH_CHECK(grad_output.sizes() == input.sizes(), kOp, ": grad_output must have the input's shape ",
              format_dims(input.sizes()), ", got ", format_dims(grad_output.sizes()));
  TORCH_CHECK(grad_output.device() == input.device(), kOp, ": grad_output is on ", grad_output.device().str(),
              " but input is on ", input.device().str());
  const auto forward_dtype = result_dtype(input, weight, order);
  TORCH_CHECK(grad_output.scalar_type() == forward_dtype, kOp, ": grad_output must have the forward's dtype ",
              forward_dtype, ", got ", grad_output.scalar_type());
  const torch::Tensor input_c = input.contiguous(), grad_c = grad_output.contiguous();
  torch::Tensor grad_input = torch::empty_like(input_c, at::MemoryFormat::Contiguous);
  torch::Tensor grad_weight = weight ? torch::empty_like(*weight, at::MemoryFormat::Contiguous)
                                     : torch::empty({0}, input.options());
  if (input.numel() == 0) {
    if (weight) grad_weight.zero_();
    return {grad_input, grad_weight};
  }
  std::optional<torch::Tensor> weight_c;
  if (weight) weight_c = weight->contiguous();
  if (input.is_cuda()) {
#if defined(CUDA_KERNEL)
    rms_norm_backward_cuda(grad_input, grad_weight, grad_c, input_c, weight_c, epsilon, order);
#endif
  } else {
    rms_norm_backward_cpu(grad_input, grad_weight, grad_c, input_c, weight_c, epsilon, order);
  }
  return {grad_input, grad_weight};
}

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("rms_norm(Tensor input, Tensor? weight, float epsilon, int order=0) -> Tensor");
  ops.def("rms_norm_out(Tensor! out, Tensor input, Tensor? weight, float epsilon, int order=0) -> ()");
  ops.def("add_rms_norm(Tensor x, Tensor residual, Tensor weight, float epsilon, int order=0)"
          " -> (Tensor, Tensor)");
  ops.def("add_rms_norm_(Tensor(a!) x, Tensor(b!) residual, Tensor weight, float epsilon, int order=0) -> ()");
  ops.def("rms_norm_backward(Tensor grad_output, Tensor input, Tensor? weight, float epsilon, int order=0)"
          " -> (Tensor, Tensor)");
  // Grad-free twins of the two ops that carry a Python autograd formula. The
  // dispatcher enters a Python autograd kernel even under no_grad; an op
  // without one takes the C++ autograd fallback, which with grad disabled only
  // redispatches. Python calls them when grad is off (torch-ext/rmsnorm/_call.py).
  ops.def("rms_norm_no_grad(Tensor input, Tensor? weight, float epsilon, int order=0) -> Tensor");
  ops.def("add_rms_norm_no_grad(Tensor x, Tensor residual, Tensor weight, float epsilon, int order=0)"
          " -> (Tensor, Tensor)");
  ops.impl("rms_norm", c10::DeviceType::CPU, &rms_norm);
  ops.impl("rms_norm_out", c10::DeviceType::CPU, &rms_norm_out);
  ops.impl("add_rms_norm", c10::DeviceType::CPU, &add_rms_norm);
  ops.impl("add_rms_norm_", c10::DeviceType::CPU, &add_rms_norm_);
  ops.impl("rms_norm_backward", c10::DeviceType::CPU, &rms_norm_backward);
  ops.impl("rms_norm_no_grad", c10::DeviceType::CPU, &rms_norm);
  ops.impl("add_rms_norm_no_grad", c10::DeviceType::CPU, &add_rms_norm);
#if defined(CUDA_KERNEL)
  ops.impl("rms_norm", c10::DeviceType::CUDA, &rms_norm);
  ops.impl("rms_norm_out", c10::DeviceType::CUDA, &rms_norm_out);
  ops.impl("add_rms_norm", c10::DeviceType::CUDA, &add_rms_norm);
  ops.impl("add_rms_norm_", c10::DeviceType::CUDA, &add_rms_norm_);
  ops.impl("rms_norm_backward", c10::DeviceType::CUDA, &rms_norm_backward);
  ops.impl("rms_norm_no_grad", c10::DeviceType::CUDA, &rms_norm);
  ops.impl("add_rms_norm_no_grad", c10::DeviceType::CUDA, &add_rms_norm);
#endif
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
