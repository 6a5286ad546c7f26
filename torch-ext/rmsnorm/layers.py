"""Layers for ``kernels.kernelize`` (and ``patch_rmsnorm_modules``): each
replaces the ``forward`` of an HF module and reads that module's own
``weight`` and epsilon (``variance_epsilon``, or ``eps``)."""

from typing import Tuple

import torch
from torch import nn

from ._call import GEMMA, LLAMA, OLMO, add_rms_norm_op, rms_norm_op
from .orders import OLMO_ORDER_CLASSES

_ORDER_OF_CLASS = {name: OLMO for name in OLMO_ORDER_CLASSES}


class RMSNorm(nn.Module):
    """Forward of HF's ``"RMSNorm"`` classes, each in its own rounding order:
    Llama order (Llama, Mistral, Mixtral, Qwen2/3 incl. q_norm/k_norm, Phi3,
    SmolLM3, ...) ``weight * (x_f32 * rsqrt(mean(x_f32**2) + eps)).to(x.dtype)``;
    Olmo order for the classes that share the label but multiply in fp32 and
    cast once (Olmo2/3, GptOss, DeepseekV4, NemotronH, ...; ``orders.py``).

    Reads ``self.weight`` (may be absent or None: weightless norm) and
    ``self.variance_epsilon``, or ``self.eps`` where that is the attribute.
    Shapes: ``(..., hidden)`` in, same shape out.
    """

    weight: torch.Tensor
    variance_epsilon: float

    has_backward = True  # backward kernels, autograd registered on the op
    can_torch_compile = True  # fake registered; fullgraph, dynamic shapes

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        eps = getattr(self, "variance_epsilon", None)
        if eps is None:
            eps = self.eps
        order = _ORDER_OF_CLASS.get(type(self).__name__, LLAMA)
        return rms_norm_op(hidden_states, getattr(self, "weight", None), eps, order)


class GemmaRMSNorm(nn.Module):
    """Forward of Gemma's RMSNorm (Gemma, Gemma2, Gemma3, T5Gemma, Qwen3-Next,
    ...): ``(n * (1 + weight.float())).to(x.dtype)``. Reads ``self.weight`` and
    ``self.eps``. transformers does not label these classes for kernelize;
    ``patch_rmsnorm_modules`` applies this layer to them."""

    weight: torch.Tensor
    eps: float

    has_backward = True
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm_op(x, self.weight, self.eps, GEMMA)


class FusedAddRMSNorm(nn.Module):
    """For engines and models that fuse the residual add into the norm:
    ``forward(x, residual) -> (norm(residual + x), residual + x)``, bit for
    bit the separate add and Llama-order norm (see ``fused_add_rms_norm``).
    Reads ``self.weight`` and ``self.variance_epsilon`` (or ``self.eps``)."""

    weight: torch.Tensor
    variance_epsilon: float

    has_backward = True
    can_torch_compile = True

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        eps = getattr(self, "variance_epsilon", None)
        if eps is None:
            eps = self.eps
        return add_rms_norm_op(x, residual, self.weight, eps, LLAMA)


__all__ = ["RMSNorm", "GemmaRMSNorm", "FusedAddRMSNorm"]
