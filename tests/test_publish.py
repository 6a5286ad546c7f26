"""builder.publish: Hub upload plan (dry run and a recording fake HfApi), the local Hub cache that the kernels
loader reads offline, and kernels.lock. CPU only; no network.

Loads run in a subprocess because HF_HUB_OFFLINE and KERNELS_CACHE are read when huggingface_hub and kernels are
imported, and because conftest sets LOCAL_KERNELS, which would bypass the cache."""

import hashlib
import json
import os
import platform
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, CommitOperationDelete

from builder import publish
from builder.publish import PublishError

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_ID = "test-org/rmsnorm-publish-test"
CACHE_FOLDER = "kernels--test-org--rmsnorm-publish-test"


def _system_variant() -> tuple[str, str]:
    """The variant name this machine's torch loads, e.g. torch214-cxx11-cu130-x86_64-linux, and its backend."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    abi = "cxx11" if torch.compiled_with_cxx11_abi() else "cxx98"
    cuda = torch.version.cuda
    backend = "cu" + "".join(cuda.split(".")[:2]) if cuda else "cpu"
    arch = f"{platform.machine()}-{platform.system().lower()}"
    return f"torch{major}{minor}-{abi}-{backend}-{arch}", ("cuda" if cuda else "cpu")


SYSTEM_VARIANT, BACKEND = _system_variant()
# Same backend, a torch one minor ahead: the loader must reject it, so loading it would be a selection bug.
OTHER_VARIANT = SYSTEM_VARIANT.replace(SYSTEM_VARIANT.split("-")[0], SYSTEM_VARIANT.split("-")[0] + "9", 1)
SO_BYTES = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4  # binary: stored through LFS, blob named by sha256


def _make_variant(build: Path, name: str, *, version: int = 1, answer: int = 42) -> Path:
    variant = build / name
    variant.mkdir(parents=True)
    kernel_id = f"_rmsnorm_{BACKEND}_{hashlib.sha1(name.encode()).hexdigest()[:7]}"
    (variant / "__init__.py").write_text(textwrap.dedent(f"""\
        from . import layers

        VARIANT = {name!r}


        def answer():
            return {answer}


        __all__ = ["VARIANT", "answer", "layers"]
        """))
    (variant / "layers.py").write_text(textwrap.dedent("""\
        import torch


        class RMSNorm(torch.nn.Module):
            def forward(self, hidden_states):
                return hidden_states
        """))
    (variant / f"{kernel_id}.abi3.so").write_bytes(SO_BYTES)
    metadata = {"name": "rmsnorm", "id": kernel_id, "version": version, "license": "Apache-2.0",
                "python-depends": [], "backend": {"type": BACKEND}}
    if BACKEND == "cuda":
        metadata["backend"]["archs"] = ["8.0", "8.9", "9.0"]
    (variant / "metadata.json").write_text(json.dumps(metadata, indent=2))
    # Bytecode a local import leaves behind: must never be published.
    (variant / "__pycache__").mkdir()
    (variant / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\x00bytecode")
    return variant


@pytest.fixture
def kernel_dir(tmp_path):
    """A kernel folder: build/ with the system variant and one the loader rejects, a CARD.md, benchmarks/."""
    root = tmp_path / "kernel"
    build = root / "build"
    _make_variant(build, SYSTEM_VARIANT, answer=42)
    _make_variant(build, OTHER_VARIANT, answer=0)
    (build / "scratch").mkdir()  # no metadata.json: not a variant
    (build / "scratch" / "notes.txt").write_text("not published")
    (root / "CARD.md").write_text("---\nlibrary_name: kernels\nlicense: apache-2.0\n---\n# rmsnorm\n")
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "benchmark.py").write_text("# benchmark\n")
    (root / "benchmarks" / "helper.py").write_text("# not a benchmark*.py\n")
    return root


def _expected_build_files(root: Path) -> dict[str, Path]:
    files = {}
    for variant in (SYSTEM_VARIANT, OTHER_VARIANT):
        vdir = root / "build" / variant
        kernel_id = json.loads((vdir / "metadata.json").read_text())["id"]
        for name in ("__init__.py", "layers.py", "metadata.json", f"{kernel_id}.abi3.so"):
            files[f"build/{variant}/{name}"] = vdir / name
    return files


def _git_hash_object(path: Path) -> str:
    return subprocess.run(["git", "hash-object", str(path)], check=True, capture_output=True, text=True).stdout.strip()


class NoNetwork:
    """Any use of this api is a failure: a dry run must not touch the Hub."""

    def __getattr__(self, name):
        raise AssertionError(f"dry run called HfApi.{name}")


class _Ref:
    def __init__(self, name):
        self.name = name


class _Refs:
    def __init__(self, names):
        self.branches = [_Ref(n) for n in names]


class _CommitInfo:
    def __init__(self, n):
        self.oid = f"{n:040x}"
        self.commit_url = f"https://huggingface.co/kernels/{REPO_ID}/commit/{self.oid}"
        self.pr_url = None


class FakeApi:
    """Records HfApi calls; serves a repo whose branches and files are given."""

    def __init__(self, branches, files_by_branch):
        self.branches = list(branches)
        self.files_by_branch = files_by_branch
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/kernels/{repo_id}"

    def list_repo_refs(self, repo_id, **kw):
        self.calls.append(("list_repo_refs", repo_id, kw))
        return _Refs(self.branches)

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))
        self.branches.append(kw["branch"])
        self.files_by_branch[kw["branch"]] = list(self.files_by_branch.get("main", []))

    def list_repo_files(self, repo_id, **kw):
        self.calls.append(("list_repo_files", repo_id, kw))
        return list(self.files_by_branch.get(kw["revision"], []))

    def create_commit(self, repo_id, **kw):
        self.calls.append(("create_commit", repo_id, kw))
        return _CommitInfo(len(self.calls))

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


def _commit_ops(api, revision):
    (commit,) = [c for c in api.named("create_commit") if c[2]["revision"] == revision]
    ops = commit[2]["operations"]
    adds = {op.path_in_repo: op for op in ops if isinstance(op, CommitOperationAdd)}
    deletes = sorted(op.path_in_repo for op in ops if isinstance(op, CommitOperationDelete))
    assert len(adds) + len(deletes) == len(ops)
    return commit[2], adds, deletes


# ------------------------------------------------------------------------------------------------------------
# Upload


def test_dry_run_lists_exact_files_and_branches(kernel_dir, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # a dry run needs no token
    plan = publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, dry_run=True, api=NoNetwork())

    expected = [("v1", p, str(local), local.stat().st_size) for p, local in _expected_build_files(kernel_dir).items()]
    bench = kernel_dir / "benchmarks" / "benchmark.py"
    expected.append(("v1", "benchmarks/benchmark.py", str(bench), bench.stat().st_size))
    card = kernel_dir / "CARD.md"
    expected.append(("main", "README.md", str(card), card.stat().st_size))
    assert sorted(plan.entries) == sorted(expected)
    assert not any(".pyc" in e[1] or "__pycache__" in e[1] or "scratch" in e[1] for e in plan.entries)
    assert plan.branch == "v1" and plan.version == 1 and plan.dry_run
    assert set(plan.commit_messages) == {"v1", "main"}
    assert all(plan.commit_messages.values())
    assert plan.url.endswith(f"/kernels/{REPO_ID}/tree/v1")

    # The command line prints exactly that list, one tab-separated line per file.
    assert publish.main(["upload", "--build-dir", str(kernel_dir / "build"), "--repo-id", REPO_ID,
                         "--version", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    printed = sorted(tuple(line.strip().split("\t")) for line in out.splitlines() if line.count("\t") == 3)
    assert printed == sorted((b, p, lf, str(s)) for b, p, lf, s in expected)
    for message in plan.commit_messages.values():
        assert message in out


def test_card_plot_goes_to_main_with_the_card(kernel_dir):
    """A card that shows a plot from main (as `python -m builder card` writes it) uploads that
    plot beside README.md; a missing plot is an error, not a broken link on the Hub."""
    card = kernel_dir / "CARD.md"
    card.write_text(card.read_text() + f"\n![plot](https://huggingface.co/{REPO_ID}/resolve/main/forward-x.png)\n")
    with pytest.raises(PublishError, match=r"forward-x.png .*does not exist"):
        publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, dry_run=True)
    plot = kernel_dir / "benchmarks" / "results" / "forward-x.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_bytes(b"\x89PNG fake")
    plan = publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, dry_run=True)
    main_files = sorted(e[1] for e in plan.entries if e[0] == "main")
    assert main_files == ["README.md", "forward-x.png"]
    assert ("main", "forward-x.png", str(plot), plot.stat().st_size) in plan.entries


def test_dry_run_without_card_uploads_no_readme(kernel_dir):
    (kernel_dir / "CARD.md").unlink()
    plan = publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, dry_run=True)
    assert {e[0] for e in plan.entries} == {"v1"}
    assert "README.md" not in {e[1] for e in plan.entries}
    assert set(plan.commit_messages) == {"v1"}
    with pytest.raises(PublishError, match="card .*missing.md does not exist"):
        publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, dry_run=True,
                              card_path=kernel_dir / "missing.md")


def test_upload_new_branch_replaces_build(kernel_dir):
    # main carries an old build/ layout; a new v1 branch starts from main and must drop it.
    main_files = [".gitattributes", "README.md", "build/torch200-cxx11-cu118-x86_64-linux/__init__.py",
                  "benchmarks/old_helper.py"]
    api = FakeApi(["main"], {"main": main_files})
    plan = publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, token="hf_test", private=True, api=api)

    (create,) = api.named("create_repo")
    assert create[1] == REPO_ID
    assert create[2]["repo_type"] == "kernel" and create[2]["exist_ok"] is True and create[2]["private"] is True
    (branch,) = api.named("create_branch")
    assert branch[2]["branch"] == "v1" and branch[2]["repo_type"] == "kernel"
    for name, _, kw in api.calls:
        assert kw.get("repo_type") == "kernel", name
        assert kw.get("token") == "hf_test", name
    # The repo exists and v1 exists before anything is committed.
    order = [c[0] for c in api.calls]
    assert order.index("create_repo") < order.index("create_branch") < order.index("create_commit")

    kw, adds, deletes = _commit_ops(api, "v1")
    expected = _expected_build_files(kernel_dir)
    expected["benchmarks/benchmark.py"] = kernel_dir / "benchmarks" / "benchmark.py"
    assert set(adds) == set(expected)
    for path, op in adds.items():
        assert Path(op.path_or_fileobj) == expected[path]
    assert deletes == ["benchmarks/old_helper.py", "build/torch200-cxx11-cu118-x86_64-linux/__init__.py"]
    assert kw["commit_message"] == plan.commit_messages["v1"]
    assert not kw["create_pr"]

    kw, adds, deletes = _commit_ops(api, "main")
    assert set(adds) == {"README.md"} and deletes == []
    assert Path(adds["README.md"].path_or_fileobj).read_text() == (kernel_dir / "CARD.md").read_text()
    assert plan.new_branch is True and set(plan.commits) == {"v1", "main"}


def test_upload_existing_branch_replaces_only_uploaded_variants(kernel_dir):
    v1_files = [f"build/{SYSTEM_VARIANT}/stale_module.py", f"build/{SYSTEM_VARIANT}/__init__.py",
                "build/torch-cpu/__init__.py",  # a variant not rebuilt here: kept
                "benchmarks/benchmark_old.py", "benchmarks/notes.md"]
    api = FakeApi(["main", "v1"], {"main": ["README.md"], "v1": v1_files})
    publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, token="hf_test", create_pr=True, api=api)
    assert api.named("create_branch") == []
    kw, adds, deletes = _commit_ops(api, "v1")
    assert deletes == ["benchmarks/benchmark_old.py", f"build/{SYSTEM_VARIANT}/stale_module.py"]
    assert f"build/{SYSTEM_VARIANT}/__init__.py" in adds
    assert all(c[2]["create_pr"] is True for c in api.named("create_commit"))


def test_upload_calls_match_real_hfapi_signatures(kernel_dir):
    """The fake above accepts anything; an autospec of the installed HfApi rejects arguments it does not take."""
    from unittest.mock import create_autospec

    from huggingface_hub import HfApi

    api = create_autospec(HfApi, instance=True)
    api.list_repo_refs.return_value = _Refs(["main"])
    api.list_repo_files.return_value = ["build/old/__init__.py"]
    api.create_commit.return_value = _CommitInfo(1)
    publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, token="hf_test", api=api)
    api.create_repo.assert_called_once()
    api.create_branch.assert_called_once()
    assert [c.kwargs["revision"] for c in api.create_commit.call_args_list] == ["v1", "main"]


def test_version_conflict_is_reported(tmp_path):
    build = tmp_path / "build"
    _make_variant(build, SYSTEM_VARIANT, version=1)
    _make_variant(build, OTHER_VARIANT, version=2)
    pattern = rf"version 1: {SYSTEM_VARIANT}; version 2: {OTHER_VARIANT}"
    with pytest.raises(PublishError, match=pattern):
        publish.upload_to_hub(build, repo_id=REPO_ID, dry_run=True)
    with pytest.raises(PublishError, match=pattern):
        publish.publish_to_cache(build, repo_id=REPO_ID, version=1, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_version_must_match_metadata(kernel_dir):
    with pytest.raises(PublishError, match="requested version 2 .* say version 1"):
        publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, version=2, dry_run=True)


def test_no_variants_and_bad_repo_id(tmp_path):
    (tmp_path / "build").mkdir()
    with pytest.raises(PublishError, match="no build variants"):
        publish.upload_to_hub(tmp_path / "build", repo_id=REPO_ID, dry_run=True)
    with pytest.raises(PublishError, match="invalid repo id"):
        publish.upload_to_hub(tmp_path / "build", repo_id="rmsnorm", dry_run=True)


def test_missing_token(kernel_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    api = FakeApi(["main"], {"main": []})
    with pytest.raises(PublishError, match="HF_TOKEN"):
        publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, api=api)
    assert api.calls == []

    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    publish.upload_to_hub(kernel_dir / "build", repo_id=REPO_ID, api=api)
    assert api.calls and all(kw["token"] == "hf_from_env" for _, _, kw in api.calls)


# ------------------------------------------------------------------------------------------------------------
# Local Hub cache


def test_cache_layout(kernel_dir, tmp_path):
    cache = tmp_path / "cache"
    snapshot = publish.publish_to_cache(kernel_dir / "build", repo_id=REPO_ID, version=1, cache_dir=cache)
    storage = cache / CACHE_FOLDER
    commit = snapshot.name
    assert snapshot == storage / "snapshots" / commit
    assert len(commit) == 40 and int(commit, 16) >= 0
    # Exactly the commit, no newline: huggingface_hub reads refs back verbatim.
    assert (storage / "refs" / "v1").read_text() == commit
    assert (storage / "refs" / "main").read_text() == commit

    expected = _expected_build_files(kernel_dir)
    expected["README.md"] = kernel_dir / "CARD.md"
    cached = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if not p.is_dir()}
    assert cached == set(expected)  # no .pyc, no scratch/, no benchmarks
    for rel, local in expected.items():
        link = snapshot / rel
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        blob = link.resolve()
        assert blob.parent == (storage / "blobs").resolve()
        assert blob.read_bytes() == local.read_bytes()
        if local.suffix == ".so":
            assert blob.name == hashlib.sha256(local.read_bytes()).hexdigest()
        else:
            assert blob.name == _git_hash_object(local)

    tree = json.loads((storage / "trees" / f"{commit}.json").read_text())
    assert tree["format_version"] == 1 and set(tree["files"]) == set(expected)

    from huggingface_hub import get_cached_repo_tree, scan_cache_dir

    info = scan_cache_dir(cache)
    assert info.warnings == []
    (repo,) = info.repos
    assert (repo.repo_id, repo.repo_type) == (REPO_ID, "kernel")
    assert set(repo.refs) == {"main", "v1"}
    listed = get_cached_repo_tree(REPO_ID, repo_type="kernel", revision="v1", cache_dir=cache)
    assert {f.path for f in listed} == set(expected)

    # The derived commit depends on content only; an explicit one is honoured.
    again = publish.publish_to_cache(kernel_dir / "build", repo_id=REPO_ID, version=1, cache_dir=cache)
    assert again == snapshot
    (kernel_dir / "build" / SYSTEM_VARIANT / "layers.py").write_text("# changed\n")
    changed = publish.publish_to_cache(kernel_dir / "build", repo_id=REPO_ID, version=1, cache_dir=cache)
    assert changed.name != commit and (storage / "refs" / "v1").read_text() == changed.name
    explicit = "ab" * 20
    assert publish.publish_to_cache(kernel_dir / "build", repo_id=REPO_ID, version=1, cache_dir=cache,
                                    commit_sha=explicit.upper()).name == explicit
    with pytest.raises(PublishError, match="invalid commit"):
        publish.publish_to_cache(kernel_dir / "build", repo_id=REPO_ID, version=1, cache_dir=cache,
                                 commit_sha="abc123")


def _offline_env(cache: Path, *, via: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_KERNELS", "KERNELS_CACHE", "HF_HUB_CACHE", "HF_HOME", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(home))
    env[via] = str(cache)
    return env


def _run_python(code: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD_SCRIPT = textwrap.dedent("""\
    import json, sys
    from pathlib import Path
    import kernels

    repo_id, commit = sys.argv[1], sys.argv[2]
    result = {}
    for label, kwargs in [("version", dict(version=1)), ("branch", dict(revision="v1")),
                          ("commit", dict(revision=commit)), ("main", dict(revision="main"))]:
        m = kernels.get_kernel(repo_id, **kwargs)
        result[label] = [m.__name__, m.answer(), m.VARIANT, str(Path(m.__file__)), m.layers.__name__]
    try:
        kernels.get_kernel(repo_id, version=2)
        result["version2"] = "loaded"
    except Exception as e:
        result["version2"] = type(e).__name__ + ": " + str(e)
    print(json.dumps(result))
    """)


@pytest.mark.parametrize("via", ["KERNELS_CACHE", "HF_HUB_CACHE"])
def test_get_kernel_offline_from_cache(kernel_dir, tmp_path, via):
    cache = tmp_path / "cache"
    snapshot = publish.publish_to_cache(kernel_dir / "build", repo_id=REPO_ID, version=1, cache_dir=cache)
    kernel_id = json.loads((kernel_dir / "build" / SYSTEM_VARIANT / "metadata.json").read_text())["id"]
    env = _offline_env(cache, via=via, home=tmp_path / "hf-home")
    code = LOAD_SCRIPT.replace("sys.argv[1], sys.argv[2]", f"{REPO_ID!r}, {snapshot.name!r}")
    result = _run_python(code, env)
    for label in ("version", "branch", "commit", "main"):
        name, answer, variant, file, layers = result[label]
        assert (name, answer, variant, layers) == (kernel_id, 42, SYSTEM_VARIANT, f"{kernel_id}.layers"), label
        assert Path(file) == snapshot / "build" / SYSTEM_VARIANT / "__init__.py", label
    assert "Version 2 not found" in result["version2"]


LOCK_SCRIPT = textwrap.dedent("""\
    import json
    from pathlib import Path
    import kernels
    from kernels._rust import KernelLocks

    repo_id, lockfile, other = {repo_id!r}, Path({lockfile!r}), Path({other!r})
    locks = KernelLocks.from_json(lockfile.read_text())
    result = {{"locked": [[d.repo_id, d.version.version, locks[d].commit] for d in locks.keys()]}}
    m = kernels.load_kernel(repo_id, lockfile=lockfile)
    result["loaded"] = [m.__name__, m.answer(), m.VARIANT, m.__file__]
    try:
        kernels.load_kernel(repo_id, lockfile=other)
        result["other"] = "loaded"
    except Exception as e:
        result["other"] = type(e).__name__
    print(json.dumps(result))
    """)


def test_lockfile_loads_offline(kernel_dir, tmp_path):
    cache = tmp_path / "cache"
    snapshot = publish.publish_to_cache(kernel_dir / "build", repo_id=REPO_ID, version=1, cache_dir=cache)
    commit = snapshot.name
    lockfile = publish.write_lockfile(tmp_path / "kernels.lock", repo_id=REPO_ID, version=1, commit=commit)
    assert json.loads(lockfile.read_text()) == [
        {"dependency": {"repo-id": REPO_ID, "version": 1}, "lock": {"commit": commit}}]
    # A lock on a commit that is not cached must not load: the lockfile is what picks the snapshot.
    other = publish.write_lockfile(tmp_path / "other.lock", repo_id=REPO_ID, version=1, commit="0" * 40)

    code = LOCK_SCRIPT.format(repo_id=REPO_ID, lockfile=str(lockfile), other=str(other))
    result = _run_python(code, _offline_env(cache, via="KERNELS_CACHE", home=tmp_path / "hf-home"))
    assert result["locked"] == [[REPO_ID, 1, commit]]
    name, answer, variant, file = result["loaded"]
    assert (answer, variant) == (42, SYSTEM_VARIANT)
    assert Path(file) == snapshot / "build" / SYSTEM_VARIANT / "__init__.py"
    assert result["other"] == "FileNotFoundError"


def test_write_lockfile_updates_and_validates(tmp_path):
    path = tmp_path / "kernels.lock"
    other = {"dependency": {"repo-id": "kernels-community/activation", "version": 1}, "lock": {"commit": "1" * 40}}
    path.write_text(json.dumps([other]))
    publish.write_lockfile(path, repo_id=REPO_ID, version=1, commit="a" * 40)
    publish.write_lockfile(path, repo_id=REPO_ID, version=1, commit="B" * 40)  # replaces, lowercased
    entries = json.loads(path.read_text())
    assert other in entries and len(entries) == 2
    assert {"dependency": {"repo-id": REPO_ID, "version": 1}, "lock": {"commit": "b" * 40}} in entries

    for bad in ("b" * 39, "g" * 40, "main"):
        with pytest.raises(PublishError, match="invalid commit"):
            publish.write_lockfile(path, repo_id=REPO_ID, version=1, commit=bad)
    with pytest.raises(PublishError, match="invalid version"):
        publish.write_lockfile(path, repo_id=REPO_ID, version="1", commit="a" * 40)
    path.write_text("{not json")
    with pytest.raises(PublishError, match="not valid JSON"):
        publish.write_lockfile(path, repo_id=REPO_ID, version=1, commit="a" * 40)


# ------------------------------------------------------------------------------------------------------------
# Command line


def test_cli_user_errors_are_one_line(kernel_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    cases = [
        ["lock", "--out", str(tmp_path / "k.lock"), "--commit", "xyz"],
        ["upload", "--no-such-flag"],
        ["upload", "--build-dir", str(tmp_path / "nowhere"), "--dry-run"],
        ["upload", "--build-dir", str(kernel_dir / "build"), "--repo-id", REPO_ID, "--version", "1"],
        ["lock", "--out", str(tmp_path / "k.lock"), "--repo-id", REPO_ID, "--version", "1",
         "--cache-dir", str(tmp_path / "empty-cache")],
    ]
    for argv in cases:
        assert publish.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (argv, err)
    assert not (tmp_path / "k.lock").exists()


def test_cli_cache_then_lock_with_build_toml_defaults(kernel_dir, tmp_path, capsys):
    with open(REPO_ROOT / "build.toml", "rb") as f:
        general = tomllib.load(f)["general"]
    repo_id, version = general["hub"]["repo-id"], general["version"]
    cache = tmp_path / "cache"
    # Through `python -m builder`, as users run it: builder/cli.py hands these commands to publish.main.
    proc = subprocess.run([sys.executable, "-m", "builder", "publish-cache", "--build-dir", str(kernel_dir / "build"),
                           "--cache-dir", str(cache)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    org, name = repo_id.split("/")
    commit = (cache / f"kernels--{org}--{name}" / "refs" / f"v{version}").read_text()
    assert commit in proc.stdout

    out = tmp_path / "kernels.lock"
    assert publish.main(["lock", "--out", str(out), "--cache-dir", str(cache)]) == 0
    assert json.loads(out.read_text()) == [
        {"dependency": {"repo-id": repo_id, "version": version}, "lock": {"commit": commit}}]
    assert commit in capsys.readouterr().out
