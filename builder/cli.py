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

    commands.add_parser("check", help="validate build.toml with the kernels parser")
    for name in PUBLISH_COMMANDS:
        commands.add_parser(name, help="see python -m builder " + name + " --help", add_help=False)

    args = parser.parse_args(argv)
    from .build import BuildError, load_config, main_build

    try:
        if args.command == "build":
            return main_build(args)
        if args.command == "check":
            config = load_config()
            print(f"build.toml ok: {config.name} v{config.version}, backends {config.backends}")
            return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2
