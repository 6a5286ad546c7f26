"""torch.library registrations of the ops: fake (meta) implementations for
torch.compile, and autograd through the backward op.

Backward (fused kernel on CUDA and CPU, fp32 accumulation, deterministic
dweight): see rmsnorm_cuda/rmsnorm_backward.cu for the formulas.
"""

from typing import Optional

import torch

from ._call import LLAMA
from ._ops import add_op_namespace_prefix, ops

_backward = ops.rms_norm_backward.default


def _result_dtype(input: torch.Tensor, weight: Optional[torch.Tensor], order: int) -> torch.dtype:
    return weight.dtype if weight is not None and order == LLAMA else input.dtype


@torch.library.register_fake(add_op_namespace_prefix("rms_norm"))
@torch.library.register_fake(add_op_namespace_prefix("rms_norm_no_grad"))
def _rms_norm_fake(input, weight, epsilon, order=LLAMA):
    return input.new_empty(input.shape, dtype=_result_dtype(input, weight, order))


@torch.library.register_fake(add_op_namespace_prefix("rms_norm_out"))
def _rms_norm_out_fake(out, input, weight, epsilon, order=LLAMA):
    return None


@torch.library.register_fake(add_op_namespace_prefix("add_rms_norm"))
@torch.library.register_fake(add_op_namespace_prefix("add_rms_norm_no_grad"))
def _add_rms_norm_fake(x, residual, weight, epsilon, order=LLAMA):
    return x.new_empty(x.shape), residual.new_empty(residual.shape)


@torch.library.register_fake(add_op_namespace_prefix("add_rms_norm_"))
def _add_rms_norm_inplace_fake(x, residual, weight, epsilon, order=LLAMA):
    return None


@torch.library.register_fake(add_op_namespace_prefix("rms_norm_backward"))
def _rms_norm_backward_fake(grad_output, input, weight, epsilon, order=LLAMA):
    grad_weight = weight.new_empty(weight.shape) if weight is not None else input.new_empty((0,))
    return input.new_empty(input.shape), grad_weight


def _rms_norm_setup(ctx, inputs, output):
    input, weight, epsilon, *rest = inputs
    ctx.save_for_backward(input, weight)
    ctx.epsilon = epsilon
    ctx.order = rest[0] if rest else LLAMA


def _rms_norm_grad(ctx, grad_output):
    input, weight = ctx.saved_tensors
    grad_input, grad_weight = _backward(grad_output, input, weight, ctx.epsilon, ctx.order)
    return (
        grad_input if ctx.needs_input_grad[0] else None,
        grad_weight if weight is not None and ctx.needs_input_grad[1] else None,
        None,
        None,
    )


torch.library.register_autograd(add_op_namespace_prefix("rms_norm"), _rms_norm_grad, setup_context=_rms_norm_setup)


def _add_rms_norm_setup(ctx, inputs, output):
    x, residual, weight, epsilon, *rest = inputs
    ctx.save_for_backward(output[1], weight)
    ctx.epsilon = epsilon
    ctx.order = rest[0] if rest else LLAMA
    ctx.dtypes = (x.dtype, residual.dtype)


def _add_rms_norm_grad(ctx, grad_out, grad_residual_out):
    """residual_out = x + residual feeds both the norm and the next layer, so
    its gradient is the norm's input gradient plus grad_residual_out; x and
    residual each receive it in their own dtype."""
    residual_out, weight = ctx.saved_tensors
    x_dtype, residual_dtype = ctx.dtypes
    if grad_out is None:
        grad_out = torch.zeros(residual_out.shape, dtype=x_dtype, device=residual_out.device)
    grad_norm_out = grad_out.to(_result_dtype(residual_out, weight, ctx.order))
    grad_sum, grad_weight = _backward(grad_norm_out, residual_out, weight, ctx.epsilon, ctx.order)
    if grad_residual_out is not None:
        grad_sum = grad_sum + grad_residual_out
    return (
        grad_sum.to(x_dtype) if ctx.needs_input_grad[0] else None,
        grad_sum.to(residual_dtype) if ctx.needs_input_grad[1] else None,
        grad_weight if ctx.needs_input_grad[2] else None,
        None,
        None,
    )


torch.library.register_autograd(
    add_op_namespace_prefix("add_rms_norm"), _add_rms_norm_grad, setup_context=_add_rms_norm_setup
)
