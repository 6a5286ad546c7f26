"""Which rounding order a transformers RMSNorm class uses.

transformers labels Llama-order and Olmo-order classes alike as "RMSNorm"
(`use_kernel_forward_from_hub("RMSNorm")`) and leaves Gemma-order classes
undecorated. The layer needs a fast per-class answer (a name set, checked
against the pinned transformers by a test); the patcher, which runs once,
reads each class's forward source and patches only forms it recognizes.
"""

import inspect
import re
from typing import Optional

# Classes labelled "RMSNorm" that round in Olmo order (transformers 5.22.2;
# NemotronH writes `self.weight.to(torch.float32) * ...`, the same bits).
OLMO_ORDER_CLASSES = frozenset({
    "AfmoeRMSNorm", "BeamRMSNorm", "DeepseekV4RMSNorm", "FlexOlmoRMSNorm", "FlintRMSNorm",
    "GptOssRMSNorm", "HeliumRMSNorm", "Inkling2RMSNorm", "NemotronHRMSNorm", "NemotronH_Omni_RMSNorm",
    "Olmo2RMSNorm", "Olmo3RMSNorm", "OlmoHybridRMSNorm", "OpenAIPrivacyFilterRMSNorm",
})

# Each order's forward, as transformers writes it (whitespace and comments
# removed). All three also compute `<x>.pow(2).mean(-1,keepdim=True)` in fp32.
_FINGERPRINTS = {
    "llama": (("hidden_states.to(torch.float32)", "self.weight*hidden_states.to(input_dtype)"),),
    "olmo": (
        ("hidden_states.to(torch.float32)", "return(self.weight*hidden_states).to(input_dtype)"),
        ("hidden_states.to(torch.float32)", "return(self.weight.to(torch.float32)*hidden_states).to(input_dtype)"),
    ),
    "gemma": (("self._norm(x.float())", "output*(1.0+self.weight.float())", "returnoutput.type_as(x)"),),
}
_MEAN_SQUARE = ".pow(2).mean(-1,keepdim=True)"
_NORM_HELPER = "returnx*torch.rsqrt(x.pow(2).mean(-1,keepdim=True)+self.eps)"


def _compact_source(function) -> str:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return ""
    source = re.sub(r"#[^\n]*", "", source)
    return re.sub(r"\s+", "", source)


def rounding_order_of(cls) -> Optional[str]:
    """"llama", "olmo" or "gemma" when `cls.forward(self, x)` is one of the
    known forms, else None (unknown forms are never patched)."""
    forward = getattr(cls, "forward", None)
    if forward is None:
        return None
    params = list(inspect.signature(forward).parameters.values())
    if len(params) != 2 or params[1].kind not in (params[1].POSITIONAL_ONLY, params[1].POSITIONAL_OR_KEYWORD):
        return None  # gated norms and other extra inputs
    source = _compact_source(forward)
    if _MEAN_SQUARE not in source and not (
        "self._norm(" in source and _NORM_HELPER in _compact_source(getattr(cls, "_norm", None))
    ):
        return None
    for order, forms in _FINGERPRINTS.items():
        if any(all(piece in source for piece in form) for form in forms):
            return order
    return None
