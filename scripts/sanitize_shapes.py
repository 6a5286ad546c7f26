"""Runs the op over shapes that exercise every code path (aligned and
misaligned rows, odd and prime hidden sizes, strided and 4-D head views, the
wide kernel up to 262144, fp32 weights, weightless, out=) so that
compute-sanitizer can check them:

    compute-sanitizer --tool memcheck python scripts/sanitize_shapes.py
    compute-sanitizer --tool racecheck python scripts/sanitize_shapes.py --quick

scripts/run_sanitizers.sh runs all four tools. Every output is also checked
against HF's LlamaRMSNorm, so a silent wrong result fails too (exit status 1).
``--device cpu`` runs the same cases on the CPU: a dry run of this script (no
sanitizer), tested in tests/test_reliability.py.
"""

import argparse
import os
import sys
import tomllib
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
# (rows, hidden): tiny and odd, vector-width edges, primes, common model
# widths, past the register path, the wide kernel, and many short rows.
SHAPES = [
    (1, 1), (3, 7), (1, 8), (2, 3), (5, 127), (2, 128), (17, 255), (7, 769), (1, 896), (5, 1023),
    (33, 1000), (3, 2047), (4, 4096), (3, 4097), (9, 5120), (2, 5121), (4, 8192), (3, 8191),
    (2, 12288), (1, 13824), (2, 16384), (2, 32768), (2, 32769), (3, 40000), (2, 65536),
    (1, 65537), (1, 70001), (2, 100003), (1, 131072), (1, 262144),
    (64, 128), (257, 64), (1000, 33), (2048, 96),
    # enough rows that a backward block holds several rows, each at its own barrier
    (300, 4096), (1000, 1024), (600, 2048),
    # the forward's register kernel: odd rows (the weight read as shifted
    # aligned groups) and several short rows per thread (one butterfly); the
    # short-row kernel (the aligned and strided-rows views of the last three;
    # 136: the second group the first thread's alone; the 4-D head views of
    # 300 x 128 / 136, 600 rows of two row dimensions)
    (600, 1025), (600, 128), (300, 256), (1000, 136), (300, 128), (300, 136),
    # the row-block kernel (9, 33 and 300 rows above take it too): 64 and
    # 32 lanes, 400 rows of uneven groups per lane, fp32 rows past registers;
    # odd rows (chunks shared with the rows beside; 333 x 4097 ends off a
    # chunk; 7 x 5121: 128 lanes; 3073 and 2049: the last slot of five
    # chunks partly filled; 2500 x 4097: more rows than resident blocks)
    (8, 4096), (128, 4096), (400, 1000), (1000, 4096), (600, 4097), (700, 5121), (333, 4097), (7, 5121),
    (600, 3073), (600, 2049), (2500, 4097),
    # the folded kernel: ATen's split layout, 16 warps a row (300 x 8184:
    # two ATen threads a thread for 16-bit rows, the last two with a group
    # fewer), and decode batches ((1, 896) and (4, 4096) above too): four,
    # two and one of ATen's lanes a thread, on 128 and 256 threads, lanes
    # with a group fewer than others (3 x 5000, 6 x 1000); split rows read
    # twice take 48 rows per SM and more, or RMSNORM_FOLDED_RELOAD=1
    (300, 8184),
    (1, 2048), (1, 4096), (1, 8192), (2, 2048), (2, 4096), (3, 5000), (6, 1000),
]
RTOL = {torch.bfloat16: 2**-6, torch.float16: 2**-9, torch.float32: 2**-20}


def views(rows, hidden, dtype, device):
    """The layouts of one shape: contiguous, storage offset of one element
    (misaligned for every vector width), rows with a gap, a 4-D head view."""
    base = torch.randn(rows * hidden + 1, device=device).to(dtype)
    out = {"aligned": base[: rows * hidden].view(rows, hidden), "misaligned": base[1:].view(rows, hidden)}
    if hidden % 2 == 0 and hidden >= 4:
        out["strided rows"] = torch.randn(rows, 2 * hidden, device=device).to(dtype)[:, hidden:]
    if hidden <= 256 and rows * hidden <= 1 << 16:
        out["4-D head view"] = torch.randn(rows, 3, hidden, device=device).to(dtype)[:, 1:].unsqueeze(0)
    return out


def close(got, expected, dtype):
    return torch.allclose(got, expected, rtol=RTOL[dtype], atol=1e-30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a third of the shapes (racecheck is slow)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: a dry run of the same cases, no GPU needed")
    parser.add_argument("--list", action="store_true", help="print the shapes and exit")
    args = parser.parse_args()
    shapes = SHAPES[::3] if args.quick else SHAPES
    if args.list:
        print(f"{len(shapes)} shapes: {shapes}")
        return 0
    general = tomllib.loads((REPO_ROOT / "build.toml").read_text())["general"]
    os.environ.setdefault("LOCAL_KERNELS", f"{general['hub']['repo-id']}={REPO_ROOT}")
    from kernels import get_kernel
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device (use --device cpu for a dry run)")
        return 2
    kernel = get_kernel(general["hub"]["repo-id"], version=general["version"])
    failures = cases = 0
    torch.manual_seed(0)
    for rows, hidden in shapes:
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            for weight_dtype in dict.fromkeys((dtype, torch.float32)):
                module = LlamaRMSNorm(hidden, eps=1e-6).to(device=device, dtype=weight_dtype)
                with torch.no_grad():
                    module.weight.uniform_(0.5, 1.5)
                for name, x in views(rows, hidden, dtype, device).items():
                    with torch.no_grad():
                        expected = module(x)
                        got = kernel.rms_norm(x, module.weight, 1e-6)
                        out = torch.full(expected.shape, float("nan"), dtype=expected.dtype, device=device)
                        kernel.rms_norm(x, module.weight, 1e-6, out=out)
                        weightless = kernel.rms_norm(x, None, 1e-6)
                        xf = x.float()
                        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
                        weightless_ref = normed.to(dtype)
                        # Olmo/Gemma order (the fp32-scale kernels) and the fused add.
                        gemma = kernel.gemma_rms_norm(x, module.weight, 1e-6)
                        gemma_ref = (normed * (1 + module.weight.float())).to(dtype)
                        residual = torch.randn_like(x)
                        fused_out, residual_out = kernel.fused_add_rms_norm(x, residual, module.weight, 1e-6)
                        fused_ok = torch.equal(residual_out, residual + x) and close(
                            fused_out, module(residual + x).to(dtype), dtype)
                    grads_ok = True
                    if weight_dtype == dtype and dtype == torch.bfloat16:  # the backward kernels
                        x_ours = x.detach().clone().requires_grad_()
                        x_ref = x.detach().clone().requires_grad_()
                        grad = torch.randn_like(expected)
                        kernel.rms_norm(x_ours, module.weight, 1e-6).backward(grad)
                        module(x_ref).backward(grad)
                        # dx is a difference of two terms: an absolute bound scaled to the gradient
                        scale = float(x_ref.grad.float().abs().max()) + float(grad.float().abs().max())
                        grads_ok = torch.allclose(x_ours.grad.float(), x_ref.grad.float(), rtol=2e-2, atol=2e-2 * scale)
                        module.weight.grad = None
                    if device == "cuda":
                        torch.cuda.synchronize()
                    cases += 1
                    ok = (got.shape == expected.shape and got.dtype == expected.dtype and close(got, expected, dtype)
                          and close(out, expected, dtype) and close(weightless, weightless_ref, dtype)
                          and close(gemma, gemma_ref, dtype) and fused_ok and grads_ok)
                    if not ok:
                        failures += 1
                        print(f"MISMATCH {rows}x{hidden} {dtype} weight {weight_dtype} {name}")
    print(f"{len(shapes)} shapes, {cases} cases on {device}, {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
