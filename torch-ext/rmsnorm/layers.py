"""Layers for ``kernels.kernelize``: each replaces the ``forward`` of an HF
module and reads that module's own ``weight`` and epsilon."""

import torch
from torch import nn

from ._call import rms_norm_op

# transformers classes labelled "RMSNorm" that round in Olmo order
# (weight * x_normed in fp32, one cast at the end) or NemotronH's variant of
# it. The op rounds in Llama order, which would shift these by one rounding,
# so they keep their own forward: exact, if not faster. (transformers 5.22/5.23)
_KEEP_OWN_FORWARD = frozenset({
    "AfmoeRMSNorm", "BeamRMSNorm", "DeepseekV4RMSNorm", "FlexOlmoRMSNorm", "FlintRMSNorm",
    "GptOssRMSNorm", "Inkling2RMSNorm", "NemotronHRMSNorm", "NemotronH_Omni_RMSNorm",
    "Olmo2RMSNorm", "Olmo3RMSNorm", "OlmoHybridRMSNorm", "OpenAIPrivacyFilterRMSNorm",
})


class RMSNorm(nn.Module):
    """Forward of HF's ``"RMSNorm"`` classes in Llama order (Llama, Mistral,
    Mixtral, Qwen2/3 incl. q_norm/k_norm, Phi3, SmolLM3, ...):
    ``weight * (x_f32 * rsqrt(mean(x_f32**2) + eps)).to(x.dtype)``.

    Reads ``self.weight`` (may be absent or None: weightless norm) and
    ``self.variance_epsilon``, or ``self.eps`` where that is the attribute.
    Shapes: ``(..., hidden)`` in, same shape out. Olmo-order classes that share
    the "RMSNorm" label (Olmo2/3, GptOss, DeepseekV4, ...) run their own forward.
    """

    weight: torch.Tensor
    variance_epsilon: float

    has_backward = True  # autograd registered on the op (fp32 backward)
    can_torch_compile = True  # fake registered; fullgraph, dynamic shapes

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if type(self).__name__ in _KEEP_OWN_FORWARD:
            return type(self).forward(self, hidden_states)
        eps = getattr(self, "variance_epsilon", None)
        if eps is None:
            eps = self.eps
        return rms_norm_op(hidden_states, getattr(self, "weight", None), eps)


__all__ = ["RMSNorm"]
