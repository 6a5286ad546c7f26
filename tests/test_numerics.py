"""Numerics against Hugging Face's own RMSNorm modules and an fp64 reference.

On the CPU the kernel must equal HF eager bit for bit. On CUDA, too, for
contiguous inputs in the default summation order (RMSNORM_SUM_ORDER unset or
"aten", torch >= 2.10): the forward sums each row in the order ATen's CUDA
`mean` picks for that shape (launch_config.h AtenSumLayout,
scripts/aten_reduce_order.py). Otherwise (RMSNORM_SUM_ORDER=batch_invariant,
inputs that are not contiguous, rows of 2**17 or more) only the order of the
H squares' sum differs from ATen's, which moves the inverse RMS by at most an
ulp of fp32: it survives the rounding to bf16/fp16 on a tiny fraction of
elements and shows in every fp32 output. The bounds below state that case.
"""

import os

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.models.mistral.modeling_mistral import MistralRMSNorm
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRMSNorm
from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHRMSNorm
from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm

from conftest import bitwise_report, requires_cuda

HF_MODULES = [LlamaRMSNorm, MistralRMSNorm, Qwen2RMSNorm, Qwen3RMSNorm]
# Olmo order (fp32 multiply, one cast) under the same "RMSNorm" label, and
# Gemma order (1 + w in fp32), served by their layers.
OLMO_ORDER_MODULES = [Olmo2RMSNorm, GptOssRMSNorm, NemotronHRMSNorm]
GEMMA_ORDER_MODULES = [GemmaRMSNorm, Gemma2RMSNorm, Gemma3RMSNorm]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Decode, a few tokens, a prime count; hidden sizes from head dims to 8K,
# with odd ones that defeat vector loads and one past the register path.
NUM_ROWS = [1, 2, 7, 8, 16, 83]
HIDDEN_SIZES = [1, 8, 127, 128, 768, 769, 896, 4096, 4097, 5120, 8192]
WIDE_HIDDEN = [70001]

# Allowed deviation from HF eager on CUDA (see the module docstring), by input
# dtype: a share of elements bitwise equal, and a relative bound of one step
# of the input dtype's rounding (two where the weight multiply rounds again).
# With an fp32 weight the output is fp32, so a one-step flip of the bf16/fp16
# normalized value shows as thousands of fp32 ulps: the bound is relative.
CUDA_MIN_BITWISE = {torch.bfloat16: 0.99, torch.float16: 0.98, torch.float32: 0.0}
CUDA_RTOL = {torch.bfloat16: 2.0**-6, torch.float16: 2.0**-9, torch.float32: 2.0**-20}


# The Reduce.cuh order the kernel ports (checked on torch 2.11); torch 2.6
# shuffled the warp tree differently (scripts/aten_reduce_order.py).
ATEN_ORDER_TORCH = (2, 10)
TORCH_RELEASE = tuple(int(part) for part in torch.__version__.split(".")[:2])


def cuda_sums_in_aten_order(x):
    """Whether our CUDA forward reproduces ATen's summation order for x."""
    return (x.is_cuda and x.is_contiguous() and x.shape[-1] < 2**17
            and os.environ.get("RMSNORM_SUM_ORDER", "aten") == "aten"
            and TORCH_RELEASE >= ATEN_ORDER_TORCH)


def make_hf_module(cls, hidden, weight_dtype, device, eps=1e-5):
    module = cls(hidden, eps=eps)
    with torch.no_grad():
        module.weight.copy_(torch.randn(hidden) * 0.5 + 1.0)  # never all ones
    return module.to(device=device, dtype=weight_dtype)


def check_against_hf(kernel, module, x, forward=None):
    """Our forward (default: rms_norm with the module's weight and eps) against
    the module's own, bitwise on the CPU, within the bounds above on CUDA."""
    with torch.no_grad():
        expected = module(x)
        if forward is None:
            got = kernel.rms_norm(x, module.weight, module.variance_epsilon)
        else:
            got = forward(module, x)
    report = bitwise_report(got, expected)
    if x.device.type == "cpu" or cuda_sums_in_aten_order(x):
        assert report["bitwise_fraction"] == 1.0, report
    else:
        assert report["bitwise_fraction"] >= CUDA_MIN_BITWISE[x.dtype], report
        torch.testing.assert_close(got, expected, rtol=CUDA_RTOL[x.dtype], atol=1e-30)
    return report


def check_view_against_hf(got, expected, x):
    """A strided view's result against HF's module on it: HF normalizes a
    contiguous fp32 copy, whose sum order is that of a dense tensor of the
    same shape, so bitwise where the dense tensor would be."""
    report = bitwise_report(got, expected)
    if x.device.type == "cpu" or cuda_sums_in_aten_order(x.contiguous()):
        assert report["bitwise_fraction"] == 1.0, report
    else:
        torch.testing.assert_close(got, expected, rtol=CUDA_RTOL[x.dtype], atol=1e-30)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fp32_weight", [False, True], ids=["w=x.dtype", "w=fp32"])
@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
@pytest.mark.parametrize("rows", NUM_ROWS)
def test_matches_llama_rmsnorm(kernel, device, dtype, fp32_weight, hidden, rows):
    torch.manual_seed(hidden * 1000 + rows)
    weight_dtype = torch.float32 if fp32_weight else dtype
    module = make_hf_module(LlamaRMSNorm, hidden, weight_dtype, device)
    x = (torch.randn(rows, hidden, device=device) * 2.5).to(dtype)
    check_against_hf(kernel, module, x)


# Many rows: the CUDA kernels give a block several rows (16-byte windows that
# straddle two odd-sized rows; in the register kernel, several rows per
# thread for short rows, 4099 not a multiple of them) and, for odd rows, walk
# more spans than there are resident blocks; the row-block kernel takes few
# rows (500x4096) and, past 16 rows per SM, 16-bit rows of 4096 and 5120
# (2200x4096, 2500x5120), and odd rows: few (333x4097, whose last chunk
# ends past the tensor; 7x5121, ATen's 128 lanes) and 5121 at any count;
# the folded kernel ATen's layout split over 16 warps (513x8192; 300x8184,
# whose last two ATen threads hold one group fewer than the others; 6336x8192,
# 48 rows per SM of the H100/H200, read twice).
# Smaller on the CPU, whose kernel has no such split; the same count on
# both, so that no parametrization is skipped.
MANY_ROWS = {"cpu": [(300, 769), (64, 4097), (210, 256), (150, 769), (30, 4097), (100, 127), (9, 8192),
                     (70, 128), (40, 2048), (20, 5121), (35, 128), (50, 4096), (45, 4096), (25, 5120), (33, 4097),
                     (7, 5121), (20, 8184), (12, 8192)],
             "cuda": [(600, 769), (2100, 256), (20000, 769), (3000, 4097), (2048, 4096), (1000, 127), (513, 8192),
                      (4099, 128), (1000, 2048), (700, 5121), (530, 128), (500, 4096), (2200, 4096), (2500, 5120),
                      (333, 4097), (7, 5121), (300, 8184), (6336, 8192)]}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fp32_weight", [False, True], ids=["w=x.dtype", "w=fp32"])
@pytest.mark.parametrize("case", range(len(MANY_ROWS["cuda"])))
def test_matches_llama_rmsnorm_many_rows(kernel, device, dtype, fp32_weight, case):
    rows, hidden = MANY_ROWS[device][case]
    torch.manual_seed(rows + hidden)
    module = make_hf_module(LlamaRMSNorm, hidden, torch.float32 if fp32_weight else dtype, device)
    x = (torch.randn(rows, hidden, device=device) * 1.5).to(dtype)
    check_against_hf(kernel, module, x)


# Odd rows (hidden not a multiple of 4) start at every shift against the
# weight's 4-element groups; the CUDA row-block kernel (4097, 5121) and the
# register kernel (1025) read the weight in aligned 16-byte chunks or float4
# groups and shift them (PackedVec::load_shifted), which needs a weight on
# such a boundary. A weight view off it takes another kernel: each must give
# HF's bits.
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("weight_offset", [0, 1, 2], ids=lambda o: f"weight+{o}")
@pytest.mark.parametrize("hidden", [4097, 5121, 1025])
def test_odd_rows_with_weight_at_any_offset(kernel, device, dtype, weight_offset, hidden):
    torch.manual_seed(hidden + weight_offset)
    module = make_hf_module(LlamaRMSNorm, hidden, dtype, device)
    with torch.no_grad():
        storage = torch.zeros(hidden + weight_offset, device=device, dtype=dtype)
        storage[weight_offset:].copy_(module.weight)
        module.weight.data = storage[weight_offset:]
    assert module.weight.storage_offset() == weight_offset
    rows = 600 if device == "cuda" else 9
    x = (torch.randn(rows, hidden, device=device) * 1.5).to(dtype)
    check_against_hf(kernel, module, x)


@pytest.mark.parametrize("cls", HF_MODULES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_each_llama_order_family(kernel, device, cls, dtype):
    torch.manual_seed(3)
    module = make_hf_module(cls, 896, dtype, device, eps=1e-6)
    x = torch.randn(2, 9, 896, device=device).to(dtype)
    check_against_hf(kernel, module, x)


@pytest.mark.parametrize("cls", OLMO_ORDER_MODULES + GEMMA_ORDER_MODULES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fp32_weight", [False, True], ids=["w=x.dtype", "w=fp32"])
@pytest.mark.parametrize("hidden", [96, 4096, 4097, 70001])
def test_matches_olmo_and_gemma_orders(kernel, device, cls, dtype, fp32_weight, hidden):
    """Each class through the layer kernelize/patching gives it, against the
    class's own forward."""
    torch.manual_seed(hidden + 17)
    module = make_hf_module(cls, hidden, torch.float32 if fp32_weight else dtype, device, eps=1e-6)
    layer = kernel.layers.GemmaRMSNorm if cls in GEMMA_ORDER_MODULES else kernel.layers.RMSNorm
    x = (torch.randn(5, hidden, device=device) * 2).to(dtype)
    check_against_hf(kernel, module, x, forward=layer.forward)


# Many short rows (ATen's one-warp rows of one or two float4 groups a lane):
# on CUDA the short-row kernel for bf16/fp16, two of ATen's lanes a thread
# (136: the row's second group is the first thread's alone), the register
# kernel for fp32, in each order family. Smaller on the CPU, the same count.
SHORT_ROWS = {"cpu": [(40, 128), (30, 256), (20, 136)], "cuda": [(4099, 128), (2100, 256), (1000, 136)]}


@pytest.mark.parametrize("cls", [LlamaRMSNorm, Olmo2RMSNorm, Gemma3RMSNorm], ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fp32_weight", [False, True], ids=["w=x.dtype", "w=fp32"])
@pytest.mark.parametrize("case", range(len(SHORT_ROWS["cuda"])))
def test_many_short_rows_in_each_order(kernel, device, cls, dtype, fp32_weight, case):
    rows, hidden = SHORT_ROWS[device][case]
    torch.manual_seed(rows + hidden)
    module = make_hf_module(cls, hidden, torch.float32 if fp32_weight else dtype, device, eps=1e-6)
    layer = kernel.layers.GemmaRMSNorm if cls in GEMMA_ORDER_MODULES else kernel.layers.RMSNorm
    x = (torch.randn(rows, hidden, device=device) * 2).to(dtype)
    check_against_hf(kernel, module, x, forward=layer.forward)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("hidden", WIDE_HIDDEN)
def test_wide_rows(kernel, device, dtype, hidden):
    torch.manual_seed(7)
    module = make_hf_module(LlamaRMSNorm, hidden, dtype, device)
    x = torch.randn(3, hidden, device=device).to(dtype)
    check_against_hf(kernel, module, x)


def qk_views(batch, seq, heads, head_dim, dtype, device, scale=1.0):
    """q and k of a fused qkv projection as (B, S, heads, head_dim) views,
    whose rows are not evenly spaced, and q transposed to (B, heads, S,
    head_dim): what q_norm / k_norm normalize."""
    qkv = (torch.randn(batch, seq, 3 * heads * head_dim, device=device) * scale).to(dtype)
    q = qkv[..., : heads * head_dim].view(batch, seq, heads, head_dim)
    k = qkv[..., heads * head_dim : 2 * heads * head_dim].view(batch, seq, heads, head_dim)
    return q, k, q.transpose(1, 2)


def test_qwen3_qk_norm_on_strided_view(kernel, device):
    """q_norm/k_norm normalize head_dim on (B, S, heads, head_dim) views whose
    rows are not evenly spaced (here: slices of a fused qkv projection)."""
    torch.manual_seed(5)
    views = qk_views(2, 5, 4, 128, torch.bfloat16, device)
    assert not views[0].is_contiguous()
    module = make_hf_module(Qwen3RMSNorm, 128, torch.bfloat16, device, eps=1e-6)
    for view in views:
        check_against_hf(kernel, module, view)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("head_dim", [128, 256])
def test_qk_norm_on_strided_views_of_many_tokens(kernel, device, dtype, head_dim):
    """The same views with tokens enough for the short-row kernel on CUDA
    (1024 rows of head_dim, read through two and three row dimensions)."""
    torch.manual_seed(head_dim)
    batch, seq, heads = (2, 64, 8) if device == "cuda" else (2, 6, 2)
    views = qk_views(batch, seq, heads, head_dim, dtype, device, scale=2.0)
    module = make_hf_module(Qwen3RMSNorm, head_dim, dtype, device, eps=1e-6)
    for view in views:
        assert not view.is_contiguous()
        with torch.no_grad():
            expected = module(view)
            got = kernel.rms_norm(view, module.weight, module.variance_epsilon)
        check_view_against_hf(got, expected, view)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows,hidden", [(2, 4096), (3, 2048), (8, 4096), (100, 2048)])
def test_few_rows_on_strided_view(kernel, device, dtype, rows, hidden):
    """Few rows of a wider tensor (a slice of a fused projection): on CUDA the
    folded kernel (2 and 3 rows) and the row-block kernel read strided rows.
    HF normalizes a contiguous fp32 copy, whose sum order is that of a dense
    tensor of the same shape, so the bits are HF's here too."""
    torch.manual_seed(rows + hidden)
    wide = (torch.randn(rows, hidden + 512, device=device) * 2).to(dtype)
    x = wide[:, 256 : 256 + hidden]
    assert not x.is_contiguous()
    module = make_hf_module(LlamaRMSNorm, hidden, dtype, device)
    with torch.no_grad():
        expected = module(x)
        got = kernel.rms_norm(x, module.weight, module.variance_epsilon)
    check_view_against_hf(got, expected, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", ["rows+4", "weight+4", "hidden8180"])
def test_split_rows_off_16_byte_boundaries(kernel, device, dtype, case):
    """ATen's split layouts (8164-8192 wide, 16 rows or more; on CUDA the
    folded kernel's) where a row or the weight is only 8-byte aligned: rows
    of a slice 4 columns in, a weight 4 elements into its storage, and rows
    whose ATen threads end in a single float4 group (8180 wide). Every float4
    group is still whole, so each gives HF's bits. (Kept from v19 build T,
    which read two groups as one 16-byte access where all were aligned.)"""
    hidden = 8180 if case == "hidden8180" else 8192
    rows = 64 if device == "cuda" else 17
    torch.manual_seed(hidden + len(case))
    module = make_hf_module(LlamaRMSNorm, hidden, dtype, device)
    if case == "weight+4":
        with torch.no_grad():
            storage = torch.zeros(hidden + 4, device=device, dtype=dtype)
            storage[4:].copy_(module.weight)
            module.weight.data = storage[4:]
    if case == "rows+4":
        wide = (torch.randn(rows, hidden + 8, device=device) * 2).to(dtype)
        x = wide[:, 4 : 4 + hidden]
        assert not x.is_contiguous()
    else:
        x = (torch.randn(rows, hidden, device=device) * 2).to(dtype)
    with torch.no_grad():
        expected = module(x)
        got = kernel.rms_norm(x, module.weight, module.variance_epsilon)
    check_view_against_hf(got, expected, x)


@requires_cuda
def test_each_row_count_takes_its_kernel(kernel):
    """The CUDA launch table, seen from the profiler: decode batches (1-7
    rows of ATen's one-block layouts) and ATen's split layouts (8192 wide,
    16 rows or more) run the folded kernel; few rows of ATen's one-warp
    layouts, fp32 rows too long for registers, and rows of 16 float4 groups
    per ATen thread or more (aligned fp32 rows: 6) at any row count the
    row-block kernel; shorter rows (and 2-3 or 8 rows of 8192, which ATen
    splits over 64-256 lanes) the register kernel, but many rows of one or
    two float4 groups per ATen lane in whole 16-byte chunks the short-row
    kernel for bf16/fp16 (so the numerics tests above reach each)."""
    if os.environ.get("RMSNORM_SUM_ORDER", "aten") != "aten" or any(
            os.environ.get(name) is not None
            for name in ("RMSNORM_ROW_BLOCK", "RMSNORM_FOLDED", "RMSNORM_SHORT_ROWS")):
        pytest.skip("the default launch table only")
    expected = {(1, 4096, torch.bfloat16): "aten_folded", (7, 4096, torch.bfloat16): "aten_folded",
                (3, 5120, torch.float32): "aten_folded", (1, 8192, torch.float16): "aten_folded",
                (2, 8192, torch.bfloat16): "aten_registers",
                (8, 4096, torch.bfloat16): "aten_row_block", (128, 4096, torch.bfloat16): "aten_row_block",
                (512, 4096, torch.bfloat16): "aten_row_block", (8192, 4096, torch.bfloat16): "aten_row_block",
                (8192, 4096, torch.float32): "aten_row_block", (8192, 4096, torch.float16): "aten_row_block",
                (2048, 4096, torch.float16): "aten_row_block", (8192, 5120, torch.bfloat16): "aten_row_block",
                (8192, 3584, torch.bfloat16): "aten_row_block", (8192, 4097, torch.bfloat16): "aten_row_block",
                (2048, 4096, torch.bfloat16): "aten_row_block", (8192, 2048, torch.bfloat16): "aten_row_block",
                (8192, 1024, torch.bfloat16): "aten_registers", (8192, 896, torch.float32): "aten_row_block",
                (8192, 512, torch.float32): "aten_registers", (65536, 128, torch.bfloat16): "aten_short_rows",
                (65536, 128, torch.float32): "aten_registers", (4099, 256, torch.float16): "aten_short_rows",
                (65536, 132, torch.bfloat16): "aten_registers", (300, 128, torch.bfloat16): "aten_registers",
                (8192, 5121, torch.bfloat16): "aten_row_block", (128, 4097, torch.bfloat16): "aten_row_block",
                (8192, 4097, torch.float16): "aten_row_block", (8192, 2049, torch.float32): "aten_row_block",
                (8192, 2049, torch.float16): "aten_row_block", (8192, 2049, torch.bfloat16): "aten_row_block",
                (8192, 1025, torch.bfloat16): "aten_registers", (8192, 1536, torch.bfloat16): "aten_registers",
                (8192, 8192, torch.bfloat16): "aten_folded", (513, 8192, torch.float32): "aten_folded",
                (64, 8192, torch.bfloat16): "aten_folded", (8, 8192, torch.bfloat16): "aten_registers",
                (16, 8192, torch.float32): "aten_folded"}
    for (rows, hidden, dtype), name in expected.items():
        weight = torch.ones(hidden, device="cuda", dtype=dtype)
        x = torch.randn(rows, hidden, device="cuda", dtype=dtype)
        kernel.rms_norm(x, weight, 1e-6)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            kernel.rms_norm(x, weight, 1e-6)
            torch.cuda.synchronize()
        names = [event.name for event in prof.events() if "rmsnorm::rms_norm_" in event.name]
        assert names and all(name in n for n in names), ((rows, hidden, dtype), names)


FP64_FORMULAS = {
    # order: (our call, expected output from x64, normed64 and the weight)
    "llama": (lambda k, x, w, eps: k.rms_norm(x, w, eps),
              lambda normed, w, dtype: w.double() * normed.to(dtype).double()),
    "olmo": (lambda k, x, w, eps: k.rms_norm(x, w, eps, order="olmo"),
             lambda normed, w, dtype: w.double() * normed),
    "gemma": (lambda k, x, w, eps: k.gemma_rms_norm(x, w, eps),
              lambda normed, w, dtype: (1 + w.double()) * normed),
}


@pytest.mark.parametrize("order", sorted(FP64_FORMULAS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_against_fp64_reference(kernel, device, dtype, order):
    """Independent of HF: each order's formula evaluated in float64, with the
    roundings to the input dtype the formula prescribes."""
    torch.manual_seed(11)
    rows, hidden, eps = 64, 1536, 1e-6
    x = (torch.randn(rows, hidden, device=device) * 4).to(dtype)
    weight = (torch.rand(hidden, device=device) + 0.5).to(dtype)
    x64 = x.double()
    normed = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps)
    call, formula = FP64_FORMULAS[order]
    expected = formula(normed, weight, dtype)
    got = call(kernel, x, weight, eps).double()
    rel = (got - expected).norm() / expected.norm()
    # Two roundings to the output dtype bound the error by about one ulp each.
    bound = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    assert rel.item() < bound, rel.item()
    assert torch.isfinite(got).all()


def test_report_bitwise_figures(kernel, device, capsys):
    """Prints the bitwise-equal fraction and max ulp per dtype (for the notes)."""
    lines = []
    for dtype in DTYPES:
        totals = {"elements": 0, "equal": 0.0, "max_ulp": 0}
        for hidden in (128, 896, 4096, 4097, 8192):
            torch.manual_seed(hidden)
            module = make_hf_module(LlamaRMSNorm, hidden, dtype, device)
            x = torch.randn(256, hidden, device=device).to(dtype)
            report = check_against_hf(kernel, module, x)
            totals["elements"] += report["elements"]
            totals["equal"] += report["bitwise_fraction"] * report["elements"]
            totals["max_ulp"] = max(totals["max_ulp"], report["max_ulp"])
        lines.append(
            f"{device} {dtype}: {100 * totals['equal'] / totals['elements']:.4f}% bitwise equal to "
            f"LlamaRMSNorm over {totals['elements']} elements, max ulp {totals['max_ulp']}"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
