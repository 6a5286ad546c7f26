"""Autograd, fake registration and torch.compile (issue 4, first part): the
op's backward against HF's own autograd, opcheck, a compiled kernelized model
with no graph breaks and no recompiles, and a training step against vanilla."""

import pytest
import torch
from kernels import Mode, kernelize, use_kernel_mapping
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from conftest import bit_view, requires_cuda
from test_transformers import kernelized_norms, our_mapping, tiny_llama

# fp32 gradients differ from HF's only through the summation order; bf16 ones
# through bf16 roundings that HF's autograd performs in a different order.
GRAD_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def module_and_input(cls, device, dtype, fp32_weight, hidden=384):
    """An HF norm module with weights near 1 (fp32 or x's dtype) and a
    (6, 5, hidden) input, seeded."""
    torch.manual_seed(0)
    module = cls(hidden, eps=1e-5).to(device=device, dtype=torch.float32 if fp32_weight else dtype)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
    return module, torch.randn(6, 5, hidden, device=device).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fp32_weight", [False, True], ids=["w=x.dtype", "w=fp32"])
def test_gradients_match_hf_autograd(kernel, device, dtype, fp32_weight):
    module, x = module_and_input(LlamaRMSNorm, device, dtype, fp32_weight)
    grad_out = torch.randn(x.shape, device=device).to(module(x).dtype)

    x_ref = x.clone().requires_grad_()
    module(x_ref).backward(grad_out)
    ref_dx, ref_dw = x_ref.grad, module.weight.grad.clone()
    module.weight.grad = None

    x_ours = x.clone().requires_grad_()
    kernel.rms_norm(x_ours, module.weight, module.variance_epsilon).backward(grad_out)
    assert x_ours.grad.dtype == ref_dx.dtype and module.weight.grad.dtype == ref_dw.dtype
    torch.testing.assert_close(x_ours.grad, ref_dx, **GRAD_TOL[dtype])
    torch.testing.assert_close(module.weight.grad, ref_dw, **GRAD_TOL[dtype] if not fp32_weight else
                               dict(rtol=1e-4, atol=1e-4))


def test_weightless_gradient(kernel, device):
    x = torch.randn(4, 64, device=device, requires_grad=True)
    kernel.rms_norm(x, None, 1e-6).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    (x_ref * torch.rsqrt(x_ref.pow(2).mean(-1, keepdim=True) + 1e-6)).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def test_backward_is_deterministic(kernel, device):
    torch.manual_seed(1)
    x = torch.randn(257, 1024, device=device, dtype=torch.bfloat16, requires_grad=True)
    w = torch.nn.Parameter(torch.rand(1024, device=device, dtype=torch.bfloat16) + 0.5)
    grads = []
    for _ in range(5):
        x.grad, w.grad = None, None
        kernel.rms_norm(x, w, 1e-6).float().square().sum().backward()
        grads.append((bit_view(x.grad).clone(), bit_view(w.grad).clone()))
    for dx, dw in grads[1:]:
        assert torch.equal(dx, grads[0][0]) and torch.equal(dw, grads[0][1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_opcheck(kernel, device, dtype):
    x = torch.randn(3, 5, 96, device=device, dtype=dtype, requires_grad=True)
    w = torch.rand(96, device=device, dtype=dtype, requires_grad=True)
    torch.library.opcheck(kernel.ops.rms_norm.default, (x, w, 1e-6))
    torch.library.opcheck(kernel.ops.rms_norm.default, (x.detach(), None, 1e-5))
    out = torch.empty_like(x.detach())
    torch.library.opcheck(kernel.ops.rms_norm_out.default, (out, x.detach(), w.detach(), 1e-6))
    torch.library.opcheck(kernel.ops.rms_norm_no_grad.default, (x.detach(), w.detach(), 1e-6))
    torch.library.opcheck(kernel.ops.rms_norm_no_grad.default, (x.detach(), None, 1e-5, 2))
    torch.library.opcheck(kernel.ops.add_rms_norm_no_grad.default,
                          (x.detach(), torch.randn_like(x.detach()), w.detach(), 1e-6))


def test_compile_fullgraph_dynamic_no_recompile(device):
    """aot_eager traces through the fake and the autograd registration exactly
    as Inductor would, without spending CI minutes on code generation."""
    model = tiny_llama(torch.float32, device)
    with use_kernel_mapping(our_mapping(device), inherit_mapping=False):
        kernelize(model, mode=Mode.INFERENCE | Mode.TORCH_COMPILE, device=device)
    assert len(kernelized_norms(model)) == 5
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="aot_eager")
    with torch.no_grad():
        for seq in (7, 13):
            ids = torch.randint(0, 99, (2, seq), device=device)
            with torch._dynamo.config.patch(error_on_recompile=seq != 7):
                got = compiled(ids).logits
            # aot_eager decomposes attention differently on CUDA: fp32 noise there
            exact = dict(rtol=0, atol=0) if device == "cpu" else dict(rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got, model(ids).logits, **exact)


def test_compile_and_export_under_no_grad_trace_the_op_with_the_formula(kernel, device):
    """Eager calls under no_grad take the grad-free twin (test_api); what
    torch.compile and torch.export record is the op that carries the
    autograd formula, so their graphs stay trainable."""
    norm = kernel.layers.RMSNorm()
    norm.weight = torch.nn.Parameter(torch.rand(64, device=device) + 0.5)
    norm.variance_epsilon = 1e-6
    x = torch.randn(3, 64, device=device)
    seen = []

    def capture(graph_module, example_inputs):
        seen.extend(str(n.target) for n in graph_module.graph.nodes if n.op == "call_function")
        return graph_module.forward

    torch._dynamo.reset()
    with torch.no_grad():
        expected = norm(x)
        torch.testing.assert_close(torch.compile(norm, backend=capture, fullgraph=True)(x), expected, rtol=0, atol=0)
        exported = torch.export.export(norm, (x,))
    traced = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    for targets in (seen, traced):
        ours = [t for t in targets if t.startswith("_rmsnorm_")]
        assert ours and all(t.endswith("::rms_norm.default") or t.endswith(".rms_norm.default") for t in ours), targets


def test_training_step_matches_vanilla(device):
    torch.manual_seed(0)
    vanilla = tiny_llama(torch.float32, device).train()
    ours = tiny_llama(torch.float32, device).train()
    ours.load_state_dict(vanilla.state_dict())
    with use_kernel_mapping(our_mapping(device), inherit_mapping=False):
        kernelize(ours, mode=Mode.TRAINING, device=device)
    assert len(kernelized_norms(ours)) == 5  # the layer is picked for training

    ids = torch.randint(0, 99, (2, 11), device=device)
    for model in (vanilla, ours):
        model(ids, labels=ids).loss.backward()
    for (name, p_ref), (_, p_ours) in zip(vanilla.named_parameters(), ours.named_parameters()):
        torch.testing.assert_close(p_ours.grad, p_ref.grad, rtol=1e-4, atol=1e-6, msg=name)


ORDER_MODULES = {
    "olmo": ("transformers.models.olmo2.modeling_olmo2", "Olmo2RMSNorm", "RMSNorm"),
    "gemma": ("transformers.models.gemma3.modeling_gemma3", "Gemma3RMSNorm", "GemmaRMSNorm"),
}


@pytest.mark.parametrize("order", sorted(ORDER_MODULES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fp32_weight", [False, True], ids=["w=x.dtype", "w=fp32"])
def test_gradients_match_hf_other_orders(kernel, device, order, dtype, fp32_weight):
    """Olmo and Gemma orders: the layer's backward against the class's own
    autograd (mixed precision included: grads in the input's and weight's dtypes)."""
    import importlib

    module_path, class_name, layer_name = ORDER_MODULES[order]
    cls = getattr(importlib.import_module(module_path), class_name)
    module, x = module_and_input(cls, device, dtype, fp32_weight)
    grad_out = torch.randn(x.shape, device=device).to(dtype)

    x_ref = x.clone().requires_grad_()
    module(x_ref).backward(grad_out)
    ref_dx, ref_dw = x_ref.grad, module.weight.grad.clone()
    module.weight.grad = None

    x_ours = x.clone().requires_grad_()
    getattr(kernel.layers, layer_name).forward(module, x_ours).backward(grad_out)
    assert x_ours.grad.dtype == ref_dx.dtype and module.weight.grad.dtype == ref_dw.dtype
    torch.testing.assert_close(x_ours.grad, ref_dx, **GRAD_TOL[dtype])
    # dweight sums over 30 rows: HF rounds each product to the weight dtype in bf16.
    torch.testing.assert_close(module.weight.grad, ref_dw, **GRAD_TOL[module.weight.dtype])


GRADCHECK_CALLS = {
    "llama": lambda k: (lambda x, w: k.rms_norm(x, w, 1e-5)),
    "llama-weightless": lambda k: (lambda x, w: k.rms_norm(x, None, 1e-5) * w),
    "olmo": lambda k: (lambda x, w: k.rms_norm(x, w, 1e-5, order="olmo")),
    "gemma": lambda k: (lambda x, w: k.gemma_rms_norm(x, w, 1e-5)),
    "fused-add": lambda k: (lambda x, w: torch.cat(k.fused_add_rms_norm(x, x.flip(0) * 0.5, w, 1e-5), -1)),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_CALLS))
def test_gradcheck_fp64_cpu(kernel, name):
    """torch.autograd.gradcheck in float64 (the CPU path computes in fp64 for
    float64 inputs; its bitwise claims are for fp32/fp16/bf16)."""
    torch.manual_seed(0)
    x = torch.randn(5, 37, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(37, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(GRADCHECK_CALLS[name](kernel), (x, w))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(GRADCHECK_CALLS))
def test_gradcheck_fp32_cuda(kernel, name):
    """CUDA has no fp64 path: gradcheck in fp32 with eps=1e-3 and atol/rtol 1e-2
    (finite differences in fp32 carry about 1e-4 of rounding noise)."""
    torch.manual_seed(0)
    x = torch.randn(4, 32, device="cuda", requires_grad=True)
    w = (torch.rand(32, device="cuda") + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(GRADCHECK_CALLS[name](kernel), (x, w), eps=1e-3, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("order", [1, 2])
def test_opcheck_other_orders_and_backward_op(kernel, device, order):
    x = torch.randn(3, 5, 96, device=device, dtype=torch.bfloat16, requires_grad=True)
    w = torch.rand(96, device=device, dtype=torch.float32, requires_grad=True)
    torch.library.opcheck(kernel.ops.rms_norm.default, (x, w, 1e-6, order))
    grad = torch.randn(3, 5, 96, device=device, dtype=torch.bfloat16)
    torch.library.opcheck(kernel.ops.rms_norm_backward.default, (grad, x.detach(), w.detach(), 1e-6, order))


def test_dweight_over_many_blocks_is_deterministic_and_right(kernel, device):
    """Enough rows that dweight is reduced from many block partials: the same
    bits on every run, and the fp64 sum within fp32 accumulation error."""
    torch.manual_seed(3)
    rows, hidden = (4096, 2048) if device == "cuda" else (300, 256)
    x = torch.randn(rows, hidden, device=device, requires_grad=True)
    w = torch.nn.Parameter(torch.rand(hidden, device=device) + 0.5)
    grad = torch.randn(rows, hidden, device=device)
    results = []
    for _ in range(3):
        x.grad, w.grad = None, None
        kernel.rms_norm(x, w, 1e-6).backward(grad)
        results.append(bit_view(w.grad).clone())
    assert all(torch.equal(r, results[0]) for r in results[1:])
    x64 = x.detach().double()
    normed = (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-6)).float().double()
    expected = (grad.double() * normed).sum(0)
    torch.testing.assert_close(w.grad.double(), expected, rtol=1e-5, atol=1e-3)


# Row widths that reach each CUDA backward path: the row kernel with one, two
# and four 16-byte chunks per thread (256- and 512-thread rows), several rows
# per block, and the any-length kernel (widths off a 16-byte multiple, rows of
# more than 2048 chunks).
BACKWARD_CASES = [("cpu", width) for width in (96, 384, 4100)] + [
    pytest.param("cuda", width, marks=requires_cuda, id=f"cuda-{width}")
    for width in (96, 384, 2048, 4096, 8192, 12288, 4100, 20000)
]


def _relative_error(value, reference):
    return ((value.double() - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("device, width", BACKWARD_CASES)
def test_gradients_across_row_widths(kernel, device, dtype, width):
    """dx and dweight of every backward path against an fp64 autograd of the
    same math: within a small multiple of the error of HF's own autograd in
    the same dtype (HF rounds more often than our fp32 accumulation does)."""
    torch.manual_seed(width)
    rows = 1500 if device == "cuda" else 40
    module = LlamaRMSNorm(width, eps=1e-6).to(device=device, dtype=dtype)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
    x = torch.randn(rows, width, device=device).to(dtype)
    grad_out = torch.randn(rows, width, device=device).to(dtype)

    x64 = x.double().requires_grad_()
    w64 = module.weight.detach().double().requires_grad_()
    (w64 * (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-6))).backward(grad_out.double())

    x_hf = x.clone().requires_grad_()
    module(x_hf).backward(grad_out)
    hf_dx, hf_dw = x_hf.grad, module.weight.grad.clone()
    module.weight.grad = None
    x_ours = x.clone().requires_grad_()
    kernel.rms_norm(x_ours, module.weight, 1e-6).backward(grad_out)
    ours_dx, ours_dw = x_ours.grad, module.weight.grad

    assert ours_dx.dtype == dtype and ours_dw.dtype == dtype
    slack = 1e-5 if dtype == torch.float32 else 1e-3
    for name, ours, hf, ref in (("dx", ours_dx, hf_dx, x64.grad), ("dweight", ours_dw, hf_dw, w64.grad)):
        ours_error, hf_error = _relative_error(ours, ref), _relative_error(hf, ref)
        assert ours_error <= 2 * hf_error + slack, (name, ours_error, hf_error)


BACKWARD_CONFIG_PROGRAM = r"""
#include <cstdio>
#include "launch_config.h"
int main() {
  long long chunks, rows;
  while (std::scanf("%lld %lld", &chunks, &rows) == 2) {
    const auto c = rmsnorm::pick_backward_launch_config(chunks, rows, 132);
    std::printf("%d %d %d %d\n", int(c.any_length), c.chunks_per_thread, c.threads_per_row_log2, c.rows_per_block);
  }
}
"""


def test_backward_config_covers_each_row(tmp_path):
    """pick_backward_launch_config (the CUDA row kernel's shape, on the CPU):
    a row's 16-byte chunks fit its threads at 2 or 4 per thread in the fewest
    power-of-two threads; blocks within the kernel's launch bound (1024
    threads at 2 chunks, 512 at 4: the register budget the kernel is
    compiled for); at most 8 rows per block (named barriers 1-8), rows
    shared only once every SM has a block; rows over 2048 chunks take the
    any-length kernel."""
    from test_aten_order import run_host_program

    cases = [(c, r) for c in (1, 2, 3, 12, 48, 64, 100, 128, 256, 257, 448, 512, 513, 640, 1024, 1536, 2048, 2049, 4096)
             for r in (1, 7, 131, 132, 300, 600, 8192, 65536)]
    out = run_host_program(tmp_path, BACKWARD_CONFIG_PROGRAM, [f"{c} {r}" for c, r in cases])
    bound = {2: 1024, 4: 512}
    for (chunks, rows), line in zip(cases, out):
        any_length, per_thread, log2, rows_per_block = (int(v) for v in line.split())
        case = (chunks, rows, line)
        if chunks > 2048:
            assert any_length, case
            continue
        assert not any_length and per_thread == (2 if chunks <= 512 else 4), case
        threads_per_row = 1 << log2
        assert threads_per_row * per_thread >= chunks, case  # the row is covered
        assert threads_per_row == 1 or (threads_per_row // 2) * per_thread < chunks, case  # and no wider
        assert 1 <= rows_per_block <= 8 and threads_per_row * rows_per_block <= bound[per_thread], case
        assert rows_per_block == 1 or rows >= 132 * rows_per_block, case
        expected = min(8, max(1, bound[per_thread] // threads_per_row), max(1, rows // 132))
        assert rows_per_block == expected, case
