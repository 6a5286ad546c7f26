"""A/B of several builds of the kernel in one process (one GPU, one run), for
kernel-version notes: each build is a copy of the repository built on its own
(its source digest gives its ops their own namespace, so all load side by
side), timed over the same rotating inputs, interleaved, best of `--reps`.

    for v in a b; do (cd /tmp/v_$v && python -m builder build --backend cuda --capabilities 9.0); done
    python benchmarks/ab_builds.py /tmp/v_a /tmp/v_b

Prints one line per shape: the copy of the same bytes, then per build the
µs per call (CUDA-graph replay) and its fraction of the copy; "NE" marks a
build whose output is not torch.equal to HF's LlamaRMSNorm on one input.
benchmarks/results/odd-rows-ab-h100-s3.log came from this script.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rmsnorm as base  # noqa: E402

DEFAULT_SHAPES = "8192x4097:bf16,8192x5121:bf16,8192x4097:fp16,8192x5121:fp16,8192x4097:fp32,8192x4096:bf16,1x4096:bf16"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+", help="repository copies holding build/<variant>")
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="ROWSxHIDDEN:DTYPE,...")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args(argv)

    import kernels

    builds = {Path(b).name: kernels.get_local_kernel(Path(b)) for b in args.builds}
    for name, kernel in builds.items():
        print(f"{name}: {kernel.__name__}", flush=True)
    settings = base.TimingSettings(graph_samples=9)
    device = torch.device("cuda")
    for spec in args.shapes.split(","):
        shape, dtype_name = spec.split(":")
        rows, hidden = base.parse_shape(shape)
        dtype = DTYPES[dtype_name]
        inputs = base.make_inputs(rows, hidden, dtype, device, 128 * 2**20)
        weight = base.make_weight(hidden, dtype, device)
        reference = base.make_hf_module(weight, 1e-6)
        best = {}
        with torch.no_grad():
            copy_us = base.time_graph_us(lambda x: torch.empty_like(x).copy_(x), inputs, settings)
            for _ in range(args.reps):
                for name, kernel in builds.items():
                    us = base.time_graph_us(lambda x, k=kernel: k.rms_norm(x, weight, 1e-6), inputs, settings)
                    best[name] = min(us, best.get(name, us))
            equal = {n: torch.equal(k.rms_norm(inputs[0], weight, 1e-6), reference(inputs[0])) for n, k in builds.items()}
        line = f"{shape} {dtype_name} copy {copy_us:7.2f}"
        for name in builds:
            line += f" | {name} {best[name]:7.2f} ({copy_us / best[name]:.3f}){'' if equal[name] else ' NE'}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
