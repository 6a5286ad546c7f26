"""Publish ``build/<variant>/`` folders: to the Hub, into a local Hub cache, and as a ``kernels.lock``.

Three keyword-only entry points, mirroring what kernel-builder and the ``kernels`` loader (0.17.2) do:

- ``upload_to_hub``: ``build/<variant>/**`` and ``benchmarks/benchmark*.py`` go to branch ``v<version>`` of a
  repository of type ``kernel``; the card (``CARD.md``) goes to ``main`` as ``README.md``. ``dry_run=True``
  makes no network call and returns the exact file list.
- ``publish_to_cache``: writes the Hugging Face Hub cache layout a download leaves behind
  (``kernels--<org>--<name>/{blobs,refs,snapshots,trees}``), so that ``HF_HUB_OFFLINE=1`` loads with
  ``get_kernel(repo_id, version=N)``, ``revision="vN"`` or the commit work without ever reaching the Hub.
- ``write_lockfile``: a ``kernels.lock`` that ``kernels.load_kernel(repo_id, lockfile=...)`` accepts.

``main(argv)`` is the command line (``python -m builder upload|publish-cache|lock``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_TYPE = "kernel"
MAIN_BRANCH = "main"
CARD_NAME = "CARD.md"
# huggingface_hub's commit-hash pattern (file_download.REGEX_COMMIT_HASH): 40 lowercase hex digits.
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
# Hub repo ids: "<org>/<name>"; "--" and ".." are refused by the Hub, and "--" would also make the cache
# folder name kernels--<org>--<name> ambiguous.
REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# Files the Hub stores through LFS/Xet, whose cache blob is named by sha256 (the X-Linked-Etag) rather than by
# the git blob sha1. The Hub decides this on upload (preupload: .gitattributes patterns, binary content, size);
# kernel-builder's .gitattributes puts *.so in LFS, and binary or large files go to LFS regardless.
LFS_SUFFIXES = (".so", ".dylib", ".dll", ".pyd", ".metallib", ".bin", ".pt", ".pth", ".safetensors")
LFS_MIN_SIZE = 10 * 1024 * 1024
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by huggingface_hub.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


class PublishError(ValueError):
    """A user error: says what is wrong and what was expected."""


# ---------------------------------------------------------------------------------------------------------------
# Variants


@dataclass(frozen=True)
class Variant:
    name: str  # e.g. torch214-cxx11-cu130-x86_64-linux
    path: Path
    metadata: dict

    @property
    def version(self) -> int:
        return self.metadata["version"]


def find_variants(build_dir: Path) -> list[Variant]:
    """Variant folders of ``build_dir``: its direct subfolders holding a ``metadata.json``.

    ``build_dir`` may also be the kernel folder itself when it has a ``build/`` with variants in it."""
    build_dir = Path(build_dir)
    if not build_dir.is_dir():
        raise PublishError(f"build directory {build_dir} does not exist: expected build/<variant>/metadata.json "
                           "from `python -m builder build`")
    candidates = sorted(p for p in build_dir.iterdir() if (p / "metadata.json").is_file())
    if not candidates and (build_dir / "build").is_dir():
        return find_variants(build_dir / "build")
    if not candidates:
        raise PublishError(f"no build variants in {build_dir}: expected subfolders <variant>/ containing "
                           "metadata.json (run `python -m builder build`)")
    variants = []
    for path in candidates:
        metadata_path = path / "metadata.json"
        try:
            metadata = json.loads(metadata_path.read_text())
        except (OSError, ValueError) as e:
            raise PublishError(f"{metadata_path} is not valid JSON: {e}") from None
        if not isinstance(metadata, dict):
            raise PublishError(f"{metadata_path} must hold a JSON object, got {type(metadata).__name__}")
        version = metadata.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise PublishError(f"{metadata_path}: 'version' must be a non-negative integer, got {version!r}")
        if not isinstance(metadata.get("id"), str) or not metadata["id"]:
            raise PublishError(f"{metadata_path}: 'id' must be a non-empty string, got {metadata.get('id')!r}")
        variants.append(Variant(name=path.name, path=path, metadata=metadata))
    return variants


def common_version(variants: list[Variant], expected: int | None = None) -> int:
    """The one version all variants declare; ``PublishError`` listing the conflict otherwise."""
    by_version: dict[int, list[str]] = {}
    for v in variants:
        by_version.setdefault(v.version, []).append(v.name)
    if len(by_version) > 1:
        conflict = "; ".join(f"version {ver}: {', '.join(names)}" for ver, names in sorted(by_version.items()))
        raise PublishError(f"build variants disagree on metadata.json 'version' ({conflict}): expected one "
                           "version for all variants (rebuild the stale ones)")
    (version,) = by_version
    if expected is not None and expected != version:
        raise PublishError(f"requested version {expected} but the variants' metadata.json say version {version}: "
                           "expected them to agree (rebuild, or drop the version argument)")
    return version


def _variant_files(variant: Variant) -> list[Path]:
    """Every file of a variant, recursively, without bytecode (the loader never downloads it either)."""
    files = []
    for path in sorted(variant.path.rglob("*")):
        rel = path.relative_to(variant.path)
        if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo") or not path.is_file():
            continue
        files.append(path)
    return files


def _build_entries(variants: list[Variant]) -> list[tuple[str, Path]]:
    """(path_in_repo, local file) for every variant file, e.g. ``build/<variant>/layers.py``."""
    entries = []
    for variant in variants:
        for path in _variant_files(variant):
            entries.append((f"build/{variant.name}/{path.relative_to(variant.path).as_posix()}", path))
    return entries


def _check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not REPO_ID_RE.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise PublishError(f"invalid repo id {repo_id!r}: expected '<org>/<name>' (letters, digits, '-', '_', '.'; "
                           "no '--' or '..'), e.g. 'kernels-rmsnorm/rmsnorm'")


def _check_version(version) -> int:
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise PublishError(f"invalid version {version!r}: expected a non-negative integer (branch v<version>)")
    return version


def _check_commit(commit: str) -> str:
    if not isinstance(commit, str) or not COMMIT_RE.fullmatch(commit.lower()):
        raise PublishError(f"invalid commit {commit!r}: expected a full git commit sha (40 hex digits)")
    return commit.lower()


def _resolve_card(card_path: Path | str | None, build_dir: Path) -> Path | None:
    """An explicit card must exist; without one, ``CARD.md`` next to or inside ``build/`` is used if present."""
    if card_path is not None:
        card_path = Path(card_path)
        if not card_path.is_file():
            raise PublishError(f"card {card_path} does not exist: expected a Markdown file (the Hub README.md)")
        return card_path
    for candidate in (build_dir.parent / CARD_NAME, build_dir / CARD_NAME):
        if candidate.is_file():
            return candidate
    return None


def _card_images(card: Path, build_dir: Path) -> list[tuple[str, Path]]:
    """The images the card shows from the repo's ``main`` (``.../resolve/main/<name>.png``, as
    ``python -m builder card`` writes the benchmark plot), found in ``benchmarks/results/`` beside
    ``build/``; they go to ``main`` with the card, so that the link resolves."""
    names = sorted(set(re.findall(r"/resolve/main/([A-Za-z0-9_.\-]+\.(?:png|svg|jpg))", card.read_text())))
    images = []
    for name in names:
        local = build_dir.parent / "benchmarks" / "results" / name
        if not local.is_file():
            raise PublishError(f"the card shows {name} from the repo's main branch, but {local} does not exist: "
                               "expected the plot in benchmarks/results/ (or remove the link from the card)")
        images.append((name, local))
    return images


def _benchmark_entries(benchmarks_dir: Path | str | None, build_dir: Path) -> list[tuple[str, Path]]:
    if benchmarks_dir is None:
        benchmarks_dir = build_dir.parent / "benchmarks"
        if not benchmarks_dir.is_dir():
            return []
    benchmarks_dir = Path(benchmarks_dir)
    if not benchmarks_dir.is_dir():
        raise PublishError(f"benchmarks directory {benchmarks_dir} does not exist: expected a folder holding "
                           "benchmark*.py")
    return [(f"benchmarks/{p.name}", p) for p in sorted(benchmarks_dir.glob("benchmark*.py")) if p.is_file()]


# ---------------------------------------------------------------------------------------------------------------
# Upload


@dataclass(frozen=True)
class PlannedFile:
    branch: str
    path_in_repo: str
    local_file: Path
    size: int


@dataclass
class UploadPlan:
    """What ``upload_to_hub`` uploads (``dry_run``) or uploaded: files per branch, commit messages, and after a
    real upload the stale files deleted and the commits made."""

    repo_id: str
    version: int
    branch: str
    url: str
    files: list[PlannedFile]
    commit_messages: dict[str, str]
    dry_run: bool
    deletions: list[tuple[str, str]] = field(default_factory=list)  # (branch, path_in_repo)
    commits: dict[str, str] = field(default_factory=dict)  # branch -> commit or PR url
    new_branch: bool | None = None  # None in a dry run: finding out needs the Hub

    @property
    def entries(self) -> list[tuple[str, str, str, int]]:
        """(branch, path_in_repo, local_file, size) of every file to upload."""
        return [(f.branch, f.path_in_repo, str(f.local_file), f.size) for f in self.files]

    def describe(self) -> str:
        lines = []
        head = "dry run, nothing uploaded" if self.dry_run else "uploaded"
        lines.append(f"{head}: {self.repo_id} (repo type {REPO_TYPE}), version {self.version} -> {self.url}")
        for branch, message in self.commit_messages.items():
            files = [f for f in self.files if f.branch == branch]
            lines.append(f"commit to {branch}: {message!r} ({len(files)} files)")
            for f in files:
                lines.append(f"  {f.branch}\t{f.path_in_repo}\t{f.local_file}\t{f.size}")
            for b, path in self.deletions:
                if b == branch:
                    lines.append(f"  {b}\t{path}\t(deleted: stale)")
            if branch in self.commits:
                lines.append(f"  -> {self.commits[branch]}")
        if self.dry_run:
            lines.append(f"stale files under build/ on {self.branch} are found and deleted only by a real upload "
                         "(that needs a Hub listing)")
        total = sum(f.size for f in self.files)
        lines.append(f"total: {len(self.files)} files, {total} bytes")
        return "\n".join(lines)


def hub_url(repo_id: str, branch: str | None = None) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/kernels/{repo_id}"
    return f"{url}/tree/{branch}" if branch else url


def _check_hub_supports_kernel_repos():
    """huggingface_hub learned repo_type="kernel" in 1.x (kernels 0.17.2 needs >= 1.10.0)."""
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        raise PublishError("huggingface_hub is not installed: expected huggingface_hub>=1.10.0 "
                           "(pip install 'kernels==0.17.2' pulls it in)") from None
    if REPO_TYPE not in getattr(constants, "REPO_TYPES_WITH_KERNEL", ()):
        raise PublishError(f"huggingface_hub {huggingface_hub.__version__} cannot create or commit to repositories "
                           "of type 'kernel' (constants.REPO_TYPES_WITH_KERNEL is missing or lacks it): expected "
                           "huggingface_hub>=1.10.0, as kernels 0.17.2 requires")


def upload_to_hub(
    build_dir: Path | str,
    *,
    repo_id: str,
    version: int | None = None,
    card_path: Path | str | None = None,
    benchmarks_dir: Path | str | None = None,
    token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    create_pr: bool = False,
    api=None,
) -> UploadPlan:
    """Upload the build variants to branch ``v<version>`` and the card to ``main`` of a ``kernel`` repo.

    ``version`` defaults to the variants' ``metadata.json`` version (all must agree). ``card_path`` defaults to
    ``CARD.md`` beside ``build_dir`` (skipped when absent); ``benchmarks_dir`` to ``benchmarks/`` beside it. The
    token comes from ``HF_TOKEN`` when not given. ``api`` is an ``HfApi``-like object (made when ``None``).
    ``dry_run`` makes no network call and needs no token. On a new branch every other file under ``build/``
    (inherited from ``main``) is deleted; on an existing one, stale files inside the uploaded variants are.
    """
    _check_repo_id(repo_id)
    build_dir = Path(build_dir)
    variants = find_variants(build_dir)
    version = common_version(variants, None if version is None else _check_version(version))
    branch = f"v{version}"
    card = _resolve_card(card_path, build_dir)

    files = [PlannedFile(branch, p, local, local.stat().st_size) for p, local in _build_entries(variants)]
    files += [PlannedFile(branch, p, local, local.stat().st_size)
              for p, local in _benchmark_entries(benchmarks_dir, build_dir)]
    names = ", ".join(v.name for v in variants)
    messages = {branch: f"Upload {variants[0].metadata.get('name', repo_id.split('/')[1])} v{version} "
                        f"({len(variants)} build variants: {names})"}
    if card is not None:
        files.append(PlannedFile(MAIN_BRANCH, "README.md", card, card.stat().st_size))
        files += [PlannedFile(MAIN_BRANCH, name, local, local.stat().st_size)
                  for name, local in _card_images(card, build_dir)]
        messages[MAIN_BRANCH] = "Update the kernel card (README.md)"

    plan = UploadPlan(repo_id=repo_id, version=version, branch=branch, url=hub_url(repo_id, branch), files=files,
                      commit_messages=messages, dry_run=dry_run)
    if dry_run:
        return plan

    token = token or os.environ.get("HF_TOKEN")
    if not token:
        raise PublishError("no Hugging Face token: set the HF_TOKEN environment variable (a write token for "
                           f"{repo_id.split('/')[0]}) or pass token=; use --dry-run to only list the files")
    _check_hub_supports_kernel_repos()
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token, library_name="rmsnorm-builder")
    _upload(api, plan, variants=variants, token=token, private=private, create_pr=create_pr)
    return plan


def _upload(api, plan: UploadPlan, *, variants: list[Variant], token: str, private: bool, create_pr: bool) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    repo_id, branch = plan.repo_id, plan.branch
    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True, token=token)
    refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE, token=token)
    plan.new_branch = branch not in {b.name for b in refs.branches}
    if plan.new_branch:
        # Branches off main's head, so it inherits main's files; the deletions below drop any build/ among them.
        api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True, token=token)
    existing = api.list_repo_files(repo_id, revision=branch, repo_type=REPO_TYPE, token=token)

    uploading = {f.path_in_repo for f in plan.files if f.branch == branch}
    if plan.new_branch:
        # A new major version starts clean: nothing of another version's build/ or benchmarks/ survives.
        stale_prefixes = ("build/", "benchmarks/")
    else:
        # An existing branch keeps the variants not rebuilt here; the rebuilt ones are replaced whole.
        stale_prefixes = tuple(f"build/{v.name}/" for v in variants)
    stale = sorted(p for p in existing if p not in uploading and (
        p.startswith(stale_prefixes) or (p.startswith("benchmarks/benchmark") and p.endswith(".py"))))
    plan.deletions = [(branch, p) for p in stale]

    for target, message in plan.commit_messages.items():
        operations = [CommitOperationDelete(path_in_repo=p) for b, p in plan.deletions if b == target]
        operations += [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local_file))
                       for f in plan.files if f.branch == target]
        info = api.create_commit(repo_id, operations=operations, commit_message=message, repo_type=REPO_TYPE,
                                 revision=target, create_pr=create_pr, token=token)
        plan.commits[target] = (getattr(info, "pr_url", None) or getattr(info, "commit_url", None)
                                or str(getattr(info, "oid", info)))


# ---------------------------------------------------------------------------------------------------------------
# Local Hub cache


def _is_lfs(path: Path, data: bytes) -> bool:
    return path.suffix in LFS_SUFFIXES or len(data) >= LFS_MIN_SIZE or b"\0" in data[:8192]


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class _CacheFile:
    path_in_repo: str
    local_file: Path
    size: int
    blob_id: str  # git blob sha1 of what git stores (the LFS pointer for LFS files)
    lfs_sha256: str | None

    @property
    def blob_name(self) -> str:
        """The name huggingface_hub gives the blob: the ETag the Hub answers, i.e. the sha256 for LFS files
        (X-Linked-Etag) and the git blob sha1 for regular ones."""
        return self.lfs_sha256 or self.blob_id


def _hash_file(path_in_repo: str, local: Path) -> _CacheFile:
    data = local.read_bytes()
    size = len(data)
    if _is_lfs(local, data):
        sha256 = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        return _CacheFile(path_in_repo, local, size, _git_blob_sha1(pointer), sha256)
    return _CacheFile(path_in_repo, local, size, _git_blob_sha1(data), None)


def content_commit(repo_id: str, version: int, files: list[_CacheFile]) -> str:
    """A stable stand-in commit sha: sha1 over the repo, version and sorted (path, blob) pairs."""
    h = hashlib.sha1(f"rmsnorm-builder cache\0{repo_id}\0v{version}\0".encode())
    for f in sorted(files, key=lambda f: f.path_in_repo):
        h.update(f"{f.path_in_repo}\0{f.blob_name}\n".encode())
    return h.hexdigest()


def repo_cache_dir(cache_dir: Path | str, repo_id: str) -> Path:
    """``<cache>/kernels--<org>--<name>``, as huggingface_hub's repo_folder_name(repo_type="kernel")."""
    return Path(cache_dir) / "--".join(["kernels", *repo_id.split("/")])


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_to_cache(
    build_dir: Path | str,
    *,
    repo_id: str,
    version: int,
    cache_dir: Path | str,
    commit_sha: str | None = None,
    card_path: Path | str | None = None,
) -> Path:
    """Write the build variants into a Hugging Face Hub cache as one commit, exactly as a download leaves it.

    Layout under ``<cache_dir>/kernels--<org>--<name>/``: ``blobs/<git-sha1 | sha256>`` (content),
    ``snapshots/<commit>/build/<variant>/...`` and ``snapshots/<commit>/README.md`` (the card, if any) as
    relative symlinks into ``blobs/``, ``refs/v<version>`` and ``refs/main`` holding the commit (no newline, as
    huggingface_hub writes them and reads them back verbatim), and ``trees/<commit>.json`` (the tree listing
    huggingface_hub >= 2 caches per commit). The commit defaults to a sha1 of the content. Returns the snapshot
    folder. Note: on the Hub ``main`` (card) and ``v<version>`` (build) are different commits; here both refs
    name the one synthetic commit holding both.
    """
    _check_repo_id(repo_id)
    version = _check_version(version)
    build_dir = Path(build_dir)
    variants = find_variants(build_dir)
    common_version(variants, version)
    card = _resolve_card(card_path, build_dir)

    entries = _build_entries(variants)
    if card is not None:
        entries.append(("README.md", card))
    files = [_hash_file(p, local) for p, local in entries]
    commit = _check_commit(commit_sha) if commit_sha is not None else content_commit(repo_id, version, files)

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not (cache_dir / "CACHEDIR.TAG").exists():
        (cache_dir / "CACHEDIR.TAG").write_text(CACHEDIR_TAG)
    storage = repo_cache_dir(cache_dir, repo_id)
    snapshot = storage / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)  # a commit's snapshot is immutable content: rebuild it whole

    for f in files:
        blob = storage / "blobs" / f.blob_name
        if not blob.is_file() or blob.stat().st_size != f.size:
            _write_atomic(blob, f.local_file.read_bytes())
        pointer = snapshot / f.path_in_repo
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))

    tree = {"format_version": 1, "files": {}}
    for f in sorted(files, key=lambda f: f.path_in_repo):
        info = {"size": f.size, "blob_id": f.blob_id}
        if f.lfs_sha256 is not None:
            info.update(lfs_sha256=f.lfs_sha256, lfs_size=f.size)
        tree["files"][f.path_in_repo] = info
    _write_atomic(storage / "trees" / f"{commit}.json", json.dumps(tree, indent=1).encode())

    for ref in (f"v{version}", MAIN_BRANCH):
        _write_atomic(storage / "refs" / ref, commit.encode())
    return snapshot


def cached_commit(cache_dir: Path | str, repo_id: str, version: int) -> str | None:
    """The commit ``refs/v<version>`` of a cached kernel points at, if any."""
    ref = repo_cache_dir(cache_dir, repo_id) / "refs" / f"v{version}"
    return ref.read_text().strip() if ref.is_file() else None


def default_cache_dir() -> Path:
    """Where the kernels loader looks: ``KERNELS_CACHE``, else huggingface_hub's ``HF_HUB_CACHE``."""
    if os.environ.get("KERNELS_CACHE"):
        return Path(os.environ["KERNELS_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


# ---------------------------------------------------------------------------------------------------------------
# Lockfile


def write_lockfile(path: Path | str, *, repo_id: str, version: int, commit: str) -> Path:
    """Write (or update the entry for ``repo_id`` in) a ``kernels.lock`` as kernels 0.17.2 parses it:
    ``[{"dependency": {"repo-id": ..., "version": N}, "lock": {"commit": "<40 hex>"}}]``."""
    _check_repo_id(repo_id)
    version = _check_version(version)
    commit = _check_commit(commit)
    path = Path(path)
    entries = []
    if path.exists():
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise PublishError(f"{path} exists but is not valid JSON ({e}): expected a kernels.lock list, or "
                               "remove the file") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise PublishError(f"{path} exists but is not a kernels.lock list of objects: remove it or choose "
                               "another --out")
        entries = [e for e in entries if e.get("dependency", {}).get("repo-id") != repo_id]
    entries.append({"dependency": {"repo-id": repo_id, "version": version}, "lock": {"commit": commit}})
    entries.sort(key=lambda e: str(e.get("dependency", {}).get("repo-id")))
    text = json.dumps(entries, indent=2) + "\n"
    try:
        from kernels._rust import KernelLocks
    except ImportError:
        pass
    else:
        try:
            KernelLocks.from_json(text)
        except ValueError as e:
            raise PublishError(f"kernels refuses the lockfile for {path}: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _build_toml_general() -> dict:
    try:
        with open(REPO_ROOT / "build.toml", "rb") as f:
            return tomllib.load(f).get("general", {})
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise PublishError(f"{REPO_ROOT / 'build.toml'} is not valid TOML: {e}") from None


def _default_repo_id(args) -> str:
    if args.repo_id:
        return args.repo_id
    repo_id = _build_toml_general().get("hub", {}).get("repo-id")
    if not repo_id:
        raise PublishError(f"no repo id: pass --repo-id or set [general.hub] repo-id in {REPO_ROOT / 'build.toml'}")
    return repo_id


def _default_version(args) -> int:
    if args.version is not None:
        return args.version
    version = _build_toml_general().get("version")
    if version is None:
        raise PublishError(f"no version: pass --version or set [general] version in {REPO_ROOT / 'build.toml'}")
    return _check_version(version)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one stderr line and exit 1, like every other user error
        raise PublishError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m builder", description="Publish the kernel build.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = commands.add_parser("upload", help="upload build/ to branch v<version> and CARD.md to main (Hub)")
    up.add_argument("--build-dir", type=Path, default=REPO_ROOT / "build", help="default: build/")
    up.add_argument("--repo-id", help="default: build.toml [general.hub] repo-id")
    up.add_argument("--version", type=int, help="default: build.toml [general] version (must match metadata)")
    up.add_argument("--card", type=Path, help=f"default: {CARD_NAME} in the repo root, if present")
    up.add_argument("--dry-run", action="store_true", help="list what would be uploaded; no network, no token")
    up.add_argument("--private", action="store_true", help="create the repository as private")
    up.add_argument("--create-pr", action="store_true", help="open Hub pull requests instead of committing")

    cache = commands.add_parser("publish-cache", help="write build/ into a local Hub cache (offline loads)")
    cache.add_argument("--build-dir", type=Path, default=REPO_ROOT / "build", help="default: build/")
    cache.add_argument("--cache-dir", type=Path, help="default: $KERNELS_CACHE, else the Hub cache (HF_HUB_CACHE)")
    cache.add_argument("--repo-id", help="default: build.toml [general.hub] repo-id")
    cache.add_argument("--version", type=int, help="default: build.toml [general] version")
    cache.add_argument("--commit", help="commit sha to file the snapshot under (default: derived from content)")
    cache.add_argument("--card", type=Path, help=f"default: {CARD_NAME} in the repo root, if present")

    lock = commands.add_parser("lock", help="write a kernels.lock pinning the kernel to a commit")
    lock.add_argument("--out", type=Path, default=Path("kernels.lock"), help="default: ./kernels.lock")
    lock.add_argument("--repo-id", help="default: build.toml [general.hub] repo-id")
    lock.add_argument("--version", type=int, help="default: build.toml [general] version")
    lock.add_argument("--commit", help="default: refs/v<version> of the kernel in --cache-dir")
    lock.add_argument("--cache-dir", type=Path, help="cache read for the default commit (default as publish-cache)")
    return parser


def _run(args) -> int:
    if args.command == "upload":
        plan = upload_to_hub(args.build_dir, repo_id=_default_repo_id(args), version=_default_version(args),
                             card_path=args.card, private=args.private, dry_run=args.dry_run,
                             create_pr=args.create_pr)
        print(plan.describe())
        if not plan.dry_run and MAIN_BRANCH not in plan.commit_messages:
            print(f"no {CARD_NAME}: README.md on {MAIN_BRANCH} left as it is")
        return 0

    if args.command == "publish-cache":
        repo_id, version = _default_repo_id(args), _default_version(args)
        cache_dir = args.cache_dir or default_cache_dir()
        snapshot = publish_to_cache(args.build_dir, repo_id=repo_id, version=version, cache_dir=cache_dir,
                                    commit_sha=args.commit, card_path=args.card)
        print(f"cached {repo_id} v{version} at commit {snapshot.name}: {snapshot}")
        print(f"refs v{version} and {MAIN_BRANCH} -> {snapshot.name}")
        print(f"load offline: HF_HUB_OFFLINE=1 KERNELS_CACHE={cache_dir} python -c "
              f"\"import kernels; kernels.get_kernel('{repo_id}', version={version})\"")
        return 0

    if args.command == "lock":
        repo_id, version = _default_repo_id(args), _default_version(args)
        commit = args.commit
        if commit is None:
            cache_dir = args.cache_dir or default_cache_dir()
            commit = cached_commit(cache_dir, repo_id, version)
            if commit is None:
                raise PublishError(f"no --commit and no cached refs/v{version} for {repo_id} in {cache_dir}: "
                                   "expected `publish-cache` first, or pass --commit <40 hex>")
        path = write_lockfile(args.out, repo_id=repo_id, version=version, commit=commit)
        print(f"locked {repo_id} v{version} at {commit.lower()} in {path}")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(_parser().parse_args(argv))
    except PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # Hub errors (auth, permissions, network): one line, not a traceback
        if type(e).__module__.startswith(("huggingface_hub", "httpx", "requests")):
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"error: Hub request failed ({type(e).__name__}): {first}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
