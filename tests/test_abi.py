"""Every built .so is loadable where the Hub says it is: Python's stable ABI
from 3.9 and manylinux_2_28 (glibc 2.28), checked with kernel-abi-check and,
independently, with the dynamic symbol table itself."""

import re
import shutil
import subprocess
import sys

import pytest

from builder.build import GLIBC_SHIM_INCLUDE, MANYLINUX
from conftest import BUILD_DIR

kernel_abi_check = pytest.importorskip("kernel_abi_check")

SHARED_OBJECTS = sorted(BUILD_DIR.glob("*/*.so"))
MAX_GLIBC = tuple(int(p) for p in MANYLINUX.split("_")[1:])  # (2, 28)


def test_there_is_something_to_check():
    assert SHARED_OBJECTS, f"no variants in {BUILD_DIR}: run python -m builder build"


@pytest.mark.parametrize("so", SHARED_OBJECTS, ids=lambda p: p.parent.name)
def test_kernel_abi_check(so):
    binary = kernel_abi_check.ObjectFile(str(so))
    assert binary.check_python_abi("3.9") == []
    assert binary.check_manylinux(MANYLINUX) == []


def _glibc_versions(so) -> set[tuple[int, ...]]:
    symbols = subprocess.run(["nm", "-D", "--undefined-only", str(so)],
                             capture_output=True, text=True, check=True).stdout
    return {tuple(int(p) for p in v.split(".")) for v in re.findall(r"@GLIBC_([0-9.]+)", symbols)}


@pytest.mark.skipif(shutil.which("nm") is None, reason="binutils' nm not installed")
@pytest.mark.parametrize("so", SHARED_OBJECTS, ids=lambda p: p.parent.name)
def test_no_glibc_symbol_newer_than_manylinux(so):
    too_new = sorted(v for v in _glibc_versions(so) if v > MAX_GLIBC)
    assert too_new == [], f"{so.name} needs GLIBC {too_new}"


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("nm") is None, reason="needs g++ and nm")
def test_shim_removes_libc_single_threaded(tmp_path):
    """The reference libstdc++ makes on glibc >= 2.32 (copy-on-write strings,
    shared_ptr's refcount) disappears once the shim is first on the path."""
    source = tmp_path / "uses_refcount.cpp"
    source.write_text("#include <memory>\n#include <string>\n"
                      "std::shared_ptr<std::string> keep(std::shared_ptr<std::string> p) { auto q = p; return q; }\n")

    def undefined(*flags):
        obj = tmp_path / "out.o"
        subprocess.run(["g++", "-std=c++17", "-O2", "-fPIC", *flags, "-c", str(source), "-o", str(obj)], check=True)
        return subprocess.run(["nm", "--undefined-only", str(obj)], capture_output=True, text=True, check=True).stdout

    if "__libc_single_threaded" not in undefined():
        pytest.skip("this toolchain's libstdc++ does not read __libc_single_threaded (glibc < 2.32)")
    assert "__libc_single_threaded" not in undefined(f"-I{GLIBC_SHIM_INCLUDE}")
