"""RMSNorm forward benchmark: our kernel against HF eager, F.rms_norm,
torch.compile(HF) and Liger, with a device-to-device copy of the same bytes as
the bandwidth ceiling. One run, one GPU.

For each (implementation, shape, dtype) it records

  us_graph      time per call from CUDA-graph replay over rotating input
                buffers that together exceed 2x L2, so every call reads x from
                HBM as it would inside a model (median over samples);
  us_eager      time per call launched from Python without a graph: what a
                model run without CUDA graphs pays; launch-bound at decode;
  gbps          (x read + y write + weight read) / us_graph;
  frac_of_copy  gbps / copy gbps for the same shape and dtype in this run;
  max_abs_diff_vs_hf  against transformers' LlamaRMSNorm (recorded, not
                asserted; see rmsnorm-peers.md for why F.rms_norm differs).

Usage (GPU; LOCAL_KERNELS points the repo id at a local build):
  LOCAL_KERNELS=kernels-rmsnorm/rmsnorm=$PWD/build python benchmarks/bench_rmsnorm.py \\
      --out benchmarks/results/h100.json
  python benchmarks/bench_rmsnorm.py --quick --impls ours,torch_compile_hf --kernel-dir build
  python benchmarks/bench_rmsnorm.py --device cpu --quick --fake-kernel   # exercises JSON/table/plot

On the CPU there are no CUDA graphs: us_graph is null and gbps comes from
us_eager (the JSON says so in `timing_basis`).
"""

import argparse
import collections
import datetime as dt
import functools
import gc
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_ID = "kernels-rmsnorm/rmsnorm"
KERNEL_VERSION = 1
EPS = 1e-6

# (rows, hidden). Decode (1, 8 rows), prefill at Llama widths (4096, 8192,
# 5120, Qwen 3584, Qwen-0.5B 896), the q/k-norm regime (many rows of 128) and
# odd widths where 16-byte vector paths do not apply (4097, 5121).
# fmt: off
SHAPES = [
    (1, 4096), (8, 4096), (128, 4096), (2048, 4096), (8192, 4096), (32768, 4096),
    (8192, 8192), (8192, 5120), (8192, 3584), (8192, 896), (65536, 128),
    (8192, 4097), (8192, 5121),
]
# fmt: on
# fp16 and fp32 only where they say something bf16 does not: decode, a
# bandwidth-bound width, q/k-norm and an odd width.
OTHER_DTYPE_SHAPES = [(1, 4096), (8192, 4096), (65536, 128), (8192, 4097)]
QUICK_SHAPES = [(1, 4096), (8, 4096), (2048, 4096), (8192, 4096), (65536, 128), (8192, 4097)]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DECODE_MAX_ROWS = 128  # shapes up to this many rows also get a µs table

# H100 and H200 have 50 MB of L2; 120 MB of rotating inputs + outputs is
# 2.4x that. Raised automatically on a GPU that reports a larger L2.
DEFAULT_ROTATE_MB = 120
MAX_CALLS_PER_GRAPH = 8192  # 1x4096 bf16 needs 7,500 buffers for 120 MB
# Large shapes need only 2 buffers; cycling through them to at least this many
# calls per graph keeps the gap between graph launches out of the per-call time.
MIN_CALLS_PER_GRAPH = 20
CPU_ROTATE_MB = 8  # CPU runs only exercise the pipeline; keep memory small


@dataclass
class TimingSettings:
    graph_samples: int = 15
    eager_samples: int = 5
    sample_seconds: float = 2e-3  # graph: replays per sample fill about this much GPU time
    eager_sample_seconds: float = 20e-3
    min_eager_calls: int = 10
    max_eager_calls: int = 5000


QUICK_TIMING = TimingSettings(graph_samples=7, eager_samples=3, eager_sample_seconds=10e-3)
CPU_TIMING = TimingSettings(graph_samples=0, eager_samples=3, eager_sample_seconds=50e-3, min_eager_calls=3)


# ---------------------------------------------------------------------------
# Implementations. Each builder returns `call(x) -> y` for one shape/dtype.
# ---------------------------------------------------------------------------


class LlamaOrderRMSNorm(torch.nn.Module):
    """Stand-in for LlamaRMSNorm when transformers is not importable; same
    order of operations: weight * (x_f32 * rsqrt(mean(x_f32^2) + eps)).to(dtype)."""

    def __init__(self, hidden_size: int, eps: float = EPS):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


@functools.lru_cache(maxsize=None)
def hf_module_class():
    """(class, description): transformers' LlamaRMSNorm, else the stand-in."""
    try:
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        return LlamaRMSNorm, f"transformers {importlib.metadata.version('transformers')} LlamaRMSNorm"
    except Exception as exc:  # noqa: BLE001 - any import failure means "use the stand-in"
        return LlamaOrderRMSNorm, f"local Llama-order module (transformers not importable: {exc!r})"


def make_hf_module(weight: torch.Tensor, eps: float) -> torch.nn.Module:
    cls, _ = hf_module_class()
    module = cls(weight.numel(), eps=eps).to(device=weight.device, dtype=weight.dtype)
    module.weight.data.copy_(weight)
    return module.eval()


def build_ours(kernel, weight, eps):
    if kernel is None:
        raise RuntimeError("our kernel did not load (see `kernel_load_error` at the top of the JSON)")
    rms_norm = kernel.rms_norm
    return lambda x: rms_norm(x, weight, eps)


def build_hf_eager(kernel, weight, eps):
    return make_hf_module(weight, eps)


def build_torch_rms_norm(kernel, weight, eps):
    shape = (weight.numel(),)
    return lambda x: F.rms_norm(x, shape, weight, eps)


def build_torch_compile_hf(kernel, weight, eps):
    # A fresh Dynamo state per shape: with dynamic=False every shape is a
    # recompile of the same forward, and past the recompile limit Dynamo
    # silently falls back to eager, which would be timed as "compiled".
    torch._dynamo.reset()
    return torch.compile(make_hf_module(weight, eps), dynamic=False)


def build_liger(kernel, weight, eps):
    from liger_kernel.transformers.rms_norm import LigerRMSNorm

    # "llama" casting rounds x*rstd to the input dtype before the weight
    # multiply, as HF Llama does.
    module = LigerRMSNorm(weight.numel(), eps=eps, casting_mode="llama")
    module = module.to(device=weight.device, dtype=weight.dtype)
    module.weight.data.copy_(weight)
    return module.eval()


def build_copy(kernel, weight, eps):
    # The ceiling: read x and write a tensor of x's size, the same bytes as
    # rmsnorm's x read + y write (the weight is too small to matter).
    return lambda x: torch.empty_like(x).copy_(x)


IMPL_BUILDERS = {
    "copy": build_copy,
    "ours": build_ours,
    "hf_eager": build_hf_eager,
    "torch_rms_norm": build_torch_rms_norm,
    "torch_compile_hf": build_torch_compile_hf,
    "liger": build_liger,
}
COMPARED_IMPLS = [name for name in IMPL_BUILDERS if name != "copy"]


class FakeKernel:
    """Stand-in for the built kernel (plain torch, HF Llama order) so the
    whole pipeline runs where no build exists."""

    __name__ = "fake_kernel_torch_reference"
    __file__ = __file__

    @staticmethod
    def rms_norm(x, weight, eps=EPS, out=None):
        xf = x.float()
        y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
        y = y if weight is None else weight * y
        return y if out is None else out.copy_(y)


def load_our_kernel(args):
    """(kernel or None, error string or None)."""
    if args.fake_kernel:
        return FakeKernel(), None
    try:
        import kernels

        if args.kernel_dir:
            return kernels.get_local_kernel(Path(args.kernel_dir)), None
        return kernels.get_kernel(REPO_ID, version=KERNEL_VERSION), None
    except Exception as exc:  # noqa: BLE001 - the baselines still run without ours
        hint = f"set LOCAL_KERNELS={REPO_ID}=<repo>/build or pass --kernel-dir"
        return None, f"{type(exc).__name__}: {exc} ({hint})"


# ---------------------------------------------------------------------------
# Inputs and timing
# ---------------------------------------------------------------------------


def make_inputs(rows, hidden, dtype, device, rotate_bytes):
    """Rotating inputs: enough distinct x tensors that x+y of one pass through
    them exceeds `rotate_bytes`, so a buffer is out of L2 when it comes round
    again. At least two, so consecutive calls never share a buffer."""
    x_bytes = rows * hidden * torch.empty((), dtype=dtype).element_size()
    count = min(MAX_CALLS_PER_GRAPH, max(2, math.ceil(rotate_bytes / (2 * x_bytes))))
    return [torch.randn(rows, hidden, device=device, dtype=dtype) for _ in range(count)]


def make_weight(hidden, dtype, device):
    # Random rather than ones, so the weight multiply and its rounding are
    # exercised; near 1 like trained norm weights.
    return torch.empty(hidden, device=device, dtype=torch.float32).uniform_(0.5, 1.5).to(dtype)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def gc_paused():
    """A collection in the middle of a timed loop would be billed to the kernel."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _gpu_seconds(fn, repeats):
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def time_graph_us(call, inputs, settings: TimingSettings) -> float:
    """Median µs per call, from one CUDA graph that cycles through the input
    buffers (at least once, at least MIN_CALLS_PER_GRAPH calls)."""
    # Warm up on a side stream, as torch.cuda.graph's docs ask: lazy
    # initialisation (JIT, autotuning, allocator) must not happen in capture.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for x in inputs[:3]:
            call(x)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    count = len(inputs)
    calls_per_graph = count * math.ceil(MIN_CALLS_PER_GRAPH / count)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        # The last `count` outputs stay referenced, so the graph pool gives y
        # its own rotating set of buffers: writes leave L2 like the reads do.
        outputs = collections.deque(maxlen=count)
        for i in range(calls_per_graph):
            outputs.append(call(inputs[i % count]))
    try:
        graph.replay()
        torch.cuda.synchronize()
        one_replay = _gpu_seconds(graph.replay, 1)
        replays = max(1, math.ceil(settings.sample_seconds / max(one_replay, 1e-7)))
        calls_per_sample = replays * calls_per_graph
        with gc_paused():
            samples = [_gpu_seconds(graph.replay, replays) / calls_per_sample for _ in range(settings.graph_samples)]
    finally:
        del outputs, graph
    return statistics.median(samples) * 1e6


def _host_seconds_per_call(call, inputs, n_calls, device):
    count = len(inputs)
    synchronize(device)
    start = time.perf_counter()
    for i in range(n_calls):
        call(inputs[i % count])
    synchronize(device)
    return (time.perf_counter() - start) / n_calls


def time_eager_us(call, inputs, device, settings: TimingSettings) -> float:
    """Median µs per call, launched back to back from Python, one sync per
    sample: launch cost where the kernel is shorter than its launch."""
    for x in inputs[:3]:
        call(x)
    with gc_paused():
        estimate = _host_seconds_per_call(call, inputs, settings.min_eager_calls, device)
        n_calls = int(settings.eager_sample_seconds / max(estimate, 1e-7))
        n_calls = min(settings.max_eager_calls, max(settings.min_eager_calls, n_calls))
        samples = [_host_seconds_per_call(call, inputs, n_calls, device) for _ in range(settings.eager_samples)]
    return statistics.median(samples) * 1e6


def compare_with_reference(y, ref):
    """Max abs diff and the fraction of bitwise-equal elements against HF."""
    if not isinstance(y, torch.Tensor) or y.shape != ref.shape:
        shape = getattr(y, "shape", None)
        return {"max_abs_diff_vs_hf": None, "bitwise_equal_frac_vs_hf": None, "note": f"output shape {shape}"}
    diff = (y.double() - ref.double()).abs()
    result = {"max_abs_diff_vs_hf": diff.max().item() if diff.numel() else 0.0}
    if y.dtype == ref.dtype:
        result["bitwise_equal_frac_vs_hf"] = (y == ref).double().mean().item() if y.numel() else 1.0
    else:
        result["bitwise_equal_frac_vs_hf"] = None  # different rounding target: not comparable bitwise
    return result


def _error_text(stage, exc):
    first_line = (str(exc).strip().splitlines() or [""])[0]  # CUDA errors append pages of advice
    return f"{stage}: {type(exc).__name__}: {first_line}"


def cuda_is_healthy() -> bool:
    """False after a sticky CUDA error (e.g. an illegal address), after which
    every later measurement in this process would fail or lie."""
    try:
        torch.cuda.synchronize()
        torch.ones(1, device="cuda").add_(1).item()
        return True
    except Exception:  # noqa: BLE001
        return False


# ---------------------------------------------------------------------------
# One (impl, shape, dtype)
# ---------------------------------------------------------------------------


def bench_impl(name, kernel, weight, inputs, reference, device, settings, verbose) -> dict:
    row = {
        "impl": name,
        "us_graph": None,
        "us_eager": None,
        "bytes": None,
        "gbps": None,
        "frac_of_copy": None,
        "max_abs_diff_vs_hf": None,
    }
    errors = []

    def record_failure(stage, exc):
        """Keep the error; True when the CUDA context is gone for good."""
        errors.append(_error_text(stage, exc))
        if verbose:
            traceback.print_exc()
        if device.type == "cuda" and not cuda_is_healthy():
            errors.append("CUDA context is broken; run aborted after this row")
            row["fatal"] = True
        row["error"] = "; ".join(errors)
        return row.get("fatal", False)

    try:
        call = IMPL_BUILDERS[name](kernel, weight, EPS)
        with torch.no_grad():
            y = call(inputs[0])  # also the first compile / JIT
        synchronize(device)
    except Exception as exc:  # noqa: BLE001 - a failing impl must not end the run
        record_failure("build", exc)
        return row

    row["out_dtype"] = str(y.dtype).replace("torch.", "")
    # Bytes of what this implementation actually moves: its own output dtype.
    row["bytes"] = inputs[0].nbytes + y.nbytes + (0 if name == "copy" else weight.nbytes)
    if name != "copy":
        row.update(compare_with_reference(y, reference))
    del y

    stages = [("eager", lambda: time_eager_us(call, inputs, device, settings))]
    if device.type == "cuda":
        stages.insert(0, ("graph", lambda: time_graph_us(call, inputs, settings)))
    for stage, measure in stages:
        try:
            # no_grad, as in model.generate; every call of one impl runs in
            # the same grad mode, so torch.compile's guards never recompile.
            with torch.no_grad():
                row[f"us_{stage}"] = measure()
        except Exception as exc:  # noqa: BLE001
            if record_failure(stage, exc):
                break
    return row


def add_bandwidth(rows, device):
    """gbps from us_graph (us_eager on CPU) and the fraction of the copy's."""
    basis = "us_graph" if device.type == "cuda" else "us_eager"
    copy_gbps = {}
    for row in rows:
        us = row.get(basis)
        row["gbps"] = row["bytes"] / (us * 1e3) if us and row.get("bytes") else None
        if row["impl"] == "copy" and row["gbps"]:
            copy_gbps[(row["shape"], row["dtype"])] = row["gbps"]
    for row in rows:
        ceiling = copy_gbps.get((row["shape"], row["dtype"]))
        row["frac_of_copy"] = row["gbps"] / ceiling if row["gbps"] and ceiling else None
        row["copy_gbps"] = ceiling
    return basis


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def parse_shape(text):
    rows, hidden = text.lower().split("x")
    return int(rows), int(hidden)


def shape_name(shape):
    return f"{shape[0]}x{shape[1]}"


def build_plan(args):
    """[(shape, dtype name)] in run order."""
    if args.shapes:
        shapes = [parse_shape(s) for s in args.shapes.split(",")]
    else:
        shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.dtypes:
        dtypes = args.dtypes.split(",")
        unknown = [d for d in dtypes if d not in DTYPES]
        if unknown:
            raise SystemExit(f"unknown dtype(s) {unknown}; choose from {list(DTYPES)}")
        return [(s, d) for s in shapes for d in dtypes]
    plan = [(s, "bf16") for s in shapes]
    if not args.quick:
        plan += [(s, d) for d in ("fp16", "fp32") for s in shapes if s in OTHER_DTYPE_SHAPES]
    return plan


def rotate_bytes_for(device, args):
    if args.rotate_mb is not None:
        return args.rotate_mb * 1e6
    if device.type != "cuda":
        return CPU_ROTATE_MB * 1e6
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0
    return max(DEFAULT_ROTATE_MB * 1e6, 2.4 * l2)


def run_plan(plan, impls, kernel, device, settings, rotate_bytes, verbose):
    rows = []
    for shape, dtype_name in plan:
        dtype = DTYPES[dtype_name]
        torch.manual_seed(0)
        inputs = make_inputs(*shape, dtype, device, rotate_bytes)
        weight = make_weight(shape[1], dtype, device)
        with torch.no_grad():
            reference = make_hf_module(weight, EPS)(inputs[0])
        shape_info = {
            "shape": shape_name(shape),
            "n_rows": shape[0],
            "hidden": shape[1],
            "dtype": dtype_name,
            "rotating_buffers": len(inputs),
            "working_set_mb": round(2 * len(inputs) * inputs[0].nbytes / 1e6, 1),
        }
        # The copy runs first: it is the ceiling every other row is read against.
        for name in ["copy"] + [i for i in impls if i != "copy"]:
            started = time.perf_counter()
            row = bench_impl(name, kernel, weight, inputs, reference, device, settings, verbose)
            row = {**shape_info, **row, "seconds": round(time.perf_counter() - started, 2)}
            rows.append(row)
            print(_progress_line(row), file=sys.stderr, flush=True)
            if row.get("fatal"):
                return rows, f"aborted at {row['impl']} {row['shape']} {row['dtype']}: {row['error']}"
        del inputs, weight, reference
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows, None


def _progress_line(row):
    def fmt(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    text = (
        f"{row['impl']:>17} {row['shape']:>11} {row['dtype']:>4}  graph {fmt(row.get('us_graph'), '9.2f')} us"
        f"  eager {fmt(row.get('us_eager'), '9.2f')} us  diff {fmt(row.get('max_abs_diff_vs_hf'), '.2e')}"
        f"  ({row['seconds']} s)"
    )
    return text + (f"  ERROR {row['error']}" if row.get("error") else "")


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_rev():
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - no git or not a checkout (e.g. a copied tree)
        return None


def environment(device, kernel, kernel_error, args):
    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "liger": _version("liger-kernel"),
        "kernels": _version("kernels"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "git_rev": _git_rev(),
        "hostname": platform.node(),
        "local_kernels_env": os.environ.get("LOCAL_KERNELS"),
        # The kernel's own switches (RMSNORM_SUM_ORDER, RMSNORM_DISABLE_PDL, ...).
        "kernel_env": {name: value for name, value in os.environ.items() if name.startswith("RMSNORM_")},
        "kernel_module": getattr(kernel, "__name__", None),
        "kernel_path": getattr(kernel, "__file__", None),
        "kernel_load_error": kernel_error,
        "hf_reference": hf_module_class()[1],
        "eps": EPS,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["sm_count"] = props.multi_processor_count
        info["l2_cache_mb"] = round(getattr(props, "L2_cache_size", 0) / 2**20, 1) or None
        info["compute_capability"] = f"{props.major}.{props.minor}"
    return info


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

SHORT_NAMES = {
    "ours": "ours",
    "hf_eager": "hf",
    "torch_rms_norm": "F.rms",
    "torch_compile_hf": "compile",
    "liger": "liger",
}


def format_tables(rows, impls, basis):
    """Main table: frac_of_copy per impl for every shape/dtype, with ours'
    times. Second table: µs graph/eager per impl for the small shapes."""
    by_key = {}
    for row in rows:
        by_key.setdefault((row["shape"], row["dtype"]), {})[row["impl"]] = row
    impls = [i for i in impls if i != "copy"]

    def num(value, spec, width):
        return format(value, spec).rjust(width) if isinstance(value, (int, float)) else "-".rjust(width)

    lines = [f"frac_of_copy (GB/s over the copy's; times from {basis}); * = error, see JSON"]
    header = f"{'shape':>11} {'dtype':>5} {'copy GB/s':>9} {'ours us_g':>9} {'ours us_e':>9}"
    header += "".join(f" {SHORT_NAMES.get(i, i):>8}" for i in impls)
    lines.append(header)
    for (shape, dtype), impl_rows in by_key.items():
        copy = impl_rows.get("copy", {})
        ours = impl_rows.get("ours", {})
        line = f"{shape:>11} {dtype:>5} {num(copy.get('gbps'), '.0f', 9)}"
        line += f" {num(ours.get('us_graph'), '.2f', 9)} {num(ours.get('us_eager'), '.2f', 9)}"
        for impl in impls:
            r = impl_rows.get(impl, {})
            mark = "*" if r.get("error") else ""
            line += " " + (num(r.get("frac_of_copy"), ".3f", 8 - len(mark)) + mark)
        lines.append(line)

    small = [(k, v) for k, v in by_key.items() if parse_shape(k[0])[0] <= DECODE_MAX_ROWS]
    if small:
        lines += ["", "small shapes: us per call, graph / eager (launch-bound from Python)"]
        lines.append(f"{'shape':>11} {'dtype':>5}" + "".join(f" {SHORT_NAMES.get(i, i):>15}" for i in impls))
        for (shape, dtype), impl_rows in small:
            line = f"{shape:>11} {dtype:>5}"
            for impl in impls:
                r = impl_rows.get(impl, {})
                pair = f"{num(r.get('us_graph'), '.2f', 0)}/{num(r.get('us_eager'), '.1f', 0)}"
                line += f" {pair:>15}"
            lines.append(line)
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--impls",
        default=",".join(COMPARED_IMPLS),
        help=f"comma-separated subset of {COMPARED_IMPLS} (the copy ceiling always runs)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer shapes (bf16 only) and fewer samples")
    parser.add_argument("--shapes", help="comma-separated ROWSxHIDDEN, e.g. 1x4096,8192x4097 (overrides the set)")
    parser.add_argument("--dtypes", help="comma-separated bf16,fp16,fp32: every shape in every dtype")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (no graphs; pipeline check)")
    parser.add_argument("--kernel-dir", help="load ours with kernels.get_local_kernel(DIR) instead of get_kernel")
    parser.add_argument("--fake-kernel", action="store_true", help="stand in a torch reference for ours")
    parser.add_argument(
        "--rotate-mb",
        type=float,
        default=None,
        help=f"bytes of x+y to rotate through (default max({DEFAULT_ROTATE_MB}, 2.4 x L2) on cuda)",
    )
    parser.add_argument("--out", help="JSON path (default benchmarks/results/rmsnorm-<device>-<time>.json)")
    parser.add_argument("--plot", help="PNG path (default: the JSON path with .png)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failing rows")
    return parser.parse_args(argv)


def skipped_impl_notes(impls):
    """Optional baselines that cannot run here; their rows carry the import error."""
    import importlib.util

    notes = []
    if "liger" in impls and importlib.util.find_spec("liger_kernel") is None:
        notes.append("liger-kernel is not importable: the liger rows are skipped (pip install liger-kernel==0.8.5)")
    return notes


def default_out_path(device_name):
    slug = "".join(c if c.isalnum() else "-" for c in device_name.lower()).strip("-")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return REPO_ROOT / "benchmarks" / "results" / f"rmsnorm-{slug}-{stamp}.json"


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --device cpu (with --fake-kernel if there is no build)")
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    unknown = [i for i in impls if i not in IMPL_BUILDERS]
    if unknown:
        raise SystemExit(f"unknown impl(s) {unknown}; choose from {COMPARED_IMPLS}")
    # Recompiles per shape are expected; keep Dynamo from giving up on them.
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = max(64, torch._dynamo.config.recompile_limit)

    kernel, kernel_error = load_our_kernel(args) if "ours" in impls else (None, None)
    if kernel_error:
        print(f"WARNING: our kernel did not load, its rows will carry the error: {kernel_error}", file=sys.stderr)
    settings = CPU_TIMING if device.type != "cuda" else (QUICK_TIMING if args.quick else TimingSettings())
    rotate_bytes = rotate_bytes_for(device, args)
    plan = build_plan(args)

    results = environment(device, kernel, kernel_error, args)
    results["notes"] = skipped_impl_notes(impls)
    for note in results["notes"]:
        print(f"NOTE: {note}", file=sys.stderr)
    results["settings"] = {"rotate_mb": rotate_bytes / 1e6, **settings.__dict__}
    started = time.perf_counter()
    rows, aborted = run_plan(plan, impls, kernel, device, settings, rotate_bytes, args.verbose)
    results["timing_basis"] = add_bandwidth(rows, device)
    results["aborted"] = aborted
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["rows"] = rows

    out = Path(args.out) if args.out else default_out_path(results["device"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    if not args.no_plot:
        try:
            from plot import plot_results  # benchmarks/ is sys.path[0] when run as a script

            print(f"wrote {plot_results(results, args.plot or out.with_suffix('.png'))}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - the JSON is the result; the plot can be redone
            print(f"plot failed ({exc!r}); retry with: python benchmarks/plot.py {out} OUT.png", file=sys.stderr)
    if aborted:
        print(f"RUN ABORTED: {aborted}", file=sys.stderr)
    print(format_tables(rows, impls, results["timing_basis"]))
    return 1 if aborted else 0


if __name__ == "__main__":
    sys.exit(main())
