"""Fused residual add + RMSNorm (issue 7) against HF's separate add then norm:
the residual stream bit for bit everywhere, the normalized output bit for bit
on the CPU (and on CUDA in ATen's summation order), otherwise within the
plain op's CUDA bounds (test_numerics.py)."""

import pytest
import torch
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from conftest import bit_view, requires_cuda
from test_numerics import CUDA_MIN_BITWISE, CUDA_RTOL, cuda_sums_in_aten_order, make_hf_module
from conftest import bitwise_report

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def hf_add_then_norm(module, x, residual):
    """What a decoder layer does: add in the residual's dtype, then the norm,
    whose output the next layer consumes in x's dtype."""
    residual_out = residual + x.to(residual.dtype)
    return module(residual_out).to(x.dtype), residual_out


def assert_matches(got, expected, x_dtype):
    report = bitwise_report(got, expected)
    if got.device.type == "cpu" or cuda_sums_in_aten_order(got):
        assert report["bitwise_fraction"] == 1.0, report
    else:
        assert report["bitwise_fraction"] >= CUDA_MIN_BITWISE[x_dtype], report
        torch.testing.assert_close(got, expected, rtol=CUDA_RTOL[x_dtype], atol=1e-30)


def make_inputs(rows, hidden, dtype, residual_dtype, device, seed=0):
    torch.manual_seed(seed)
    x = (torch.randn(rows, hidden, device=device) * 2).to(dtype)
    residual = (torch.randn(rows, hidden, device=device) * 3).to(residual_dtype)
    return x, residual


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fp32_residual", [False, True], ids=["res=x.dtype", "res=fp32"])
@pytest.mark.parametrize("fp32_weight", [False, True], ids=["w=x.dtype", "w=fp32"])
@pytest.mark.parametrize("hidden", [64, 4096, 4097, 70001])
@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "in-place"])
def test_fused_add_matches_hf(kernel, device, dtype, fp32_residual, fp32_weight, hidden, inplace):
    residual_dtype = torch.float32 if fp32_residual else dtype
    module = make_hf_module(LlamaRMSNorm, hidden, torch.float32 if fp32_weight else dtype, device, eps=1e-6)
    x, residual = make_inputs(7, hidden, dtype, residual_dtype, device, seed=hidden)
    with torch.no_grad():
        expected_out, expected_residual = hf_add_then_norm(module, x, residual)
        x_arg, residual_arg = (x.clone(), residual.clone()) if inplace else (x, residual)
        out, residual_out = kernel.fused_add_rms_norm(x_arg, residual_arg, module.weight, 1e-6, inplace=inplace)
    if inplace:
        assert out is x_arg and residual_out is residual_arg
    else:
        assert torch.equal(x_arg, x) and torch.equal(residual_arg, residual)  # inputs untouched
    assert out.dtype == dtype and residual_out.dtype == residual_dtype
    assert torch.equal(bit_view(residual_out), bit_view(expected_residual))
    assert_matches(out, expected_out, dtype)


# Blocks of several rows on CUDA ("many": the CPU takes a smaller shape), and
# few rows of ATen's one-warp layout (the CUDA row-block kernel: each row
# added, stored and squared in 16-byte chunks before its sum), and ATen's
# layout split over 16 warps (8192 wide; the folded kernel, which adds and
# stores from registers).
FUSED_ROW_COUNTS = {"many": {"cuda": (3000, 4096), "cpu": (300, 768)},
                    "64x8192": {"cuda": (64, 8192), "cpu": (64, 8192)},
                    "16x4096": {"cuda": (16, 4096), "cpu": (16, 4096)},
                    "100x2048": {"cuda": (100, 2048), "cpu": (100, 2048)}}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fp32_residual", [False, True], ids=["res=x.dtype", "res=fp32"])
@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "in-place"])
@pytest.mark.parametrize("row_count", sorted(FUSED_ROW_COUNTS))
def test_fused_add_row_counts_match_hf(kernel, device, dtype, fp32_residual, inplace, row_count):
    rows, hidden = FUSED_ROW_COUNTS[row_count][device]
    residual_dtype = torch.float32 if fp32_residual else dtype
    module = make_hf_module(LlamaRMSNorm, hidden, dtype, device, eps=1e-6)
    x, residual = make_inputs(rows, hidden, dtype, residual_dtype, device, seed=rows)
    with torch.no_grad():
        expected_out, expected_residual = hf_add_then_norm(module, x, residual)
        args = (x.clone(), residual.clone()) if inplace else (x, residual)
        out, residual_out = kernel.fused_add_rms_norm(*args, module.weight, 1e-6, inplace=inplace)
    assert torch.equal(bit_view(residual_out), bit_view(expected_residual))
    assert_matches(out, expected_out, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "in-place"])
def test_gemma_fused_add_matches_hf(kernel, device, dtype, inplace):
    module = make_hf_module(Gemma3RMSNorm, 1152, dtype, device, eps=1e-6)
    x, residual = make_inputs(9, 1152, dtype, dtype, device, seed=4)
    with torch.no_grad():
        expected_out, expected_residual = hf_add_then_norm(module, x, residual)
        args = (x.clone(), residual.clone()) if inplace else (x, residual)
        out, residual_out = kernel.gemma_fused_add_rms_norm(*args, module.weight, module.eps, inplace=inplace)
    assert torch.equal(residual_out, expected_residual)
    assert_matches(out, expected_out, dtype)


def test_fused_equals_unfused_kernel_bitwise(kernel, device):
    """'exactly rms_norm's rounding': the fused output equals our own add then
    rms_norm bit for bit, on every device (on top of matching HF)."""
    for hidden in (896, 4096, 5120, 70001):
        x, residual = make_inputs(33, hidden, torch.bfloat16, torch.bfloat16, device, seed=hidden)
        weight = (torch.rand(hidden, device=device) + 0.5).to(torch.bfloat16)
        out, residual_out = kernel.fused_add_rms_norm(x, residual, weight, 1e-5)
        assert torch.equal(bit_view(out), bit_view(kernel.rms_norm(residual + x, weight, 1e-5)))


def test_fused_misaligned_and_strided_inputs(kernel, device):
    """Rows that do not start on 16 bytes take the any-alignment kernel."""
    hidden = 4096
    base = torch.randn(3 * hidden + 1, device=device).to(torch.bfloat16)
    x = base[1:].view(3, hidden)
    residual = torch.randn(3, hidden, device=device).to(torch.bfloat16)
    weight = (torch.rand(hidden, device=device) + 0.5).to(torch.bfloat16)
    module = make_hf_module(LlamaRMSNorm, hidden, torch.bfloat16, device)
    with torch.no_grad():
        module.weight.copy_(weight)
        expected_out, expected_residual = hf_add_then_norm(module, x, residual)
    out, residual_out = kernel.fused_add_rms_norm(x, residual, weight, module.variance_epsilon)
    assert torch.equal(residual_out, expected_residual)
    assert_matches(out, expected_out, torch.bfloat16)
    wide = torch.randn(3, 2 * hidden, device=device).to(torch.bfloat16)
    strided = wide[:, ::2]
    out, residual_out = kernel.fused_add_rms_norm(strided, residual, weight, module.variance_epsilon)
    assert torch.equal(residual_out, residual + strided)


def test_fused_layer(kernel, device):
    module = make_hf_module(LlamaRMSNorm, 256, torch.bfloat16, device)
    x, residual = make_inputs(4, 256, torch.bfloat16, torch.bfloat16, device)
    with torch.no_grad():
        expected_out, expected_residual = hf_add_then_norm(module, x, residual)
        out, residual_out = kernel.layers.FusedAddRMSNorm.forward(module, x, residual)
    assert torch.equal(residual_out, expected_residual)
    assert_matches(out, expected_out, torch.bfloat16)


def test_fused_gradients_match_hf(kernel, device):
    torch.manual_seed(2)
    module = make_hf_module(LlamaRMSNorm, 320, torch.float32, device)
    x, residual = make_inputs(6, 320, torch.float32, torch.float32, device)
    grad_out, grad_residual = torch.randn_like(x), torch.randn_like(x)

    xr, rr = x.clone().requires_grad_(), residual.clone().requires_grad_()
    out, residual_out = hf_add_then_norm(module, xr, rr)
    torch.autograd.backward((out, residual_out), (grad_out, grad_residual))
    expected = (xr.grad, rr.grad, module.weight.grad.clone())
    module.weight.grad = None

    xo, ro = x.clone().requires_grad_(), residual.clone().requires_grad_()
    out, residual_out = kernel.fused_add_rms_norm(xo, ro, module.weight, module.variance_epsilon)
    torch.autograd.backward((out, residual_out), (grad_out, grad_residual))
    for got, want in zip((xo.grad, ro.grad, module.weight.grad), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fused_opcheck(kernel, device, dtype):
    x = torch.randn(3, 5, 96, device=device, dtype=dtype)
    residual = torch.randn(3, 5, 96, device=device, dtype=dtype)
    w = torch.rand(96, device=device, dtype=dtype)
    for order in (0, 2):
        torch.library.opcheck(kernel.ops.add_rms_norm.default,
                              (x.requires_grad_(), residual.requires_grad_(), w.requires_grad_(), 1e-6, order))
        torch.library.opcheck(kernel.ops.add_rms_norm_.default,
                              (x.detach().clone(), residual.detach().clone(), w.detach(), 1e-6, order))


def test_fused_compiles_fullgraph(kernel, device):
    def block(x, residual, weight):
        out, residual = kernel.fused_add_rms_norm(x, residual, weight, 1e-6)
        return out * 2, residual

    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, dynamic=True, backend="aot_eager")
    w = torch.rand(64, device=device) + 0.5
    for rows in (3, 8):
        x, residual = make_inputs(rows, 64, torch.float32, torch.float32, device)
        with torch._dynamo.config.patch(error_on_recompile=rows != 3):
            got = compiled(x, residual, w)
        want = block(x, residual, w)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


FUSED_BAD_INPUTS = [
    ("shape mismatch", lambda d: (torch.randn(2, 8, device=d), torch.randn(2, 9, device=d), torch.ones(8, device=d)),
     r"residual must have x's shape \[2, 8\], got \[2, 9\]"),
    ("residual dtype", lambda d: (torch.randn(2, 8, device=d, dtype=torch.bfloat16),
                                  torch.randn(2, 8, device=d, dtype=torch.float16), torch.ones(8, device=d)),
     r"residual dtype must be x's \(BFloat16\) or float32"),
    ("weight shape", lambda d: (torch.randn(2, 8, device=d), torch.randn(2, 8, device=d), torch.ones(4, device=d)),
     r"weight must be 1-D with 8 elements"),
    ("integer x", lambda d: (torch.ones(2, 8, device=d, dtype=torch.int32), torch.randn(2, 8, device=d),
                             torch.ones(8, device=d)),
     r"x dtype must be float32, float16 or bfloat16"),
]


@pytest.mark.parametrize("name,make,message", FUSED_BAD_INPUTS, ids=[c[0] for c in FUSED_BAD_INPUTS])
@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "in-place"])
def test_fused_bad_inputs(kernel, device, name, make, message, inplace):
    x, residual, weight = make(device)
    with pytest.raises(RuntimeError, match=message):
        kernel.fused_add_rms_norm(x, residual, weight, 1e-6, inplace=inplace)


def test_fused_inplace_rejections(kernel, device):
    x = torch.randn(4, 16, device=device)
    with pytest.raises(RuntimeError, match=r"in-place form needs contiguous x and residual"):
        kernel.fused_add_rms_norm(x.t().contiguous().t()[:, :4], x[:, :4].clone(), torch.ones(4, device=device),
                                  inplace=True)
    with pytest.raises(RuntimeError, match=r"x and residual must not share memory"):
        kernel.fused_add_rms_norm(x, x, torch.ones(16, device=device), inplace=True)
    with pytest.raises(RuntimeError, match=r"weight is required"):
        kernel.fused_add_rms_norm(x, x.clone(), None)
    with pytest.raises(ValueError, match=r"order must be one of"):
        kernel.fused_add_rms_norm(x, x.clone(), torch.ones(16, device=device), order="t5")


@requires_cuda
def test_fused_devices_must_match(kernel):
    x = torch.randn(2, 8, device="cuda")
    with pytest.raises(RuntimeError, match=r"residual is on cpu but x is on cuda:0"):
        kernel.fused_add_rms_norm(x, torch.randn(2, 8), torch.ones(8, device="cuda"))
