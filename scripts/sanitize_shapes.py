"""Runs the CUDA op over shapes that exercise every code path (aligned and
misaligned rows, odd and prime hidden sizes, strided views, the wide kernel,
fp32 weights, weightless) so that compute-sanitizer can check them:

    compute-sanitizer --tool memcheck python scripts/sanitize_shapes.py
    compute-sanitizer --tool racecheck python scripts/sanitize_shapes.py --quick

Also checks every output against HF's LlamaRMSNorm, so a silent wrong result
fails too. Exit status 1 on any mismatch.
"""

import argparse
import os
import sys
import tomllib
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SHAPES = [
    (1, 1), (3, 7), (1, 8), (5, 127), (2, 128), (7, 769), (1, 896), (33, 1000), (4, 4096),
    (3, 4097), (9, 5120), (2, 5121), (4, 8192), (2, 16384), (2, 32768), (2, 32769), (1, 70001),
    (64, 128), (257, 64), (1, 131072),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a third of the shapes (racecheck is slow)")
    args = parser.parse_args()
    general = tomllib.loads((REPO_ROOT / "build.toml").read_text())["general"]
    os.environ.setdefault("LOCAL_KERNELS", f"{general['hub']['repo-id']}={REPO_ROOT}")
    from kernels import get_kernel
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    kernel = get_kernel(general["hub"]["repo-id"], version=general["version"])
    shapes = SHAPES[::3] if args.quick else SHAPES
    failures = cases = 0
    torch.manual_seed(0)
    for rows, hidden in shapes:
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            for weight_dtype in {dtype, torch.float32}:
                module = LlamaRMSNorm(hidden, eps=1e-6).to(device="cuda", dtype=weight_dtype)
                with torch.no_grad():
                    module.weight.uniform_(0.5, 1.5)
                base = torch.randn(rows * hidden + 1, device="cuda").to(dtype)
                views = {"aligned": base[: rows * hidden].view(rows, hidden),
                         "misaligned": base[1:].view(rows, hidden)}
                if hidden % 2 == 0 and hidden >= 4:
                    wide = torch.randn(rows, 2 * hidden, device="cuda").to(dtype)
                    views["strided rows"] = wide[:, hidden:]
                for name, x in views.items():
                    with torch.no_grad():
                        got = kernel.rms_norm(x, module.weight, 1e-6)
                        expected = module(x)
                        weightless = kernel.rms_norm(x, None, 1e-6)
                    torch.cuda.synchronize()
                    cases += 1
                    rtol = {torch.bfloat16: 2**-6, torch.float16: 2**-9, torch.float32: 2**-20}[dtype]
                    ok = torch.allclose(got, expected, rtol=rtol, atol=1e-30) and torch.isfinite(weightless).all()
                    if not ok:
                        failures += 1
                        print(f"MISMATCH {rows}x{hidden} {dtype} weight {weight_dtype} {name}")
    print(f"{cases} cases, {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
