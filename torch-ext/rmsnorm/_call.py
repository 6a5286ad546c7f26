"""The one place that calls the ops.

The ops carry Python autograd registrations; the dispatcher enters them on
every call while grad mode is on or off (they check and step aside
themselves), which measured 3.7 us per call on the CPU under torch.no_grad(),
as much as the rest of the call. With grad disabled nothing can need a graph,
so the call goes below the Autograd key directly (2.3 + 0.9 us). Compiled code
never takes that branch: torch.compile traces the plain call.
"""

from typing import Optional

import torch

from ._ops import ops

# Rounding orders of the ops' `order` argument (torch-ext/norm_order.h).
LLAMA, OLMO, GEMMA = 0, 1, 2
ORDERS = {"llama": LLAMA, "olmo": OLMO, "gemma": GEMMA}

_rms_norm = ops.rms_norm.default
_add_rms_norm = ops.add_rms_norm.default
_below_autograd = torch._C._AutoDispatchBelowAutograd
_is_compiling = torch.compiler.is_compiling


def order_code(order: str) -> int:
    try:
        return ORDERS[order]
    except KeyError:
        raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}") from None


def rms_norm_op(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, order: int = LLAMA) -> torch.Tensor:
    if torch.is_grad_enabled() or _is_compiling():
        return _rms_norm(x, weight, eps, order)
    with _below_autograd():
        return _rms_norm(x, weight, eps, order)


def add_rms_norm_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, order: int = LLAMA):
    if torch.is_grad_enabled() or _is_compiling():
        return _add_rms_norm(x, residual, weight, eps, order)
    with _below_autograd():
        return _add_rms_norm(x, residual, weight, eps, order)
