"""The builder's output is kernel-builder's layout, and the loader accepts it."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kernels._rust import Build, Metadata

from conftest import BUILD_DIR, REPO_ID, REPO_ROOT, VERSION

# torch26 wheels use the pre-cxx11 ABI (cxx98); torch-stable-abiXY: built on torch's stable C ABI.
VARIANT_RE = re.compile(
    r"^(?:torch(\d)(\d+)-(?:cxx11|cxx98)|torch-stable-abi(\d)(\d+))-(?P<backend>cu\d+|cpu)-(x86_64|aarch64)-linux$")


def variant_dirs():
    return sorted(p.parent for p in BUILD_DIR.glob("*/metadata.json"))


def test_build_toml_accepted_by_kernels_parser():
    Build.open(str(REPO_ROOT))


def test_this_machine_variants_were_built():
    major, minor = torch.__version__.split(".")[:2]
    names = {p.name for p in variant_dirs()}
    assert f"torch{major}{minor}-cxx11-cpu-x86_64-linux" in names or sys.platform != "linux"
    if torch.version.cuda:
        cu = "cu" + "".join(torch.version.cuda.split(".")[:2])
        assert f"torch{major}{minor}-cxx11-{cu}-x86_64-linux" in names


@pytest.mark.parametrize("variant", variant_dirs(), ids=lambda p: p.name)
def test_variant_layout(variant):
    match = VARIANT_RE.match(variant.name)
    assert match, variant.name
    backend = "cpu" if match["backend"] == "cpu" else "cuda"

    metadata = Metadata.read_from_file(variant / "metadata.json")
    raw = json.loads((variant / "metadata.json").read_text())
    assert str(metadata.name) == "rmsnorm" and metadata.version == VERSION
    assert metadata.license == "Apache-2.0" and metadata.python_depends == []
    assert str(metadata.backend.backend_type).lower().endswith(backend)
    assert re.fullmatch(rf"_rmsnorm_{backend}_[0-9a-f]{{7}}(_dirty)?", metadata.id), metadata.id
    if backend == "cuda":
        assert {"8.0", "8.9", "9.0"} <= set(raw["backend"]["archs"])

    files = {p.name for p in variant.iterdir()}
    assert {"__init__.py", "_ops.py", "layers.py", "metadata.json", f"{metadata.id}.abi3.so"} <= files
    ops_py = (variant / "_ops.py").read_text()
    assert f"torch.ops.{metadata.id}" in ops_py and f"from . import {metadata.id}" in ops_py


def test_get_local_kernel_on_build_dir():
    from kernels import get_local_kernel

    kernel = get_local_kernel(BUILD_DIR)
    x = torch.randn(2, 16)
    assert kernel.rms_norm(x, torch.ones(16), 1e-6).shape == (2, 16)


def test_cpu_variant_loads_and_is_exact():
    """The torch<MAJ><MIN>-cxx11-cpu variant, as a CPU build of torch would pick it."""
    from kernels import get_kernel
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    kernel = get_kernel(REPO_ID, version=VERSION, backend="cpu")
    assert "_cpu_" in kernel.__name__
    module = LlamaRMSNorm(300, eps=1e-5)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
    x = torch.randn(5, 300)
    with torch.no_grad():
        assert torch.equal(kernel.rms_norm(x, module.weight, 1e-5), module(x))


def test_no_generated_files_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    generated = [f for f in tracked if f.startswith("build/") or f.endswith((".so", "/_ops.py", "registration.h"))]
    assert generated == []


def test_get_kernel_offline_from_published_cache(tmp_path):
    """The real build, published into a Hugging Face cache exactly as a
    download leaves it, loads with get_kernel(version=1) and HF_HUB_OFFLINE=1."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "LOCAL_KERNELS"}
    publish = subprocess.run(
        [sys.executable, "-m", "builder", "publish-cache", "--build-dir", str(BUILD_DIR), "--cache-dir", str(tmp_path)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True,
    )
    assert publish.returncode == 0, publish.stderr
    code = (
        "import torch, kernels\n"
        f"k = kernels.get_kernel({REPO_ID!r}, version={VERSION})\n"
        "assert k.__name__.startswith('_rmsnorm_'), k.__name__\n"
        f"assert {str(tmp_path)!r} in k.__file__, k.__file__\n"
        "x = torch.randn(3, 64); w = torch.rand(64) + 0.5\n"
        "xf = x.float(); ref = w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6))\n"
        "torch.testing.assert_close(k.rms_norm(x, w, 1e-6), ref)\n"
        "print('loaded', k.__name__)\n"
    )
    env.update(HF_HUB_OFFLINE="1", KERNELS_CACHE=str(tmp_path), HF_HUB_CACHE=str(tmp_path))
    load = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert load.returncode == 0, load.stderr[-2000:]
    assert "loaded _rmsnorm_" in load.stdout


def test_kernels_info_reads_every_variant():
    """`kernels info <repo>` (the loader's own CLI) parses build/: every variant
    folder is a variant name it understands and the metadata it reads is ours."""
    from kernels.variants import get_variants_local

    parsed = {v.variant_str for v in get_variants_local(BUILD_DIR)}
    assert parsed == {p.name for p in variant_dirs()}

    kernels_cli = Path(sys.executable).parent / "kernels"
    if not kernels_cli.exists():
        pytest.skip("the kernels console script is not installed beside this python")
    result = subprocess.run([str(kernels_cli), "info", "--json", str(REPO_ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    backends = {json.loads((p / "metadata.json").read_text())["backend"]["type"] for p in variant_dirs()}
    assert info["name"] == "rmsnorm" and info["version"] == VERSION and info["license"] == "Apache-2.0"
    assert set(info["backends"]) == backends


def test_card_is_generated_from_the_build(tmp_path):
    from builder.card import newest_plot, render_card

    card = render_card(BUILD_DIR)
    front_matter = card.split("---\n")[1]
    assert "library_name: kernels" in front_matter.splitlines()
    assert "license: apache-2.0" in front_matter.splitlines()
    for variant in variant_dirs():
        assert f"| `{variant.name}` |" in card
    assert "- `rms_norm(x: torch.Tensor" in card and "- `layers.RMSNorm`" in card
    plot = newest_plot(REPO_ROOT)
    assert (REPO_ROOT / "benchmarks" / "results" / plot).is_file() and plot in card
    assert "{" + "variants}" not in card and f'get_kernel("{REPO_ID}", version={VERSION}' in card

    written = subprocess.run([sys.executable, "-m", "builder", "card", "--output", str(tmp_path / "CARD.md")],
                             cwd=REPO_ROOT, capture_output=True, text=True)
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "CARD.md").read_text() == card


def test_card_table_rows_come_from_metadata(tmp_path):
    from builder.card import variant_rows, variants_table

    for name, backend in [("torch210-cxx11-cu128-x86_64-linux", {"type": "cuda", "archs": ["8.0", "9.0"]}),
                          ("torch213-cxx11-cpu-x86_64-linux", {"type": "cpu"})]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.json").write_text(json.dumps({"backend": backend}))
    table = variants_table(variant_rows(tmp_path)).splitlines()
    assert table[2:] == ["| `torch210-cxx11-cu128-x86_64-linux` | CUDA (+ CPU tensors) | 8.0, 9.0 |",
                         "| `torch213-cxx11-cpu-x86_64-linux` | CPU | — |"]


def cuobjdump_path():
    """cuobjdump from the CUDA toolkit the builder uses, else Triton's bundled copy (a torch dependency)."""
    from builder.build import BuildError, cuda_home

    try:
        toolkit_tool = cuda_home() / "bin" / "cuobjdump"
        if toolkit_tool.exists():
            return str(toolkit_tool)
    except BuildError:
        pass
    try:
        import triton
    except ImportError:
        return None
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return str(bundled) if bundled.exists() else None


CUDA_VARIANTS = [v for v in variant_dirs() if re.search(r"-cu\d+-", v.name)]


@pytest.mark.parametrize("variant", CUDA_VARIANTS, ids=lambda p: p.name)
def test_static_shared_memory_within_the_launch_bound(variant):
    """allow_dynamic_smem skips the driver call when dynamic bytes plus
    kStaticSharedBound fit the 48 KB default; that holds only if no kernel's
    static shared memory exceeds the bound (a kernel over it would fail to
    launch with 'invalid argument' near 48 KB: the fp32 span kernel at 7x4096
    did, session 8)."""
    tool = cuobjdump_path()
    if tool is None:
        pytest.skip("no cuobjdump here (CUDA toolkit or triton)")
    header = (REPO_ROOT / "rmsnorm_cuda" / "norm_math.cuh").read_text()
    bound = re.search(r"kStaticSharedBound = (\d+) \* 1024;", header)
    assert bound, "kStaticSharedBound not found in norm_math.cuh"
    library = next(variant.glob("*.abi3.so"))
    report = subprocess.run([tool, "-res-usage", str(library)], capture_output=True, text=True, check=True).stdout
    shared = [int(s) for s in re.findall(r"\bSHARED:(\d+)", report)]
    assert shared, "no kernels in the cuobjdump report"
    assert max(shared) <= int(bound[1]) * 1024, max(shared)


def row_block_kernels_same_type(mangled_args):
    """Whether a row-block instance's weight has the input's type, from the
    mangled template arguments (T first: `f`, or `N3c10...E` then `S2_` for
    the same type again)."""
    if mangled_args.startswith("f"):
        return mangled_args[1] == "f"
    return mangled_args[mangled_args.index("E") + 1:].startswith("S2_")


def kernel_resource_usage(variant, kernel):
    """(mangled name, template arguments, registers, stack, local bytes,
    architecture) of every instance of `kernel` in the variant's library,
    per architecture (cuobjdump -res-usage); skips where this machine has no
    cuobjdump."""
    tool = cuobjdump_path()
    if tool is None:
        pytest.skip("no cuobjdump here (CUDA toolkit or triton)")
    library = next(variant.glob("*.abi3.so"))
    report = subprocess.run([tool, "-res-usage", str(library)], capture_output=True, text=True, check=True).stdout
    entries = []
    for arch, section in re.findall(r"arch = (sm_\d+)(.*?)(?=arch = sm_|\Z)", report, flags=re.S):
        found = re.findall(rf"Function (\S*{kernel}I(\S+?)EEvNS\S*):\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:\d+ "
                           r"LOCAL:(\d+)", section)
        entries += [(*entry, arch) for entry in found]
    return entries


@pytest.mark.parametrize("variant", CUDA_VARIANTS, ids=lambda p: p.name)
def test_row_block_kernel_fits_its_register_cap_without_spills(variant):
    """rms_norm_aten_row_block_kernel's launch bounds (row_block_min_blocks)
    cap its registers: aligned rows whose weight and input share a type at
    64 (80 registers cost 8192x5120 0.98 -> 0.84 of copy, NOTES.md v16), odd
    rows, which wait out the sum with the row in shared memory, at 40 (12
    blocks of 128 threads per SM; v20), a weight of another type at 128
    (aligned) or 64 (odd). The caps must not be bought with local memory
    (no stack, no local bytes) on any architecture the variant was built
    for; every kind of instance is there."""
    entries = kernel_resource_usage(variant, "rms_norm_aten_row_block_kernel")
    assert len(entries) >= 44, len(entries)  # every instance, at least once per architecture
    kinds = {}
    for name, args, registers, stack, local, arch in entries:
        assert int(stack) == 0 and int(local) == 0, (name, arch, stack, local)
        # template arguments end ...Lb<weight>ELb<fused>ELb<fp32 scale>ELb<odd rows>E
        flags = re.search(r"Lb(\d)ELb(\d)ELb(\d)ELb(\d)E$", args)
        assert flags, args
        odd, same_type = flags[4] == "1", row_block_kernels_same_type(args)
        cap = {(False, True): 64, (True, True): 40, (False, False): 128, (True, False): 64}[(odd, same_type)]
        kinds[(odd, same_type)] = kinds.get((odd, same_type), 0) + 1
        assert int(registers) <= cap, (name, arch, registers, cap)
    assert len(kinds) == 4, kinds


@pytest.mark.parametrize("variant", CUDA_VARIANTS, ids=lambda p: p.name)
def test_short_row_kernel_holds_its_rows_without_spills(variant):
    """rms_norm_aten_short_rows_kernel (v21) holds a thread's two 16-byte
    chunks and their weight in registers: no instance in local memory on
    any architecture the variant was built for, all of them 16-bit inputs
    (fp32 rows stay with the register kernel), at most 64 registers (four
    256-thread blocks per SM) and the bf16 Llama-order instances with a bf16
    weight at most 40 (six; 32-40 measured)."""
    entries = kernel_resource_usage(variant, "rms_norm_aten_short_rows_kernel")
    assert entries, "no short-row kernel in the cuobjdump report"
    llama_bf16 = 0
    for name, args, registers, stack, local, arch in entries:
        assert int(stack) == 0 and int(local) == 0, (name, arch, stack, local)
        assert args.startswith(("N3c108BFloat16E", "N3c104HalfE")), args
        assert int(registers) <= 64, (name, arch, registers)
        # template arguments end ...Lb<weight>ELb<fp32 scale>ELi<lanes>ELi<groups>ELi<rows>E
        flags = re.search(r"Lb(\d)ELb(\d)ELi(\d+)ELi(\d+)ELi(\d+)E$", args)
        assert flags and flags[3] == "2" and int(flags[4]) * int(flags[5]) == 2, args
        if args.startswith("N3c108BFloat16ES2_S2_S2_") and flags[1] == "1" and flags[2] == "0":
            llama_bf16 += 1
            assert int(registers) <= 40, (name, arch, registers)
    assert llama_bf16 > 0, len(entries)


@pytest.mark.parametrize("variant", CUDA_VARIANTS, ids=lambda p: p.name)
def test_folded_kernel_holds_its_rows_without_spills(variant):
    """rms_norm_aten_folded_kernel holds every group of its ATen threads (x
    and the weight; the fused op's addend too) in registers: no instance may
    reach for local memory (the launch bounds cap registers per instance:
    a spill is how a cap too tight shows), and the split layouts'
    256-thread bf16 instances (bf16 weight or none, Llama order, unfused)
    are compiled for five blocks per SM (48 registers), on any architecture
    the variant was built for, and for six (40) on sm_90 where they read x
    twice (kReload, Hopper only)."""
    entries = kernel_resource_usage(variant, "rms_norm_aten_folded_kernel")
    assert entries, "no folded kernel in the cuobjdump report"
    split_256 = 0
    for name, args, registers, stack, local, arch in entries:
        assert int(stack) == 0 and int(local) == 0, (name, arch, stack, local)
        # template arguments end ...Lb<weight>ELb<fused>ELb<fp32 scale>ELb<split>ELi<threads>ELi<per thread>ELi<groups>E
        # Lb<reload>E
        flags = re.search(r"Lb(\d)ELb(\d)ELb(\d)ELb(\d)ELi(\d+)ELi(\d+)ELi(\d+)ELb(\d)E$", args)
        assert flags, args
        fused, fp32_scale, split, threads = flags[2] == "1", flags[3] == "1", flags[4] == "1", int(flags[5])
        llama_order = not fp32_scale
        if split and threads == 256 and not fused and llama_order and args.startswith("N3c108BFloat16ES2_S2_S2_"):
            split_256 += 1
            reload = flags[8] == "1"
            if reload and arch != "sm_90":
                continue  # (read-twice instances off Hopper: the rule never runs them; four blocks)
            assert int(registers) <= (40 if reload else 48), (name, arch, registers)
    assert split_256 > 0, len(entries)
