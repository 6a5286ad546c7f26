"""The public API: dtypes, out=, weightless norms, empty tensors, and clear
errors for everything the kernel does not take."""

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from conftest import HAS_CUDA, bit_view, requires_cuda


def hf_reference(x, weight, eps):
    module = LlamaRMSNorm(x.shape[-1], eps=eps).to(device=x.device, dtype=weight.dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
        return module(x)


def assert_bitwise(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(bit_view(a), bit_view(b))


def test_public_api(kernel):
    assert set(kernel.__all__) >= {"rms_norm", "layers"}
    assert hasattr(kernel.layers, "RMSNorm")
    assert kernel.__name__.startswith("_rmsnorm_")  # imported under its build id


def _our_op_names(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        result = fn()
    return sorted(e.name.split("::")[1] for e in prof.events() if e.name.startswith("_rmsnorm_")), result


@pytest.mark.parametrize("grad_context", ["no_grad", "inference_mode"])
def test_grad_free_calls_take_the_twin_ops(kernel, device, grad_context):
    """Without grad the public calls go to the grad-free twins (no Python
    autograd kernel on the way); with grad, to the ops that carry the
    formula. Both give HF's bits, and kernel_op_counts reports either under
    the public op's name."""
    x = torch.randn(3, 64, device=device, dtype=torch.bfloat16, requires_grad=True)
    w = (torch.rand(64, device=device, dtype=torch.bfloat16) + 0.5).requires_grad_()
    residual = torch.randn(3, 64, device=device, dtype=torch.bfloat16)
    context = torch.no_grad if grad_context == "no_grad" else torch.inference_mode
    with context():
        names, y = _our_op_names(lambda: kernel.rms_norm(x, w, 1e-6))
        fused_names, (out, res) = _our_op_names(lambda: kernel.fused_add_rms_norm(x, residual, w, 1e-6))
        assert kernel.kernel_op_counts(kernel.rms_norm, x, w, 1e-6) == {"rms_norm": 1}
    assert names == ["rms_norm_no_grad"] and fused_names == ["add_rms_norm_no_grad"]
    assert not y.requires_grad and y.grad_fn is None and not out.requires_grad
    assert_bitwise(y, hf_reference(x.detach(), w.detach(), 1e-6))
    assert_bitwise(res, (x.detach() + residual))

    names, y_grad = _our_op_names(lambda: kernel.rms_norm(x, w, 1e-6))
    fused_names, (out_grad, _) = _our_op_names(lambda: kernel.fused_add_rms_norm(x, residual, w, 1e-6))
    assert names == ["rms_norm"] and y_grad.grad_fn is not None
    assert fused_names == ["add_rms_norm"] and out_grad.grad_fn is not None
    assert_bitwise(y_grad.detach(), y)
    # grad on, nothing requiring grad: still the op with the formula (no graph is recorded either way)
    names, y_plain = _our_op_names(lambda: kernel.rms_norm(x.detach(), w.detach(), 1e-6))
    assert names == ["rms_norm"] and y_plain.grad_fn is None
    assert_bitwise(y_plain, y)


@pytest.mark.parametrize("x_dtype,w_dtype,out_dtype", [
    (torch.bfloat16, torch.bfloat16, torch.bfloat16),
    (torch.bfloat16, torch.float32, torch.float32),  # HF promotes: fp32 out
    (torch.float16, torch.float32, torch.float32),
    (torch.float32, torch.float32, torch.float32),
])
def test_result_dtype_follows_type_promotion(kernel, device, x_dtype, w_dtype, out_dtype):
    x = torch.randn(3, 64, device=device, dtype=x_dtype)
    w = torch.rand(64, device=device, dtype=w_dtype) + 0.5
    y = kernel.rms_norm(x, w, 1e-6)
    assert y.dtype == out_dtype == torch.result_type(w, x)
    if device == "cpu":
        assert_bitwise(y, hf_reference(x, w, 1e-6))


def test_weightless(kernel, device):
    x = torch.randn(4, 96, device=device, dtype=torch.bfloat16)
    y = kernel.rms_norm(x, None, 1e-6)
    xf = x.float()
    expected = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)
    assert y.dtype == x.dtype
    if device == "cpu":
        assert_bitwise(y, expected)
    else:
        torch.testing.assert_close(y, expected, atol=0, rtol=2 ** -7)


def test_default_eps_is_1e6(kernel, device):
    x = torch.randn(2, 32, device=device)
    w = torch.ones(32, device=device)
    assert torch.equal(kernel.rms_norm(x, w), kernel.rms_norm(x, w, 1e-6))


def test_out_argument(kernel, device):
    x = torch.randn(5, 128, device=device, dtype=torch.float16)
    w = torch.rand(128, device=device, dtype=torch.float16)
    out = torch.full_like(x, float("nan"))
    returned = kernel.rms_norm(x, w, 1e-5, out=out)
    assert returned is out
    assert_bitwise(out, kernel.rms_norm(x, w, 1e-5))


@pytest.mark.parametrize("shape", [(0, 64), (2, 0, 64), (3, 0)])
def test_empty_inputs(kernel, device, shape):
    x = torch.randn(shape, device=device)
    w = torch.ones(shape[-1], device=device)
    y = kernel.rms_norm(x, w, 1e-6)
    assert y.shape == x.shape and y.numel() == 0


def test_leading_dims_and_1d(kernel, device):
    x = torch.randn(2, 3, 4, 40, device=device)
    w = torch.rand(40, device=device)
    y = kernel.rms_norm(x, w, 1e-6)
    assert y.shape == x.shape
    assert_bitwise(y.reshape(-1, 40), kernel.rms_norm(x.reshape(-1, 40), w, 1e-6))
    assert_bitwise(kernel.rms_norm(x[0, 0, 0], w, 1e-6), y[0, 0, 0])


def test_non_contiguous_last_dim_is_computed_right(kernel, device):
    base = torch.randn(6, 64, device=device)
    x = base.t()  # last-dim stride 64
    w = torch.rand(6, device=device)
    assert_bitwise(kernel.rms_norm(x, w, 1e-6), kernel.rms_norm(x.contiguous(), w, 1e-6))


def test_misaligned_storage_offset(kernel, device):
    base = torch.randn(4 * 4096 + 1, device=device, dtype=torch.bfloat16)
    x = base[1:].view(4, 4096)  # data pointer 2 bytes past a 16-byte boundary
    w = torch.rand(4096, device=device, dtype=torch.bfloat16)
    assert_bitwise(kernel.rms_norm(x, w, 1e-6), kernel.rms_norm(x.clone(), w, 1e-6))


BAD_INPUTS = [
    ("weight shape", lambda d: (torch.randn(2, 8, device=d), torch.ones(7, device=d)),
     r"weight must be 1-D with 8 elements"),
    ("weight 2-D", lambda d: (torch.randn(2, 8, device=d), torch.ones(1, 8, device=d)),
     r"weight must be 1-D with 8 elements"),
    ("integer input", lambda d: (torch.ones(2, 8, dtype=torch.int32, device=d), torch.ones(8, device=d)),
     r"input dtype must be float32, float16 or bfloat16 \(float64 on the CPU\), got Int"),
    ("fp64 weight on fp32 input", lambda d: (torch.randn(2, 8, device=d), torch.ones(8, dtype=torch.float64, device=d)),
     r"weight dtype must be the input's \(Float\) or float32, got Double"),
    ("weight dtype", lambda d: (torch.randn(2, 8, device=d, dtype=torch.bfloat16), torch.ones(8, device=d, dtype=torch.float16)),
     r"weight dtype must be the input's \(BFloat16\) or float32, got Half"),
    ("0-d input", lambda d: (torch.tensor(1.0, device=d), torch.ones(1, device=d)),
     r"at least one dimension"),
]


@pytest.mark.parametrize("name,make,message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(kernel, device, name, make, message):
    x, w = make(device)
    with pytest.raises(RuntimeError, match=message):
        kernel.rms_norm(x, w, 1e-6)


@pytest.mark.parametrize("make_out,message", [
    (lambda x: torch.empty(2, 7, device=x.device), r"out must have the input's shape"),
    (lambda x: torch.empty(2, 8, device=x.device, dtype=torch.float16), r"out must have dtype Float"),
    (lambda x: torch.empty(8, 2, device=x.device).t(), r"out must be contiguous"),
    (lambda x: x, r"out must not share memory with the input"),
], ids=["shape", "dtype", "strided", "aliases input"])
def test_bad_out_raises_clear_errors(kernel, device, make_out, message):
    x = torch.randn(2, 8, device=device)
    w = torch.ones(8, device=device)
    with pytest.raises(RuntimeError, match=message):
        kernel.rms_norm(x, w, 1e-6, out=make_out(x))


@requires_cuda
def test_float64_is_cpu_only(kernel):
    x = torch.randn(2, 8, dtype=torch.float64, device="cuda")
    with pytest.raises(RuntimeError, match=r"float64 runs on the CPU only"):
        kernel.rms_norm(x, None, 1e-6)


def test_float64_on_cpu_is_fp64_math(kernel):
    """fp64 exists for gradcheck: computed in fp64 throughout (HF's modules
    would round through fp32)."""
    torch.manual_seed(0)
    x = torch.randn(4, 33, dtype=torch.float64)
    w = torch.rand(33, dtype=torch.float64) + 0.5
    expected = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    torch.testing.assert_close(kernel.rms_norm(x, w, 1e-6), expected, rtol=1e-14, atol=1e-14)


def test_order_argument_is_checked(kernel, device):
    x = torch.randn(2, 8, device=device)
    with pytest.raises(RuntimeError, match=r"order must be 0 \(llama\), 1 \(olmo\) or 2 \(gemma\), got 7"):
        kernel.ops.rms_norm(x, None, 1e-6, 7)
    with pytest.raises(ValueError, match=r"order must be one of"):
        kernel.rms_norm(x, None, 1e-6, order="gemma2")


@requires_cuda
def test_devices_must_match(kernel):
    x = torch.randn(2, 8, device="cuda")
    with pytest.raises(RuntimeError, match=r"weight is on cpu but input is on cuda:0"):
        kernel.rms_norm(x, torch.ones(8), 1e-6)
    with pytest.raises(RuntimeError, match=r"weight is on cuda:0 but input is on cpu"):
        kernel.rms_norm(x.cpu(), torch.ones(8, device="cuda"), 1e-6)


@requires_cuda
def test_runs_on_current_stream(kernel):
    x = torch.randn(64, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.rand(4096, device="cuda", dtype=torch.bfloat16)
    expected = kernel.rms_norm(x, w, 1e-6)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = kernel.rms_norm(x, w, 1e-6)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    assert torch.equal(got, expected)
