"""RMSNorm with Hugging Face Llama numerics, for CPU and CUDA tensors.

    y = weight * (x_f32 * rsqrt(mean(x_f32**2, -1) + eps)).to(x.dtype)

The normalized row is rounded to the input dtype before the weight multiply,
and the result dtype is ``torch.result_type(weight, x)`` (an fp32 weight on a
bf16 input gives fp32), exactly as ``LlamaRMSNorm.forward`` does.
"""

from typing import Optional

import torch

from . import layers
from ._call import rms_norm_op
from ._ops import add_op_namespace_prefix, ops

# Resolved once: calling the overload directly skips the packet lookup on
# every call, which matters at decode where a call is a few microseconds.
_rms_norm_out = ops.rms_norm_out.default


def rms_norm(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    eps: float = 1e-6,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Normalize ``x`` over its last dimension (HF Llama order).

    Args:
        x: fp32, fp16 or bf16 tensor of shape ``(..., hidden)``; rows may be
            strided views (e.g. Qwen3's ``(B, S, heads, head_dim)`` q/k views).
        weight: ``(hidden,)`` tensor of x's dtype or fp32, or ``None`` for a
            weightless norm.
        eps: added to the mean square before the inverse square root.
        out: optional contiguous tensor of x's shape and the result dtype.

    Returns:
        A contiguous tensor of x's shape with dtype ``torch.result_type(weight, x)``.
    """
    if out is None:
        return rms_norm_op(x, weight, eps)
    _rms_norm_out(out, x, weight, eps)
    return out


@torch.library.register_fake(add_op_namespace_prefix("rms_norm"))
def _rms_norm_fake(input: torch.Tensor, weight: Optional[torch.Tensor], epsilon: float) -> torch.Tensor:
    dtype = input.dtype if weight is None else weight.dtype
    return input.new_empty(input.shape, dtype=dtype)


def _setup_context(ctx, inputs, output):
    input, weight, epsilon = inputs
    ctx.save_for_backward(input, weight)
    ctx.epsilon = epsilon


def _backward(ctx, grad_output):
    """Gradients of the Llama-order forward, accumulated in fp32.

    With n = x * r, r = rsqrt(mean(x^2) + eps) and y = w * T(n) (the cast to T
    passes gradients through): dw = sum_rows(dy * T(n)), g = T(dy * w) and
    dx = r * g - x * r^3 * mean(g * x). Written with torch ops (deterministic
    reductions, any device); a fused backward kernel is future work.
    """
    input, weight = ctx.saved_tensors
    x = input.float()
    inv_rms = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + ctx.epsilon)
    normed = x * inv_rms
    dy = grad_output.float()
    grad_weight = None
    if weight is not None:
        if ctx.needs_input_grad[1]:
            rows = dy * normed.to(input.dtype).float()
            grad_weight = rows.reshape(-1, rows.shape[-1]).sum(0).to(weight.dtype)
        g = (dy * weight.float()).to(input.dtype).float()
    else:
        g = dy.to(input.dtype).float()
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = (inv_rms * g - normed * (g * normed).mean(-1, keepdim=True) * inv_rms).to(input.dtype)
    return grad_input, grad_weight, None


torch.library.register_autograd(add_op_namespace_prefix("rms_norm"), _backward, setup_context=_setup_context)


__all__ = ["rms_norm", "layers"]
