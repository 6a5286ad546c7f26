"""Plot GB/s per shape for every implementation in a bench_rmsnorm.py result.

    python benchmarks/plot.py benchmarks/results/<name>.json out.png

Needs only matplotlib and the JSON file (no torch, no GPU), so a run made on
the GPU machine can be re-plotted anywhere. One column per dtype; the copy of
the same bytes is drawn as a dashed line, the ceiling the others approach.
"""

import json
import sys
from pathlib import Path

COPY_IMPL = "copy"
# Fixed colours so that a given implementation looks the same in every plot.
IMPL_STYLES = {
    "ours": {"color": "tab:red", "marker": "o", "linewidth": 2.2},
    "hf_eager": {"color": "tab:gray", "marker": "v"},
    "torch_rms_norm": {"color": "tab:blue", "marker": "s"},
    "torch_compile_hf": {"color": "tab:green", "marker": "^"},
    "liger": {"color": "tab:purple", "marker": "D"},
    COPY_IMPL: {"color": "black", "linestyle": "--", "marker": "", "linewidth": 1.5},
}
DTYPE_ORDER = ["bf16", "fp16", "fp32"]


def _ordered_unique(values):
    return list(dict.fromkeys(values))


def _series_by_dtype(rows):
    """{dtype: (shapes in run order, {impl: [gbps or None per shape]})}."""
    present = {r["dtype"] for r in rows}
    dtypes = [d for d in DTYPE_ORDER if d in present] + sorted(present - set(DTYPE_ORDER))
    panels = {}
    for dtype in dtypes:
        dtype_rows = [r for r in rows if r["dtype"] == dtype]
        shapes = _ordered_unique(r["shape"] for r in dtype_rows)
        gbps = {(r["impl"], r["shape"]): r.get("gbps") for r in dtype_rows}
        impls = _ordered_unique(r["impl"] for r in dtype_rows)
        panels[dtype] = (shapes, {impl: [gbps.get((impl, s)) for s in shapes] for impl in impls})
    return panels


def _draw_panel(ax, shapes, series, log_scale):
    positions = list(range(len(shapes)))
    # Ours on top of the other implementations, the copy ceiling over all.
    draw_order = sorted(series, key=lambda name: (name == COPY_IMPL, name == "ours"))
    for impl in draw_order:
        values = series[impl]
        if all(v is None for v in values):
            continue
        style = IMPL_STYLES.get(impl, {"marker": "x"})
        # None (failed or skipped) becomes NaN: matplotlib leaves a gap.
        ax.plot(positions, [float("nan") if v is None else v for v in values], label=impl, **style)
    ax.set_xticks(positions)
    ax.set_xticklabels(shapes, rotation=45, ha="right", fontsize=8)
    if log_scale:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)


def plot_results(results: dict, out_path) -> Path:
    """Write a PNG of GB/s per shape and return its path. One column per
    dtype; the top row is log-scaled so decode shapes (a few GB/s) show, the
    bottom row linear so the gaps near the copy ceiling show."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the GPU machine or in CI
    import matplotlib.pyplot as plt

    panels = _series_by_dtype(results["rows"])
    if not panels:
        raise ValueError("no rows to plot")
    widths = [max(3.0, 0.55 * len(shapes) + 1.5) for shapes, _ in panels.values()]
    fig, axes = plt.subplots(
        2, len(panels), figsize=(sum(widths) + 1.5, 9.0), squeeze=False, gridspec_kw={"width_ratios": widths}
    )
    for column, (dtype, (shapes, series)) in enumerate(panels.items()):
        for row, log_scale in enumerate((True, False)):
            _draw_panel(axes[row][column], shapes, series, log_scale)
        axes[0][column].set_title(dtype)
        axes[1][column].set_xlabel("rows x hidden")
    axes[0][0].set_ylabel("GB/s, log scale")
    axes[1][0].set_ylabel("GB/s (x read + y write + weight read)")
    # One legend for the figure: a panel may lack an implementation that failed there.
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    known = list(IMPL_STYLES)
    order = sorted(handles, key=lambda name: known.index(name) if name in known else len(known))
    fig.legend([handles[n] for n in order], order, loc="upper right", fontsize=8)
    fig.suptitle(_title(results), fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.9, 0.97))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def _title(results: dict) -> str:
    basis = results.get("timing_basis", "")
    parts = [
        "RMSNorm forward",
        results.get("device", "?"),
        f"torch {results.get('torch', '?')}",
        results.get("date", "")[:10],
        basis,
    ]
    return " | ".join(p for p in parts if p)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python benchmarks/plot.py RESULTS.json OUT.png", file=sys.stderr)
        return 1
    results = json.loads(Path(argv[0]).read_text())
    print(plot_results(results, argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
