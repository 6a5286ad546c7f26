"""The variant matrix and its isolated environments: names, pins, env reuse
and the child build command. Nothing here downloads or compiles."""

import os
import subprocess
from pathlib import Path

import pytest

from builder import build, cli, variants
from builder.build import BuildError
from builder.variants import MATRIX, TORCH_RELEASES, env_spec, parse_variant

ISSUE_VARIANTS = {
    "torch210-cxx11-cu128-x86_64-linux",
    "torch211-cxx11-cu130-x86_64-linux",
    "torch214-cxx11-cu130-x86_64-linux",
    "torch213-cxx11-cpu-x86_64-linux",
    "torch214-cxx11-cpu-x86_64-linux",
}


def test_matrix_has_the_required_variants():
    assert ISSUE_VARIANTS <= set(MATRIX)
    assert len(set(MATRIX)) == len(MATRIX)


@pytest.mark.parametrize("name", MATRIX)
def test_names_parse_as_the_kernels_loader_parses_them(name):
    from kernels.variants import parse_variant as loader_parse

    ours, theirs = parse_variant(name), loader_parse(name)
    assert theirs.variant_str == name
    assert f"torch{theirs.framework.version.major}{theirs.framework.version.minor}" == ours.torch_tag
    loader_cuda = getattr(theirs.arch.backend, "version", None)
    assert ours.cuda == (str(loader_cuda) if ours.backend == "cuda" else None)
    assert ours.backend == ("cuda" if ours.cuda else "cpu")


@pytest.mark.parametrize("name", ["torch214-cxx98-cpu-x86_64-linux", "torch26-cxx11-cu124-x86_64-linux",
                                  "torch214-cu130-x86_64-linux",
                                  "torch214-cxx11-rocm63-x86_64-linux", "torch214-cxx11-cpu-x86_64-darwin", ""])
def test_bad_names_are_rejected(name):
    with pytest.raises(BuildError):
        parse_variant(name)


def test_cuda_version_digits():
    assert parse_variant("torch210-cxx11-cu128-x86_64-linux").cuda == "12.8"
    assert parse_variant("torch214-cxx11-cu130-x86_64-linux").cuda == "13.0"
    assert parse_variant("torch29-cxx11-cu126-x86_64-linux").torch_tag == "torch29"


@pytest.mark.parametrize("name", MATRIX)
def test_every_requirement_is_an_exact_pin(name):
    spec = env_spec(parse_variant(name))
    assert spec.requirements, name
    for requirement in spec.requirements:
        assert "==" in requirement and not requirement.endswith(".*"), requirement
    torch_pin = spec.requirements[0]
    major_minor = parse_variant(name).torch_tag[len("torch"):]
    assert torch_pin.startswith(f"torch=={major_minor[0]}.{major_minor[1:]}."), torch_pin


@pytest.mark.parametrize("name", [n for n in MATRIX if "-cu" in n])
def test_cuda_variants_pin_the_nvcc_of_their_cuda(name, monkeypatch):
    variant = parse_variant(name)
    spec = env_spec(variant)
    nvcc_pins = [r for r in spec.requirements if "nvcc" in r]
    var = variants.external_toolkit_var(variant.cuda)
    monkeypatch.delenv(var, raising=False)
    if variant.cuda.startswith("12."):
        # No CUDA 12 nvcc on PyPI: Debian's packages of that release, or a root named from outside.
        assert nvcc_pins == []
        if TORCH_RELEASES[variant.torch_tag].toolkit_source == "debian":
            from builder.toolkit import DEBIAN_TOOLKITS

            assert variants.missing_toolkit(variant) is None
            assert DEBIAN_TOOLKITS[variant.cuda].release == variant.cuda
        else:
            assert var in variants.missing_toolkit(variant)
        return
    assert len(nvcc_pins) == 1, spec.requirements
    assert nvcc_pins[0].split("==")[1].startswith(variant.cuda + "."), nvcc_pins[0]
    assert variants.missing_toolkit(variant) is None


def test_external_toolkit_is_passed_to_that_variant_only(monkeypatch, tmp_path):
    _touch(tmp_path / "bin" / "nvcc")
    monkeypatch.setenv("RMSNORM_CUDA_HOME_CU128", str(tmp_path))
    cu128 = parse_variant("torch210-cxx11-cu128-x86_64-linux")
    assert variants.missing_toolkit(cu128) is None
    python = Path("/env/bin/python")
    assert variants.isolated_child_env(python, cu128)["CUDA_HOME"] == str(tmp_path)
    assert "CUDA_HOME" not in variants.isolated_child_env(python, parse_variant("torch214-cxx11-cu130-x86_64-linux"))


def test_matrix_skips_a_variant_without_compiler(monkeypatch, tmp_path):
    monkeypatch.delenv("RMSNORM_CUDA_HOME_CU128", raising=False)
    monkeypatch.setattr(variants, "ensure_env", lambda *a: pytest.fail("created an env"))
    skipped = {}
    times = variants.build_isolated(["torch210-cxx11-cu128-x86_64-linux"], env_root=tmp_path,
                                    skipped=skipped, log=lambda *_: None)
    assert times == {} and "RMSNORM_CUDA_HOME_CU128" in skipped["torch210-cxx11-cu128-x86_64-linux"]
    with pytest.raises(BuildError, match="RMSNORM_CUDA_HOME_CU128"):
        variants.build_isolated(["torch210-cxx11-cu128-x86_64-linux"], env_root=tmp_path, log=lambda *_: None)


def test_nvcc_of_another_cuda_release_is_refused(monkeypatch):
    monkeypatch.setattr(build, "nvcc_release", lambda nvcc: "13.0")
    build.check_nvcc_matches_torch(Path("nvcc"), "13.0")
    with pytest.raises(BuildError, match="CUDA 13.0 but this torch was built with CUDA 12.8"):
        build.check_nvcc_matches_torch(Path("nvcc"), "12.8")


def test_nvcc_release_is_read_from_version_output(tmp_path):
    fake = tmp_path / "nvcc"
    fake.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.8, V12.8.93'\n")
    fake.chmod(0o755)
    assert build.nvcc_release(fake) == "12.8"


def test_cpu_only_wheel_for_torch213():
    assert TORCH_RELEASES["torch213"].cuda is None
    assert env_spec(parse_variant("torch213-cxx11-cpu-x86_64-linux")).requirements == ("torch==2.13.0+cpu",)


def test_both_variants_of_one_release_share_an_environment():
    cuda = env_spec(parse_variant("torch214-cxx11-cu130-x86_64-linux"))
    cpu = env_spec(parse_variant("torch214-cxx11-cpu-x86_64-linux"))
    assert cuda == cpu and cuda.key == "torch-2.14.1-cu130"
    keys = {env_spec(parse_variant(n)).key for n in MATRIX}
    assert keys == {"torch-2.6.0-cu124", "torch-2.10.0-cu128", "torch-2.11.0-cu130", "torch-2.13.0-cpu",
                    "torch-2.14.1-cu130"}


@pytest.mark.parametrize("name, message", [
    ("torch210-cxx11-cu130-x86_64-linux", "built with CUDA 12.8, not CUDA 13.0"),
    ("torch213-cxx11-cu130-x86_64-linux", "CPU-only wheel"),
    ("torch299-cxx11-cpu-x86_64-linux", "no pinned torch for torch299"),
])
def test_unbuildable_variants_say_why(name, message):
    with pytest.raises(BuildError, match=message):
        env_spec(parse_variant(name))


def test_cache_root_override(monkeypatch, tmp_path):
    monkeypatch.setenv(variants.CACHE_ENV_VAR, str(tmp_path))
    assert variants.cache_root() == tmp_path
    monkeypatch.delenv(variants.CACHE_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert variants.cache_root() == tmp_path / "xdg" / "rmsnorm-builder"


def _fake_env(root: Path, spec: variants.EnvSpec) -> Path:
    env_dir = root / "envs" / spec.key
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "python").write_text("")
    (env_dir / "rmsnorm-builder-requirements.txt").write_text("\n".join(spec.requirements) + "\n")
    return env_dir / "bin" / "python"


def test_ready_environment_is_reused_without_pip(monkeypatch, tmp_path):
    spec = env_spec(parse_variant("torch214-cxx11-cpu-x86_64-linux"))
    python = _fake_env(tmp_path, spec)
    monkeypatch.setattr(variants, "_run", lambda *a: pytest.fail(f"ran {a}"))
    assert variants.ensure_env(spec, tmp_path, log=lambda *_: None) == python


def test_changed_pins_reinstall(monkeypatch, tmp_path):
    spec = env_spec(parse_variant("torch214-cxx11-cpu-x86_64-linux"))
    python = _fake_env(tmp_path, spec)
    (python.parent.parent / "rmsnorm-builder-requirements.txt").write_text("torch==2.14.0\n")
    ran = []
    monkeypatch.setattr(variants, "_run", lambda command, what: ran.append(command))
    variants.ensure_env(spec, tmp_path, log=lambda *_: None)
    assert ran == [[str(python), "-m", "pip", "install", "--quiet", *spec.requirements]]


def test_isolated_build_runs_the_environment_python(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", "/somewhere/else")
    monkeypatch.setenv("VIRTUAL_ENV", "/work/main/.venv")
    fake_python = tmp_path / "env" / "bin" / "python"
    monkeypatch.setattr(variants, "ensure_env", lambda spec, root, log: fake_python)
    calls = []

    def fake_run(command, cwd, env):
        calls.append((command, cwd, env))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(variants.subprocess, "run", fake_run)
    _touch(tmp_path / "cuda128" / "bin" / "nvcc")
    monkeypatch.setenv("RMSNORM_CUDA_HOME_CU128", str(tmp_path / "cuda128"))
    times = variants.build_isolated(["torch210-cxx11-cu128-x86_64-linux"], out_dir=tmp_path / "out",
                                    capabilities=["9.0"], jobs=1, env_root=tmp_path, log=lambda *_: None)
    assert list(times) == ["torch210-cxx11-cu128-x86_64-linux"]
    (command, cwd, env), = calls
    assert command == [str(fake_python), "-m", "builder", "build", "--variant", "torch210-cxx11-cu128-x86_64-linux",
                       "--out", str((tmp_path / "out").resolve()), "--capabilities", "9.0", "--jobs", "1"]
    assert cwd == build.REPO_ROOT
    assert env["CUDA_HOME"] == str(tmp_path / "cuda128") and "VIRTUAL_ENV" not in env
    assert env["PATH"].split(os.pathsep)[0] == str(fake_python.parent)


def test_isolated_build_checks_every_pin_before_building(monkeypatch, tmp_path):
    monkeypatch.setattr(variants, "ensure_env", lambda *a: pytest.fail("created an env"))
    with pytest.raises(BuildError, match="CPU-only"):
        variants.build_isolated(["torch214-cxx11-cpu-x86_64-linux", "torch213-cxx11-cu130-x86_64-linux"],
                                env_root=tmp_path, log=lambda *_: None)


def test_cli_lists_the_matrix(capsys):
    assert cli.main(["variants"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(MATRIX)


def test_cli_needs_one_of_all_variants_or_variant(capsys):
    assert cli.main(["build", "--all-variants", "--variant", "torch214-cxx11-cpu-x86_64-linux"]) == 1
    assert cli.main(["build", "--isolated"]) == 1
    assert "either --all-variants or --isolated --variant" in capsys.readouterr().err


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


@pytest.mark.parametrize("layout", ["cu13", "cu12"])
def test_toolkit_from_nvcc_wheels(monkeypatch, tmp_path, layout):
    nvidia = tmp_path / "nvidia"
    if layout == "cu13":  # one prefix for every CUDA 13 component
        nvcc = _touch(nvidia / "cu13" / "bin" / "nvcc")
        cudart = _touch(nvidia / "cu13" / "lib" / "libcudart.so.13")
    else:  # one folder per CUDA 12 component
        nvcc = _touch(nvidia / "cuda_nvcc" / "bin" / "nvcc")
        cudart = _touch(nvidia / "cuda_runtime" / "lib" / "libcudart.so.12")
    monkeypatch.setattr(build, "_site_packages", lambda: [tmp_path])
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    toolkit = build.cuda_toolkit()
    assert toolkit.nvcc == nvcc and toolkit.cudart == str(cudart)
    assert toolkit.include_dirs == [nvcc.parent.parent / "include"] and toolkit.lib_dirs == [cudart.parent]


def test_no_nvcc_wheel_means_the_system_toolkit(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "_site_packages", lambda: [tmp_path])
    assert build.pip_cuda_toolkit() is None


# --- The CUDA 12 variant (torch 2.6.0 + Debian's CUDA 12.4.1 compiler) --------------
# Built only by `python -m builder build --isolated --variant torch26-cxx98-cu124-x86_64-linux`
# (a 5 GB environment and a 1 GB toolkit download): CI never builds it, and the
# tests over the built folder skip when it is not there.

CU124 = "torch26-cxx98-cu124-x86_64-linux"
CU124_DIR = build.REPO_ROOT / "build" / CU124


def test_cu124_variant_is_in_the_matrix_with_a_debian_toolkit():
    from builder.toolkit import DEBIAN_TOOLKITS

    assert CU124 in MATRIX
    release = TORCH_RELEASES["torch26"]
    assert release.pin == "torch==2.6.0" and release.cuda == "12.4" and release.toolkit_source == "debian"
    pins = dict(p.split("=", 1) for p in DEBIAN_TOOLKITS["12.4"].packages)
    # nvcc 12.4.131 and cudart 12.4.127: CUDA 12.4 Update 1, the runtime torch 2.6.0 requires.
    assert pins["nvidia-cuda-toolkit"].startswith("12.4.131~12.4.1-")
    assert pins["libcudart12"].startswith("12.4.127~12.4.1-")


@pytest.mark.parametrize("torch_version, cxx11, cuda, accepted", [
    ("2.6", False, "12.4", True),
    ("2.6", False, "12.8", True),   # a newer 12.x driver/runtime still takes cu124
    ("2.6", True, "12.4", False),   # a cxx11 build of torch 2.6 must not load it
    ("2.7", False, "12.4", False),
    ("2.6", False, "13.0", False),
])
def test_loader_selects_cu124_only_for_torch26_cxx98(torch_version, cxx11, cuda, accepted):
    from kernels.backends import CUDA
    from kernels.variants import VariantAccepted, _resolve_variant_for_system
    from kernels.variants import parse_variant as loader_parse
    from packaging.version import Version

    variant = loader_parse(CU124)
    assert variant.framework.cxx11_abi is False and str(variant.arch.backend.version) == "12.4"
    chosen, trace = _resolve_variant_for_system(
        variants=[variant], selected_backend=CUDA(version=Version(cuda)), cpu="x86_64", os="linux",
        torch_version=Version(torch_version), torch_cxx11_abi=cxx11, tvm_ffi_version=None)
    assert isinstance(trace[0], VariantAccepted) == accepted, trace
    assert chosen == ([variant] if accepted else [])


def _built_cu124():
    if not (CU124_DIR / "metadata.json").exists():
        pytest.skip(f"{CU124} not built (python -m builder build --isolated --variant {CU124})")
    return CU124_DIR


def test_cu124_build_folder():
    import json

    folder = _built_cu124()
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["backend"]["type"] == "cuda" and metadata["backend"]["archs"]
    so, = folder.glob("*.abi3.so")
    assert so.name == f"{metadata['id']}.abi3.so" and metadata["id"].startswith("_rmsnorm_cuda_")
    needed = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
    assert "[libcudart.so.12]" in needed  # linked with CUDA 12's runtime, not 13's
    assert "libcudart.so.13" not in needed


def test_cu124_variant_runs_under_torch26(tmp_path):
    """Imports the built package with torch 2.6.0 (the environment that built it)
    and checks its CPU path against HF's LlamaRMSNorm forward, bit for bit."""
    folder = _built_cu124()
    python = variants.cache_root() / "envs" / env_spec(parse_variant(CU124)).key / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no torch 2.6.0 environment at {python.parent.parent}")
    script = tmp_path / "check.py"
    script.write_text(f"""
import importlib.util, sys, torch
assert torch.__version__.startswith("2.6.0") and torch.version.cuda == "12.4"
spec = importlib.util.spec_from_file_location("rmsnorm_cu124", {str(folder / "__init__.py")!r},
                                              submodule_search_locations=[{str(folder)!r}])
module = importlib.util.module_from_spec(spec)
sys.modules["rmsnorm_cu124"] = module
spec.loader.exec_module(module)

def llama_rms_norm(x, weight, eps):  # transformers' LlamaRMSNorm.forward
    input_dtype = x.dtype
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return weight * x.to(input_dtype)

torch.manual_seed(0)
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    for shape in ((3, 64), (2, 5, 4096), (1, 7, 3000)):
        x = torch.randn(shape, dtype=dtype)
        w = torch.randn(shape[-1], dtype=dtype)
        got, want = module.rms_norm(x, w, 1e-6), llama_rms_norm(x, w, 1e-6)
        assert got.dtype == want.dtype and torch.equal(got, want), (dtype, shape)
print("ok")
""")
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    result = subprocess.run([str(python), str(script)], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr


# --- torch stable-ABI variants ------------------------------------------------------
# Built on request against torch 2.11's stable C ABI:
#   python -m builder build --isolated --variant torch-stable-abi211-cpu-x86_64-linux
# The tests over a built folder skip when it is not there.

from builder.variants import STABLE_VARIANTS  # noqa: E402


@pytest.mark.parametrize("name", STABLE_VARIANTS)
def test_stable_names_parse_as_the_loader_parses_them(name):
    from kernels.variants import TorchStableAbi
    from kernels.variants import parse_variant as loader_parse

    ours, theirs = parse_variant(name), loader_parse(name)
    assert ours.stable_abi and ours.torch_tag == "torch211" and theirs.variant_str == name
    assert isinstance(theirs.framework, TorchStableAbi) and str(theirs.framework.version) == "2.11"
    assert ours.cuda == (str(theirs.arch.backend.version) if ours.backend == "cuda" else None)
    assert name not in MATRIX  # the loader would prefer it to the torchXY variants of a build/


@pytest.mark.parametrize("name", STABLE_VARIANTS)
def test_stable_variants_build_in_the_torch211_environment(name):
    assert env_spec(parse_variant(name)) == env_spec(parse_variant("torch211-cxx11-cu130-x86_64-linux"))


@pytest.mark.parametrize("torch_version, accepted", [("2.10", False), ("2.11", True), ("2.14", True), ("2.15", True)])
@pytest.mark.parametrize("name", STABLE_VARIANTS)
def test_loader_takes_stable_abi211_for_torch_2_11_and_later(name, torch_version, accepted):
    from kernels.backends import CPU, CUDA
    from kernels.variants import VariantAccepted, _resolve_variant_for_system
    from kernels.variants import parse_variant as loader_parse
    from packaging.version import Version

    variant = loader_parse(name)
    backend = CUDA(version=Version("13.0")) if "-cu" in name else CPU()
    _, trace = _resolve_variant_for_system(
        variants=[variant, loader_parse(f"torch{torch_version.replace('.', '')}-cxx11-{name.split('-')[3]}-x86_64-linux")],
        selected_backend=backend, cpu="x86_64", os="linux", torch_version=Version(torch_version),
        torch_cxx11_abi=True, tvm_ffi_version=None)
    decisions = {d.variant.variant_str: isinstance(d, VariantAccepted) for d in trace}
    assert decisions[name] == accepted
    if accepted:  # and preferred to the matching torchXY variant
        assert trace[0].variant.variant_str == name


def _built_stable(name):
    folder = build.REPO_ROOT / "build" / name
    if not (folder / "metadata.json").exists():
        pytest.skip(f"{name} not built (python -m builder build --isolated --variant {name})")
    return folder


@pytest.mark.parametrize("name", STABLE_VARIANTS)
def test_stable_binary_uses_the_c_abi_only(name):
    so, = _built_stable(name).glob("*.abi3.so")
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True,
                               check=True).stdout
    cxx_torch = [s for s in undefined.split() if s.startswith(("_ZN3c10", "_ZN2at", "_ZN5torch"))]
    assert cxx_torch == [], cxx_torch[:10]
    assert "aoti_torch_get_data_ptr" in undefined  # the stable C shim is what it calls
    needed = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
    assert "libc10.so" not in needed and "[libtorch.so]" not in needed


def test_stable_cpu_variant_loads_and_matches_llama_rmsnorm(tmp_path):
    """Built against torch 2.11, loaded by kernels 0.17.2 under this venv's torch
    (2.14.1): bit for bit what transformers' LlamaRMSNorm computes."""
    import shutil

    import torch
    from kernels import get_local_kernel
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    name = "torch-stable-abi211-cpu-x86_64-linux"
    folder = _built_stable(name)
    shutil.copytree(folder, tmp_path / "build" / name)
    module = get_local_kernel(tmp_path, backend="cpu")
    assert name in str(Path(module.__file__).resolve())
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for shape in ((3, 64), (2, 5, 4096), (1, 7, 3000), (4, 1, 2, 128)):
            reference = LlamaRMSNorm(shape[-1], eps=1e-6).to(dtype)
            with torch.no_grad():
                reference.weight.copy_(torch.randn(shape[-1]))
            x = torch.randn(shape, dtype=dtype)
            with torch.no_grad():
                want = reference(x)
            got = module.rms_norm(x, reference.weight.detach(), 1e-6)
            assert got.dtype == want.dtype and torch.equal(got, want), (dtype, shape)
    # Strided rows (Qwen3's q/k views) and the argument checks go through the stable binding too.
    x = torch.randn(2, 8, 3, 64)[:, :, 1]
    reference = _with_weight(LlamaRMSNorm(64, eps=1e-5), torch.randn(64))
    with torch.no_grad():
        want = reference(x)
    assert torch.equal(module.rms_norm(x, reference.weight.detach(), 1e-5), want)
    with pytest.raises(RuntimeError, match="weight must be 1-D with 64 elements"):
        module.rms_norm(x, torch.ones(63), 1e-5)


def _with_weight(module, weight):
    import torch

    with torch.no_grad():
        module.weight.copy_(weight)
    return module


def test_stable_variant_name_and_target_version(monkeypatch):
    monkeypatch.setattr(build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(build.platform, "system", lambda: "Linux")
    info = {"torch_version": "2.11.0+cu130", "torch_tag": "torch211", "cxx11_abi": True, "cuda": "13.0"}
    assert build.variant_name("cuda", info, stable_abi=True) == "torch-stable-abi211-cu130-x86_64-linux"
    assert build.variant_name("cpu", info, stable_abi=True) == "torch-stable-abi211-cpu-x86_64-linux"
    assert build.variant_name("cpu", info) == "torch211-cxx11-cpu-x86_64-linux"
    # torch/csrc/stable/version.h: TORCH_VERSION_2_11_0 == ((2 << 56) | (11 << 48))
    assert int(build.stable_target_version(info), 16) == (2 << 56) | (11 << 48)
    old = {"torch_version": "2.6.0+cu124", "torch_tag": "torch26", "cxx11_abi": False, "cuda": "12.4"}
    assert build.variant_name("cuda", old) == "torch26-cxx98-cu124-x86_64-linux"


def test_debian_toolkit_is_laid_out_as_a_cuda_home(tmp_path):
    """builder/toolkit.py's layout step on a stand-in for the unpacked packages."""
    from builder import toolkit

    usr = tmp_path / "unpacked" / "usr"
    for rel in ("lib/nvidia-cuda-toolkit/bin/nvcc", "lib/nvidia-cuda-toolkit/bin/cicc",
                "lib/nvidia-cuda-toolkit/bin/crt/link.stub", "lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc",
                "bin/nvcc", "bin/cudafe++", "bin/fatbinary", "bin/ptxas", "bin/nvlink",
                "lib/x86_64-linux-gnu/libcudart.so.12.4.127", "lib/x86_64-linux-gnu/libnvvm.so.4.0.0",
                "lib/x86_64-linux-gnu/libcudadevrt.a", "lib/x86_64-linux-gnu/stubs/libcuda.so",
                "include/cuda_runtime.h", "include/crt/host_config.h"):
        _touch(usr / rel).write_text(rel)
    root = tmp_path / "cuda"
    toolkit._assemble(tmp_path / "unpacked", root)
    assert (root / "bin" / "nvcc").read_text() == "lib/nvidia-cuda-toolkit/bin/nvcc"  # the driver, not the wrapper
    for rel in ("bin/cudafe++", "bin/fatbinary", "bin/ptxas", "bin/nvlink", "bin/crt/link.stub", "nvvm/bin/cicc",
                "nvvm/libdevice/libdevice.10.bc", "nvvm/lib64/libnvvm.so.4.0.0", "lib64/libcudart.so.12.4.127",
                "lib64/stubs/libcuda.so", "include/cuda_runtime.h", "include/crt/host_config.h"):
        assert (root / rel).is_file(), rel
    profile = (root / "bin" / "nvcc.profile").read_text()
    assert "TOP = $(_HERE_)/.." in profile and "/usr" not in profile


def test_toolkit_pins_are_exact_and_of_one_release():
    from builder.toolkit import DEBIAN_TOOLKITS

    for release, spec in DEBIAN_TOOLKITS.items():
        for pin in spec.packages:
            name, version = pin.split("=", 1)
            assert name and version and "*" not in version, pin
            if name.startswith(("nvidia-cuda", "libcudart", "libnvvm")):
                assert version.startswith(release + ".") and f"~{release}." in version, pin


def test_cu124_without_apt_is_skipped_by_the_matrix(monkeypatch, tmp_path):
    import shutil

    monkeypatch.delenv("RMSNORM_CUDA_HOME_CU124", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(variants, "ensure_env", lambda *a: pytest.fail("created an env"))
    skipped = {}
    assert variants.build_isolated([CU124], env_root=tmp_path, skipped=skipped, log=lambda *_: None) == {}
    assert "apt-get" in skipped[CU124] and "RMSNORM_CUDA_HOME_CU124" in skipped[CU124]


def test_stable_binding_defines_and_implements_the_same_ops():
    """The stable-ABI binding (built on request, not in CI) registers the same
    schemas as the regular one, each with a CPU and a CUDA implementation, so
    a new op (v22's grad-free twins) cannot be left out of it unnoticed."""
    import re

    def registrations(path):
        text = (build.REPO_ROOT / path).read_text()
        schemas = re.findall(r'ops\.def\(((?:\s*"[^"]*")+)\)', text)
        defs = sorted(re.sub(r'"\s*"', "", s).strip().strip('"') for s in schemas)
        impls = sorted(re.findall(r'ops\.impl\("(\w+)"', text))
        return defs, impls

    regular_defs, regular_impls = registrations("torch-ext/torch_binding.cpp")
    stable_defs, stable_impls = registrations("torch-ext/stable_abi/torch_binding_stable.cpp")
    assert len(regular_defs) == 7 and any(d.startswith("rms_norm_no_grad(") for d in regular_defs)
    assert stable_defs == regular_defs
    names = sorted(d.split("(")[0] for d in regular_defs)
    assert regular_impls == stable_impls == sorted(names * 2)  # CPU and CUDA each
