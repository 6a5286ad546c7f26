"""Where an eager decode call's microseconds go (issue 3's eager target).

At 1x4096 the kernel runs for ~2 us and a call launched from Python costs
several times that, so the eager figure is the host path: Python, the
dispatcher, the allocator, the launch. This times, in one process and with
the same loop as bench_rmsnorm's `us_eager` (no_grad, rotating inputs, one
sync per sample), a ladder of calls from the bare launch upwards, the whole
ladder `--rounds` times so that a drifting host shows as spread:

  sleep0          torch.cuda._sleep(0): pybind straight to one kernel launch
  empty_like      the caching allocator alone, no launch
  neg             a native op: generated binding, dispatcher, allocation, launch
  copy            empty_like + copy_ (the benchmark's copy ceiling)
  F.rms_norm      torch's own fused kernel
  op_autograd     our op through its Python Autograd kernel (grad mode off)
  op_below        our op below Autograd through a guard entered from Python
                  (what our API did under no_grad up to v21)
  op_no_grad      the op's grad-free twin (what our API does under no_grad)
  api             rmsnorm.rms_norm(x, w, eps): the public function
  layer           a kernelized LlamaRMSNorm module call (what a model runs)

and runs itself again with RMSNORM_DISABLE_PDL=1 (plain launches instead of
cudaLaunchKernelEx with the programmatic-serialization attribute).

  python benchmarks/bench_launch.py --out benchmarks/results/launch-h100.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rmsnorm as base  # noqa: E402


def ladder(kernel, hidden, dtype, device):
    weight = base.make_weight(hidden, dtype, device)
    ops = kernel.ops if hasattr(kernel, "ops") else None
    calls = {
        "sleep0": lambda x: torch.cuda._sleep(0),
        "empty_like": lambda x: torch.empty_like(x),
        "neg": lambda x: torch.neg(x),
        "copy": lambda x: torch.empty_like(x).copy_(x),
        "F.rms_norm": lambda x: torch.nn.functional.rms_norm(x, (hidden,), weight, 1e-6),
    }
    if ops is not None:
        op = ops.rms_norm.default
        below = torch._C._AutoDispatchBelowAutograd

        def op_below(x):
            with below():
                return op(x, weight, 1e-6, 0)

        calls["op_autograd"] = lambda x: op(x, weight, 1e-6, 0)
        calls["op_below"] = op_below
        if hasattr(ops, "rms_norm_no_grad"):
            twin = ops.rms_norm_no_grad.default
            calls["op_no_grad"] = lambda x: twin(x, weight, 1e-6, 0)
    calls["api"] = lambda x: kernel.rms_norm(x, weight, 1e-6)
    if hasattr(kernel, "layers"):
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        module = LlamaRMSNorm(hidden, eps=1e-6).to(device=device, dtype=dtype)
        module.weight.data.copy_(weight)
        # What kernelize installs: the hub layer's forward bound to the module.
        module.forward = kernel.layers.RMSNorm.forward.__get__(module)
        calls["layer"] = module
    return calls


def run_ladder(kernel, shapes, settings, device, rounds):
    rows_out = []
    for rows, hidden in shapes:
        inputs = base.make_inputs(rows, hidden, torch.bfloat16, device, 64 * 2**20)
        calls = ladder(kernel, hidden, torch.bfloat16, device)
        for round_index in range(rounds):
            for name, call in calls.items():
                with torch.no_grad():
                    us = base.time_eager_us(call, inputs, device, settings)
                rows_out.append({"impl": name, "shape": f"{rows}x{hidden}", "dtype": "bf16", "us_eager": us,
                                 "round": round_index})
                print(f"  {rows}x{hidden:<6} round {round_index} {name:<12} {us:8.2f} us/call", flush=True)
    return rows_out


def print_summary(rows):
    """Median and spread over rounds, per shape, PDL setting and call."""
    groups = {}
    for row in rows:
        groups.setdefault((row["shape"], row["pdl"], row["impl"]), []).append(row["us_eager"])
    print("[launch] over rounds: median (min-max) us/call")
    for (shape, pdl, impl), values in groups.items():
        print(f"  {shape:<8} pdl {'on ' if pdl else 'off'} {impl:<12} {statistics.median(values):7.2f} "
              f"({min(values):.2f}-{max(values):.2f})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel-dir", help="load ours with kernels.get_local_kernel(DIR)")
    parser.add_argument("--out", help="JSON path")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shapes", default="1x4096,8x4096")
    parser.add_argument("--rounds", type=int, default=3, help="times the whole ladder runs per shape")
    parser.add_argument("--samples", type=int, default=7, help="timed samples per call and round (median)")
    parser.add_argument("--sample-ms", type=float, default=50.0, help="length of one sample")
    args = parser.parse_args(argv)
    args.fake_kernel = False
    device = torch.device("cuda")
    kernel, error = base.load_our_kernel(args)
    if kernel is None:
        raise SystemExit(f"our kernel did not load: {error}")
    shapes = [base.parse_shape(s) for s in args.shapes.split(",")]
    settings = base.TimingSettings(eager_samples=args.samples, eager_sample_seconds=args.sample_ms / 1e3)
    label = "pdl off" if os.environ.get("RMSNORM_DISABLE_PDL") == "1" else "pdl on"
    print(f"[launch] {label}", flush=True)
    rows = run_ladder(kernel, shapes, settings, device, args.rounds)
    for row in rows:
        row["pdl"] = label == "pdl on"
    if args.child:
        print("JSON" + json.dumps(rows))
        return
    env = dict(os.environ, RMSNORM_DISABLE_PDL="1")
    child = subprocess.run([sys.executable, __file__, "--child", *(argv or sys.argv[1:])], env=env,
                           capture_output=True, text=True)
    print(child.stdout[: child.stdout.find("JSON")] if "JSON" in child.stdout else child.stdout, end="")
    if child.returncode != 0 or "JSON" not in child.stdout:
        print(child.stderr[-3000:], file=sys.stderr)
        raise SystemExit("the PDL-off child run failed")
    rows += json.loads(child.stdout[child.stdout.index("JSON") + 4:])
    print_summary(rows)
    result = base.environment(device, kernel, None, args)
    result["rows"] = rows
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"[launch] wrote {args.out}")


if __name__ == "__main__":
    main()
