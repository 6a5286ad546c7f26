// Op registration for the torch-stable-abi variants: the same five ops, schemas
// and argument checks as torch-ext/torch_binding.cpp, written against torch's
// stable C ABI (torch/csrc/stable, torch/headeronly) only, so that one binary
// built against torch 2.11 loads in every later torch release.
//
// The kernels behind it are the ones of every other variant (rmsnorm_cpu/,
// rmsnorm_cuda/), compiled unchanged over aten_compat.h.

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <optional>
#include <string>
#include <tuple>

#include "aten_compat.h"
#include "registration.h"
#include "rmsnorm_cpu.h"
#include "cuda_launchers.h"
#include "row_layout.h"

using rmsnorm::NormOrder;
using StableTensor = torch::stable::Tensor;
using torch::headeronly::ScalarType;


namespace {

std::string format_dims(torch::headeronly::IntHeaderOnlyArrayRef dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(dims[i]);
  }
  return text + "]";
}

bool same_dims(torch::headeronly::IntHeaderOnlyArrayRef a, torch::headeronly::IntHeaderOnlyArrayRef b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

const char* dtype_name(ScalarType dtype) { return torch::headeronly::toString(dtype); }

std::string device_name(const StableTensor& t) {
  if (t.is_cpu()) return "cpu";
  if (t.is_cuda()) return "cuda:" + std::to_string(t.get_device_index());
  return "a device that is neither CPU nor CUDA";
}

bool same_device(const StableTensor& a, const StableTensor& b) {
  return a.is_cpu() == b.is_cpu() && a.is_cuda() == b.is_cuda() && a.get_device_index() == b.get_device_index();
}

// Whether the bytes two tensors can reach intersect: a conservative stand-in
// for at::get_overlap_status, which the stable ABI does not offer.
bool may_overlap(const StableTensor& a, const StableTensor& b) {
  auto span = [](const StableTensor& t) {
    const char* begin = static_cast<const char*>(t.data_ptr());
    int64_t last = 0;
    for (int64_t d = 0; d < t.dim(); ++d) {
      if (t.size(d) == 0) return std::pair<const char*, const char*>{begin, begin};
      last += (t.size(d) - 1) * t.stride(d);
    }
    return std::pair<const char*, const char*>{begin, begin + (last + 1) * int64_t(t.element_size())};
  };
  const auto [a_begin, a_end] = span(a);
  const auto [b_begin, b_end] = span(b);
  return a_begin < b_end && b_begin < a_end;
}

bool is_supported_dtype(ScalarType dtype) {
  return dtype == ScalarType::Float || dtype == ScalarType::Half || dtype == ScalarType::BFloat16 ||
         dtype == ScalarType::Double;
}

NormOrder checked_order(const char* op, int64_t order) {
  STD_TORCH_CHECK(rmsnorm::is_valid_order(order), op, ": order must be 0 (llama), 1 (olmo) or 2 (gemma), got ",
                  std::to_string(order));
  return static_cast<NormOrder>(order);
}

bool weight_dtype_allowed(ScalarType weight, ScalarType input) {
  return weight == input || (weight == ScalarType::Float && input != ScalarType::Double);
}

void check_input(const char* op, const char* name, const StableTensor& input) {
  STD_TORCH_CHECK(input.defined(), op, ": ", name, " is an undefined tensor");
  STD_TORCH_CHECK(input.dim() >= 1, op, ": ", name,
                  " must have at least one dimension (the hidden size), got a 0-d tensor");
  STD_TORCH_CHECK(is_supported_dtype(input.scalar_type()), op, ": ", name,
                  " dtype must be float32, float16 or bfloat16 (float64 on the CPU), got ",
                  dtype_name(input.scalar_type()));
  STD_TORCH_CHECK(input.is_cpu() || input.is_cuda(), op, ": ", name, " is on ", device_name(input),
                  "; expected a CPU or CUDA tensor");
  STD_TORCH_CHECK(!(input.is_cuda() && input.scalar_type() == ScalarType::Double), op,
                  ": float64 runs on the CPU only (it exists for gradcheck); got a float64 CUDA tensor");
#if !defined(CUDA_KERNEL)
  STD_TORCH_CHECK(!input.is_cuda(), op, ": this build of the kernel is CPU-only; ", name, " is on ",
                  device_name(input));
#endif
}

void check_weight(const char* op, const StableTensor& input, const StableTensor& weight) {
  const int64_t hidden = input.size(-1);
  STD_TORCH_CHECK(weight.dim() == 1 && weight.size(0) == hidden, op, ": weight must be 1-D with ",
                  std::to_string(hidden), " elements (the input's last dimension), got shape ",
                  format_dims(weight.sizes()));
  STD_TORCH_CHECK(weight_dtype_allowed(weight.scalar_type(), input.scalar_type()), op,
                  ": weight dtype must be the input's (", dtype_name(input.scalar_type()), ") or float32, got ",
                  dtype_name(weight.scalar_type()));
  STD_TORCH_CHECK(same_device(weight, input), op, ": weight is on ", device_name(weight), " but input is on ",
                  device_name(input), "; both must be on the same device");
}

void check_arguments(const StableTensor& input, const std::optional<StableTensor>& weight) {
  check_input("rms_norm", "input", input);
  if (weight) check_weight("rms_norm", input, *weight);
}

ScalarType result_dtype(const StableTensor& input, const std::optional<StableTensor>& weight, NormOrder order) {
  return weight && order == NormOrder::kLlama ? weight->scalar_type() : input.scalar_type();
}

void check_out(const StableTensor& out, const StableTensor& input, const std::optional<StableTensor>& weight,
               NormOrder order) {
  STD_TORCH_CHECK(same_dims(out.sizes(), input.sizes()), "rms_norm: out must have the input's shape ",
                  format_dims(input.sizes()), ", got ", format_dims(out.sizes()));
  const auto expected = result_dtype(input, weight, order);
  STD_TORCH_CHECK(out.scalar_type() == expected, "rms_norm: out must have dtype ", dtype_name(expected),
                  " (the result dtype of this input, weight and order), got ", dtype_name(out.scalar_type()));
  STD_TORCH_CHECK(same_device(out, input), "rms_norm: out is on ", device_name(out), " but input is on ",
                  device_name(input));
  STD_TORCH_CHECK(out.is_contiguous(), "rms_norm: out must be contiguous, got strides ",
                  format_dims(out.strides()));
  STD_TORCH_CHECK(!may_overlap(out, input),
                  "rms_norm: out must not share memory with the input; pass a separate tensor");
  if (weight) STD_TORCH_CHECK(!may_overlap(out, *weight), "rms_norm: out must not share memory with the weight");
}

std::optional<torch::Tensor> contiguous_weight(const std::optional<StableTensor>& weight) {
  if (!weight) return std::nullopt;
  return torch::Tensor(weight->is_contiguous() ? *weight : torch::stable::contiguous(*weight));
}

void run(const StableTensor& out_arg, const StableTensor& input_arg, const std::optional<StableTensor>& weight_arg,
         double epsilon, NormOrder order) {
  if (input_arg.numel() == 0) return;
  torch::Tensor input = input_arg;
  rmsnorm::RowLayout layout;
  if (input.stride(-1) != 1 || !rmsnorm::fold_rows(input, layout)) {
    input = torch::stable::contiguous(input_arg);
    STD_TORCH_CHECK(rmsnorm::fold_rows(input, layout), "rms_norm: internal error folding rows");
  }
  const std::optional<torch::Tensor> weight = contiguous_weight(weight_arg);
  torch::Tensor out = out_arg;
  if (input.is_cuda()) {
#if defined(CUDA_KERNEL)
    rms_norm_cuda(out, input, weight, layout, epsilon, order);
#endif
  } else {
    rms_norm_cpu(out, input, weight, layout, epsilon, order);
  }
}

void check_same_placement(const char* op, const StableTensor& x, const StableTensor& residual) {
  STD_TORCH_CHECK(same_dims(residual.sizes(), x.sizes()), op, ": residual must have x's shape ",
                  format_dims(x.sizes()), ", got ", format_dims(residual.sizes()));
  STD_TORCH_CHECK(same_device(residual, x), op, ": residual is on ", device_name(residual), " but x is on ",
                  device_name(x));
  STD_TORCH_CHECK(residual.scalar_type() == x.scalar_type() || residual.scalar_type() == ScalarType::Float, op,
                  ": residual dtype must be x's (", dtype_name(x.scalar_type()),
                  ") or float32 (an fp32 residual stream), got ", dtype_name(residual.scalar_type()));
}

NormOrder check_fused_arguments(const char* op, int64_t order_arg, const StableTensor& x,
                                const StableTensor& residual, const StableTensor& weight) {
  const NormOrder order = checked_order(op, order_arg);
  check_input(op, "x", x);
  check_input(op, "residual", residual);
  check_same_placement(op, x, residual);
  STD_TORCH_CHECK(weight.defined(), op, ": weight is required (the fused op has no weightless form), got None");
  check_weight(op, x, weight);
  return order;
}

void run_add(const StableTensor& out_arg, const StableTensor& residual_out_arg, const StableTensor& x_arg,
             const StableTensor& residual_arg, const StableTensor& weight_arg, double epsilon, NormOrder order) {
  if (x_arg.numel() == 0) return;
  const torch::Tensor weight = weight_arg.is_contiguous() ? weight_arg : torch::stable::contiguous(weight_arg);
  torch::Tensor out = out_arg, residual_out = residual_out_arg;
  const torch::Tensor x = x_arg, residual = residual_arg;
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

// A new contiguous tensor of t's shape, dtype and device.
StableTensor empty_contiguous(const StableTensor& t, std::optional<ScalarType> dtype = std::nullopt) {
  return torch::stable::new_empty(t, t.sizes(), dtype ? *dtype : t.scalar_type());
}

StableTensor rms_norm(StableTensor input, std::optional<StableTensor> weight, double epsilon, int64_t order_arg) {
  const NormOrder order = checked_order("rms_norm", order_arg);
  check_arguments(input, weight);
  StableTensor out = empty_contiguous(input, result_dtype(input, weight, order));
  run(out, input, weight, epsilon, order);
  return out;
}

void rms_norm_out(StableTensor out, StableTensor input, std::optional<StableTensor> weight, double epsilon,
                  int64_t order_arg) {
  const NormOrder order = checked_order("rms_norm", order_arg);
  check_arguments(input, weight);
  check_out(out, input, weight, order);
  run(out, input, weight, epsilon, order);
}

std::tuple<StableTensor, StableTensor> add_rms_norm(StableTensor x, StableTensor residual, StableTensor weight,
                                                    double epsilon, int64_t order_arg) {
  const NormOrder order = check_fused_arguments("add_rms_norm", order_arg, x, residual, weight);
  const StableTensor x_c = torch::stable::contiguous(x), residual_c = torch::stable::contiguous(residual);
  StableTensor out = empty_contiguous(x_c), residual_out = empty_contiguous(residual_c);
  run_add(out, residual_out, x_c, residual_c, weight, epsilon, order);
  return {out, residual_out};
}

void add_rms_norm_(StableTensor x, StableTensor residual, StableTensor weight, double epsilon, int64_t order_arg) {
  constexpr const char* kOp = "add_rms_norm_";
  const NormOrder order = check_fused_arguments(kOp, order_arg, x, residual, weight);
  STD_TORCH_CHECK(x.is_contiguous() && residual.is_contiguous(), kOp,
                  ": the in-place form needs contiguous x and residual (got strides ", format_dims(x.strides()),
                  " and ", format_dims(residual.strides()), "); use add_rms_norm for strided tensors");
  STD_TORCH_CHECK(!may_overlap(x, residual), kOp, ": x and residual must not share memory");
  STD_TORCH_CHECK(!may_overlap(x, weight) && !may_overlap(residual, weight), kOp,
                  ": x and residual must not share memory with the weight");
  run_add(x, residual, x, residual, weight, epsilon, order);
}

std::tuple<StableTensor, StableTensor> rms_norm_backward(StableTensor grad_output, StableTensor input,
                                                         std::optional<StableTensor> weight, double epsilon,
                                                         int64_t order_arg) {
  constexpr const char* kOp = "rms_norm_backward";
  const NormOrder order = checked_order(kOp, order_arg);
  check_input(kOp, "input", input);
  if (weight) check_weight(kOp, input, *weight);
  STD_TORCH_CHECK(same_dims(grad_output.sizes(), input.sizes()), kOp, ": grad_output must have the input's shape ",
                  format_dims(input.sizes()), ", got ", format_dims(grad_output.sizes()));
  STD_TORCH_CHECK(same_device(grad_output, input), kOp, ": grad_output is on ", device_name(grad_output),
                  " but input is on ", device_name(input));
  const auto forward_dtype = result_dtype(input, weight, order);
  STD_TORCH_CHECK(grad_output.scalar_type() == forward_dtype, kOp, ": grad_output must have the forward's dtype ",
                  dtype_name(forward_dtype), ", got ", dtype_name(grad_output.scalar_type()));
  const torch::Tensor input_c = torch::stable::contiguous(input), grad_c = torch::stable::contiguous(grad_output);
  torch::Tensor grad_input = empty_contiguous(input_c);
  const std::vector<int64_t> empty_dims{0};
  torch::Tensor grad_weight = weight ? empty_contiguous(*weight) : torch::stable::new_empty(input, empty_dims);
  if (input.numel() == 0) {
    if (weight) torch::stable::zero_(grad_weight);
    return {grad_input, grad_weight};
  }
  const std::optional<torch::Tensor> weight_c = contiguous_weight(weight);
  if (input.is_cuda()) {
#if defined(CUDA_KERNEL)
    rms_norm_backward_cuda(grad_input, grad_weight, grad_c, input_c, weight_c, epsilon, order);
#endif
  } else {
    rms_norm_backward_cpu(grad_input, grad_weight, grad_c, input_c, weight_c, epsilon, order);
  }
  return {grad_input, grad_weight};
}

}  // namespace

#define STABLE_TORCH_LIBRARY_EXPAND(NAME, MODULE) STABLE_TORCH_LIBRARY(NAME, MODULE)
#define STABLE_TORCH_LIBRARY_IMPL_EXPAND(NAME, DEVICE, MODULE) STABLE_TORCH_LIBRARY_IMPL(NAME, DEVICE, MODULE)

STABLE_TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("rms_norm(Tensor input, Tensor? weight, float epsilon, int order=0) -> Tensor");
  ops.def("rms_norm_out(Tensor! out, Tensor input, Tensor? weight, float epsilon, int order=0) -> ()");
  ops.def("add_rms_norm(Tensor x, Tensor residual, Tensor weight, float epsilon, int order=0)"
          " -> (Tensor, Tensor)");
  ops.def("add_rms_norm_(Tensor(a!) x, Tensor(b!) residual, Tensor weight, float epsilon, int order=0) -> ()");
  ops.def("rms_norm_backward(Tensor grad_output, Tensor input, Tensor? weight, float epsilon, int order=0)"
          " -> (Tensor, Tensor)");
  // Grad-free twins (torch-ext/torch_binding.cpp says why).
  ops.def("rms_norm_no_grad(Tensor input, Tensor? weight, float epsilon, int order=0) -> Tensor");
  ops.def("add_rms_norm_no_grad(Tensor x, Tensor residual, Tensor weight, float epsilon, int order=0)"
          " -> (Tensor, Tensor)");
}

STABLE_TORCH_LIBRARY_IMPL_EXPAND(TORCH_EXTENSION_NAME, CPU, ops) {
  ops.impl("rms_norm", TORCH_BOX(&rms_norm));
  ops.impl("rms_norm_out", TORCH_BOX(&rms_norm_out));
  ops.impl("add_rms_norm", TORCH_BOX(&add_rms_norm));
  ops.impl("add_rms_norm_", TORCH_BOX(&add_rms_norm_));
  ops.impl("rms_norm_backward", TORCH_BOX(&rms_norm_backward));
  ops.impl("rms_norm_no_grad", TORCH_BOX(&rms_norm));
  ops.impl("add_rms_norm_no_grad", TORCH_BOX(&add_rms_norm));
}

#if defined(CUDA_KERNEL)
STABLE_TORCH_LIBRARY_IMPL_EXPAND(TORCH_EXTENSION_NAME, CUDA, ops) {
  ops.impl("rms_norm", TORCH_BOX(&rms_norm));
  ops.impl("rms_norm_out", TORCH_BOX(&rms_norm_out));
  ops.impl("add_rms_norm", TORCH_BOX(&add_rms_norm));
  ops.impl("add_rms_norm_", TORCH_BOX(&add_rms_norm_));
  ops.impl("rms_norm_backward", TORCH_BOX(&rms_norm_backward));
  ops.impl("rms_norm_no_grad", TORCH_BOX(&rms_norm));
  ops.impl("add_rms_norm_no_grad", TORCH_BOX(&add_rms_norm));
}
#endif

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
