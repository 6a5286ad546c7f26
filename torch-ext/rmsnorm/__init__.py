"""RMSNorm with Hugging Face Llama numerics, for CPU and CUDA tensors.

    y = weight * (x_f32 * rsqrt(mean(x_f32**2, -1) + eps)).to(x.dtype)

The normalized row is rounded to the input dtype before the weight multiply,
and the result dtype is ``torch.result_type(weight, x)`` (an fp32 weight on a
bf16 input gives fp32), exactly as ``LlamaRMSNorm.forward`` does.
"""

from typing import Optional

import torch

from . import layers
from ._ops import add_op_namespace_prefix, ops

# Resolved once: calling the overload directly skips the packet lookup on
# every call, which matters at decode where a call is a few microseconds.
_rms_norm = ops.rms_norm.default
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
        return _rms_norm(x, weight, eps)
    _rms_norm_out(out, x, weight, eps)
    return out


@torch.library.register_fake(add_op_namespace_prefix("rms_norm"))
def _rms_norm_fake(input: torch.Tensor, weight: Optional[torch.Tensor], epsilon: float) -> torch.Tensor:
    dtype = input.dtype if weight is None else weight.dtype
    return input.new_empty(input.shape, dtype=dtype)


__all__ = ["rms_norm", "layers"]
