"""RMSNorm with the exact rounding of Hugging Face transformers, for CPU and
CUDA tensors, plus the fused residual add + RMSNorm of serving engines.

Three rounding orders exist under transformers' "RMSNorm" classes
(``x32 = x.float()``, ``n = x32 * rsqrt(mean(x32**2, -1) + eps)``):

* ``"llama"``: ``weight * n.to(x.dtype)``; result dtype
  ``torch.result_type(weight, x)`` (Llama, Mistral, Qwen2/3, Phi3, ...)
* ``"olmo"``:  ``(weight.float() * n).to(x.dtype)`` (Olmo2/3, GptOss, ...)
* ``"gemma"``: ``(n * (1 + weight.float())).to(x.dtype)`` (Gemma 1/2/3)

On CUDA the ``mean`` is summed in the order ATen's own CUDA reduction picks
for the input's shape, so results are HF's bit for bit (torch >= 2.10).
``RMSNORM_SUM_ORDER=batch_invariant`` (read once per process) picks one order
per hidden size instead: faster on large inputs and the same bits for a row
whatever the batch, within an fp32 ulp of HF's inverse RMS.
"""

from typing import Optional, Tuple

import torch

from . import layers
from ._call import GEMMA, LLAMA, add_rms_norm_op, order_code, rms_norm_op
from ._ops import add_op_namespace_prefix, ops
from .checks import kernel_op_counts
from .patching import patch_rmsnorm_modules

# Resolved once: calling the overload directly skips the packet lookup on
# every call, which matters at decode where a call is a few microseconds.
_rms_norm_out = ops.rms_norm_out.default
_add_rms_norm_inplace = ops.add_rms_norm_.default


def rms_norm(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    eps: float = 1e-6,
    out: Optional[torch.Tensor] = None,
    *,
    order: str = "llama",
) -> torch.Tensor:
    """Normalize ``x`` over its last dimension.

    Args:
        x: fp32, fp16 or bf16 tensor of shape ``(..., hidden)`` (fp64 on the
            CPU, for gradcheck); rows may be strided views (e.g. Qwen3's
            ``(B, S, heads, head_dim)`` q/k views).
        weight: ``(hidden,)`` tensor of x's dtype or fp32, or ``None`` for a
            weightless norm.
        eps: added to the mean square before the inverse square root.
        out: optional contiguous tensor of x's shape and the result dtype.
        order: ``"llama"`` (default) or ``"olmo"``: where the result is rounded
            (module docstring); ``"gemma"`` is ``gemma_rms_norm``.

    Returns:
        A contiguous tensor of x's shape; dtype ``torch.result_type(weight, x)``
        in Llama order, x's dtype otherwise.
    """
    code = LLAMA if order == "llama" else order_code(order)
    if out is None:
        return rms_norm_op(x, weight, eps, code)
    _rms_norm_out(out, x, weight, eps, code)
    return out


def gemma_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Gemma's RMSNorm: ``(n * (1 + weight.float())).to(x.dtype)``; the weight
    stores the offset from 1 (zeros at init), as in transformers."""
    return rms_norm_op(x, weight, eps, GEMMA)


def fused_add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    *,
    order: str = "llama",
    inplace: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Residual add and RMSNorm in one pass over memory.

    ``residual_out = residual + x`` rounded to the residual's dtype, and
    ``out = rms_norm(residual_out, weight, eps, order=order).to(x.dtype)``:
    bit for bit HF's separate add, then norm. The residual may be fp32 (an
    fp32 residual stream) with x in bf16/fp16.

    Returns ``(out, residual_out)``. With ``inplace=True`` (vLLM's form) x
    receives ``out`` and residual receives ``residual_out``, and the same
    two tensors are returned; x and residual must then be contiguous.
    """
    code = order_code(order)
    if inplace:
        _add_rms_norm_inplace(x, residual, weight, eps, code)
        return x, residual
    return add_rms_norm_op(x, residual, weight, eps, code)


def gemma_fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, *, inplace: bool = False
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``fused_add_rms_norm`` with Gemma's ``1 + weight`` rounding."""
    return fused_add_rms_norm(x, residual, weight, eps, order="gemma", inplace=inplace)


from . import _registrations  # noqa: E402,F401  (fake impls and autograd of the ops)

__all__ = [
    "rms_norm",
    "gemma_rms_norm",
    "fused_add_rms_norm",
    "gemma_fused_add_rms_norm",
    "patch_rmsnorm_modules",
    "kernel_op_counts",
    "layers",
]
