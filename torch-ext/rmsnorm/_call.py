"""The one place that calls the ops.

`rms_norm` and `add_rms_norm` carry Python autograd registrations; the
dispatcher enters them on every call, grad mode on or off (they check and
step aside themselves): under torch.no_grad() that cost ~6 us a call on the
CPU here (11.4 us against 5.2 below the Autograd key; benchmarks/NOTES.md
v22), more than the rest of the call. With grad disabled nothing can need a
graph, so eager calls go to the ops' grad-free twins (`*_no_grad`: the same
C++ functions, fake implementations and checks, no autograd formula), whose
autograd step is the dispatcher's C++ fallback (4.3 us). v10-v21 stepped
below the Autograd key with a guard entered from Python, three
Python-to-C++ calls a call. torch.compile and torch.export trace the ops
that carry the formula (`is_compiling()`); a graph traced outside them
under no_grad (make_fx, torch.jit.trace) records a twin, which in a later
replay with grad enabled has no backward (the fallback warns at backward).
"""

from typing import Optional

import torch

from ._ops import ops

# Rounding orders of the ops' `order` argument (torch-ext/norm_order.h).
LLAMA, OLMO, GEMMA = 0, 1, 2
ORDERS = {"llama": LLAMA, "olmo": OLMO, "gemma": GEMMA}

_rms_norm = ops.rms_norm.default
_add_rms_norm = ops.add_rms_norm.default
_rms_norm_no_grad = ops.rms_norm_no_grad.default
_add_rms_norm_no_grad = ops.add_rms_norm_no_grad.default
_is_grad_enabled = torch.is_grad_enabled
_is_compiling = torch.compiler.is_compiling


def order_code(order: str) -> int:
    try:
        return ORDERS[order]
    except KeyError:
        raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}") from None


def rms_norm_op(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, order: int = LLAMA) -> torch.Tensor:
    if _is_grad_enabled() or _is_compiling():
        return _rms_norm(x, weight, eps, order)
    return _rms_norm_no_grad(x, weight, eps, order)


def add_rms_norm_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, order: int = LLAMA):
    if _is_grad_enabled() or _is_compiling():
        return _add_rms_norm(x, residual, weight, eps, order)
    return _add_rms_norm_no_grad(x, residual, weight, eps, order)
