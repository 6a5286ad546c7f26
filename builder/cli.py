"""Command line: ``python -m builder <command>``; wiring only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PUBLISH_COMMANDS = ("upload", "publish-cache", "lock")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PUBLISH_COMMANDS:
        from . import publish

        return publish.main(argv)

    parser = argparse.ArgumentParser(prog="python -m builder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build variants into build/<variant>/")
    build.add_argument("--backend", choices=["all", "cuda", "cpu"], default="all",
                       help="all: every variant this torch can build (default)")
    build.add_argument("--variant", help="build only this variant name (must match this environment's torch)")
    build.add_argument("--out", type=Path, default=None, help="output folder (default: build/)")
    build.add_argument("--capabilities", nargs="+", metavar="X.Y",
                       help="CUDA capabilities to compile (default: build.toml's cuda-capabilities)")
    build.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: CPU count)")
    build.add_argument("--stable-abi", action="store_true",
                       help="build the torch-stable-abi<MAJ><MIN> variants of this torch (its stable C ABI only)")
    build.add_argument("--isolated", action="store_true",
                       help="build --variant in its own cached environment with the exact torch and nvcc it names")
    build.add_argument("--all-variants", action="store_true",
                       help="build the whole variant matrix, each in its isolated environment (see docs/variants.md)")
    build.add_argument("--env-cache", type=Path, default=None,
                       help="folder for the isolated environments (default: $RMSNORM_BUILDER_CACHE "
                            "or ~/.cache/rmsnorm-builder)")

    commands.add_parser("variants", help="list the variant matrix and each variant's pinned environment")
    card = commands.add_parser("card", help="write CARD.md from builder/card_template.md and build/*/metadata.json")
    card.add_argument("--build-dir", type=Path, default=None, help="default: build/")
    card.add_argument("--output", type=Path, default=None, help="default: CARD.md in the repo root")

    commands.add_parser("check", help="validate build.toml with the kernels parser")
    for name in PUBLISH_COMMANDS:
        commands.add_parser(name, help="see python -m builder " + name + " --help", add_help=False)

    args = parser.parse_args(argv)
    from .build import BuildError, load_config, main_build

    try:
        if args.command == "build":
            return main_build(args)
        if args.command == "variants":
            from .variants import MATRIX, env_spec, parse_variant

            for name in MATRIX:
                spec = env_spec(parse_variant(name))
                print(f"{name}  env {spec.key}: {' '.join(spec.requirements)}")
            return 0
        if args.command == "card":
            from .card import write_card

            path = write_card(build_dir=args.build_dir, output=args.output)
            print(f"wrote {path}")
            return 0
        if args.command == "check":
            config = load_config()
            print(f"build.toml ok: {config.name} v{config.version}, backends {config.backends}")
            return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2
