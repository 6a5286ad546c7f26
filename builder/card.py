"""The Hub model card (``CARD.md``, uploaded as the repo's README.md), filled
from the build: ``builder/card_template.md`` plus

- the API: the functions and layers the built package exports (``__all__``),
  with their signatures and the first sentence of their docstrings;
- the variants table: one row per ``build/<variant>/metadata.json``;
- the benchmark plot: the newest ``benchmarks/results/forward-*-v<N>.png``.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from .build import REPO_ROOT, BuildError, load_config

TEMPLATE = Path(__file__).resolve().parent / "card_template.md"
PLOT_RE = re.compile(r"^forward-(?P<gpu>[a-z0-9]+)-v(?P<n>\d+)\.png$")


def variant_rows(build_dir: Path) -> list[dict]:
    """One entry per built variant, read back from its metadata.json."""
    rows = []
    for metadata_path in sorted(build_dir.glob("*/metadata.json")):
        metadata = json.loads(metadata_path.read_text())
        backend = metadata["backend"]
        rows.append({
            "variant": metadata_path.parent.name,
            "backend": backend["type"],
            "archs": list(backend.get("archs", [])),
        })
    if not rows:
        raise BuildError(f"no variants in {build_dir}: run `python -m builder build` (or --all-variants) first")
    return rows


def variants_table(rows: list[dict]) -> str:
    lines = ["| variant | backend | CUDA capabilities |", "|---|---|---|"]
    for row in rows:
        # Every CUDA variant also registers the CPU kernel (build.toml's [torch] src).
        backend = "CUDA (+ CPU tensors)" if row["backend"] == "cuda" else row["backend"].upper()
        archs = ", ".join(row["archs"]) if row["archs"] else "—"
        lines.append(f"| `{row['variant']}` | {backend} | {archs} |")
    return "\n".join(lines)


def _first_sentence(docstring: str | None) -> str:
    paragraph = (docstring or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split())


def _exports(module_path: Path) -> tuple[list[str], dict[str, ast.AST]]:
    tree = ast.parse(module_path.read_text())
    exported: list[str] = []
    definitions: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            definitions[node.name] = node
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            exported = list(ast.literal_eval(node.value))
    return exported, definitions


def api_section(package_dir: Path) -> str:
    """Bullets for the package's ``__all__``: functions with their signature,
    and each layer class of ``layers.__all__``."""
    exported, definitions = _exports(package_dir / "__init__.py")
    lines = []
    for name in exported:
        node = definitions.get(name)
        if isinstance(node, ast.FunctionDef):
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            lines.append(f"- `{name}({ast.unparse(node.args)}){returns}`: {_first_sentence(ast.get_docstring(node))}")
        elif (package_dir / f"{name}.py").is_file():
            layer_names, layer_defs = _exports(package_dir / f"{name}.py")
            for layer in layer_names:
                doc = _first_sentence(ast.get_docstring(layer_defs[layer])) if layer in layer_defs else ""
                lines.append(f"- `{name}.{layer}` (for `kernels.kernelize`): {doc}")
        else:
            lines.append(f"- `{name}`")
    return "\n".join(lines)


def newest_plot(repo_root: Path) -> str:
    results = repo_root / "benchmarks" / "results"
    plots = [(int(m["n"]), p.name) for p in results.glob("forward-*.png") if (m := PLOT_RE.match(p.name))]
    if not plots:
        raise BuildError(f"no forward-<gpu>-v<N>.png in {results}: run benchmarks/plot.py first")
    return max(plots)[1]


def render_card(build_dir: Path, repo_root: Path = REPO_ROOT) -> str:
    config = load_config(repo_root)
    rows = variant_rows(build_dir)
    package_dir = build_dir / rows[0]["variant"]  # the published package files
    repo_id = config.repo_id or f"<owner>/{config.name}"
    plot = newest_plot(repo_root)
    return TEMPLATE.read_text().format(
        name=config.name,
        license=config.license.lower(),
        repo_id=repo_id,
        version=config.version,
        api=api_section(package_dir),
        variants=variants_table(rows),
        # The card is the README of the repo's main branch; the plot is expected
        # beside it there (benchmarks/results/ in this repository).
        plot_url=f"https://huggingface.co/{repo_id}/resolve/main/{plot}",
    )


def write_card(build_dir: Path | None = None, output: Path | None = None, repo_root: Path = REPO_ROOT) -> Path:
    output = Path(output or repo_root / "CARD.md")
    output.write_text(render_card(Path(build_dir or repo_root / "build"), repo_root))
    return output
