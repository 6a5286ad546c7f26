"""Property-based fuzzing of rms_norm against HF's LlamaRMSNorm and an fp64
reference: rows from 0 up, hidden sizes from 1 up (primes included), every
dtype and weight dtype, strided and misaligned views, eps values.

CPU: bitwise equality with HF. CUDA: the bounds of tests/test_numerics.py.
RMSNORM_FUZZ_EXAMPLES sets the number of cases per device (CI default 150; the
GPU run uses 2000).
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from conftest import bit_view

EXAMPLES = int(os.environ.get("RMSNORM_FUZZ_EXAMPLES", "150"))
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
CUDA_RTOL = {torch.bfloat16: 2.0**-6, torch.float16: 2.0**-9, torch.float32: 2.0**-20}
RESULTS = {"cases": 0}


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    weight_dtype = draw(st.sampled_from([dtype, torch.float32, None]))
    hidden = draw(st.one_of(st.integers(1, 300), st.sampled_from([769, 896, 2039, 4096, 4097, 5120, 8191, 70001])))
    rows = draw(st.integers(0, 40 if hidden < 5000 else 3))
    layout = draw(st.sampled_from(["contiguous", "offset", "strided", "4d"]))
    eps = draw(st.sampled_from([1e-6, 1e-5, 1e-3, 0.0]))
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    return dtype, weight_dtype, rows, hidden, layout, eps, scale, seed


def make_input(rows, hidden, layout, dtype, device, generator):
    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    if layout == "offset":
        return randn(rows * hidden + 3)[3:].view(rows, hidden)
    if layout == "strided":
        return randn(rows, hidden + 5)[:, 2 : 2 + hidden]
    if layout == "4d" and rows % 2 == 0:
        return randn(rows // 2, 3, 2, hidden)[:, 1]
    return randn(rows, hidden)


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    yield
    print(f"\nfuzz: {RESULTS['cases']} cases run")


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_fuzz_against_hf_and_fp64(kernel, device):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cases())
    def check(case):
        dtype, weight_dtype, rows, hidden, layout, eps, scale, seed = case
        generator = torch.Generator().manual_seed(seed)
        x = make_input(rows, hidden, layout, dtype, device, generator) * scale
        module = LlamaRMSNorm(hidden, eps=eps).to(device=device, dtype=weight_dtype or dtype)
        with torch.no_grad():
            module.weight.copy_(torch.rand(hidden, generator=generator) + 0.5)
            weight = module.weight if weight_dtype is not None else None
            got = kernel.rms_norm(x, weight, eps)
            if weight is not None:
                expected = module(x)
            else:
                xf = x.float()
                expected = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)
        RESULTS["cases"] += 1
        assert got.shape == x.shape and got.dtype == expected.dtype
        # ATen splits the sum of a lone row of >= 32768 elements across CPU
        # threads (two-pass reduction); that one case is bounded, not bitwise.
        split_by_aten = x.numel() == hidden >= 32768 and torch.get_num_threads() > 1
        if device == "cpu" and not split_by_aten:
            assert torch.equal(bit_view(got), bit_view(expected)), case
        elif device == "cpu":
            torch.testing.assert_close(got, expected, rtol=CUDA_RTOL[dtype], atol=1e-30, equal_nan=True)
        else:
            torch.testing.assert_close(got, expected, rtol=CUDA_RTOL[dtype], atol=1e-30, equal_nan=True)
        # Independent of HF: the formula in fp64 bounds the error by two
        # roundings to the input dtype (absolute below its smallest normal).
        if x.numel() and weight is not None and eps > 0:
            x64 = x.double()
            ref = weight.double() * (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps))
            rtol = 3 * {torch.float32: 2**-23, torch.float16: 2**-10, torch.bfloat16: 2**-7}[dtype]
            atol = 2 * torch.finfo(dtype).tiny
            excess = ((got.double() - ref).abs() - rtol * ref.abs() - atol).max().item()
            assert excess <= 0, (case, excess)

    check()


@st.composite
def order_cases(draw):
    op = draw(st.sampled_from(["olmo", "gemma", "fused", "fused_fp32_residual", "fused_inplace"]))
    dtype = draw(st.sampled_from(DTYPES))
    weight_dtype = draw(st.sampled_from([dtype, torch.float32]))
    hidden = draw(st.one_of(st.integers(1, 300), st.sampled_from([769, 896, 2039, 4096, 4097, 5120, 70001])))
    rows = draw(st.integers(0, 40 if hidden < 5000 else 3))
    layout = draw(st.sampled_from(["contiguous", "offset", "strided", "4d"]))
    eps = draw(st.sampled_from([1e-6, 1e-5, 1e-3]))
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    return op, dtype, weight_dtype, rows, hidden, layout, eps, scale, seed


def hf_module_for(op, hidden, eps):
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm

    return {"olmo": Olmo2RMSNorm, "gemma": GemmaRMSNorm}.get(op, LlamaRMSNorm)(hidden, eps=eps)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_fuzz_other_orders_and_fused_add(kernel, device):
    """Olmo and Gemma orders against their HF classes, the fused add against
    HF's add then LlamaRMSNorm, each also against the fp64 formula."""
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(order_cases())
    def check(case):
        op, dtype, weight_dtype, rows, hidden, layout, eps, scale, seed = case
        generator = torch.Generator().manual_seed(seed)
        x = make_input(rows, hidden, layout, dtype, device, generator) * scale
        module = hf_module_for(op, hidden, eps).to(device=device, dtype=weight_dtype)
        with torch.no_grad():
            module.weight.copy_(torch.rand(hidden, generator=generator) + (-0.5 if op == "gemma" else 0.5))
            if op.startswith("fused"):
                residual_dtype = torch.float32 if op == "fused_fp32_residual" else dtype
                residual = (torch.randn(x.shape, generator=generator) * scale).to(device=device, dtype=residual_dtype)
                residual_sum = residual + x.to(residual_dtype)
                expected = module(residual_sum).to(dtype)
                if op == "fused_inplace":
                    x_arg, residual_arg = x.contiguous().clone(), residual.clone()
                    got, residual_out = kernel.fused_add_rms_norm(x_arg, residual_arg, module.weight, eps, inplace=True)
                else:
                    got, residual_out = kernel.fused_add_rms_norm(x, residual, module.weight, eps)
                assert torch.equal(bit_view(residual_out), bit_view(residual_sum)), case
                normed_input = residual_sum
            else:
                expected = module(x)
                got = (kernel.gemma_rms_norm(x, module.weight, eps) if op == "gemma"
                       else kernel.rms_norm(x, module.weight, eps, order="olmo"))
                normed_input = x
        RESULTS["cases"] += 1
        assert got.shape == x.shape and got.dtype == expected.dtype == dtype, case
        split_by_aten = x.numel() == hidden >= 32768 and torch.get_num_threads() > 1
        if device == "cpu" and not split_by_aten:
            assert torch.equal(bit_view(got), bit_view(expected)), case
        else:
            torch.testing.assert_close(got, expected, rtol=CUDA_RTOL[dtype], atol=1e-30, equal_nan=True)
        if x.numel():
            x64 = normed_input.double()
            w64 = module.weight.double() + (1 if op == "gemma" else 0)
            ref = w64 * (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps))
            rtol = 3 * {torch.float32: 2**-23, torch.float16: 2**-10, torch.bfloat16: 2**-7}[dtype]
            atol = 2 * torch.finfo(dtype).tiny
            excess = ((got.double() - ref).abs() - rtol * ref.abs() - atol).max().item()
            assert excess <= 0, (case, excess)

    check()
