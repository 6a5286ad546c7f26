"""Layers for ``kernels.kernelize``: each replaces the ``forward`` of an HF
module and reads that module's own ``weight`` and epsilon."""

import torch
from torch import nn

from ._ops import ops

_rms_norm = ops.rms_norm.default


class RMSNorm(nn.Module):
    """Forward of HF's ``"RMSNorm"`` classes in Llama order (Llama, Mistral,
    Mixtral, Qwen2/3 incl. q_norm/k_norm, Phi3, SmolLM3, ...):
    ``weight * (x_f32 * rsqrt(mean(x_f32**2) + eps)).to(x.dtype)``.

    Reads ``self.weight`` (may be absent or None: weightless norm) and
    ``self.variance_epsilon``, or ``self.eps`` where that is the attribute.
    Shapes: ``(..., hidden)`` in, same shape out.
    """

    weight: torch.Tensor
    variance_epsilon: float

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        eps = getattr(self, "variance_epsilon", None)
        if eps is None:
            eps = self.eps
        return _rms_norm(hidden_states, getattr(self, "weight", None), eps)


__all__ = ["RMSNorm"]
