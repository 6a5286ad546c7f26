"""Reliability (issue #8): a bad-input matrix, rerun determinism, the >2^31
element case, and the CPU dry run of the sanitizer driver.

Bad-input matrix: every case either raises a RuntimeError whose message names
what was wrong and what was expected, or returns exactly what HF's own
LlamaRMSNorm returns on the same device (CPU: bit for bit, NaN payloads
included; CUDA: same NaN/Inf positions and the finite values within the bounds
of tests/test_numerics.py). Ops enter through OPS, so an op the lead adds later
(fused_add_rms_norm, gemma_rms_norm, ...) joins the matrix with one OpSpec.
Run with -s to print the matrix as a table; RMSNORM_RELIABILITY_TABLE=path
writes it as Markdown.
"""

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from conftest import DEVICES, HAS_CUDA, REPO_ROOT, bit_view, requires_cuda

CUDA_RTOL = {torch.bfloat16: 2.0**-6, torch.float16: 2.0**-9, torch.float32: 2.0**-20}


def hf_llama(x, weight, eps):
    """HF's LlamaRMSNorm module on x's device with this weight (the reference)."""
    module = LlamaRMSNorm(x.shape[-1], eps=eps).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
        return module(x)


def call_layer(kernel, x, weight, eps, out=None):
    """kernel.layers.RMSNorm as kernelize installs it: a module holding weight
    and variance_epsilon (out= does not exist on this path)."""
    assert out is None
    layer = kernel.layers.RMSNorm()
    layer.weight, layer.variance_epsilon = weight, eps
    return layer(x)


@dataclass(frozen=True)
class OpSpec:
    name: str
    call: Callable  # (kernel, x, weight, eps, out=None) -> Tensor
    reference: Callable  # (x, weight, eps) -> Tensor: HF's module, never our op
    supports_out: bool = True


OPS = [
    OpSpec("rms_norm", lambda k, x, w, eps, out=None: k.rms_norm(x, w, eps, out=out), hf_llama),
    OpSpec("layers.RMSNorm", call_layer, hf_llama, supports_out=False),
]


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable  # device -> dict(x=, weight=, eps=, out=)
    error: Optional[str] = None  # regex the message must match; None: equals HF
    cuda_only: bool = False

    @property
    def uses_out(self):
        return self.name.startswith("out ")


def args(x, weight, eps=1e-6, out=None):
    return dict(x=x, weight=weight, eps=eps, out=out)


def randn(*shape, device, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)


def weight(hidden, device, dtype=torch.float32):
    return (torch.linspace(0.5, 1.5, hidden)).to(device=device, dtype=dtype)


def special_rows(device, dtype):
    """Rows holding NaN, +Inf, -Inf, both infinities, and an ordinary row."""
    x = randn(5, 16, device=device, dtype=torch.float32)
    x[0, 3] = float("nan")
    x[1, 0] = float("inf")
    x[2, 5] = float("-inf")
    x[3, 1], x[3, 2] = float("inf"), float("-inf")
    return x.to(dtype)


def overflowing_squares(device):
    x = randn(3, 32, device=device)
    x[0] = 3e38  # x^2 overflows fp32: HF gives rsqrt(inf) = 0, x * 0 = 0
    x[1, :4] = 1e30
    return x


def subnormal_row(device):
    x = randn(2, 64, device=device)
    x[0] = torch.finfo(torch.float32).tiny / 8 * torch.sign(x[0])
    return x


# A weight, x and out that share the same (2, 8) or (8,) geometry.
X28 = lambda d, dt=torch.float32: randn(2, 8, device=d, dtype=dt)  # noqa: E731
W8 = lambda d, dt=torch.float32: weight(8, d, dt)  # noqa: E731

CASES = [
    # weight
    Case("weight wrong length", lambda d: args(X28(d), weight(7, d)),
         r"weight must be 1-D with 8 elements \(the input's last dimension\), got shape \[7\]"),
    Case("weight 2-D", lambda d: args(X28(d), weight(8, d).view(1, 8)),
         r"weight must be 1-D with 8 elements.*got shape \[1, 8\]"),
    Case("weight 0-d", lambda d: args(X28(d), torch.tensor(1.0, device=d)),
         r"weight must be 1-D with 8 elements.*got shape \[\]"),
    Case("weight fp16 on bf16 x", lambda d: args(X28(d, torch.bfloat16), W8(d, torch.float16)),
         r"weight dtype must be the input's \(BFloat16\) or float32, got Half"),
    Case("weight bf16 on fp32 x", lambda d: args(X28(d), W8(d, torch.bfloat16)),
         r"weight dtype must be the input's \(Float\) or float32, got BFloat16"),
    Case("weight int32", lambda d: args(X28(d), torch.ones(8, dtype=torch.int32, device=d)),
         r"weight dtype must be the input's \(Float\) or float32, got Int"),
    Case("weight fp64", lambda d: args(X28(d), W8(d, torch.float64)),
         r"weight dtype must be the input's \(Float\) or float32, got Double"),
    Case("weight on CPU, x on CUDA", lambda d: args(X28(d), W8("cpu")),
         r"weight is on cpu but input is on cuda:\d+; both must be on the same device", cuda_only=True),
    Case("x on CPU, weight on CUDA", lambda d: args(X28("cpu"), W8(d)),
         r"weight is on cuda:\d+ but input is on cpu; both must be on the same device", cuda_only=True),
    # input dtype and rank
    Case("x int32", lambda d: args(torch.ones(2, 8, dtype=torch.int32, device=d), W8(d)),
         r"input dtype must be float32, float16 or bfloat16 \(float64 on the CPU\), got Int"),
    Case("x int64", lambda d: args(torch.ones(2, 8, dtype=torch.int64, device=d), W8(d)),
         r"input dtype must be float32, float16 or bfloat16 \(float64 on the CPU\), got Long"),
    Case("x uint8", lambda d: args(torch.ones(2, 8, dtype=torch.uint8, device=d), W8(d)),
         r"input dtype must be float32, float16 or bfloat16 \(float64 on the CPU\), got Byte"),
    Case("x bool", lambda d: args(torch.ones(2, 8, dtype=torch.bool, device=d), W8(d)),
         r"input dtype must be float32, float16 or bfloat16 \(float64 on the CPU\), got Bool"),
    # On the CPU float64 is computed in fp64 (for gradcheck; test_api.py).
    Case("x fp64 on CUDA", lambda d: args(X28(d, torch.float64), W8(d, torch.float64)),
         r"float64 runs on the CPU only", cuda_only=True),
    Case("x complex64", lambda d: args(X28(d).to(torch.complex64), W8(d)),
         r"input dtype must be float32, float16 or bfloat16 \(float64 on the CPU\), got ComplexFloat"),
    Case("x 0-d", lambda d: args(torch.tensor(1.5, device=d), weight(1, d)),
         r"input must have at least one dimension \(the hidden size\), got a 0-d tensor"),
    # layouts and sizes that must equal HF
    Case("x transposed (last-dim stride 64)", lambda d: args(randn(48, 64, device=d, dtype=torch.bfloat16).t(),
                                                        weight(48, d, torch.bfloat16))),
    Case("x last dim every 2nd element", lambda d: args(randn(6, 130, device=d, dtype=torch.float16)[:, ::2],
                                                        weight(65, d, torch.float16))),
    Case("x 4-D strided head view", lambda d: args(randn(2, 5, 3, 128, device=d, dtype=torch.bfloat16)[:, :, 1:],
                                                   weight(128, d))),
    Case("0 rows", lambda d: args(randn(0, 64, device=d, dtype=torch.bfloat16), weight(64, d, torch.bfloat16))),
    Case("0 rows, fp32 weight, 3-D", lambda d: args(randn(2, 0, 64, device=d, dtype=torch.bfloat16), weight(64, d))),
    Case("hidden 0", lambda d: args(randn(3, 0, device=d), weight(0, d))),
    Case("1-D x (one row)", lambda d: args(randn(96, device=d, dtype=torch.float16), weight(96, d, torch.float16))),
    # values
    Case("NaN/Inf fp32", lambda d: args(special_rows(d, torch.float32), weight(16, d))),
    Case("NaN/Inf bf16, fp32 weight", lambda d: args(special_rows(d, torch.bfloat16), weight(16, d))),
    Case("NaN/Inf fp16", lambda d: args(special_rows(d, torch.float16), weight(16, d, torch.float16))),
    Case("eps 0, all-zero row (0*inf)", lambda d: args(torch.cat([torch.zeros(1, 32), randn(2, 32, device="cpu")]).to(d),
                                                       weight(32, d), eps=0.0)),
    Case("eps 0, all-zero bf16 row", lambda d: args(torch.zeros(2, 40, device=d, dtype=torch.bfloat16),
                                                    weight(40, d, torch.bfloat16), eps=0.0)),
    Case("negative eps (rsqrt < 0)", lambda d: args(randn(3, 32, device=d) * 0.1, weight(32, d), eps=-1.0)),
    Case("squares overflow fp32", lambda d: args(overflowing_squares(d), weight(32, d))),
    Case("subnormal row", lambda d: args(subnormal_row(d), weight(64, d))),
    Case("fp16 at max value", lambda d: args(torch.full((2, 24), 65504.0, device=d, dtype=torch.float16),
                                             weight(24, d, torch.float16))),
    # out=
    Case("out wrong shape", lambda d: args(X28(d), W8(d), out=torch.empty(2, 7, device=d)),
         r"out must have the input's shape \[2, 8\], got \[2, 7\]"),
    Case("out wrong dtype", lambda d: args(X28(d), W8(d), out=torch.empty(2, 8, device=d, dtype=torch.float16)),
         r"out must have dtype Float \(the result dtype of this input, weight and order\), got Half"),
    Case("out bf16 where result is fp32", lambda d: args(X28(d, torch.bfloat16), W8(d),
                                                         out=torch.empty(2, 8, device=d, dtype=torch.bfloat16)),
         r"out must have dtype Float .*got BFloat16"),
    Case("out non-contiguous", lambda d: args(X28(d), W8(d), out=torch.empty(8, 2, device=d).t()),
         r"out must be contiguous, got strides \[1, 2\]"),
    Case("out aliases x", lambda d: (lambda x: args(x, W8(d), out=x))(X28(d)),
         r"out must not share memory with the input"),
    Case("out overlaps x partly", lambda d: (lambda buf: args(buf[:16].view(2, 8), W8(d), out=buf[8:].view(2, 8)))(
        randn(24, device=d)), r"out must not share memory with the input"),
    Case("out aliases weight", lambda d: (lambda w: args(randn(8, device=d), w, out=w))(W8(d)),
         r"out must not share memory with the weight"),
    Case("out on CPU, x on CUDA", lambda d: args(X28(d), W8(d), out=torch.empty(2, 8)),
         r"out is on cpu but input is on cuda:\d+", cuda_only=True),
]

ROWS = []  # [op, case, device, outcome] for the table


def _matrix_params():
    params = []
    for op in OPS:
        for case in CASES:
            if case.uses_out and not op.supports_out:
                continue  # not collected (not a skip): the op has no out=
            for device in DEVICES:
                if case.cuda_only and device != "cuda":
                    continue
                params.append(pytest.param(op, case, device, id=f"{op.name}-{device}-{case.name}"))
    return params


def assert_same_as_hf(got, expected, device):
    """NaN-aware equality: same dtype, shape, NaN mask and infinities; on the
    CPU every other bit too, on CUDA the finite values within test_numerics'
    bounds (CUDA sums the squares in another order). NaN payloads and signs
    are not compared (HF's 0*inf gives x86's negative default NaN)."""
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert got.is_contiguous()
    nan = torch.isnan(expected)
    assert torch.equal(torch.isnan(got), nan), f"NaN positions differ from HF: {bit_report(got, expected)}"
    if device == "cpu":
        assert torch.equal(bit_view(got)[~nan], bit_view(expected)[~nan]), bit_report(got, expected)
        return
    inf = torch.isinf(expected)
    assert torch.equal(torch.isinf(got), inf) and torch.equal(got[inf], expected[inf]), "Inf differs from HF"
    finite = ~(nan | inf)
    torch.testing.assert_close(got[finite], expected[finite], rtol=CUDA_RTOL[expected.dtype], atol=1e-30)


def nan_note(got, expected):
    nan = torch.isnan(expected)
    if not nan.any():
        return ""
    same = torch.equal(bit_view(got)[nan], bit_view(expected)[nan])
    return f", {int(nan.sum())} NaN where HF has NaN" + ("" if same else " (other NaN payload)")


def bit_report(got, expected):
    diff = bit_view(got) != bit_view(expected)
    return {"differing elements": int(diff.sum()), "got": got[diff][:8].tolist(),
            "HF": expected[diff][:8].tolist(),
            "NaN masks equal": bool(torch.equal(torch.isnan(got), torch.isnan(expected)))}


@pytest.fixture(scope="module", autouse=True)
def matrix_table():
    yield
    if not ROWS:
        return
    lines = ["| op | device | case | expected | outcome |", "| --- | --- | --- | --- | --- |"]
    for op, case, device, outcome in ROWS:
        expected = "error" if case.error else "= HF LlamaRMSNorm"
        lines.append(f"| {op} | {device} | {case.name} | {expected} | {outcome} |")
    passed = sum(1 for row in ROWS if row[3].startswith("ok"))
    lines.append(f"\n{passed} of {len(ROWS)} bad-input cases as expected")
    text = "\n".join(lines)
    print("\n" + text)
    path = os.environ.get("RMSNORM_RELIABILITY_TABLE")
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


@pytest.mark.parametrize("op,case,device", _matrix_params())
def test_bad_input_matrix(kernel, op, case, device):
    inputs = case.make(device)
    x, w, eps, out = inputs["x"], inputs["weight"], inputs["eps"], inputs["out"]
    row = [op.name, case, device, "FAILED"]
    ROWS.append(row)
    if case.error is not None:
        sentinel = None if out is None else out.clone()
        with pytest.raises(RuntimeError, match=case.error) as info:
            with torch.no_grad():
                op.call(kernel, x, w, eps, out=out)
        if sentinel is not None:  # a rejected call writes nothing
            assert torch.equal(bit_view(out), bit_view(sentinel))
        row[3] = "ok: " + str(info.value).splitlines()[0].replace("|", "/")[:120]
        return
    expected = op.reference(x, w, eps)
    with torch.no_grad():
        got = op.call(kernel, x, w, eps)
    assert_same_as_hf(got, expected, device)
    row[3] = f"ok: {tuple(got.shape)} {str(got.dtype)[6:]}" + nan_note(got, expected)


def _out_params():
    return [p for p in _matrix_params()
            if p.values[0].supports_out and p.values[1].error is None and not p.values[1].uses_out]


@pytest.mark.parametrize("op,case,device", _out_params())
def test_bad_input_matrix_out_path(kernel, op, case, device):
    """The same HF-equal cases through out=: a fresh contiguous out of the
    result's shape and dtype (prefilled with a sentinel) must be accepted and
    hold HF's result, whatever the input's layout."""
    inputs = case.make(device)
    x, w, eps = inputs["x"], inputs["weight"], inputs["eps"]
    row = [op.name + " out=", case, device, "FAILED"]
    ROWS.append(row)
    expected = op.reference(x, w, eps)
    out = torch.full(expected.shape, 7.0, dtype=expected.dtype, device=device)
    try:
        with torch.no_grad():
            returned = op.call(kernel, x, w, eps, out=out)
    except RuntimeError as error:
        row[3] = "FAILED: raised " + str(error).splitlines()[0].replace("|", "/")[:80]
        raise AssertionError(f"out= rejected a valid call (x {tuple(x.shape)} strides {x.stride()}): {error}")
    assert returned is out
    assert_same_as_hf(out, expected, device)
    row[3] = f"ok: {tuple(out.shape)} {str(out.dtype)[6:]}" + nan_note(out, expected)


def test_matrix_size():
    """The brief asks for at least 15 bad-input cases, each device."""
    assert len([c for c in CASES if not c.cuda_only]) >= 15
    assert len(_matrix_params()) >= 2 * 15


# --- determinism -----------------------------------------------------------

RERUNS = 100
# (rows, hidden, x dtype, weight dtype); the many-row shapes make the dweight
# reduction run over many blocks/threads of rows.
DETERMINISM_SHAPES = [
    (1, 4096, torch.bfloat16, torch.bfloat16),
    (33, 769, torch.float16, torch.float32),
    (2048, 192, torch.bfloat16, torch.float32),
    (2, 70001, torch.float32, torch.float32),
]
DETERMINISM_CUDA_ONLY = [(65536, 1024, torch.bfloat16, torch.bfloat16), (8, 131072, torch.bfloat16, torch.bfloat16)]


def _determinism_params():
    params = [pytest.param(d, *s, id=f"{d}-{s[0]}x{s[1]}-{str(s[2])[6:]}-w{str(s[3])[6:]}")
              for d in DEVICES for s in DETERMINISM_SHAPES]
    if HAS_CUDA:
        params += [pytest.param("cuda", *s, id=f"cuda-{s[0]}x{s[1]}-{str(s[2])[6:]}-w{str(s[3])[6:]}")
                   for s in DETERMINISM_CUDA_ONLY]
    return params


@pytest.mark.parametrize("device,rows,hidden,dtype,weight_dtype", _determinism_params())
def test_reruns_are_bitwise_identical(kernel, device, rows, hidden, dtype, weight_dtype):
    """100 reruns on the same inputs give the same bits: the forward (with grad
    on and off, which take different call paths), dx and dweight."""
    x = randn(rows, hidden, device=device, dtype=dtype, seed=rows + hidden)
    w = torch.nn.Parameter((torch.rand(hidden, generator=torch.Generator().manual_seed(1)) + 0.5)
                           .to(device=device, dtype=weight_dtype))
    grad_out = randn(rows, hidden, device=device, dtype=torch.result_type(w, x), seed=2)
    x.requires_grad_()

    def run():
        x.grad, w.grad = None, None
        y = kernel.rms_norm(x, w, 1e-6)
        y.backward(grad_out)
        with torch.no_grad():
            y_no_grad = kernel.rms_norm(x, w, 1e-6)
        return [bit_view(t.detach()).clone() for t in (y, y_no_grad, x.grad, w.grad)]

    first = run()
    assert torch.equal(first[0], first[1]), "grad-on and grad-off forward differ"
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0 and w.grad.abs().sum() > 0
    for attempt in range(1, RERUNS):
        again = run()
        for name, a, b in zip(("y", "y (no grad)", "dx", "dweight"), first, again):
            assert torch.equal(a, b), f"{name} differs on rerun {attempt}"


# --- more than 2^31 elements -----------------------------------------------

# (rows, hidden): a row boundary exactly at element 2^31; one where row 65531
# straddles it; 2^24+ rows of a head-dim row (row count * hidden past int32).
HUGE_SHAPES = [(70000, 32768), (65600, 32771), (16_777_300, 128)]


def _sample_rows(rows, hidden):
    boundary = 2**31 // hidden
    picks = {0, 1, rows // 2, rows - 2, rows - 1} | set(range(boundary - 2, boundary + 3))
    return sorted(r for r in picks if 0 <= r < rows)


@requires_cuda
@pytest.mark.parametrize("rows,hidden", HUGE_SHAPES, ids=[f"{r}x{h}" for r, h in HUGE_SHAPES])
def test_more_than_2_31_elements(kernel, rows, hidden):
    """bf16 input of more than 2^31 elements (no 32-bit index overflow): rows
    first, last and around element 2^31 against HF's module and an fp64
    reference, row by row; every row's output through out= (prefilled with
    NaN) checked written and normalized, chunk by chunk."""
    assert rows * hidden > 2**31
    nbytes = rows * hidden * 2
    free, _ = torch.cuda.mem_get_info()
    if free < 2 * nbytes + 2**30:
        pytest.skip(f"needs {(2 * nbytes + 2**30) / 2**30:.1f} GiB free GPU memory, {free / 2**30:.1f} GiB free")
    torch.manual_seed(0)
    x = torch.randn(rows, hidden, device="cuda", dtype=torch.bfloat16)
    w = (torch.rand(hidden, device="cuda") + 0.5).to(torch.bfloat16)
    y = torch.full_like(x, float("nan"))
    with torch.no_grad():
        kernel.rms_norm(x, w, 1e-6, out=y)
    torch.cuda.synchronize()
    sample = _sample_rows(rows, hidden)
    module = LlamaRMSNorm(hidden, eps=1e-6).to(device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        module.weight.copy_(w)
        for r in sample:
            got, xr = y[r : r + 1], x[r : r + 1]
            assert_same_as_hf(got, module(xr), "cuda")
            x64 = xr.double()
            ref = w.double() * (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-6))
            bound = 3 * 2.0**-7 * ref.abs() + 2 * torch.finfo(torch.bfloat16).tiny
            assert ((got.double() - ref).abs() <= bound).all(), f"row {r} off the fp64 reference"
        # Every row written (no NaN left), and y / w has unit RMS in every row.
        w32 = w.float()
        for start in range(0, rows, 1 << 14):
            chunk = y[start : start + (1 << 14)].float()
            assert not torch.isnan(chunk).any(), f"rows from {start} not written"
            rms = (chunk / w32).pow(2).mean(-1).sqrt()
            assert ((rms - 1).abs() < 0.02).all(), f"rows from {start} not normalized"
        del y
        functional = kernel.rms_norm(x, w, 1e-6)  # the allocating path too
        for r in (sample[0], sample[-1], *[s for s in sample if abs(s - 2**31 // hidden) <= 1]):
            assert_same_as_hf(functional[r : r + 1], module(x[r : r + 1]), "cuda")


# --- sanitizer driver ------------------------------------------------------

SCRIPTS = REPO_ROOT / "scripts"


def test_sanitize_shapes_dry_run_on_cpu():
    """scripts/sanitize_shapes.py --device cpu: the cases compute-sanitizer
    runs on CUDA, on the CPU against HF (the --quick subset, for time), and
    the full list covers >= 30 shapes with odd and very large hidden sizes."""
    listed = subprocess.run([sys.executable, str(SCRIPTS / "sanitize_shapes.py"), "--list"],
                            capture_output=True, text=True, check=True).stdout
    shapes = ast.literal_eval(listed.split(":", 1)[1].strip())
    assert len(shapes) >= 30 and {40000, 65537, 262144} <= {h for _, h in shapes}
    assert any(h % 2 for _, h in shapes) and max(r for r, _ in shapes) >= 1000
    done = subprocess.run([sys.executable, str(SCRIPTS / "sanitize_shapes.py"), "--device", "cpu", "--quick"],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "cases on cpu, 0 mismatches" in done.stdout


FAKE_SANITIZER = """#!/usr/bin/env bash
# Stands in for compute-sanitizer: drops its flags, runs the program, prints a summary.
while [ "${1#--}" != "$1" ]; do [ "$1" = --tool ] && tool="$2"; shift 2; done
"$@"; rc=$?
if [ "$tool" = racecheck ]; then  # racecheck's own summary format
  echo "========= RACECHECK SUMMARY: $FAKE_ERRORS hazards displayed ($FAKE_ERRORS errors, 0 warnings)"
else
  # one report per error, raised in one of our kernels (initcheck attributes them)
  for _ in $(seq 1 "$FAKE_ERRORS"); do
    echo "========= Uninitialized __global__ memory read of size 2 bytes"
    echo "=========     at void ${FAKE_KERNEL:-rmsnorm::rms_norm_rows_kernel}<float>(Args)+0x10"
  done
  echo "========= ERROR SUMMARY: $FAKE_ERRORS errors"
fi
exit $rc
"""
FAKE_PYTHON = """#!/usr/bin/env bash
echo "12 shapes, 170 cases on cuda, ${FAKE_MISMATCHES:-0} mismatches"
[ "${FAKE_MISMATCHES:-0}" = 0 ]
"""


@pytest.mark.parametrize("errors,mismatches,expect_rc", [(0, 0, 0), (3, 0, 1), (0, 2, 1)],
                         ids=["clean", "tool errors", "wrong results"])
def test_run_sanitizers_summary_and_exit_status(tmp_path, errors, mismatches, expect_rc):
    """scripts/run_sanitizers.sh (bash -n clean) with stand-ins for
    compute-sanitizer and Python: one summary line per tool with the parsed
    error count, logs in the folder given, nonzero status on any error."""
    script = SCRIPTS / "run_sanitizers.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    for name, text in (("compute-sanitizer", FAKE_SANITIZER), ("python", FAKE_PYTHON)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    env = dict(os.environ, COMPUTE_SANITIZER=str(tmp_path / "compute-sanitizer"), PYTHON=str(tmp_path / "python"),
               FAKE_ERRORS=str(errors), FAKE_MISMATCHES=str(mismatches))
    logs = tmp_path / "logs"
    done = subprocess.run(["bash", str(script), str(logs)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == expect_rc, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    tools = ["memcheck", "racecheck", "initcheck", "synccheck"]
    assert [line.split(":")[0] for line in lines] == tools
    assert all(line.split(": ", 1)[1].startswith(f"{errors} errors") for line in lines), lines
    assert sorted(p.name for p in logs.iterdir()) == sorted([f"sanitizer-{t}.log" for t in tools] + ["summary.txt"])


def test_initcheck_counts_only_errors_in_our_kernels(tmp_path):
    """initcheck tracks every kernel; reports raised in other kernels (ATen's
    reduce_kernel reading allocation padding in the HF references) are named
    in the summary but do not fail the run."""
    script = SCRIPTS / "run_sanitizers.sh"
    for name, text in (("compute-sanitizer", FAKE_SANITIZER), ("python", FAKE_PYTHON)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    env = dict(os.environ, COMPUTE_SANITIZER=str(tmp_path / "compute-sanitizer"), PYTHON=str(tmp_path / "python"),
               FAKE_ERRORS="4", FAKE_KERNEL="at::native::reduce_kernel", RMSNORM_SANITIZER_TOOLS="initcheck")
    done = subprocess.run(["bash", str(script), str(tmp_path / "logs")], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("initcheck: 0 errors; 4 more in other kernels (at::native::reduce_kernel)"), done.stdout


@requires_cuda
def test_unknown_sum_order_is_a_clear_error():
    """RMSNORM_SUM_ORDER takes 'aten' (the default) or 'batch_invariant';
    anything else fails the first CUDA call with a message naming both,
    rather than silently picking an order."""
    from conftest import REPO_ID, VERSION

    script = (
        "import torch, kernels\n"
        f"k = kernels.get_kernel({REPO_ID!r}, version={VERSION!r})\n"
        "x = torch.randn(4, 256, device='cuda', dtype=torch.bfloat16)\n"
        "k.rms_norm(x, torch.ones(256, device='cuda', dtype=torch.bfloat16), 1e-6)\n"
        "torch.cuda.synchronize()\n"
    )
    env = dict(os.environ, RMSNORM_SUM_ORDER="fastest")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0, done.stdout
    assert "RMSNORM_SUM_ORDER must be 'aten'" in done.stderr and "'batch_invariant'" in done.stderr, done.stderr[-2000:]
    assert "got 'fastest'" in done.stderr, done.stderr[-2000:]
