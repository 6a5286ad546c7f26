"""scripts/aten_reduce_order.py: the order in which ATen's CUDA `mean` sums a
row (what HF's LlamaRMSNorm variance is), the spec for matching HF bit for bit
on CUDA at every batch shape (NOTES.md v7).

CPU (CI): the vectorized emulator equals a literal thread-by-thread port of
the device code bit for bit, and the fp64 sum within fp32 rounding.
CUDA: the emulator equals torch's own CUDA mean bit for bit (the full run over
378 cases is scripts/check_aten_order.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import aten_reduce_order as aro  # noqa: E402

# Scalar path (H < 128), every misalignment shift, a warp split (H 8192), a
# block split (global reduce, H >= 2**17), decode and prefill row counts.
SHAPES = [(1, 3), (2, 64), (5, 127), (1, 128), (3, 129), (4, 130), (8, 576), (1, 4096), (8, 2048),
          (16, 4096), (3, 4097), (17, 8192), (2, 5121), (1, 131077)]


@pytest.mark.parametrize("rows,hidden", SHAPES)
def test_emulator_matches_literal_port_and_fp64(rows, hidden):
    rng = np.random.default_rng(rows * 100003 + hidden)
    squares = rng.standard_normal((rows, hidden)).astype(np.float32) ** 2
    config = aro.aten_config(rows, hidden)
    for offset in (0, 1, 3):
        sums = aro.aten_row_sums(squares, offset)
        for r in range(min(rows, 3)):
            shift = (offset + r * hidden) % 4 if config["vectorize_input"] else 0
            literal = aro._literal_row_sum(squares[r], config, shift)
            assert literal.tobytes() == sums[r].tobytes(), (rows, hidden, offset, r)
        exact = squares.astype(np.float64).sum(axis=1)
        assert np.max(np.abs(sums - exact) / exact) < 1e-6


def test_batch_shape_changes_the_order():
    """Why vanilla HF is not batch-invariant: one row is summed by 512 lanes
    alone, by 64 among 8 rows, by 32 among 16 or more."""
    lanes = {rows: aro.aten_config(rows, 4096)["threads_per_row"] for rows in (1, 8, 16, 8192)}
    assert lanes == {1: 512, 8: 64, 16: 32, 8192: 32}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rows,hidden", SHAPES + [(8192, 4096), (64, 8192), (33, 127)])
def test_emulator_matches_cuda_mean(rows, hidden):
    generator = torch.Generator().manual_seed(rows * 7 + hidden)
    x = torch.randn(rows, hidden, generator=generator).to(torch.bfloat16).float()
    on_gpu = x.cuda().pow(2).mean(-1).cpu().numpy()
    emulated = aro.aten_mean(x.numpy())
    assert on_gpu.tobytes() == emulated.tobytes()


def run_host_program(tmp_path, program, input_lines):
    """Compiles a C++ program against the kernel's host-side headers
    (rmsnorm_cuda/launch_config.h), feeds it one line per case and returns
    its output lines; skips where this machine has no C++ compiler."""
    import shutil
    import subprocess

    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    repo = Path(__file__).resolve().parent.parent
    source = tmp_path / "program.cpp"
    source.write_text(program)
    binary = tmp_path / "program"
    subprocess.run([compiler, "-std=c++17", f"-I{repo / 'rmsnorm_cuda'}", str(source), "-o", str(binary)], check=True)
    return subprocess.run([str(binary)], input="".join(line + "\n" for line in input_lines), capture_output=True,
                          text=True, check=True).stdout.split("\n")


LAYOUT_PROGRAM = r"""
#include <cstdio>
#include "launch_config.h"
int main() {
  long long rows, hidden;
  while (std::scanf("%lld %lld", &rows, &hidden) == 2) {
    const auto l = rmsnorm::pick_aten_sum_layout(rows, hidden, 132, 2048);
    std::printf("%d %d %d %d %d\n", int(l.vectorized), l.lanes, l.warps, l.rows_per_block, int(l.supported));
  }
}
"""


def test_kernel_layout_matches_the_spec(tmp_path):
    """The kernel's host-side port (launch_config.h pick_aten_sum_layout, used
    by default) against the spec the H100 confirmed."""
    shapes = [(r, h) for r in (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 1000, 8192, 70000)
              for h in (2, 3, 17, 64, 127, 128, 129, 576, 896, 2048, 4096, 4097, 5121, 8192, 12288, 16384,
                        32768, 65536, 131072, 131077, 262147)]
    shapes = [(r, h) for r, h in shapes if r * h * 4 < 2**31]
    out = run_host_program(tmp_path, LAYOUT_PROGRAM, [f"{r} {h}" for r, h in shapes])
    for (rows, hidden), line in zip(shapes, out):
        spec = aro.aten_config(rows, hidden)
        expected = (int(spec["vectorize_input"]), spec["block_width"], spec["warps_per_row"],
                    1 if spec["split_across_warps"] else spec["block_height"], int(not spec["global_reduce"]))
        assert tuple(int(v) for v in line.split()) == expected, (rows, hidden, line, expected)


SPAN_PROGRAM = r"""
#include <cstdio>
#include "launch_config.h"
int main() {
  long long rows, hidden;
  int bytes, aligned;
  while (std::scanf("%lld %lld %d %d", &rows, &hidden, &bytes, &aligned) == 4) {
    const auto sum = rmsnorm::pick_aten_sum_layout(rows, hidden, 132, 2048);
    const auto c = rmsnorm::pick_aten_span_config(rows, hidden, bytes, aligned != 0, sum, 132);
    std::printf("%d %d %d %lld %d\n", int(c.supported), c.rows_per_block, c.threads, c.span_bytes,
                sum.threads_per_row());
  }
}
"""


def test_span_config_covers_every_row(tmp_path):
    """pick_aten_span_config (the ATen-order kernel's block shape): the block
    holds whole rows of ATen's threads, whole warps, at most 512 threads and
    512 rows (its inverse-RMS slots), and its shared span covers its rows
    even when they start off a 16-byte boundary; it declines only tiny rows
    and rows past 64 KB."""
    cases = [(r, h, b, a) for r in (1, 2, 7, 8, 16, 83, 128, 264, 2048, 8192, 65536)
             for h in (15, 16, 64, 127, 128, 769, 896, 4096, 4097, 5121, 8192, 16384, 32768, 65536)
             for b in (2, 4) for a in (0, 1) if not (a and (h * b) % 16)]
    out = run_host_program(tmp_path, SPAN_PROGRAM, [f"{r} {h} {b} {a}" for r, h, b, a in cases])
    declined = []
    for (rows, hidden, element_bytes, aligned), line in zip(cases, out):
        supported, rows_per_block, threads, span_bytes, threads_per_row = (int(v) for v in line.split())
        if not supported:
            declined.append((hidden, hidden * element_bytes + (0 if aligned else 16)))
            continue
        case = (rows, hidden, element_bytes, aligned, line)
        assert 1 <= rows_per_block <= min(rows, 512) and threads_per_row <= threads <= 512, case
        assert threads % 32 == 0 and threads % threads_per_row == 0, case
        needed = rows_per_block * hidden * element_bytes + (0 if aligned else 15)
        assert needed <= span_bytes <= 64 * 1024 and span_bytes % 16 == 0, case
    assert all(hidden < 16 or window_bytes > 64 * 1024 for hidden, window_bytes in declined), declined
    assert any(window_bytes > 64 * 1024 for _, window_bytes in declined), "rows past 64 KB take the general kernel"


def shape_program(body):
    """A host program that reads "rows hidden element_bytes" lines and runs
    `body` with ATen's sum layout `sum` of each (132 SMs, as the H100/H200)."""
    return r"""
#include <cstdio>
#include "launch_config.h"
int main() {
  long long rows, hidden;
  int bytes;
  while (std::scanf("%lld %lld %d", &rows, &hidden, &bytes) == 3) {
    const auto sum = rmsnorm::pick_aten_sum_layout(rows, hidden, 132, 2048);
""" + body + "\n  }\n}\n"


REGISTER_PROGRAM = shape_program(r"""
    const auto c = rmsnorm::pick_aten_register_config(rows, hidden, bytes, sum, 132);
    std::printf("%d %d %d %d %d %d %d %d\n", int(c.supported), c.groups_per_thread, c.rows_per_thread, c.slots,
                c.threads, sum.threads_per_row(), int(sum.supported), int(c.prefetch_l2));""")


def test_register_config_holds_each_thread_groups(tmp_path):
    """pick_aten_register_config (the register kernel's shape): each thread
    holds all of its ATen thread's float4 groups, in an instantiated count of
    at most 384 bytes; several rows per thread (4 or 8 groups in all) only
    for short rows of ATen's 32 or 512 threads; blocks of whole rows of ATen
    threads, at most 512 (with rows enough, 64 threads, or 128 where each
    thread holds several rows); the L2 prefetch for rows wider than a warp; and it
    takes every row it can hold (bf16 hidden 128-6144 at >= 16 rows, odd
    sizes such as 4097 among them; decode), declining rows under 128 (ATen's
    unvectorized sum) and few rows of many groups (the span kernel's)."""
    cases = [(r, h, b) for r in (1, 2, 7, 8, 16, 83, 128, 264, 2048, 8192, 65536)
             for h in (127, 128, 130, 256, 768, 896, 2048, 3584, 4096, 4097, 5120, 6144, 8192, 16384, 32768, 65536)
             for b in (2, 4)]
    out = run_host_program(tmp_path, REGISTER_PROGRAM, [f"{r} {h} {b}" for r, h, b in cases])
    instantiated = (1, 2, 4, 8, 16, 24, 32, 48)
    for (rows, hidden, element_bytes), line in zip(cases, out):
        supported, groups, rows_per_thread, slots, threads, threads_per_row, sum_supported, prefetch = (
            int(v) for v in line.split())
        case = (rows, hidden, element_bytes, line)
        needed = -(-(hidden // 4) // threads_per_row)
        if hidden < 128:  # ATen's unvectorized sum: the span kernel's
            assert not supported, case
            continue
        fitted = min((count for count in instantiated if count >= needed), default=10**9)
        too_few = fitted >= 8 and rows * threads_per_row < 128 * 132  # the span kernel spreads these wider
        if fitted * 4 * element_bytes > 384 or not sum_supported or too_few:
            assert not supported, case  # too long for registers, ATen's global reduce, or too few rows
            continue
        assert supported, case
        assert groups == fitted, case
        assert rows_per_thread == 1 or (threads_per_row, rows_per_thread * groups) in ((32, 4), (512, 8)), case
        assert threads == slots * threads_per_row and threads % 32 == 0 and threads <= 512, case
        if rows >= 65536:  # rows enough for the table's block size: 128 threads for several short rows each
            assert threads == max(threads_per_row, 128 if rows_per_thread > 1 else 64), case
        assert (threads_per_row >= 64) == bool(prefetch), case
    covered = {(h, b) for (r, h, b), line in zip(cases, out) if line.split()[0] == "1" and r >= 16}
    assert {(h, 2) for h in (128, 130, 256, 768, 896, 2048, 3584, 4096, 4097, 5120, 6144, 8192)} <= covered


SHORT_ROW_PROGRAM = shape_program(r"""
    const auto r = rmsnorm::pick_aten_register_config(rows, hidden, bytes, sum, 132);
    const auto c = rmsnorm::pick_aten_short_row_config(hidden, bytes, sum, r);
    std::printf("%d %d %d %d %lld %d %d\n", int(c.supported), c.groups_per_lane, c.rows_per_thread, c.threads,
                (long long)c.rows_per_block(), int(r.supported), r.rows_per_thread);""")


def test_short_row_config_takes_many_short_one_warp_rows(tmp_path):
    """pick_aten_short_row_config (rms_norm_aten_short_rows_kernel): ATen's
    one-warp rows of 128-256 bf16/fp16 elements in 8-element chunks (two
    ATen lanes a thread), only where the register kernel would hold several
    rows a thread (fp32 stays there); the groups a lane that ATen's layout
    gives, two groups' chunks a thread, whole warps, each a whole number of
    rows."""
    cases = [(r, h, b) for r in (1, 16, 83, 263, 264, 527, 528, 2048, 65536, 131072)
             for h in (96, 120, 127, 128, 130, 136, 200, 248, 256, 264, 512, 4096) for b in (2, 4)]
    out = run_host_program(tmp_path, SHORT_ROW_PROGRAM, [f"{r} {h} {b}" for r, h, b in cases])
    taken = set()
    for (rows, hidden, element_bytes), line in zip(cases, out):
        supported, groups, rows_per_thread, threads, rows_per_block, reg_supported, reg_rows = (
            int(v) for v in line.split())
        case = (rows, hidden, element_bytes, line)
        lane_groups = -(-hidden // 128)  # ATen's 32 lanes of float4 groups
        # the register kernel's several rows a thread: four groups in all, so 4 / groups rows per SM of 132
        wanted = (element_bytes == 2 and 128 <= hidden <= 256 and hidden % 8 == 0
                  and rows >= 4 // lane_groups * 132)
        assert not supported or (reg_supported and reg_rows > 1), case
        assert bool(supported) == wanted, case
        if not supported:
            continue
        taken.add((rows, hidden))
        assert groups == lane_groups and groups * rows_per_thread == 2, case
        assert threads % 32 == 0 and threads <= 512, case
        assert rows_per_block == threads // 16 * rows_per_thread, case
    # many rows of head_dim 128 and 256 (and 136, 200: a second group on some lanes)
    assert {(65536, 128), (131072, 128), (2048, 256), (65536, 136), (65536, 200)} <= taken
    assert (527, 128) not in taken and (528, 128) in taken  # four rows per SM of 132 for one group a lane
    assert (263, 136) not in taken and (264, 136) in taken  # two for two groups


ROW_BLOCK_PROGRAM = shape_program(r"""
    const bool odd = hidden * bytes % 16 != 0;  // dense odd rows (the launcher checks the pointers)
    const auto c = rmsnorm::pick_aten_row_block_config(hidden, bytes, sum, odd);
    const auto aligned_only = rmsnorm::pick_aten_row_block_config(hidden, bytes, sum);
    const auto r = rmsnorm::pick_aten_register_config(rows, hidden, bytes, sum, 132);
    const bool over = rmsnorm::row_block_over_registers(rows, hidden, bytes, odd, sum, r, 132);
    std::printf("%d %d %zu %d %d %d %d %d %d\n", int(c.supported), c.threads, c.staged_bytes, sum.lanes,
                sum.warps, int(sum.vectorized), int(r.supported), int(over), int(aligned_only.supported));""")


def test_row_block_config_gives_each_lane_a_thread(tmp_path):
    """pick_aten_row_block_config (rms_norm_aten_row_block_kernel, a block per
    row): a thread per ATen lane within 512, whole warps, no thread with more
    than 4 of the row's 16-byte chunks (odd rows, which hold their weight
    only after the sum: 5; the chunks from the one that holds the row's
    first element, which may hold up to 16 bytes less one element of the
    row before), as few warps as that allows, shared memory
    for those chunks' fp32 squares (odd rows: the chunks themselves), rows
    of at most 8192 elements; only
    ATen's vectorized layouts of at most 128 lanes, unsplit or (aligned
    rows) split over warps of 32 lanes, where each thread is one or two of
    ATen's threads, the same number each; odd rows
    only when asked for. Among the shapes the register kernel declines, it
    takes few rows (8x4096, 128x4096, 512x4096 bf16, 128x4097) and rows too
    long for registers (fp32 4096 at any row count), which before it went to
    the span kernel; it is preferred to the register kernel, at any row
    count, where ATen's threads hold 16 float4 groups of the row or more
    (aligned fp32 rows: 6), and in ATen's split layouts (8192-wide rows)
    from two rows per SM."""
    cases = [(r, h, b) for r in (1, 2, 4, 7, 8, 16, 83, 128, 264, 512, 527, 528, 2048, 8192)
             for h in (127, 128, 136, 768, 896, 1025, 1536, 2048, 2049, 3073, 3584, 4096, 4097, 5120, 5121, 6144,
                       7168, 8184, 8191, 8192, 8193, 16384)
             for b in (2, 4)]
    out = run_host_program(tmp_path, ROW_BLOCK_PROGRAM, [f"{r} {h} {b}" for r, h, b in cases])
    taken, preferred = set(), set()
    for (rows, hidden, element_bytes), line in zip(cases, out):
        supported, threads, staged_bytes, lanes, warps, vectorized, registers, over, aligned_only = (
            int(v) for v in line.split())
        case = (rows, hidden, element_bytes, line)
        odd = hidden * element_bytes % 16 != 0
        if odd:  # the aligned config never takes odd rows
            assert not aligned_only, case
        # the rule by ATen's groups per thread, at any row count (fp32 aligned rows from 6, else 16);
        # split layouts wherever the row-block kernel takes them
        split = warps > 1
        groups = hidden // 4 // (lanes * warps)
        least = 6 if element_bytes == 4 and not odd else 16
        assert over == bool(supported and registers and (rows >= 264 if split else groups >= least)), case
        if over:
            preferred.add((rows, hidden, element_bytes))
        eligible = vectorized and lanes <= 128 and (not split or (lanes == 32 and not odd))
        if not eligible:
            assert not supported, case
            continue
        per_chunk = 16 // element_bytes
        chunks = -(-(hidden + per_chunk - 1) // per_chunk) if odd else hidden // per_chunk
        per_thread = 5 if odd else 4
        assert supported == (hidden * 4 <= 32 * 1024 and -(-chunks // per_thread) <= 512), case
        if not supported:
            continue
        assert threads % 32 == 0 and lanes <= threads <= 512 and chunks <= per_thread * threads, case
        if split:  # the fewest warps that give each thread one or two whole ATen threads
            aten_threads = lanes * warps
            fewest = min(t for t in range(32, 513, 32)
                         if aten_threads % t == 0 and aten_threads // t <= 2 and chunks <= per_thread * t)
            assert threads == fewest, case
        else:
            assert threads == 32 * -(-max(lanes, -(-chunks // per_thread)) // 32), case
        # shared memory for the fp32 squares of the row's chunks (odd rows: the chunks as loaded, from
        # the one that holds the row's first element)
        assert staged_bytes == chunks * (16 if odd else per_chunk * 4), case
        if not registers:
            taken.add((rows, hidden, element_bytes))
    assert {(r, 4096, 2) for r in (4, 7, 8, 16, 83, 128, 264, 512, 527)} <= taken
    assert {(r, 4096, 4) for r in (8, 528, 2048, 8192)} <= taken
    assert {(8192, 7168, 2), (128, 2048, 2), (83, 5120, 2), (16, 896, 2), (128, 4097, 2), (264, 5121, 2),
            (8192, 4097, 4)} <= taken
    # odd rows of 16 groups per ATen thread or more
    assert {(r, h, 2) for r in (2048, 8192) for h in (2049, 3073, 4097, 5121)} <= preferred
    assert {(2048, 2049, 4), (8192, 2049, 4)} <= preferred  # (fp32 past 3072: registers decline it)
    assert not {(8192, 1025, 2), (8192, 1025, 4)} & preferred
    # aligned rows of 16 groups per ATen thread (fp32: 6), few rows too; not 1536 (12), 1024 or 896
    assert {(r, h, 2) for r in (528, 2048, 8192) for h in (2048, 3584, 4096, 5120)} <= preferred
    assert {(8192, h, 4) for h in (768, 896, 2048)} <= preferred
    assert not {(8192, 896, 2), (8192, 1536, 2), (8192, 128, 4), (8192, 136, 4)} & preferred
    # ATen's split layouts: aligned 8192-wide rows from two rows per SM (bf16: 256 threads, each
    # two ATen threads; fp32: 512), not odd ones (8191) nor fewer rows (the 64-lane split of 8 rows)
    assert {(r, h, b) for r in (2048, 8192) for h in (8184, 8192) for b in (2, 4)} <= preferred
    assert not {(8192, 8191, 2), (8192, 8191, 4), (8, 8192, 2), (16, 8192, 2), (83, 8192, 4)} & preferred
    assert not {(8192, 8191, 2), (8192, 8191, 4), (8, 8192, 2)} & taken


ROW_BLOCK_FEW_ROWS_PROGRAM = shape_program(r"""
    const bool odd = hidden * bytes % 16 != 0;
    const auto c = rmsnorm::pick_aten_row_block_config(hidden, bytes, sum, odd);
    const int same = rmsnorm::row_block_threads_for_rows(c, hidden, bytes, true, sum, odd, rows, 132);
    const int wide_weight = rmsnorm::row_block_threads_for_rows(c, hidden, bytes, false, sum, odd, rows, 132);
    std::printf("%d %d %d %d %d\n", int(c.supported), c.threads, same, wide_weight, sum.warps);""")


def test_row_block_gives_few_rows_more_threads(tmp_path):
    """row_block_threads_for_rows: aligned, unsplit rows at most 4 a SM (132
    SMs) take threads of 2 chunks each instead of 4, as many as fit the SM
    beside the other resident rows (1024 threads a SM at the kernel's
    64-register cap for a weight of the row's type, 512 at 128 for a wider
    weight), never fewer than the table's; odd rows, split layouts and more
    rows keep the table's threads."""
    cases = [(r, h, b) for r in (1, 8, 32, 128, 132, 133, 264, 265, 512, 528, 529, 2048)
             for h in (896, 2048, 3584, 4096, 4097, 5120, 8192) for b in (2, 4)]
    out = run_host_program(tmp_path, ROW_BLOCK_FEW_ROWS_PROGRAM, [f"{r} {h} {b}" for r, h, b in cases])
    got = {}
    for (rows, hidden, element_bytes), line in zip(cases, out):
        supported, table, same, wide_weight, warps = (int(v) for v in line.split())
        case = (rows, hidden, element_bytes, line)
        if not supported:
            continue
        got[(rows, hidden, element_bytes)] = (table, same, wide_weight)
        rows_per_sm = -(-rows // 132)
        odd = hidden * element_bytes % 16 != 0
        for threads, per_sm in ((same, 1024), (wide_weight, 512)):
            if odd or warps > 1 or rows_per_sm > 4:
                assert threads == table, case
                continue
            wanted = 32 * -(-(-(-(hidden * element_bytes // 16) // 2)) // 32)  # ceil(chunks / 2), whole warps
            fitting = per_sm // rows_per_sm // 32 * 32
            assert threads == max(table, min(wanted, fitting, 512)), case
    # the measured cases (NOTES.md v22b): 16-bit rows of 4096 on 256 threads up to 528 rows, 128 past it
    assert all(got[(r, 4096, 2)][:2] == (128, 256) for r in (8, 32, 128, 264, 512, 528))
    assert got[(529, 4096, 2)] == (128, 128, 128)
    # fp32 rows of 4096: 512 threads for one row a SM, the table's 256 at four (512x4096 lost at 512)
    assert got[(128, 4096, 4)] == (256, 512, 512) and got[(512, 4096, 4)] == (256, 256, 256)
    # a wider weight (128 registers): 256 threads at two rows a SM, the table's 128 at four
    assert got[(264, 4096, 2)][2] == 256 and got[(528, 4096, 2)][2] == 128
    assert got[(528, 3584, 2)] == (128, 224, 128)
    assert got[(128, 4097, 2)][0] == got[(128, 4097, 2)][1]  # odd rows: the table's


FOLDED_PROGRAM = shape_program(r"""
    const auto c = rmsnorm::pick_aten_folded_config(hidden, bytes, bytes, sum, false, rows, 132, true);
    const auto fused = rmsnorm::pick_aten_folded_config(hidden, bytes, bytes, sum, true, rows, 132, true);
    const auto wide_weight = rmsnorm::pick_aten_folded_config(hidden, bytes, 4, sum, false, rows, 132, true);
    const auto ampere = rmsnorm::pick_aten_folded_config(hidden, bytes, bytes, sum, false, rows, 108, false);
    std::printf("%d %d %d %d %d %d %d %d %d %d %d %d %d %d %d\n", int(c.supported), int(c.split),
                c.aten_per_thread, c.groups, c.threads, sum.lanes, sum.warps, int(fused.supported),
                int(sum.supported), wide_weight.aten_per_thread, wide_weight.threads, int(c.reload),
                int(fused.reload), int(wide_weight.reload), int(ampere.reload));""")


def test_folded_config_gives_threads_whole_aten_threads(tmp_path):
    """pick_aten_folded_config (rms_norm_aten_folded_kernel, a block per row,
    each thread several of ATen's threads of the row): ATen's unsplit
    layouts of 128-512 lanes (decode batches of 1-7 rows) on 128 or 256
    threads, each at most 8 float4 groups (lanes / threads of ATen's lanes,
    each all of its groups, hidden / 4 / lanes rounded up to an instantiated
    1, 2, 4 or 8; 128 threads where they hold the row), unfused; and ATen's
    split layouts of 16 warps of 32 lanes (rows 8164-8192 wide, 16 rows or
    more), fused or not, on 256 threads of two ATen threads where rows and
    weight are 16-bit (else 512 of one), four groups each, read twice
    (reload) unfused from 48 rows per SM (6336 on 132 SMs) on Hopper only; never ATen's
    narrower unsplit layouts (8 rows or more), other splits, global
    reductions, nor unvectorized rows."""
    cases = [(r, h, b) for r in (1, 2, 3, 4, 7, 8, 15, 16, 128, 6335, 6336, 8192)
             for h in (127, 128, 256, 512, 896, 2048, 3584, 4096, 4100, 5120, 6144, 8164, 8184, 8192, 8196, 16384,
                       65536)
             for b in (2, 4)]
    out = run_host_program(tmp_path, FOLDED_PROGRAM, [f"{r} {h} {b}" for r, h, b in cases])
    taken = set()
    for (rows, hidden, element_bytes), line in zip(cases, out):
        (supported, split, per_thread, groups, threads, lanes, warps, fused_supported, sum_supported,
         wide_per_thread, wide_threads, reload, fused_reload, wide_reload, ampere_reload) = (
            int(v) for v in line.split())
        assert not fused_reload and not ampere_reload, (rows, hidden, element_bytes, line)
        case = (rows, hidden, element_bytes, line)
        if hidden < 128 or not sum_supported:
            assert not supported and not fused_supported, case
            continue
        if warps > 1:  # ATen's split layouts
            expected = lanes == 32 and warps == 16 and hidden <= 8192
            assert supported == fused_supported == expected, case
            if not expected:
                continue
            assert split and groups == 4 and -(-(hidden // 4) // 512) <= 4, case
            assert (per_thread, threads) == ((2, 256) if element_bytes == 2 else (1, 512)), case
            assert (wide_per_thread, wide_threads) == (1, 512), case  # an fp32 weight beside the rows
            assert reload == wide_reload == (rows >= 48 * 132), case
            taken.add((rows, hidden, element_bytes))
            continue
        assert not fused_supported, case
        needed = -(-(hidden // 4) // lanes)
        fitted = min((g for g in (1, 2, 4, 8) if g >= needed), default=None)
        assert bool(supported) == (lanes >= 128 and fitted is not None and (lanes, fitted) != (512, 8)), case
        if not supported:
            continue
        assert not split and not reload, case
        taken.add((rows, hidden, element_bytes))
        assert threads in (128, 256) and per_thread * threads == lanes and per_thread * groups <= 8, case
        assert groups >= needed and (groups == fitted or (groups, fitted) == (2, 1)), case  # (no 1 below 512 lanes)
        assert threads == 128 or per_thread * groups * 2 > 8, case  # 256 only where 128 would hold more than 8
    assert {(r, h, 2) for r in (1, 2, 3) for h in (896, 2048, 4096, 5120, 6144)} | {(1, 8192, 2)} <= taken
    assert {(r, h, b) for r in (4, 7) for h in (896, 2048, 4096) for b in (2, 4)} <= taken
    assert {(r, h, b) for r in (16, 128, 8192) for h in (8164, 8184, 8192) for b in (2, 4)} <= taken
    assert not {(2, 8192, 2), (4, 8192, 2), (7, 5120, 2), (1, 16384, 2), (8, 4096, 2), (16, 4096, 2),
                (8, 8192, 2), (8192, 8196, 2), (15, 8192, 4)} & taken
