"""Does our kernel really run? The profiler's count of our ops in one call.

kernelize can silently do nothing (a mapping that does not match the mode,
transformers versions that turn hub kernels off); counting our ops in the
profiler is the check that cannot be fooled by a replaced-but-unused forward.
"""

from collections import Counter
from typing import Callable, Dict

import torch

from ._ops import add_op_namespace_prefix

_PREFIX = add_op_namespace_prefix("")


def kernel_op_counts(fn: Callable, *args, **kwargs) -> Dict[str, int]:
    """Runs ``fn(*args, **kwargs)`` once under ``torch.profiler`` and returns
    how often each op of this kernel ran, e.g. ``{"rms_norm": 61}``; an empty
    dict means the model never called us."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn(*args, **kwargs)
    counts: Counter = Counter()
    for event in prof.events():
        if event.name.startswith(_PREFIX):
            # A grad-free twin (`rms_norm_no_grad`, taken under no_grad) is
            # its op for this count.
            counts[event.name[len(_PREFIX):].removesuffix("_no_grad")] += 1
    return dict(counts)
