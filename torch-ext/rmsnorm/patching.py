"""Swap our forward into RMSNorm modules that ``kernelize`` cannot reach.

transformers labels Llama- and Olmo-order classes for ``kernelize``; Gemma's
classes are not labelled. ``patch_rmsnorm_modules`` covers every module whose
class it can classify (``orders.rounding_order_of``), with the layer of that
order, and leaves the rest alone.
"""

import warnings
from collections import Counter
from types import MethodType
from typing import Dict

from torch import nn

from . import layers
from .orders import rounding_order_of

_LAYER_OF_ORDER = {"llama": layers.RMSNorm, "olmo": layers.RMSNorm, "gemma": layers.GemmaRMSNorm}


def patch_rmsnorm_modules(model: nn.Module, *, warn: bool = True) -> Dict[str, int]:
    """Replace the forward of each RMSNorm module of ``model`` in place.

    A module is patched when its class name contains "RMSNorm", its forward is
    one of the three known rounding forms and it has a weight; the patched
    forward rounds exactly as the class does. Weightless norms and unknown
    forms (gated norms, centered norms, ...) are skipped, with one warning
    naming them unless ``warn=False``.

    Returns the number of patched modules per class name.
    """
    patched: Counter = Counter()
    skipped: Dict[str, str] = {}
    for module in model.modules():
        cls = type(module)
        if "RMSNorm" not in cls.__name__:
            continue
        order = rounding_order_of(cls)
        if order is None:
            skipped[cls.__name__] = "forward is not a known rounding form"
            continue
        if getattr(module, "weight", None) is None:
            skipped[cls.__name__] = "no weight"
            continue
        module.forward = MethodType(_LAYER_OF_ORDER[order].forward, module)
        patched[cls.__name__] += 1
    if skipped and warn:
        reasons = ", ".join(f"{name} ({why})" for name, why in sorted(skipped.items()))
        warnings.warn(f"patch_rmsnorm_modules left these classes on their own forward: {reasons}", stacklevel=2)
    return dict(patched)
