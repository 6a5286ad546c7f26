"""GPU check (results/aten-order-h100-s3.log: 378 cases, 0 mismatching rows): torch.mean(x.pow(2), -1) on CUDA vs scripts/aten_reduce_order.py, bit for bit.

    python scripts/check_aten_order.py            # all shapes (~30-60 s on an H100)
    python scripts/check_aten_order.py --quick    # a few shapes

Prints torch's version and the device properties the emulator is given, then
per case: config summary, mismatching rows of the sums' order (emulator fed the
GPU's own pow(2) output), mismatching rows of the full chain (emulator's x*x
too), and how many rows a naive numpy sum would get wrong (to show the case
discriminates). Exits 1 on any mismatch.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aten_reduce_order as aro  # noqa: E402

HS = [1, 3, 64, 127, 128, 129, 256, 576, 896, 1024, 2048, 2049, 3584, 4096, 4097, 5120, 5121,
      8192, 12288, 16384, 32768, 65536]
SMALL_RS = [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 64, 128]


def cases(quick):
    """(label, shape, dtype of x before the fp32 cast, element offset of the reduced tensor, scale)."""
    out = []
    if quick:
        for R, H in [(1, 4096), (8, 2048), (16, 4096), (3, 4097), (7, 127), (64, 128), (1, 131072)]:
            out.append(("f32", (R, H), torch.float32, 0, False))
        out.append(("bf16", (8, 4096), torch.bfloat16, 0, False))
        return out
    for R in SMALL_RS:
        for H in HS:
            out.append(("f32", (R, H), torch.float32, 0, False))
    for H in [1, 3, 64, 127, 128, 129, 576, 896, 2048, 2049, 4096, 4097, 5121]:
        out.append(("f32", (1024, H), torch.float32, 0, False))
    for H in [128, 2049, 4096, 4097]:
        out.append(("f32", (8192, H), torch.float32, 0, False))
    # bf16 inputs cast to fp32 (HF: hidden_states.to(torch.float32))
    for R in [1, 2, 7, 8, 16, 17, 64]:
        for H in [128, 896, 2048, 3584, 4096, 5120, 8192]:
            out.append(("bf16", (R, H), torch.bfloat16, 0, False))
    out.append(("bf16", (1024, 4096), torch.bfloat16, 0, False))
    # global reduce (split across blocks): H >= 2**17
    for R, H in [(1, 131072), (1, 131077), (3, 262147), (2, 1048576), (5, 300001)]:
        out.append(("f32", (R, H), torch.float32, 0, False))
    # (B, S, H) contiguous -> coalesced to (B*S, H)
    for shape in [(2, 4, 4096), (4, 7, 4097), (1, 9, 896), (3, 5, 64)]:
        out.append(("f32-3d", shape, torch.float32, 0, False))
    # reduced tensor misaligned by 1..3 elements (not HF's case: pow(2)'s output is fresh)
    for R, H in [(3, 4097), (8, 2048), (5, 130), (2, 131072)]:
        for off in (1, 2, 3):
            out.append((f"f32-off{off}", (R, H), torch.float32, off, False))
    # wide dynamic range: order matters more
    for R, H in [(8, 4096), (17, 5121), (4, 65536), (33, 127)]:
        out.append(("f32-wide", (R, H), torch.float32, 0, True))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda", help="cpu: smoke-test this script only (CPU mean is another order)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    print(f"torch {torch.__version__} (git {torch.version.git_version}), CUDA {torch.version.cuda}")
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        sm = p.multi_processor_count
        mtps = getattr(p, "max_threads_per_multi_processor", None) or 2048
        warp = getattr(p, "warp_size", None) or 32
        print(f"device {p.name}: multiProcessorCount={sm} maxThreadsPerMultiProcessor={mtps} warpSize={warp}"
              f" (max_threads_per_multi_processor attr "
              f"{'present' if hasattr(p, 'max_threads_per_multi_processor') else 'MISSING, assumed 2048'})")
    else:
        sm, mtps, warp = 132, 2048, 32
        print("CPU smoke test: mismatches expected")
    devkw = dict(sm_count=sm, max_threads_per_sm=mtps, warp=warp)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    t0 = time.perf_counter()
    total_bad = 0
    n_cases = 0
    for label, shape, dtype, off, wide in cases(a.quick):
        H = shape[-1]
        R = int(np.prod(shape[:-1]))
        x = torch.randn(shape, device=dev, dtype=torch.float32, generator=g)
        if wide:
            x = x * torch.exp(2 * torch.randn(shape, device=dev, dtype=torch.float32, generator=g))
        x = x.to(dtype)
        h = x.to(torch.float32)  # HF
        if off == 0:
            sq = h.pow(2)
        else:  # a view whose data pointer is `off` elements past a 16-byte boundary
            buf = torch.empty(R * H + 4, device=dev, dtype=torch.float32)
            assert buf.data_ptr() % 16 == 0
            sq = buf[off:off + R * H].view(shape)
            torch.pow(h, 2, out=sq)
        var = sq.mean(-1, keepdim=True)  # HF's variance
        if dev.type == "cuda":
            torch.cuda.synchronize()
        sq_np = sq.reshape(R, H).cpu().numpy()
        got = var.reshape(R).cpu().numpy()
        emu = aro.aten_mean_of_squares(sq_np, base_elem_offset=off, **devkw)
        bad = int(np.count_nonzero(got.view(np.uint32) != emu.view(np.uint32)))
        bad_chain = 0
        if off == 0:
            chain = aro.aten_mean(h.reshape(R, H).cpu().numpy(), **devkw)
            bad_chain = int(np.count_nonzero(got.view(np.uint32) != chain.view(np.uint32)))
        naive = (sq_np.sum(axis=1, dtype=np.float32) * aro.aten_factor(R, H)).astype(np.float32)
        naive_diff = int(np.count_nonzero(got.view(np.uint32) != naive.view(np.uint32)))
        total_bad += bad + bad_chain
        diag = ""
        if bad:  # diagnosis: does the older (torch 2.6) order match instead? first bad row
            old = aro.aten_mean_of_squares(sq_np, base_elem_offset=off, variant="2.6", **devkw)
            bad_old = int(np.count_nonzero(got.view(np.uint32) != old.view(np.uint32)))
            r = int(np.nonzero(got.view(np.uint32) != emu.view(np.uint32))[0][0])
            diag = f"    row {r}: cuda {got[r]!r} emulator {emu[r]!r}; torch-2.6-order emulator mismatches {bad_old}"
        n_cases += 1
        cfg = aro.aten_config(R, H, **devkw)
        flag = "OK " if bad + bad_chain == 0 else "BAD"
        print(f"{flag} {label:9s} {str(tuple(shape)):18s} mismatch rows {bad}/{R} chain {bad_chain}"
              f" (naive sum differs in {naive_diff}) | {aro.describe(cfg)}", flush=True)
        if diag:
            print(diag, flush=True)
    print(f"{n_cases} cases, {total_bad} mismatching rows, {time.perf_counter() - t0:.1f} s")
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
