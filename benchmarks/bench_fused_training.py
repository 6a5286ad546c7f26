"""Fused add + RMSNorm (issue 7) and forward+backward (issue 4) beside the
peers, in one run on one GPU, with a device-to-device copy as the ceiling.

fused rows      ours (out-of-place and in-place), the unfused pair (torch add,
                then our rms_norm) and Liger's LigerFusedAddRMSNorm. Bytes: x
                and residual read, residual_out and out written (4 passes).
training rows   forward + backward (``torch.autograd.grad`` of x and weight)
                of ours, Liger's RMSNorm and torch.compile of HF's module, and
                the backward alone. Bytes of the backward: x and dy read, dx
                written (3 passes; the weight and dweight are negligible);
                forward+backward: 5 passes.

Times are CUDA-graph replays per call over rotating inputs larger than L2
(bench_rmsnorm.time_graph_us); frac_of_copy = GB/s over those bytes divided by
the copy's GB/s (read x, write a copy) measured for the same shape in this run.

  python benchmarks/bench_fused_training.py --out benchmarks/results/fused-training-h100.json
"""

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rmsnorm as base  # noqa: E402

FUSED_SHAPES = [(8192, 4096), (32768, 4096), (8192, 8192), (8192, 5120), (8192, 3584)]
TRAINING_SHAPES = [(8192, 4096), (32768, 4096)]
EPS = 1e-6


def rotating(count_bytes, make, bytes_per_item, limit=64):
    count = int(max(2, min(limit, math.ceil(count_bytes / bytes_per_item))))
    return [make() for _ in range(count)]


def copy_gbps(rows, hidden, dtype, settings, rotate_bytes):
    inputs = base.make_inputs(rows, hidden, dtype, torch.device("cuda"), rotate_bytes)
    us = base.time_graph_us(lambda x: torch.empty_like(x).copy_(x), inputs, settings)
    return 2 * inputs[0].numel() * inputs[0].element_size() / us / 1e3


def fused_impls(kernel, weight):
    from liger_kernel.transformers.fused_add_rms_norm import LigerFusedAddRMSNorm

    liger = LigerFusedAddRMSNorm(weight.numel(), eps=EPS, casting_mode="llama").to(weight.device, weight.dtype)
    liger.weight.data.copy_(weight)
    return {
        "ours": lambda xr: kernel.fused_add_rms_norm(xr[0], xr[1], weight, EPS),
        "ours_inplace": lambda xr: kernel.fused_add_rms_norm(xr[0], xr[1], weight, EPS, inplace=True),
        "unfused_ours": lambda xr: kernel.rms_norm(xr[0] + xr[1], weight, EPS),
        "liger": lambda xr: liger(xr[0], xr[1]),
    }


def training_impls(kernel, weight):
    """name -> (forward(x), the weight Parameter that forward uses)."""
    from liger_kernel.transformers.rms_norm import LigerRMSNorm

    liger = LigerRMSNorm(weight.numel(), eps=EPS, casting_mode="llama").to(weight.device, weight.dtype)
    liger.weight.data.copy_(weight)
    torch._dynamo.reset()
    hf = base.make_hf_module(weight, EPS)
    hf_for_compile = base.make_hf_module(weight, EPS)
    compiled = torch.compile(hf_for_compile, dynamic=False)
    ours_weight = torch.nn.Parameter(weight.detach().clone())
    return {
        "ours": (lambda x: kernel.rms_norm(x, ours_weight, EPS), ours_weight),
        "liger": (liger, liger.weight),
        "torch_compile_hf": (compiled, hf_for_compile.weight),
        "hf_eager": (hf, hf.weight),
    }


def run(args):
    device = torch.device("cuda")
    settings = base.QUICK_TIMING if args.quick else base.TimingSettings()
    rotate_bytes = base.rotate_bytes_for(device, argparse.Namespace(rotate_mb=None))
    kernel, error = base.load_our_kernel(argparse.Namespace(fake_kernel=False, kernel_dir=args.kernel_dir))
    if kernel is None:
        raise SystemExit(error)
    rows_out = []
    dtype = torch.bfloat16
    for rows, hidden in FUSED_SHAPES:
        ceiling = copy_gbps(rows, hidden, dtype, settings, rotate_bytes)
        weight = base.make_weight(hidden, dtype, device)
        item_bytes = rows * hidden * 2 * 4
        inputs = rotating(rotate_bytes, lambda: (torch.randn(rows, hidden, device=device, dtype=dtype),
                                                 torch.randn(rows, hidden, device=device, dtype=dtype)),
                          item_bytes // 2)
        for name, call in fused_impls(kernel, weight).items():
            try:
                us = base.time_graph_us(call, inputs, settings)
                gbps = item_bytes / us / 1e3
                row = dict(kind="fused_add", impl=name, shape=f"{rows}x{hidden}", dtype="bf16", us_graph=us,
                           gbps=gbps, copy_gbps=ceiling, frac_of_copy=gbps / ceiling)
            except Exception as exc:  # noqa: BLE001 - a failing peer is recorded, not fatal
                row = dict(kind="fused_add", impl=name, shape=f"{rows}x{hidden}", dtype="bf16", error=repr(exc))
            print(json.dumps(row), flush=True)
            rows_out.append(row)
    for rows, hidden in TRAINING_SHAPES:
        ceiling = copy_gbps(rows, hidden, dtype, settings, rotate_bytes)
        weight = base.make_weight(hidden, dtype, device)
        n_bytes = rows * hidden * 2
        inputs = rotating(rotate_bytes, lambda: (torch.randn(rows, hidden, device=device, dtype=dtype).requires_grad_(),
                                                 torch.randn(rows, hidden, device=device, dtype=dtype)),
                          3 * n_bytes)
        for name, (fn, param) in training_impls(kernel, weight).items():
            def fwd_bwd(item, fn=fn, param=param):
                x, dy = item
                return torch.autograd.grad(fn(x), (x, param), dy)

            row = dict(kind="training", impl=name, shape=f"{rows}x{hidden}", dtype="bf16", copy_gbps=ceiling)
            try:
                us_fb = base.time_graph_us(fwd_bwd, inputs, settings)
                us_f = base.time_graph_us(lambda item, fn=fn: fn(item[0]), inputs, settings)
                # The backward alone: the difference (forward timed with grad
                # enabled, as in training); for ours also the backward op itself.
                us_b = us_fb - us_f
                row.update(us_fwd_bwd=us_fb, us_fwd=us_f, us_bwd=us_b,
                           frac_of_copy_fwd_bwd=5 * n_bytes / us_fb / 1e3 / ceiling,
                           frac_of_copy_bwd=3 * n_bytes / us_b / 1e3 / ceiling)
                if name == "ours":
                    op = kernel.ops.rms_norm_backward.default
                    w = param.detach()
                    us_op = base.time_graph_us(lambda item: op(item[1], item[0].detach(), w, EPS, 0), inputs, settings)
                    row.update(us_bwd_op=us_op, frac_of_copy_bwd_op=3 * n_bytes / us_op / 1e3 / ceiling)
            except Exception as exc:  # noqa: BLE001
                row["error"] = repr(exc)
            print(json.dumps(row), flush=True)
            rows_out.append(row)
    result = {"environment": base.environment(device, kernel, None, args), "rows": rows_out}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(rows_out))


def format_table(rows):
    lines = ["kind       impl              shape        us        frac_of_copy"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['kind']:<10} {r['impl']:<17} {r['shape']:<12} error: {r['error'][:60]}")
        elif r["kind"] == "fused_add":
            lines.append(f"{r['kind']:<10} {r['impl']:<17} {r['shape']:<12} {r['us_graph']:8.1f}  {r['frac_of_copy']:.3f}")
        else:
            lines.append(f"{'fwd+bwd':<10} {r['impl']:<17} {r['shape']:<12} {r['us_fwd_bwd']:8.1f}  "
                         f"{r['frac_of_copy_fwd_bwd']:.3f}")
            lines.append(f"{'bwd':<10} {r['impl']:<17} {r['shape']:<12} {r['us_bwd']:8.1f}  {r['frac_of_copy_bwd']:.3f}")
            if "us_bwd_op" in r:
                lines.append(f"{'bwd op':<10} {r['impl']:<17} {r['shape']:<12} {r['us_bwd_op']:8.1f}  "
                             f"{r['frac_of_copy_bwd_op']:.3f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/fused-training.json")
    parser.add_argument("--kernel-dir", help="load ours with kernels.get_local_kernel(DIR)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    run(args)


if __name__ == "__main__":
    main()
