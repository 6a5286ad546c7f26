"""The published variant matrix, and one isolated Python environment per torch
release to build it in.

A variant name (``torch214-cxx11-cu130-x86_64-linux``) fixes the torch minor
release and the CUDA version; a binary is only correct when it is compiled
against that torch's headers and libraries with the nvcc of that CUDA version.
So each torch release gets its own virtual environment (under the builder's
cache, outside the repository) with exact pins: the torch wheel and, for a CUDA
build of torch, the nvcc wheels of the same CUDA release. The compile itself
runs as ``<env>/bin/python -m builder build --variant <name>``, i.e. the normal
single-environment build, with that environment's torch and toolkit.

Pins live here and nowhere else.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .build import REPO_ROOT, BuildError

# Overrides the cache folder that holds the variant environments.
CACHE_ENV_VAR = "RMSNORM_BUILDER_CACHE"


@dataclass(frozen=True)
class TorchRelease:
    """A torch wheel reachable here, and the toolkit that matches it."""

    pin: str  # exact torch requirement, local version label included
    cuda: str | None  # CUDA version the wheel was built with; None: CPU-only wheel
    toolkit: tuple[str, ...] = ()  # nvcc (+ headers it needs) of exactly that CUDA release
    # No nvcc on PyPI for this CUDA release: "debian" lays out Debian's packages
    # of exactly that release (builder/toolkit.py); None: a toolkit root named
    # by external_toolkit_var.
    toolkit_source: str | None = None


# torch on PyPI: 2.10 is built with CUDA 12.8 (it requires nvidia-cuda-runtime-cu12
# 12.8.90, i.e. CUDA 12.8 update 1). PyPI has no CUDA 12 compiler: the
# nvidia-cuda-nvcc-cu12 wheels hold ptxas, libnvvm and the crt headers but no
# nvcc driver, cicc or cudafe++, so that variant takes a CUDA 12.8 toolkit
# from outside (see external_toolkit_var). 2.11 and 2.14 are built with
# CUDA 13.0 (they require cuda-toolkit 13.0.2 / 13.0.3: naming the same
# cuda-toolkit with the compiler extras keeps nvcc, crt and nvvm at that release,
# where nvidia-cuda-nvcc alone would drag in a newer crt/nvvm). 2.13.0+cpu is a
# CPU-only wheel on this machine's local wheel folder. 2.6.0 is a CUDA 12.4 build
# (nvidia-cuda-runtime-cu12==12.4.127) with the pre-cxx11 ABI (its variant is
# cxx98); Debian trixie packages NVIDIA's CUDA 12.4.1 compiler (nvcc 12.4.131,
# cudart 12.4.127), which builder/toolkit.py lays out as a CUDA_HOME.
TORCH_RELEASES: dict[str, TorchRelease] = {
    "torch26": TorchRelease("torch==2.6.0", "12.4", toolkit_source="debian"),
    "torch210": TorchRelease("torch==2.10.0", "12.8"),
    "torch211": TorchRelease("torch==2.11.0", "13.0", ("cuda-toolkit[nvcc,crt,nvvm,cccl]==13.0.2",)),
    "torch213": TorchRelease("torch==2.13.0+cpu", None),
    "torch214": TorchRelease("torch==2.14.1", "13.0", ("cuda-toolkit[nvcc,crt,nvvm,cccl]==13.0.3",)),
}

# What `python -m builder build --all-variants` builds (and the card lists).
MATRIX: tuple[str, ...] = (
    "torch26-cxx98-cu124-x86_64-linux",
    "torch210-cxx11-cu128-x86_64-linux",
    "torch211-cxx11-cu130-x86_64-linux",
    "torch213-cxx11-cpu-x86_64-linux",
    "torch214-cxx11-cu130-x86_64-linux",
    "torch214-cxx11-cpu-x86_64-linux",
)

VARIANT_RE = re.compile(
    r"^(?P<torch>torch(?P<tmaj>\d)(?P<tmin>\d+))-(?P<abi>cxx11|cxx98)-(?:cu(?P<cu>\d{3,})|(?P<cpu>cpu))"
    r"-(?P<arch>x86_64|aarch64)-(?P<os>linux)$"
)


# torch-stable-abi211-cu130-x86_64-linux: built against torch 2.11's stable C ABI,
# loaded by kernels for any torch >= 2.11 (kernels.variants.TorchStableAbi).
STABLE_VARIANT_RE = re.compile(
    r"^torch-stable-abi(?P<tmaj>\d)(?P<tmin>\d+)-(?:cu(?P<cu>\d{3,})|(?P<cpu>cpu))"
    r"-(?P<arch>x86_64|aarch64)-(?P<os>linux)$"
)

# Stable-ABI variants built on request (`--isolated --variant NAME`), not part
# of MATRIX: in a build/ folder the loader prefers them to the torchXY ones.
STABLE_VARIANTS: tuple[str, ...] = (
    "torch-stable-abi211-cu130-x86_64-linux",
    "torch-stable-abi211-cpu-x86_64-linux",
)


@dataclass(frozen=True)
class Variant:
    torch_tag: str  # "torch214"; for a stable-ABI variant the torch it is built against
    backend: str  # "cuda" or "cpu"
    cuda: str | None  # "13.0" for cu130
    name: str
    stable_abi: bool = False


def parse_variant(name: str) -> Variant:
    stable = STABLE_VARIANT_RE.match(name)
    if stable:
        cu = stable["cu"]
        cuda = f"{cu[:-1]}.{cu[-1]}" if cu else None
        return Variant(f"torch{stable['tmaj']}{stable['tmin']}", "cuda" if cu else "cpu", cuda, name, True)
    match = VARIANT_RE.match(name)
    if not match:
        raise BuildError(
            f"{name!r} is not a variant name; expected torch<MAJ><MIN>-cxx11-<cuXYZ|cpu>-<x86_64|aarch64>-linux, "
            "e.g. torch214-cxx11-cu130-x86_64-linux"
        )
    # PyPI's Linux wheels use the cxx11 ABI from torch 2.7 on, the old one before.
    wants_cxx11 = (int(match["tmaj"]), int(match["tmin"])) >= (2, 7)
    if (match["abi"] == "cxx11") != wants_cxx11:
        raise BuildError(f"{name}: torch {match['tmaj']}.{match['tmin']} wheels use the "
                         f"{'cxx11' if wants_cxx11 else 'cxx98'} ABI, not {match['abi']}")
    cu = match["cu"]
    # cu128 -> 12.8, cu130 -> 13.0: the last digit is the minor version.
    cuda = f"{cu[:-1]}.{cu[-1]}" if cu else None
    return Variant(match["torch"], "cuda" if cu else "cpu", cuda, name)


@dataclass(frozen=True)
class EnvSpec:
    """One isolated environment: a folder name and the exact requirements."""

    key: str
    requirements: tuple[str, ...]


def env_spec(variant: Variant) -> EnvSpec:
    """The environment that builds ``variant``: its torch release, pinned, with the
    matching toolkit. Both variants of one release (cuXYZ and cpu) share it."""
    release = TORCH_RELEASES.get(variant.torch_tag)
    if release is None:
        raise BuildError(
            f"{variant.name}: no pinned torch for {variant.torch_tag}; pinned: {', '.join(sorted(TORCH_RELEASES))}"
        )
    if variant.backend == "cuda" and release.cuda != variant.cuda:
        built_with = f"CUDA {release.cuda}" if release.cuda else "no CUDA (CPU-only wheel)"
        raise BuildError(f"{variant.name}: {release.pin} is built with {built_with}, not CUDA {variant.cuda}")
    version = release.pin.split("==", 1)[1].replace("+", "-")
    key = f"torch-{version}" + (f"-cu{release.cuda.replace('.', '')}" if release.cuda else "")
    return EnvSpec(key, (release.pin, *release.toolkit))


def external_toolkit_var(cuda: str) -> str:
    """Names the toolkit root for a CUDA release PyPI has no nvcc for."""
    return f"RMSNORM_CUDA_HOME_CU{cuda.replace('.', '')}"


def missing_toolkit(variant: Variant) -> str | None:
    """Why ``variant`` cannot be compiled here, or None if it can."""
    release = TORCH_RELEASES[variant.torch_tag]
    if variant.backend != "cuda" or release.toolkit:
        return None
    if release.toolkit_source == "debian":
        import shutil

        if os.environ.get(external_toolkit_var(variant.cuda)) or all(map(shutil.which, ("apt-get", "dpkg-deb"))):
            return None
        return (f"CUDA {variant.cuda} comes from Debian's packages (builder/toolkit.py), which needs apt-get and "
                f"dpkg-deb; or set {external_toolkit_var(variant.cuda)} to a CUDA {variant.cuda} toolkit root")
    var = external_toolkit_var(variant.cuda)
    home = os.environ.get(var)
    if home and (Path(home) / "bin" / "nvcc").exists():
        return None
    return (f"PyPI has no CUDA {variant.cuda} nvcc (nvidia-cuda-nvcc-cu12 ships ptxas and headers only): "
            f"set {var} to a CUDA {variant.cuda} toolkit root (bin/nvcc, include/, lib64/)")


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "rmsnorm-builder"


def ensure_env(spec: EnvSpec, root: Path, log=print) -> Path:
    """Create (or reuse) the environment; returns its python. A stamp with the
    requirements makes a pin change reinstall, and an unchanged env a no-op."""
    env_dir = root / "envs" / spec.key
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    # Two builds sharing the cache must not pip into one environment at once.
    with open(env_dir.parent / f"{spec.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_env_locked(spec, env_dir, log)


def _ensure_env_locked(spec: EnvSpec, env_dir: Path, log) -> Path:
    python = env_dir / "bin" / "python"
    stamp = env_dir / "rmsnorm-builder-requirements.txt"
    wanted = "\n".join(spec.requirements) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        log(f"[env] {spec.key}: ready ({env_dir})")
        return python
    started = time.monotonic()
    if not python.exists():
        log(f"[env] {spec.key}: creating {env_dir}")
        _run([_base_python(), "-m", "venv", str(env_dir)], f"creating {env_dir}")
    log(f"[env] {spec.key}: installing {' '.join(spec.requirements)}")
    _run([str(python), "-m", "pip", "install", "--quiet", *spec.requirements], f"installing into {env_dir}")
    stamp.write_text(wanted)
    log(f"[env] {spec.key}: installed in {time.monotonic() - started:.0f} s")
    return python


def _base_python() -> str:
    """The interpreter the running venv was made from (a venv's own python would
    also work, but the base one keeps the new env independent of it)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command)
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}): {' '.join(command)}")


def isolated_child_env(python: Path, variant: Variant, toolkit_home: Path | None = None) -> dict[str, str]:
    """The child sees only its own environment: no activated venv, no
    PYTHONPATH, and no CUDA_HOME that would override the env's own nvcc, except
    the toolkit laid out or named for exactly this variant's CUDA release."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CUDA_HOME", "CUDA_PATH"}}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    if variant.cuda and os.environ.get(external_toolkit_var(variant.cuda)):
        env["CUDA_HOME"] = os.environ[external_toolkit_var(variant.cuda)]
    elif toolkit_home is not None:
        env["CUDA_HOME"] = str(toolkit_home)
    return env


def variant_toolkit_home(variant: Variant, root: Path, log=print) -> Path | None:
    """The toolkit root the builder provides for this variant (Debian's CUDA
    packages), or None when the env's own nvcc wheels or a named root serve."""
    release = TORCH_RELEASES[variant.torch_tag]
    if variant.backend != "cuda" or release.toolkit_source != "debian":
        return None
    if os.environ.get(external_toolkit_var(variant.cuda)):
        return None
    from .toolkit import ensure_debian_toolkit

    return ensure_debian_toolkit(variant.cuda, root, log)


def build_isolated(
    names: list[str],
    *,
    out_dir: Path | None = None,
    capabilities: list[str] | None = None,
    jobs: int | None = None,
    env_root: Path | None = None,
    skipped: dict[str, str] | None = None,
    log=print,
) -> dict[str, float]:
    """Build each named variant in its release's environment; returns seconds
    per variant (environment setup included). A variant whose compiler is not
    available is recorded in ``skipped`` (with the reason) when that dict is
    given, and is an error otherwise."""
    variants = [parse_variant(n) for n in names]
    specs = {v.name: env_spec(v) for v in variants}  # all pins checked before any download
    root = env_root or cache_root()
    times: dict[str, float] = {}
    for index, variant in enumerate(variants, 1):
        started = time.monotonic()
        reason = missing_toolkit(variant)
        if reason:
            if skipped is None:
                raise BuildError(f"{variant.name}: {reason}")
            skipped[variant.name] = reason
            log(f"[matrix {index}/{len(variants)}] {variant.name} SKIPPED: {reason}")
            continue
        log(f"[matrix {index}/{len(variants)}] {variant.name} in env {specs[variant.name].key}")
        toolkit_home = variant_toolkit_home(variant, root, log)
        python = ensure_env(specs[variant.name], root, log)
        command = [str(python), "-m", "builder", "build", "--variant", variant.name]
        if out_dir:
            command += ["--out", str(Path(out_dir).resolve())]
        if capabilities:
            command += ["--capabilities", *capabilities]
        if jobs:
            command += ["--jobs", str(jobs)]
        result = subprocess.run(command, cwd=REPO_ROOT, env=isolated_child_env(python, variant, toolkit_home))
        if result.returncode != 0:
            raise BuildError(f"{variant.name}: the build in {python.parent.parent} failed (exit {result.returncode})")
        times[variant.name] = time.monotonic() - started
        log(f"[matrix {index}/{len(variants)}] {variant.name} done in {times[variant.name]:.0f} s")
    return times
