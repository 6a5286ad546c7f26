"""A CUDA toolkit for a CUDA release that PyPI has no compiler for.

PyPI's ``nvidia-cuda-nvcc-cu12`` wheels (every 12.x release, 12.0.76 to 12.9.86)
hold ``ptxas``, libnvvm and the ``crt/`` headers but no ``nvcc`` driver,
``cicc``, ``cudafe++`` or ``fatbinary``, and the ``cuda-toolkit`` 12.x
metapackage's ``nvcc`` extra is that same wheel. Debian packages NVIDIA's own
binaries of CUDA 12.4 Update 1 in ``non-free`` (trixie: ``nvidia-cuda-toolkit``
12.4.131~12.4.1-2): nvcc, cicc, cudafe++, fatbinary, nvlink, ptxas, the headers
and libcudart 12.4.127, the very runtime torch 2.6.0's wheel depends on
(``nvidia-cuda-runtime-cu12==12.4.127``).

This module downloads those packages with apt (a private apt configuration: the
machine's sources are not touched, nothing is installed), unpacks them with
``dpkg -x`` and lays them out as a usual ``CUDA_HOME`` under the builder cache:
``bin/`` (nvcc and its tools, ``nvcc.profile``), ``nvvm/`` (cicc, libnvvm,
libdevice), ``include/`` and ``lib64/``. The builder's check that
``nvcc --version`` equals ``torch.version.cuda`` still runs on every compile.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .build import BuildError, nvcc_release


@dataclass(frozen=True)
class DebianToolkit:
    release: str  # "12.4"
    suite: str  # Debian suite that carries it
    packages: tuple[str, ...]  # exact name=version pins

    @property
    def key(self) -> str:
        version = next(p for p in self.packages if p.startswith("nvidia-cuda-toolkit=")).split("=", 1)[1]
        return f"cuda-{version.split('~')[0]}-debian-{self.suite}"


DEBIAN_TOOLKITS: dict[str, DebianToolkit] = {
    "12.4": DebianToolkit(
        "12.4",
        "trixie",
        (
            "nvidia-cuda-toolkit=12.4.131~12.4.1-2",  # nvcc, cicc, cudafe++, fatbinary, nvlink, ptxas
            "nvidia-cuda-dev=12.4.127~12.4.1-2",  # headers (cuda_runtime.h, crt/, cuda_fp16.h, ...)
            "libcudart12=12.4.127~12.4.1-2",  # libcudart.so.12.4.127
            "libnvvm4=12.4.131~12.4.1-2",  # libnvvm.so for cicc
            "libcu++-dev=2.3.2-2",  # CCCL 2.3.2, the version CUDA 12.4 ships
            "libcub-dev=2.3.2-2",
            "libthrust-dev=2.3.2-2",
        ),
    ),
}

APT_SOURCES = "deb http://deb.debian.org/debian {suite} main contrib non-free non-free-firmware\n"
STAMP = "rmsnorm-builder-toolkit.txt"


def toolkit_root(release: str, cache: Path) -> Path:
    return cache / "toolkits" / DEBIAN_TOOLKITS[release].key


def ensure_debian_toolkit(release: str, cache: Path, log=print) -> Path:
    """The assembled CUDA_HOME for ``release``; downloads and lays it out once."""
    spec = DEBIAN_TOOLKITS.get(release)
    if spec is None:
        raise BuildError(f"no Debian package set is pinned for CUDA {release}; pinned: {', '.join(DEBIAN_TOOLKITS)}")
    root = toolkit_root(release, cache)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{spec.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = "\n".join(spec.packages) + "\n"
        stamp = root / STAMP
        if stamp.exists() and stamp.read_text() == wanted:
            log(f"[toolkit] CUDA {release}: ready ({root})")
            return root
        started = time.monotonic()
        if root.exists():
            shutil.rmtree(root)
        with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
            tmp = Path(tmp)
            debs = _apt_download(spec, tmp, log)
            unpacked = tmp / "unpacked"
            for deb in debs:
                _run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"unpacking {deb.name}")
            _assemble(unpacked, root)
        release_found = nvcc_release(root / "bin" / "nvcc")
        if release_found != release:
            raise BuildError(f"{root}/bin/nvcc reports CUDA {release_found}, not {release}")
        stamp.write_text(wanted)
        log(f"[toolkit] CUDA {release}: laid out in {time.monotonic() - started:.0f} s ({root})")
        return root


def _apt_download(spec: DebianToolkit, tmp: Path, log) -> list[Path]:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise BuildError(f"CUDA {spec.release} comes from Debian's {spec.suite} packages: needs apt-get and dpkg-deb")
    etc = tmp / "apt"
    (etc / "lists" / "partial").mkdir(parents=True)
    (etc / "cache" / "archives" / "partial").mkdir(parents=True)
    (etc / "parts").mkdir()
    (etc / "sources.list").write_text(APT_SOURCES.format(suite=spec.suite))
    options = [
        "-o", f"Dir::Etc::SourceList={etc / 'sources.list'}",
        "-o", f"Dir::Etc::SourceParts={etc / 'parts'}",
        "-o", f"Dir::State::Lists={etc / 'lists'}",
        "-o", f"Dir::Cache={etc / 'cache'}",
        "-o", "APT::Sandbox::User=root",
        "-qq",
    ]
    log(f"[toolkit] CUDA {spec.release}: apt-get download from Debian {spec.suite}: {' '.join(spec.packages)}")
    _run(["apt-get", *options, "update"], f"apt-get update for Debian {spec.suite}")
    debs = tmp / "debs"
    debs.mkdir()
    _run(["apt-get", *options, "download", *spec.packages], f"apt-get download {' '.join(spec.packages)}", cwd=debs)
    return sorted(debs.glob("*.deb"))


def _assemble(unpacked: Path, root: Path) -> None:
    """Debian's layout (/usr/lib/nvidia-cuda-toolkit/bin, /usr/bin, /usr/include,
    /usr/lib/x86_64-linux-gnu) -> a standard toolkit root."""
    usr = unpacked / "usr"
    debian_bin = usr / "lib" / "nvidia-cuda-toolkit" / "bin"
    libs = usr / "lib" / "x86_64-linux-gnu"
    (root / "bin").mkdir(parents=True)
    (root / "nvvm" / "bin").mkdir(parents=True)
    (root / "nvvm" / "lib64").mkdir(parents=True)
    (root / "lib64").mkdir(parents=True)
    # The real nvcc driver (/usr/bin/nvcc is Debian's shell wrapper around it).
    shutil.move(debian_bin / "nvcc", root / "bin" / "nvcc")
    shutil.move(debian_bin / "crt", root / "bin" / "crt")  # link.stub, prelink.stub
    for tool in ("cudafe++", "fatbinary", "nvlink", "ptxas", "bin2c", "cuobjdump", "nvprune", "nvdisasm", "cu++filt"):
        if (usr / "bin" / tool).exists():
            shutil.move(usr / "bin" / tool, root / "bin" / tool)
    shutil.move(debian_bin / "cicc", root / "nvvm" / "bin" / "cicc")
    shutil.move(usr / "lib" / "nvidia-cuda-toolkit" / "libdevice", root / "nvvm" / "libdevice")
    for lib in libs.glob("libnvvm.so*"):
        shutil.move(lib, root / "nvvm" / "lib64" / lib.name)
    for pattern in ("libcudart.so*", "libcudart_static.a", "libcudadevrt.a", "libculibos.a"):
        for lib in libs.glob(pattern):
            shutil.move(lib, root / "lib64" / lib.name)
    if (libs / "stubs").is_dir():
        shutil.move(libs / "stubs", root / "lib64" / "stubs")
    shutil.move(usr / "include", root / "include")
    # What a toolkit installed by NVIDIA's installer has beside nvcc; the one
    # Debian ships (/etc/nvcc.profile) points at /usr.
    (root / "bin" / "nvcc.profile").write_text(
        "TOP = $(_HERE_)/..\n"
        "NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice\n"
        "LD_LIBRARY_PATH += $(TOP)/lib64:$(TOP)/nvvm/lib64:\n"
        "PATH += $(TOP)/nvvm/bin:$(_HERE_):\n"
        'INCLUDES += "-I$(TOP)/include" $(_SPACE_)\n'
        'LIBRARIES =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"\n'
        "CUDAFE_FLAGS +=\n"
        "PTXAS_FLAGS +=\n"
    )


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
