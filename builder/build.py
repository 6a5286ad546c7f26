"""Build kernel-builder's ``build/<variant>/`` without Nix.

Reads ``build.toml`` and produces, for the torch and CUDA toolkit of the running
Python environment, exactly the folder kernel-builder's ``local_install`` target
writes: ``_<name>_<backend>_<id>.abi3.so`` (ops registered under that unique
namespace), the package's Python files, a generated ``_ops.py`` and a
``metadata.json`` that the kernels loader accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# First on every include path (g++ and nvcc): keeps glibc >= 2.32 symbols out of
# the binaries so that they meet manylinux_2_28; see the header for why.
GLIBC_SHIM_INCLUDE = Path(__file__).resolve().parent / "glibc_shim"

# What published binaries must load on (checked by kernel-abi-check).
MANYLINUX = "manylinux_2_28"

OPS_PY_TEMPLATE = '''import torch
from . import {ops_name}
ops = torch.ops.{ops_name}

def add_op_namespace_prefix(op_name: str):
    """
    Prefix op by namespace.
    """
    return f"{ops_name}::{{op_name}}"
'''

REGISTRATION_H = """#pragma once

#include <Python.h>

#define _CONCAT(A, B) A##B
#define CONCAT(A, B) _CONCAT(A, B)

#define _STRINGIFY(A) #A
#define STRINGIFY(A) _STRINGIFY(A)

// A version of TORCH_LIBRARY that expands the NAME, i.e. so NAME
// could be a macro instead of a literal token.
#define TORCH_LIBRARY_EXPAND(NAME, MODULE) TORCH_LIBRARY(NAME, MODULE)

// A version of TORCH_LIBRARY_IMPL that expands the NAME, i.e. so NAME
// could be a macro instead of a literal token.
#define TORCH_LIBRARY_IMPL_EXPAND(NAME, DEVICE, MODULE) \\
  TORCH_LIBRARY_IMPL(NAME, DEVICE, MODULE)

// REGISTER_EXTENSION allows the shared library to be loaded and initialized
// via python's import statement.
#define REGISTER_EXTENSION(NAME)                                               \\
  PyMODINIT_FUNC CONCAT(PyInit_, NAME)() {                                     \\
    static struct PyModuleDef module = {PyModuleDef_HEAD_INIT,                 \\
                                        STRINGIFY(NAME), nullptr, 0, nullptr}; \\
    return PyModule_Create(&module);                                           \\
  }
"""

# The torch-stable-abi variants: this binding (torch's stable C ABI only) replaces
# torch_binding.cpp, and compat/ comes first on the include path so that the
# kernels' ATen spellings resolve to stable-ABI calls (see aten_compat.h).
STABLE_BINDING = "torch-ext/stable_abi/torch_binding_stable.cpp"
STABLE_DIR = "torch-ext/stable_abi"
STABLE_COMPAT_INCLUDE = "torch-ext/stable_abi/compat"
REGULAR_BINDING = "torch-ext/torch_binding.cpp"
# Keeps GLIBCXX_3.4.26 out of the stable binaries (see the file).
STABLE_EXTRA_SOURCES = ["torch-ext/stable_abi/libstdcxx_compat.cpp"]

# Python 3.9 is the oldest Python the Hub requires extensions to load on.
PY_LIMITED_API = "0x03090000"

# Flags torch.utils.cpp_extension passes to nvcc: c10's Half/BFloat16 bring their
# own conversions, and CUDA's implicit ones would make them ambiguous.
NVCC_TORCH_FLAGS = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]


class BuildError(RuntimeError):
    """A build step failed; the message says which and how to fix it."""


@dataclass
class KernelConfig:
    """The parts of build.toml the builder uses."""

    name: str
    version: int
    license: str
    backends: list[str]
    repo_id: str | None
    torch_src: list[str]
    torch_include: list[str]
    torch_cxx_flags: list[str]
    cuda_kernels: list[dict] = field(default_factory=list)

    @property
    def python_name(self) -> str:
        return self.name.replace("-", "_")


def load_config(repo_root: Path = REPO_ROOT) -> KernelConfig:
    build_toml = repo_root / "build.toml"
    with open(build_toml, "rb") as f:
        raw = tomllib.load(f)
    validate_with_kernels_parser(repo_root)
    general = raw["general"]
    torch_section = raw.get("torch", {})
    return KernelConfig(
        name=general["name"],
        version=int(general["version"]),
        license=general["license"],
        backends=list(general["backends"]),
        repo_id=general.get("hub", {}).get("repo-id"),
        torch_src=list(torch_section.get("src", [])),
        torch_include=list(torch_section.get("include", [])),
        torch_cxx_flags=list(torch_section.get("cxx-flags", [])),
        cuda_kernels=[k for k in raw.get("kernel", {}).values() if k.get("backend") == "cuda"],
    )


def validate_with_kernels_parser(repo_root: Path) -> None:
    """Parse build.toml with the parser compiled into the kernels package."""
    try:
        from kernels._rust import Build
    except ImportError:  # kernels is optional for building
        return
    try:
        Build.open(str(repo_root))
    except Exception as e:  # the Rust parser raises plain exceptions
        raise BuildError(f"build.toml is rejected by the kernels parser: {e}") from e


# --- What this environment builds -------------------------------------------------


def torch_info() -> dict:
    import torch

    major, minor = (int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    return {
        "torch_version": torch.__version__,
        "torch_tag": f"torch{major}{minor}",
        "cxx11_abi": bool(torch.compiled_with_cxx11_abi()),
        "cuda": torch.version.cuda,
    }


def variant_name(backend: str, info: dict, stable_abi: bool = False) -> str:
    """kernel-builder's name: torch<MAJ><MIN>-cxx11-<cuXY|cpu>-<arch>-<os>, or
    torch-stable-abi<MAJ><MIN>-<cuXY|cpu>-<arch>-<os> for a binary built against
    this torch's stable C ABI (loaded by every torch at or above MAJ.MIN)."""
    abi = "cxx11" if info["cxx11_abi"] else "cxx98"
    if backend == "cuda":
        if not info["cuda"]:
            raise BuildError("the cuda backend needs a CUDA build of torch; this torch is CPU-only")
        cu_major, cu_minor = info["cuda"].split(".")[:2]
        backend_tag = f"cu{cu_major}{cu_minor}"
    elif backend == "cpu":
        backend_tag = "cpu"
    else:
        raise BuildError(f"backend {backend!r} is not built here; expected 'cuda' or 'cpu'")
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if stable_abi:
        return f"torch-stable-abi{info['torch_tag'][len('torch'):]}-{backend_tag}-{machine}-{platform.system().lower()}"
    return f"{info['torch_tag']}-{abi}-{backend_tag}-{machine}-{platform.system().lower()}"


def stable_target_version(info: dict) -> str:
    """TORCH_TARGET_VERSION for this torch's major.minor: ((MAJ << 56) | (MIN << 48))."""
    major, minor = (int(p) for p in info["torch_version"].split("+")[0].split(".")[:2])
    return f"0x{(major << 56) | (minor << 48):016x}"


def source_id(repo_root: Path) -> str:
    """kernel-builder's build id: the git tree hash, plus _dirty for local edits."""
    try:
        tree = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD^{tree}"],
            cwd=repo_root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return f"{tree}_dirty" if dirty else tree
    except (OSError, subprocess.CalledProcessError):
        digest = hashlib.sha1()
        for path in sorted(repo_root.glob("**/*")):
            if path.is_file() and path.suffix in {".cu", ".cuh", ".h", ".cpp", ".py", ".toml"}:
                digest.update(path.read_bytes())
        return digest.hexdigest()[:7] + "_dirty"


@dataclass
class CudaToolkit:
    """Where nvcc, the CUDA headers and the CUDA runtime library are."""

    nvcc: Path
    include_dirs: list[Path]
    lib_dirs: list[Path]
    # Linker argument for the runtime: "-lcudart" for a system toolkit, the
    # versioned file for pip wheels (they ship libcudart.so.<major> only).
    cudart: str


def cuda_toolkit() -> CudaToolkit:
    """The toolkit to compile with: CUDA_HOME when set, else one installed into
    this Python environment from PyPI (the isolated variant environments pin the
    nvcc that matches their torch), else the machine's."""
    if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
        pip_toolkit = pip_cuda_toolkit()
        if pip_toolkit:
            return pip_toolkit
    root = cuda_home()
    return CudaToolkit(root / "bin" / "nvcc", [root / "include"], [root / "lib64", root / "lib"], "-lcudart")


def _site_packages() -> list[Path]:
    return [Path(p) for p in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])]


def pip_cuda_toolkit() -> CudaToolkit | None:
    """nvcc from the nvidia-cuda-nvcc wheels, if this environment has one.

    CUDA 13 wheels share one prefix (nvidia/cu13/{bin,include,lib}); CUDA 12
    wheels have one folder per component (nvidia/cuda_nvcc, nvidia/cuda_runtime)."""
    for site in _site_packages():
        nvidia = site / "nvidia"
        for nvcc in sorted(nvidia.glob("*/bin/nvcc")):
            runtimes = sorted(nvidia.glob("*/lib/libcudart.so.*"))
            if not runtimes:
                raise BuildError(f"{nvcc} has no CUDA runtime beside it: install the nvidia cudart wheel of its version")
            cudart = runtimes[0]
            return CudaToolkit(nvcc, [nvcc.parent.parent / "include"], [cudart.parent], str(cudart))
    return None


def nvcc_release(nvcc: Path) -> str:
    """ "13.0" from nvcc --version's "Cuda compilation tools, release 13.0, V13.0.88"."""
    output = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+\.\d+)", output)
    if not match:
        raise BuildError(f"{nvcc} --version does not name a CUDA release:\n{output}")
    return match[1]


def check_nvcc_matches_torch(nvcc: Path, torch_cuda: str) -> None:
    """The variant name says cuXY from torch; code from another nvcc release
    would carry that name without being that build, so refuse it."""
    release = nvcc_release(nvcc)
    wanted = ".".join(torch_cuda.split(".")[:2])
    if release != wanted:
        raise BuildError(
            f"{nvcc} is CUDA {release} but this torch was built with CUDA {wanted}: "
            f"set CUDA_HOME to a CUDA {wanted} toolkit (or build this variant with --isolated)"
        )


def cuda_home() -> Path:
    """The CUDA toolkit root that holds bin/nvcc, include/ and the cudart library.

    Candidates are checked, not trusted: on this project's machines nvcc is a
    launcher in /usr/local/bin, so "the folder above nvcc" is /usr/local, which
    has no lib64/ (the link then fails with "cannot find -lcudart")."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    candidates += ["/usr/local/cuda"]
    for candidate in filter(None, candidates):
        root = Path(candidate)
        has_runtime = any((root / lib / "libcudart.so").exists() for lib in ("lib64", "lib"))
        if (root / "bin" / "nvcc").exists() and (root / "include" / "cuda_runtime.h").exists() and has_runtime:
            return root
    raise BuildError(
        "no CUDA toolkit found: set CUDA_HOME to the folder holding bin/nvcc, include/ and lib64/ "
        f"(tried {', '.join(filter(None, candidates))})"
    )


def pip_cuda_include_dirs() -> list[Path]:
    """Headers of the nvidia-* wheels torch installs (cusparse.h and friends,
    which torch's CUDA headers include and a bare toolkit may lack)."""
    dirs = []
    for site in _site_packages():
        nvidia = site / "nvidia"
        if not nvidia.is_dir():
            continue
        for include in sorted(nvidia.glob("*/include")) + sorted(nvidia.glob("*/*/include")):
            if include.is_dir():
                dirs.append(include)
    return dirs


def cxx_standard_for_torch() -> str:
    """The C++ standard this torch's headers were written for: torch >= 2.13
    refuses anything below C++20, older releases are built and used as C++17
    (mixing the two across the extension boundary is not safe)."""
    import torch.utils.cpp_extension as cpp_extension

    aten_h = Path(cpp_extension.include_paths()[0]) / "ATen" / "ATen.h"
    needs_cxx20 = aten_h.exists() and "C++20" in aten_h.read_text()
    return "c++20" if needs_cxx20 else "c++17"


# --- Compiling -----------------------------------------------------------------------


@dataclass
class CompileJob:
    source: Path
    obj: Path
    command: list[str]


def run_command(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{' '.join(command)}\n{result.stdout}{result.stderr}")


def gencode_flags(capabilities: list[str]) -> list[str]:
    flags = []
    for cap in capabilities:
        digits = cap.replace(".", "")
        flags += ["-gencode", f"arch=compute_{digits},code=sm_{digits}"]
    return flags


def build_variant(
    backend: str,
    *,
    repo_root: Path = REPO_ROOT,
    out_dir: Path | None = None,
    capabilities: list[str] | None = None,
    jobs: int | None = None,
    stable_abi: bool = False,
    log=print,
) -> Path:
    """Build one variant for this environment's torch; returns build/<variant>.
    With ``stable_abi`` the binding is STABLE_BINDING, compiled (with the
    kernels) against torch's stable C ABI of this torch release only."""
    import torch.utils.cpp_extension as cpp_extension

    config = load_config(repo_root)
    if backend not in config.backends:
        raise BuildError(f"backend {backend!r} is not listed in build.toml's backends {config.backends}")
    info = torch_info()
    variant = variant_name(backend, info, stable_abi)
    ops_name = f"_{config.python_name}_{backend}_{source_id(repo_root)}"
    out_dir = Path(out_dir or repo_root / "build")
    variant_dir = out_dir / variant
    work_dir = repo_root / "_build" / variant
    gen_dir = work_dir / "gen"
    gen_dir.mkdir(parents=True, exist_ok=True)
    (gen_dir / "registration.h").write_text(REGISTRATION_H)
    jobs = jobs or os.cpu_count() or 1
    started = time.monotonic()
    log(f"[build] {variant}: ops namespace {ops_name}")

    python_include = sysconfig.get_paths()["include"]
    includes = [GLIBC_SHIM_INCLUDE, gen_dir, *(repo_root / p for p in config.torch_include)]
    if stable_abi:
        includes = [GLIBC_SHIM_INCLUDE, repo_root / STABLE_COMPAT_INCLUDE, repo_root / STABLE_DIR, *includes[1:]]
    includes += [Path(p) for p in cpp_extension.include_paths()] + [Path(python_include)]
    defines = [
        f"-DTORCH_EXTENSION_NAME={ops_name}",
        f"-DPy_LIMITED_API={PY_LIMITED_API}",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(info['cxx11_abi'])}",
        "-DCUDA_KERNEL" if backend == "cuda" else "-DCPU_KERNEL",
    ]
    if stable_abi:
        # Under TORCH_TARGET_VERSION torch's non-stable headers refuse to compile,
        # and the stable ones offer only what that release's ABI has.
        defines += [f"-DTORCH_TARGET_VERSION={stable_target_version(info)}"]
        if backend == "cuda":
            defines += ["-DUSE_CUDA"]  # declares the CUDA stream accessors of the C shim
    cxx = os.environ.get("CXX", "g++")
    cxx_std = cxx_standard_for_torch()
    cxx_flags = [f"-std={cxx_std}", "-fPIC", *config.torch_cxx_flags]

    jobs_list: list[CompileJob] = []
    obj_dir = work_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    toolkit = cuda_toolkit() if backend == "cuda" else None
    if toolkit:
        check_nvcc_matches_torch(toolkit.nvcc, info["cuda"])
    cuda_includes = list(dict.fromkeys([*toolkit.include_dirs, *pip_cuda_include_dirs()])) if toolkit else []

    torch_sources = [STABLE_BINDING if (stable_abi and s == REGULAR_BINDING) else s for s in config.torch_src]
    if stable_abi and STABLE_BINDING not in torch_sources:
        raise BuildError(f"build.toml's [torch] src has no {REGULAR_BINDING} for the stable binding to replace")
    if stable_abi:
        torch_sources += STABLE_EXTRA_SOURCES
    for src in torch_sources:
        if not src.endswith((".cpp", ".cc", ".c")):
            continue
        obj = obj_dir / (Path(src).name + ".o")
        command = [cxx, *cxx_flags, *defines, *(f"-I{p}" for p in includes + cuda_includes),
                   "-c", str(repo_root / src), "-o", str(obj)]
        jobs_list.append(CompileJob(repo_root / src, obj, command))

    if backend == "cuda":
        nvcc = str(toolkit.nvcc)
        for kernel in config.cuda_kernels:
            caps = capabilities or kernel.get("cuda-capabilities") or ["8.0", "8.9", "9.0"]
            kernel_includes = [repo_root / p for p in kernel.get("include", [])]
            for src in kernel["src"]:
                if not src.endswith(".cu"):
                    continue
                obj = obj_dir / (Path(src).name + ".o")
                command = [
                    nvcc, f"-std={cxx_std}", *gencode_flags(caps), *kernel.get("cuda-flags", []),
                    *NVCC_TORCH_FLAGS, *defines, "--threads", str(max(1, jobs)),
                    "-Xcompiler", "-fPIC",
                    *(f"-I{p}" for p in dict.fromkeys([GLIBC_SHIM_INCLUDE, *kernel_includes, *includes, *cuda_includes])),
                    "-c", str(repo_root / src), "-o", str(obj),
                ]
                jobs_list.append(CompileJob(repo_root / src, obj, command))

    sources_digest = _sources_digest(repo_root, config, stable_abi)

    def compile_one(job: CompileJob) -> None:
        stamp = job.obj.with_suffix(".stamp")
        key = hashlib.sha256((" ".join(job.command) + sources_digest).encode()).hexdigest()
        if job.obj.exists() and stamp.exists() and stamp.read_text() == key:
            log(f"[build]   up to date: {job.source.relative_to(repo_root)}")
            return
        log(f"[build]   compiling {job.source.relative_to(repo_root)}")
        t0 = time.monotonic()
        run_command(job.command, f"compiling {job.source.relative_to(repo_root)}")
        stamp.write_text(key)
        log(f"[build]   compiled {job.source.relative_to(repo_root)} in {time.monotonic() - t0:.0f} s")

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(jobs_list)))) as pool:
        for future in [pool.submit(compile_one, job) for job in jobs_list]:
            future.result()

    so_path = work_dir / f"{ops_name}.abi3.so"
    # A stable-ABI binary calls only the C shim (aoti_torch_*, torch_*) of
    # libtorch_cpu (and libtorch_cuda's CUDA stream accessors): no c10, no ATen.
    libs = ["-ltorch_cpu"] if stable_abi else ["-lc10", "-ltorch", "-ltorch_cpu"]
    lib_dirs = [Path(p) for p in cpp_extension.library_paths(device_type="cpu")]
    if backend == "cuda":
        libs += (["-ltorch_cuda"] if stable_abi else ["-lc10_cuda", "-ltorch_cuda"]) + [toolkit.cudart]
        lib_dirs += toolkit.lib_dirs
    run_command(
        [cxx, "-shared", "-o", str(so_path), *(str(j.obj) for j in jobs_list),
         *(f"-L{p}" for p in lib_dirs if p.exists()), *libs],
        "linking",
    )

    if variant_dir.exists():
        shutil.rmtree(variant_dir)
    variant_dir.mkdir(parents=True)
    shutil.copy2(so_path, variant_dir / so_path.name)
    package_dir = repo_root / "torch-ext" / config.python_name
    for py in sorted(package_dir.rglob("*")):
        if py.is_file() and py.suffix in {".py", ".pyi"} and "__pycache__" not in py.parts and py.name != "_ops.py":
            target = variant_dir / py.relative_to(package_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(py, target)
    (variant_dir / "_ops.py").write_text(OPS_PY_TEMPLATE.format(ops_name=ops_name))
    metadata = {
        "name": config.name,
        "id": ops_name,
        "version": config.version,
        "license": config.license,
        "python-depends": [],
        "backend": {"type": backend},
    }
    if backend == "cuda":
        metadata["backend"]["archs"] = list(caps)
    (variant_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    log(f"[build] {variant} done in {time.monotonic() - started:.0f} s -> {variant_dir}")
    return variant_dir


def _sources_digest(repo_root: Path, config: KernelConfig, stable_abi: bool = False) -> str:
    """Hash of every file a compile reads from the repo (headers included)."""
    digest = hashlib.sha256()
    files = list(config.torch_src)
    for kernel in config.cuda_kernels:
        files += kernel["src"]
    if stable_abi:
        files += [str(p.relative_to(repo_root)) for p in (repo_root / STABLE_DIR).rglob("*") if p.is_file()]
    for rel in sorted(set(files)):
        digest.update(rel.encode())
        digest.update((repo_root / rel).read_bytes())
    return digest.hexdigest()


def backends_for_this_machine(config: KernelConfig) -> list[str]:
    """CUDA torch builds both variants (the CUDA one also serves CPU tensors);
    a CPU torch builds the CPU variant."""
    info = torch_info()
    return [b for b in ("cuda", "cpu") if b in config.backends and (b == "cpu" or info["cuda"])]


def main_build(args) -> int:
    if args.all_variants or args.isolated:
        return _main_build_isolated(args)
    config = load_config(REPO_ROOT)
    backends = backends_for_this_machine(config) if args.backend == "all" else [args.backend]
    stable_abi = bool(getattr(args, "stable_abi", False))
    if args.variant:
        info = torch_info()
        stable_abi = args.variant.startswith("torch-stable-abi")
        # Only the backends this torch can build: naming a cuda variant on a CPU-only torch raises.
        matching = [b for b in backends_for_this_machine(config)
                    if variant_name(b, info, stable_abi) == args.variant]
        if not matching:
            available = ", ".join(variant_name(b, info, s) for s in (False, True)
                                  for b in backends_for_this_machine(config))
            raise BuildError(
                f"variant {args.variant} cannot be built with this environment's torch "
                f"{info['torch_version']}; it builds: {available}"
            )
        backends = matching
    started = time.monotonic()
    for backend in backends:
        build_variant(backend, out_dir=args.out, capabilities=args.capabilities, jobs=args.jobs,
                      stable_abi=stable_abi)
    print(f"[build] all done in {time.monotonic() - started:.0f} s")
    return 0


def _main_build_isolated(args) -> int:
    from .variants import MATRIX, build_isolated

    if args.all_variants == bool(args.variant):
        raise BuildError("use either --all-variants or --isolated --variant <name>")
    names = list(MATRIX) if args.all_variants else [args.variant]
    started = time.monotonic()
    # The matrix goes on past a variant that has no compiler here, and says so.
    skipped: dict[str, str] | None = {} if args.all_variants else None
    times = build_isolated(names, out_dir=args.out, capabilities=args.capabilities, jobs=args.jobs,
                           env_root=args.env_cache, skipped=skipped)
    for name, seconds in times.items():
        print(f"[build]   {name}: {seconds:.0f} s")
    for name, reason in (skipped or {}).items():
        print(f"[build]   {name}: not built: {reason}")
    print(f"[build] {len(times)} variant(s) in {time.monotonic() - started:.0f} s")
    return 1 if skipped else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m builder build")
