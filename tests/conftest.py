"""Shared fixtures. Tests reach the kernel the way users do, through
``kernels.get_kernel``; ``LOCAL_KERNELS`` points the repo id at this checkout's
``build/`` (run ``python -m builder build`` first)."""

import os
import tomllib
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
with open(REPO_ROOT / "build.toml", "rb") as _f:
    _GENERAL = tomllib.load(_f)["general"]
REPO_ID = _GENERAL["hub"]["repo-id"]
VERSION = _GENERAL["version"]
BUILD_DIR = REPO_ROOT / "build"

os.environ.setdefault("LOCAL_KERNELS", f"{REPO_ID}={REPO_ROOT}")

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


def _load_kernel():
    import kernels

    if not BUILD_DIR.is_dir() or not any(BUILD_DIR.glob("*/metadata.json")):
        raise RuntimeError(f"no build in {BUILD_DIR}: run `python -m builder build` first")
    return kernels.get_kernel(REPO_ID, version=VERSION)


@pytest.fixture(scope="session")
def kernel():
    return _load_kernel()


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def bit_view(t: torch.Tensor) -> torch.Tensor:
    """Integers with the same bits, so NaNs compare by payload and -0 != +0."""
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(ints)


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in units in the last place between same-dtype float tensors."""
    def ordered(t):
        i = bit_view(t).to(torch.int64)
        sign_bit = 1 << (8 * t.element_size() - 1)
        return torch.where(i < 0, -(i + sign_bit), i)  # monotone in the float value
    return (ordered(a) - ordered(b)).abs()


def bitwise_report(out: torch.Tensor, ref: torch.Tensor) -> dict:
    assert out.dtype == ref.dtype and out.shape == ref.shape, (out.dtype, ref.dtype, out.shape, ref.shape)
    equal = bit_view(out) == bit_view(ref)
    n = equal.numel()
    return {
        "elements": n,
        "bitwise_fraction": equal.sum().item() / n if n else 1.0,
        "max_ulp": ulp_distance(out, ref).max().item() if n else 0,
    }
